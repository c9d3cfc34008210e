/* sweep.c — configs, grid expansion and the run loop of attn-sweep (see sweep.h).
 *
 * Per point: the exact output (and, for small n, the exact matrix and its spectral norm) is
 * computed once per (source, seed, layer, head, n, causal) and cached while the methods of that
 * input run; each method's plan is created (timed), applied `repeats` times (best wall time kept),
 * compared with exact, materialized when n <= matrix_n_max, and its singular values stored when
 * n <= rank_n_max.  Each finished point is appended and flushed at once.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <ini.h>

#include "attn.h"
#include "attn_io.h"
#include "sweep.h"

#define TEXT_MAX 65536
/* The [blocks] section is stored under a name no method id can take. */
#define BLOCKS_SECTION ":blocks"

/* ---------------------------------------------------------------------------------------------
 * Raw key/value store of the INI file, in file order, with overrides applied.
 */
typedef struct entry {
    char *section;  /* "sweep" or a method id */
    char *key;
    char *value;
    int line;
} entry;

typedef struct raw_config {
    entry *items;
    size_t count, cap;
    char error[512];
} raw_config;

static char *strdup_or_null(const char *s)
{
    size_t len = strlen(s) + 1;
    char *p = malloc(len);
    if (p != NULL)
        memcpy(p, s, len);
    return p;
}

static int raw_set(raw_config *raw, const char *section, const char *key, const char *value,
                   int line)
{
    for (size_t t = 0; t < raw->count; t++)
        if (strcmp(raw->items[t].section, section) == 0 && strcmp(raw->items[t].key, key) == 0) {
            char *v = strdup_or_null(value);
            if (v == NULL)
                return 0;
            free(raw->items[t].value);
            raw->items[t].value = v;
            raw->items[t].line = line;
            return 1;
        }
    if (raw->count == raw->cap) {
        size_t cap = raw->cap ? 2 * raw->cap : 32;
        entry *items = realloc(raw->items, cap * sizeof *items);
        if (items == NULL)
            return 0;
        raw->items = items;
        raw->cap = cap;
    }
    entry *e = &raw->items[raw->count];
    e->section = strdup_or_null(section);
    e->key = strdup_or_null(key);
    e->value = strdup_or_null(value);
    e->line = line;
    if (e->section == NULL || e->key == NULL || e->value == NULL)
        return 0;
    raw->count++;
    return 1;
}

static void raw_free(raw_config *raw)
{
    for (size_t t = 0; t < raw->count; t++) {
        free(raw->items[t].section);
        free(raw->items[t].key);
        free(raw->items[t].value);
    }
    free(raw->items);
}

static const char *raw_get(const raw_config *raw, const char *section, const char *key)
{
    for (size_t t = 0; t < raw->count; t++)
        if (strcmp(raw->items[t].section, section) == 0 && strcmp(raw->items[t].key, key) == 0)
            return raw->items[t].value;
    return NULL;
}

/* The method id of a section stored as "ID" or "ID/NAME" (several sections of one method). */
static const attn_method *section_method(const char *section)
{
    char id[256];
    snprintf(id, sizeof id, "%.*s", (int) strcspn(section, "/"), section);
    return attn_method_find(id);
}

/* The "unknown method" message of the spec parser, for a section's id. */
static void unknown_section_method(const char *section)
{
    char id[256];
    snprintf(id, sizeof id, "%.*s", (int) strcspn(section, "/"), section);
    const attn_method *none = NULL;
    double values[64];
    attn_spec_parse(id, &none, values);
}

/* Section names: "sweep" and "method ID" or "method ID/NAME" (stored as "ID" or "ID/NAME"). */
static int on_ini(void *user, const char *section, const char *key, const char *value)
{
    raw_config *raw = user;
    char name[256];
    if (raw->error[0] != '\0')
        return 0;
    if (strcmp(section, "sweep") == 0) {
        snprintf(name, sizeof name, "sweep");
    } else if (strcmp(section, "blocks") == 0) {
        snprintf(name, sizeof name, BLOCKS_SECTION);
    } else if (strncmp(section, "method ", 7) == 0) {
        const char *id = section + 7;
        while (*id == ' ')
            id++;
        snprintf(name, sizeof name, "%s", id);
        if (section_method(name) == NULL) {
            unknown_section_method(name);
            snprintf(raw->error, sizeof raw->error, "section [%s]: %s", section,
                     attn_last_error());
            return 0;
        }
    } else {
        snprintf(raw->error, sizeof raw->error,
                 "unknown section [%s] (expected [sweep], [blocks] or [method ID])", section);
        return 0;
    }
    /* inih reports each continuation line of a multi-line value as the same key again: append
     * it, so that indented continuation lines (or a repeated key) add values to the list. */
    const char *old = raw_get(raw, name, key);
    int stored;
    if (old != NULL && *old != '\0') {
        size_t len = strlen(old) + strlen(value) + 2;
        char *joined = malloc(len);
        if (joined == NULL) {
            snprintf(raw->error, sizeof raw->error, "out of memory");
            return 0;
        }
        snprintf(joined, len, "%s\n%s", old, value);
        stored = raw_set(raw, name, key, joined, 0);
        free(joined);
    } else {
        stored = raw_set(raw, name, key, value, 0);
    }
    if (!stored) {
        snprintf(raw->error, sizeof raw->error, "out of memory");
        return 0;
    }
    return 1;
}

/* ---------------------------------------------------------------------------------------------
 * Lists and ranges.
 */
static char *trim(char *s)
{
    while (isspace((unsigned char) *s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char) e[-1]))
        *--e = '\0';
    return s;
}

static int parse_number(const char *what, const char *text, double *x)
{
    char *end = NULL;
    errno = 0;
    *x = strtod(text, &end);
    if (end == text || *trim(end) != '\0' || !isfinite(*x) || errno == ERANGE)
        return ATTN_ERR(ATTN_ECONFIG, "%s: '%s' is not a number", what, text);
    return ATTN_OK;
}

static int push(double **values, size_t *count, size_t *cap, double x)
{
    if (*count == *cap) {
        size_t c = *cap ? 2 * *cap : 16;
        double *v = realloc(*values, c * sizeof *v);
        if (v == NULL)
            return ATTN_ERR(ATTN_ENOMEM, "list of %zu values", c);
        *values = v;
        *cap = c;
    }
    (*values)[(*count)++] = x;
    return ATTN_OK;
}

int sweep_parse_list(const char *what, const char *text, double **values, size_t *count)
{
    char *copy = strdup_or_null(text);
    size_t cap = 0;
    int status = ATTN_OK;
    *values = NULL;
    *count = 0;
    if (copy == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "%s", what);
    for (char *item = strtok(copy, ", \t\n"); item != NULL && status == ATTN_OK;
         item = strtok(NULL, ", \t\n")) {
        char *c1 = strchr(item, ':');
        if (c1 == NULL) {
            double x;
            status = parse_number(what, item, &x);
            if (status == ATTN_OK)
                status = push(values, count, &cap, x);
            continue;
        }
        *c1 = '\0';
        char *c2 = strchr(c1 + 1, ':');
        if (c2 != NULL)
            *c2 = '\0';
        double a, b, step = 1.0;
        int geometric = 0;
        status = parse_number(what, item, &a);
        if (status == ATTN_OK)
            status = parse_number(what, c1 + 1, &b);
        if (status == ATTN_OK && c2 != NULL) {
            const char *s = c2 + 1;
            if (*s == 'x' || *s == '*')
                geometric = 1, s++;
            else if (*s == '+')
                s++;
            status = parse_number(what, s, &step);
        }
        if (status != ATTN_OK)
            break;
        if ((geometric && (step <= 1.0 || a <= 0)) || (!geometric && step <= 0) || b < a) {
            status = ATTN_ERR(ATTN_ECONFIG,
                              "%s: range '%s:%s%s' must run upwards with a step > 0 (x: > 1)",
                              what, item, c1 + 1, c2 != NULL ? ":..." : "");
            break;
        }
        /* Relative slack so that 0.1-steps and x2 ranges include their end point. */
        for (double x = a; x <= b * (1 + 1e-12) && status == ATTN_OK;
             x = geometric ? x * step : x + step)
            status = push(values, count, &cap, x);
    }
    free(copy);
    if (status == ATTN_OK && *count == 0)
        status = ATTN_ERR(ATTN_ECONFIG, "%s: empty list", what);
    if (status != ATTN_OK) {
        free(*values);
        *values = NULL;
        *count = 0;
    }
    return status;
}

static int parse_sizes(const char *what, const char *text, size_t **out, size_t *count)
{
    double *v = NULL;
    ATTN_TRY(sweep_parse_list(what, text, &v, count), "config");
    *out = calloc(*count, sizeof **out);
    if (*out == NULL) {
        free(v);
        return ATTN_ERR(ATTN_ENOMEM, "%s", what);
    }
    for (size_t t = 0; t < *count; t++) {
        if (v[t] < 0 || v[t] != floor(v[t])) {
            double bad = v[t];
            free(v);
            free(*out);
            *out = NULL;
            return ATTN_ERR(ATTN_ECONFIG, "%s: %g is not a non-negative integer", what, bad);
        }
        (*out)[t] = (size_t) v[t];
    }
    free(v);
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Config.
 */
static const char *const sweep_keys[] = { "data",   "layers",       "heads",      "n",
                                          "causal", "seeds",        "repeats",    "matrix_n_max",
                                          "rank_n_max", "eps_rank_tol", NULL };
static const char *const sweep_defaults[] = { NULL, "all", "all", NULL, "0", "0", "3", "1024",
                                              "512", "1e-6", NULL };

void sweep_config_free(sweep_config *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t t = 0; t < cfg->nsources; t++)
        free(cfg->sources[t]);
    for (size_t t = 0; t < cfg->nspecs; t++) {
        free(cfg->specs[t]);
        free(cfg->labels[t]);
    }
    free(cfg->labels);
    free(cfg->sources);
    free(cfg->specs);
    free(cfg->path);
    free(cfg->name);
    free(cfg->layers);
    free(cfg->heads);
    free(cfg->ns);
    free(cfg->seeds);
    free(cfg->block_sizes);
    free(cfg->bands);
    free(cfg->text);
    free(cfg);
}

static int add_spec(sweep_config *cfg, const char *spec, const char *label)
{
    char **specs = realloc(cfg->specs, (cfg->nspecs + 1) * sizeof *specs);
    if (specs == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "spec list");
    cfg->specs = specs;
    char **labels = realloc(cfg->labels, (cfg->nspecs + 1) * sizeof *labels);
    if (labels == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "spec list");
    cfg->labels = labels;
    cfg->specs[cfg->nspecs] = strdup_or_null(spec);
    cfg->labels[cfg->nspecs] = strdup_or_null(label);
    if (cfg->specs[cfg->nspecs] == NULL || cfg->labels[cfg->nspecs] == NULL) {
        free(cfg->specs[cfg->nspecs]);
        free(cfg->labels[cfg->nspecs]);
        return ATTN_ERR(ATTN_ENOMEM, "spec list");
    }
    cfg->nspecs++;
    return ATTN_OK;
}

/* Expand one [method ID] section: the cartesian product of its parameter lists, each spec parsed
 * (so bad parameters fail here, naming the section) and stored canonical. */
static int expand_method(sweep_config *cfg, const raw_config *raw, const char *section)
{
    const attn_method *method = section_method(section);
    const char *id = attn_method_name(method);
    const attn_param *params = attn_method_params(method);
    size_t np = 0;
    while (params[np].name != NULL)
        np++;
    /* Lists of values (as text) per parameter given in the section. */
    char *lists[64][64];
    size_t lens[64] = { 0 };
    size_t given[64];
    size_t ng = 0;
    int status = ATTN_OK;
    for (size_t t = 0; t < raw->count && status == ATTN_OK; t++) {
        if (strcmp(raw->items[t].section, section) != 0 || raw->items[t].key[0] == '\0')
            continue; /* "" marks a section without keys */
        long p = -1;
        for (size_t q = 0; q < np; q++)
            if (strcmp(params[q].name, raw->items[t].key) == 0)
                p = (long) q;
        if (p < 0) {
            char spec[256];
            snprintf(spec, sizeof spec, "%s:%s=0", id, raw->items[t].key);
            attn_spec_parse(spec, &method, (double[64]){ 0 });
            return attn_error_context(ATTN_ECONFIG, "[method %s]", id);
        }
        given[ng] = (size_t) p;
        if (params[p].choices != NULL) {
            char *copy = strdup_or_null(raw->items[t].value);
            for (char *s = strtok(copy, ", \t\n"); s != NULL && lens[ng] < 64;
                 s = strtok(NULL, ", \t\n"))
                lists[ng][lens[ng]++] = strdup_or_null(s);
            free(copy);
        } else {
            double *v = NULL;
            size_t count = 0;
            char what[128];
            snprintf(what, sizeof what, "[method %s] %s", id, params[p].name);
            /* The word auto (a parameter chosen from the problem) may stand among the numbers:
             * it comes first in the list, the numbers after it. */
            char *text = strdup_or_null(raw->items[t].value);
            int has_auto = 0, has_numbers = 0;
            for (char *w = text; w != NULL && *w != '\0';) {
                size_t skip = strspn(w, ", \t\n"), len = strcspn(w + skip, ", \t\n");
                w += skip;
                if (len == 4 && strncmp(w, "auto", 4) == 0) {
                    has_auto = 1;
                    memset(w, ' ', 4);
                } else if (len > 0) {
                    has_numbers = 1;
                }
                w += len;
            }
            if (has_auto)
                lists[ng][lens[ng]++] = strdup_or_null("auto");
            if (has_numbers || !has_auto)
                status = sweep_parse_list(what, text != NULL ? text : "", &v, &count);
            free(text);
            for (size_t c = 0; c < count && lens[ng] < 64; c++) {
                char num[64];
                snprintf(num, sizeof num, "%.17g", v[c]);
                lists[ng][lens[ng]++] = strdup_or_null(num);
            }
            free(v);
        }
        ng++;
    }
    /* Odometer over the lists. */
    size_t idx[64] = { 0 };
    while (status == ATTN_OK) {
        char spec[1024];
        size_t pos = (size_t) snprintf(spec, sizeof spec, "%s", id);
        for (size_t g = 0; g < ng; g++)
            pos += (size_t) snprintf(spec + pos, sizeof spec - pos, "%c%s=%s", g ? ',' : ':',
                                     params[given[g]].name, lists[g][idx[g]]);
        double values[64];
        const attn_method *m = NULL;
        status = attn_spec_parse(spec, &m, values);
        if (status != ATTN_OK) {
            status = attn_error_context(ATTN_ECONFIG, "[method %s]", id);
            break;
        }
        char canonical[1024];
        attn_spec_format(m, values, canonical, sizeof canonical);
        status = add_spec(cfg, canonical, spec);
        size_t g = ng;
        while (g-- > 0) {
            if (++idx[g] < lens[g])
                break;
            idx[g] = 0;
        }
        if (g == (size_t) -1)
            break;
    }
    for (size_t g = 0; g < ng; g++)
        for (size_t c = 0; c < lens[g]; c++)
            free(lists[g][c]);
    return status;
}

static void text_add(char *text, size_t *pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void text_add(char *text, size_t *pos, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (*pos < TEXT_MAX) {
        int k = vsnprintf(text + *pos, TEXT_MAX - *pos, fmt, ap);
        if (k > 0)
            *pos += (size_t) k;
    }
    va_end(ap);
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 14695981039346656037ull;
    for (; *s; s++) {
        h ^= (unsigned char) *s;
        h *= 1099511628211ull;
    }
    return h;
}

/* The optional [blocks] section: known keys only; sizes >= 1; tol in (0, 1). */
static int build_blocks(sweep_config *cfg, raw_config *raw)
{
    static const char *const keys[] = { "sizes", "bands", "tol", NULL };
    for (size_t t = 0; t < raw->count; t++) {
        if (strcmp(raw->items[t].section, BLOCKS_SECTION) != 0)
            continue;
        cfg->blocks = 1;
        int known = raw->items[t].key[0] == '\0';
        for (size_t k = 0; keys[k] != NULL; k++)
            known |= strcmp(keys[k], raw->items[t].key) == 0;
        if (!known)
            return ATTN_ERR(ATTN_ECONFIG, "[blocks]: unknown key '%s' (keys: sizes, bands, tol)",
                            raw->items[t].key);
    }
    if (!cfg->blocks)
        return ATTN_OK;
    const char *sizes = raw_get(raw, BLOCKS_SECTION, "sizes");
    const char *bands = raw_get(raw, BLOCKS_SECTION, "bands");
    const char *tol = raw_get(raw, BLOCKS_SECTION, "tol");
    if (sizes == NULL && bands == NULL)
        return ATTN_ERR(ATTN_ECONFIG, "[blocks]: give sizes (off-diagonal block sizes) and/or "
                        "bands (band half-widths of the far field)");
    if (sizes != NULL)
        ATTN_TRY(parse_sizes("[blocks] sizes", sizes, &cfg->block_sizes, &cfg->nblock_sizes),
                 "%s", cfg->path);
    for (size_t t = 0; t < cfg->nblock_sizes; t++)
        if (cfg->block_sizes[t] == 0)
            return ATTN_ERR(ATTN_ECONFIG, "[blocks] sizes: 0 is not a block size");
    if (bands != NULL)
        ATTN_TRY(parse_sizes("[blocks] bands", bands, &cfg->bands, &cfg->nbands), "%s",
                 cfg->path);
    cfg->block_tol = cfg->eps_rank_tol;
    if (tol != NULL) {
        ATTN_TRY(parse_number("[blocks] tol", tol, &cfg->block_tol), "%s", cfg->path);
        if (!(cfg->block_tol > 0 && cfg->block_tol < 1))
            return ATTN_ERR(ATTN_ECONFIG, "[blocks] tol: %g, expected 0 < tol < 1",
                            cfg->block_tol);
    }
    return ATTN_OK;
}

static int build(sweep_config *cfg, raw_config *raw)
{
    /* [sweep] keys: known ones only, required ones present. */
    for (size_t t = 0; t < raw->count; t++) {
        if (strcmp(raw->items[t].section, "sweep") != 0)
            continue;
        int known = 0;
        for (size_t k = 0; sweep_keys[k] != NULL; k++)
            known |= strcmp(sweep_keys[k], raw->items[t].key) == 0;
        if (!known)
            return ATTN_ERR(ATTN_ECONFIG,
                            "[sweep]: unknown key '%s' (keys: data, layers, heads, n, causal, "
                            "seeds, repeats, matrix_n_max, rank_n_max, eps_rank_tol)",
                            raw->items[t].key);
    }
    for (size_t k = 0; sweep_keys[k] != NULL; k++)
        if (raw_get(raw, "sweep", sweep_keys[k]) == NULL) {
            if (sweep_defaults[k] == NULL)
                return ATTN_ERR(ATTN_ECONFIG, "[sweep]: missing key '%s'", sweep_keys[k]);
            if (!raw_set(raw, "sweep", sweep_keys[k], sweep_defaults[k], 0))
                return ATTN_ERR(ATTN_ENOMEM, "config");
        }

    char *data = strdup_or_null(raw_get(raw, "sweep", "data"));
    for (char *s = strtok(data, " \t\n"); s != NULL; s = strtok(NULL, " \t\n")) {
        char **sources = realloc(cfg->sources, (cfg->nsources + 1) * sizeof *sources);
        if (sources == NULL) {
            free(data);
            return ATTN_ERR(ATTN_ENOMEM, "sources");
        }
        cfg->sources = sources;
        /* Sources are separated by white space; a trailing comma is tolerated. */
        size_t len = strlen(s);
        if (len > 0 && s[len - 1] == ',')
            s[len - 1] = '\0';
        cfg->sources[cfg->nsources++] = strdup_or_null(s);
    }
    free(data);
    if (cfg->nsources == 0)
        return ATTN_ERR(ATTN_ECONFIG, "[sweep] data: no sources");

    cfg->layers = strdup_or_null(raw_get(raw, "sweep", "layers"));
    cfg->heads = strdup_or_null(raw_get(raw, "sweep", "heads"));
    ATTN_TRY(parse_sizes("[sweep] n", raw_get(raw, "sweep", "n"), &cfg->ns, &cfg->nns),
             "%s", cfg->path);
    for (size_t t = 0; t < cfg->nns; t++)
        if (cfg->ns[t] == 0)
            return ATTN_ERR(ATTN_ECONFIG, "[sweep] n: n = 0 is not a sequence length");
    size_t *causal = NULL, nc = 0;
    ATTN_TRY(parse_sizes("[sweep] causal", raw_get(raw, "sweep", "causal"), &causal, &nc), "%s",
             cfg->path);
    cfg->ncausal = 0;
    for (size_t t = 0; t < nc; t++) {
        if (causal[t] > 1) {
            size_t bad = causal[t];
            free(causal);
            return ATTN_ERR(ATTN_ECONFIG, "[sweep] causal: %zu is not 0 or 1", bad);
        }
        if (cfg->ncausal < 2)
            cfg->causal[cfg->ncausal++] = (int) causal[t];
    }
    free(causal);
    size_t *seeds = NULL;
    ATTN_TRY(parse_sizes("[sweep] seeds", raw_get(raw, "sweep", "seeds"), &seeds, &cfg->nseeds),
             "%s", cfg->path);
    cfg->seeds = calloc(cfg->nseeds, sizeof *cfg->seeds);
    for (size_t t = 0; cfg->seeds != NULL && t < cfg->nseeds; t++)
        cfg->seeds[t] = seeds[t];
    free(seeds);
    size_t *one = NULL, count = 0;
    ATTN_TRY(parse_sizes("[sweep] repeats", raw_get(raw, "sweep", "repeats"), &one, &count),
             "%s", cfg->path);
    cfg->repeats = (int) one[0];
    free(one);
    if (cfg->repeats < 1)
        return ATTN_ERR(ATTN_ECONFIG, "[sweep] repeats: %d, expected >= 1", cfg->repeats);
    ATTN_TRY(parse_sizes("[sweep] matrix_n_max", raw_get(raw, "sweep", "matrix_n_max"), &one,
                         &count),
             "%s", cfg->path);
    cfg->matrix_n_max = one[0];
    free(one);
    ATTN_TRY(parse_sizes("[sweep] rank_n_max", raw_get(raw, "sweep", "rank_n_max"), &one,
                         &count),
             "%s", cfg->path);
    cfg->rank_n_max = one[0];
    free(one);
    double tol;
    ATTN_TRY(parse_number("[sweep] eps_rank_tol", raw_get(raw, "sweep", "eps_rank_tol"), &tol),
             "%s", cfg->path);
    if (!(tol > 0 && tol < 1))
        return ATTN_ERR(ATTN_ECONFIG, "[sweep] eps_rank_tol: %g, expected 0 < tol < 1", tol);
    cfg->eps_rank_tol = tol;

    ATTN_TRY(build_blocks(cfg, raw), "%s", cfg->path);

    /* Methods, in the order their sections first appear. */
    for (size_t t = 0; t < raw->count; t++) {
        const char *id = raw->items[t].section;
        if (strcmp(id, "sweep") == 0 || strcmp(id, BLOCKS_SECTION) == 0)
            continue;
        int first = 1;
        for (size_t u = 0; u < t; u++)
            first &= strcmp(raw->items[u].section, id) != 0;
        if (first)
            ATTN_TRY(expand_method(cfg, raw, id), "%s", cfg->path);
    }
    if (cfg->nspecs == 0)
        return ATTN_ERR(ATTN_ECONFIG, "no [method ID] sections: nothing to run");

    /* The resolved text: every sweep key and every spec, in a fixed order. */
    cfg->text = calloc(TEXT_MAX, 1);
    if (cfg->text == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "config text");
    size_t pos = 0;
    text_add(cfg->text, &pos, "[sweep]\n");
    for (size_t k = 0; sweep_keys[k] != NULL; k++)
        text_add(cfg->text, &pos, "%s = %s\n", sweep_keys[k], raw_get(raw, "sweep", sweep_keys[k]));
    if (cfg->blocks) {
        /* Only when present, so that the hash of a config without it is unchanged. */
        text_add(cfg->text, &pos, "[blocks]\nsizes =");
        for (size_t t = 0; t < cfg->nblock_sizes; t++)
            text_add(cfg->text, &pos, " %zu", cfg->block_sizes[t]);
        text_add(cfg->text, &pos, "\nbands =");
        for (size_t t = 0; t < cfg->nbands; t++)
            text_add(cfg->text, &pos, " %zu", cfg->bands[t]);
        text_add(cfg->text, &pos, "\ntol = %.17g\n", cfg->block_tol);
    }
    text_add(cfg->text, &pos, "# methods (canonical specs)\n");
    for (size_t t = 0; t < cfg->nspecs; t++)
        text_add(cfg->text, &pos, "spec = %s\n", cfg->specs[t]);
    snprintf(cfg->hash, sizeof cfg->hash, "%016llx", (unsigned long long) fnv1a(cfg->text));
    return ATTN_OK;
}

/* inih reports a section only through its keys; an empty [method exact] must still count.  This
 * pre-pass finds section headers and records each method section with a placeholder key. */
static int find_sections(raw_config *raw, const char *path)
{
    FILE *f = fopen(path, "r");
    char line[4096];
    int lineno = 0;
    if (f == NULL)
        return ATTN_ERR(ATTN_EIO, "%s: %s", path, strerror(errno));
    while (fgets(line, sizeof line, f) != NULL) {
        lineno++;
        char *s = trim(line);
        if (*s != '[')
            continue;
        char *e = strchr(s, ']');
        if (e == NULL)
            continue; /* inih reports the syntax error with its line */
        *e = '\0';
        char *name = trim(s + 1);
        if (strncmp(name, "method ", 7) == 0 && raw_get(raw, trim(name + 7), "") == NULL) {
            if (section_method(trim(name + 7)) == NULL) {
                unknown_section_method(trim(name + 7));
                fclose(f);
                return attn_error_context(ATTN_ECONFIG, "%s:%d: section [%s]", path, lineno,
                                          name);
            }
            raw_set(raw, trim(name + 7), "", "", lineno);
        }
    }
    fclose(f);
    return ATTN_OK;
}

int sweep_config_load(sweep_config **out, const char *path, const char *const *overrides,
                      size_t noverrides)
{
    raw_config raw = { 0 };
    int status;
    sweep_config *cfg = calloc(1, sizeof *cfg);
    *out = NULL;
    if (cfg == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "config");
    cfg->path = strdup_or_null(path);
    const char *base = strrchr(path, '/');
    base = base != NULL ? base + 1 : path;
    cfg->name = strdup_or_null(base);
    char *dot = strrchr(cfg->name, '.');
    if (dot != NULL)
        *dot = '\0';

    status = find_sections(&raw, path);
    if (status != ATTN_OK)
        goto fail;
    int line = ini_parse(path, on_ini, &raw);
    if (line < 0) {
        status = ATTN_ERR(ATTN_EIO, "%s: cannot open (%s)", path, strerror(errno));
        goto fail;
    }
    if (raw.error[0] != '\0') {
        status = ATTN_ERR(ATTN_ECONFIG, "%s:%d: %s", path, line, raw.error);
        goto fail;
    }
    if (line > 0) {
        status = ATTN_ERR(ATTN_ECONFIG, "%s:%d: syntax error (expected [section], key = value "
                                        "or a ; comment)", path, line);
        goto fail;
    }
    for (size_t t = 0; t < noverrides; t++) {
        char buf[1024];
        snprintf(buf, sizeof buf, "%s", overrides[t]);
        char *eq = strchr(buf, '=');
        if (eq == NULL) {
            status = ATTN_ERR(ATTN_ECONFIG, "--set '%s': expected key=value", overrides[t]);
            goto fail;
        }
        *eq = '\0';
        char *key = trim(buf), *value = trim(eq + 1);
        char *dotk = strchr(key, '.');
        const char *section = "sweep";
        if (dotk != NULL) {
            *dotk = '\0';
            section = key;
            key = dotk + 1;
            if (strcmp(section, "blocks") == 0) {
                section = BLOCKS_SECTION;
            } else if (strcmp(section, "sweep") != 0 && section_method(section) == NULL) {
                status = ATTN_ERR(ATTN_ECONFIG, "--set %s.%s: unknown section '%s' (sweep, "
                                                "blocks or a method id)", section, key, section);
                goto fail;
            }
        }
        if (!raw_set(&raw, section, key, value, 0)) {
            status = ATTN_ERR(ATTN_ENOMEM, "override");
            goto fail;
        }
    }
    /* Remove the section markers before building (they carry no parameter). */
    size_t keep = 0;
    for (size_t t = 0; t < raw.count; t++) {
        if (raw.items[t].key[0] == '\0' && strcmp(raw.items[t].section, "sweep") != 0) {
            int other = 0;
            for (size_t u = 0; u < raw.count; u++)
                other |= u != t && strcmp(raw.items[u].section, raw.items[t].section) == 0 &&
                         raw.items[u].key[0] != '\0';
            if (other) {
                free(raw.items[t].section);
                free(raw.items[t].key);
                free(raw.items[t].value);
                continue;
            }
        }
        raw.items[keep++] = raw.items[t];
    }
    raw.count = keep;
    status = build(cfg, &raw);
    if (status != ATTN_OK) {
        if (strstr(attn_last_error(), path) == NULL)
            attn_error_context(status, "%s", path);
        goto fail;
    }
    raw_free(&raw);
    *out = cfg;
    return ATTN_OK;
fail:
    raw_free(&raw);
    sweep_config_free(cfg);
    return status;
}

/* ---------------------------------------------------------------------------------------------
 * The grid.
 */
static int select_indices(const char *what, const char *text, size_t available, size_t **out,
                          size_t *count)
{
    if (strcmp(text, "all") == 0) {
        *out = calloc(available, sizeof **out);
        if (*out == NULL)
            return ATTN_ERR(ATTN_ENOMEM, "%s", what);
        for (size_t t = 0; t < available; t++)
            (*out)[t] = t;
        *count = available;
        return ATTN_OK;
    }
    ATTN_TRY(parse_sizes(what, text, out, count), "config");
    /* Indices a source does not have are left out for that source (sources of one sweep may
     * differ in layers and heads); a source left with none is an error. */
    size_t keep = 0;
    for (size_t t = 0; t < *count; t++)
        if ((*out)[t] < available)
            (*out)[keep++] = (*out)[t];
    if (keep == 0) {
        free(*out);
        *out = NULL;
        return ATTN_ERR(ATTN_ECONFIG, "%s = %s: none of these exist in a source with %zu", what,
                        text, available);
    }
    *count = keep;
    return ATTN_OK;
}

/* Seeds that apply to (source, spec): synthetic sources vary with every seed; file sources only
 * with the seed of a random method. */
static int is_synthetic(const attn_inputs *in)
{
    return in->causal == -1 && (strncmp(in->source, "gauss:", 6) == 0 ||
                                strncmp(in->source, "local:", 6) == 0);
}

static int spec_is_random(const char *spec)
{
    const attn_method *m = NULL;
    double values[64];
    if (attn_spec_parse(spec, &m, values) != ATTN_OK)
        return 0;
    return (attn_method_caps(m) & ATTN_RANDOM) != 0;
}

typedef struct point {
    size_t source, layer, head, n, seed_index, spec;
    int causal;
} point;

/* Walk the grid of one source (already read), calling visit on each point in order.  The
 * synthetic inputs of another seed are the same shape, so the shape of seed 0 decides the grid. */
typedef int (*visit_fn)(void *user, const point *p, int64_t point_id);

static int walk_source(const sweep_config *cfg, size_t s, const attn_inputs *in, int64_t *id,
                       visit_fn visit, void *user)
{
    size_t *layers = NULL, *heads = NULL, nl = 0, nh = 0;
    int status = select_indices("[sweep] layers", cfg->layers, in->layers, &layers, &nl);
    if (status == ATTN_OK)
        status = select_indices("[sweep] heads", cfg->heads, in->heads, &heads, &nh);
    if (status != ATTN_OK)
        status = attn_error_context(status, "data source %s", cfg->sources[s]);
    int synthetic = is_synthetic(in);
    for (size_t a = 0; status == ATTN_OK && a < nl; a++)
        for (size_t b = 0; status == ATTN_OK && b < nh; b++)
            for (size_t c = 0; status == ATTN_OK && c < cfg->nns; c++) {
                if (cfg->ns[c] > in->n)
                    continue;
                for (size_t e = 0; status == ATTN_OK && e < cfg->ncausal; e++)
                    for (size_t f = 0; status == ATTN_OK && f < cfg->nseeds; f++)
                        for (size_t g = 0; status == ATTN_OK && g < cfg->nspecs; g++) {
                            if (f > 0 && !synthetic && !spec_is_random(cfg->specs[g]))
                                continue;
                            point p = { .source = s, .layer = layers[a], .head = heads[b],
                                        .n = cfg->ns[c], .causal = cfg->causal[e],
                                        .seed_index = f, .spec = g };
                            status = visit(user, &p, (*id)++);
                        }
            }
    free(layers);
    free(heads);
    return status;
}

/* Read a source for the sweep (all of it: points take prefixes). */
static int read_source(const sweep_config *cfg, size_t s, unsigned long seed, attn_inputs **in)
{
    int status = attn_inputs_read(in, cfg->sources[s], 0, seed);
    return status == ATTN_OK ? ATTN_OK
                             : attn_error_context(status, "[sweep] data source %zu", s + 1);
}

static int count_visit(void *user, const point *p, int64_t id)
{
    (*(size_t *) user)++;
    return ATTN_OK;
}

int sweep_count(const sweep_config *cfg, size_t *total)
{
    int64_t id = 0;
    *total = 0;
    for (size_t s = 0; s < cfg->nsources; s++) {
        attn_inputs *in = NULL;
        ATTN_TRY(read_source(cfg, s, cfg->seeds[0], &in), "counting points");
        int status = walk_source(cfg, s, in, &id, count_visit, total);
        attn_inputs_destroy(in);
        if (status != ATTN_OK)
            return status;
    }
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Running points.
 */
static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double) t.tv_sec + 1e-9 * (double) t.tv_nsec;
}

static double peak_rss(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double) ru.ru_maxrss * 1024.0;
}

/* The exact reference of one input, shared by the methods that run on it. */
typedef struct exact_cache {
    int valid;
    size_t source, layer, head, n, seed_index;
    int causal;
    double *O;          /* n x dv exact output */
    double *A;          /* n x n exact matrix (n <= matrix_n_max), else NULL */
    double norm_A;      /* ||A||_2, NaN when A is not formed */
    double norm_V;      /* ||V||_2 */
    double time_s;      /* best-of-repeats exact apply */
} exact_cache;

typedef struct run_state {
    const sweep_config *cfg;
    const sweep_options *opts;
    attn_results *results;
    sweep_summary *summary;
    attn_inputs *in[1];          /* the current source's inputs (current seed) */
    size_t in_source, in_seed;
    exact_cache ex;
    double *O, *Ah, *sv;         /* scratch sized for the largest point */
    double t0, last_progress;
} run_state;

static void cache_clear(exact_cache *ex)
{
    free(ex->O);
    free(ex->A);
    memset(ex, 0, sizeof *ex);
}

static int time_apply(attn_plan *plan, const double *Q, const double *K, const double *V,
                      double *O, int repeats, double *best)
{
    *best = INFINITY;
    for (int r = 0; r < repeats; r++) {
        double t = now();
        ATTN_TRY(attn_plan_apply(plan, Q, K, V, O), "apply");
        t = now() - t;
        *best = t < *best ? t : *best;
    }
    return ATTN_OK;
}

static int exact_for(run_state *st, const point *p, const attn_problem *pb, const double *Q,
                     const double *K, const double *V)
{
    exact_cache *ex = &st->ex;
    if (ex->valid && ex->source == p->source && ex->layer == p->layer && ex->head == p->head &&
        ex->n == p->n && ex->causal == p->causal && ex->seed_index == p->seed_index)
        return ATTN_OK;
    cache_clear(ex);
    size_t n = pb->n, dv = pb->dv;
    ex->O = calloc(n * dv, sizeof *ex->O);
    if (ex->O == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "exact output %zu x %zu", n, dv);
    attn_plan *plan = NULL;
    ATTN_TRY(attn_plan_create(&plan, "exact", pb), "exact reference");
    int status = time_apply(plan, Q, K, V, ex->O, st->cfg->repeats, &ex->time_s);
    attn_plan_destroy(plan);
    if (status != ATTN_OK)
        return attn_error_context(status, "exact reference");
    ex->norm_A = NAN;
    if (n <= st->cfg->matrix_n_max) {
        ex->A = calloc(n * n, sizeof *ex->A);
        if (ex->A == NULL)
            return ATTN_ERR(ATTN_ENOMEM, "exact matrix %zu x %zu", n, n);
        ATTN_TRY(attn_exact_matrix(pb, Q, K, ex->A), "exact matrix");
        ATTN_TRY(attn_spectral_norm(ex->A, n, n, &ex->norm_A, NULL), "||A||_2");
    }
    ATTN_TRY(attn_spectral_norm(V, n, dv, &ex->norm_V, NULL), "||V||_2");
    ex->valid = 1;
    ex->source = p->source;
    ex->layer = p->layer;
    ex->head = p->head;
    ex->n = p->n;
    ex->causal = p->causal;
    ex->seed_index = p->seed_index;
    return ATTN_OK;
}

/* The near/far structure study of the exact matrix of one input ([blocks]), stored as
 *   /blocks/offdiag_<id>: point_id, layer, head, n, causal, seed, block, distance (in blocks),
 *       count (blocks at that distance; causal: below the diagonal only), rank_rel_mean,
 *       rank_rel_max (#{sigma > tol sigma_1(block)}), rank_abs_mean, rank_abs_max
 *       (#{sigma > tol ||A||_2}), norm_rel_mean (||block||_2 / ||A||_2), tol;
 *   /blocks/farfield_<id>: point_id, layer, head, n, causal, seed, band (k; -1: nothing removed),
 *       rank_rel, rank_abs, energy90, energy99, stable_rank, norm_rel, mass, tol
 * (see attn_offdiag_ranks / attn_farfield_rank_compute in attn.h). */
static int block_study(run_state *st, const point *p, int64_t id)
{
    const sweep_config *cfg = st->cfg;
    const double *A = st->ex.A;
    size_t n = p->n;
    double tol = cfg->block_tol, normA = st->ex.norm_A;
    const double key[6] = { (double) id, (double) p->layer, (double) p->head, (double) n,
                            (double) p->causal, (double) cfg->seeds[p->seed_index] };
    char name[64];
    int status = ATTN_OK;

    size_t rows = 0;
    for (size_t t = 0; t < cfg->nblock_sizes; t++)
        rows += (n + cfg->block_sizes[t] - 1) / cfg->block_sizes[t];
    enum { OFF_COLS = 15, FAR_COLS = 15 };
    size_t cap = rows > cfg->nbands + 1 ? rows : cfg->nbands + 1;
    double *table = calloc(cap * OFF_COLS + 1, sizeof *table);
    attn_offdiag_rank *od = calloc(n + 1, sizeof *od);
    if (table == NULL || od == NULL) {
        free(table);
        free(od);
        return ATTN_ERR(ATTN_ENOMEM, "block study of n = %zu", n);
    }
    if (cfg->nblock_sizes > 0) {
        rows = 0;
        for (size_t t = 0; t < cfg->nblock_sizes && status == ATTN_OK; t++) {
            size_t count = 0;
            status = attn_offdiag_ranks(A, n, cfg->block_sizes[t], p->causal, tol, normA, od,
                                        &count);
            for (size_t u = 0; status == ATTN_OK && u < count; u++) {
                double *r = table + (rows++) * OFF_COLS;
                memcpy(r, key, sizeof key);
                r[6] = (double) cfg->block_sizes[t];
                r[7] = (double) od[u].distance;
                r[8] = (double) od[u].count;
                r[9] = od[u].rank_rel_mean;
                r[10] = od[u].rank_rel_max;
                r[11] = od[u].rank_abs_mean;
                r[12] = od[u].rank_abs_max;
                r[13] = od[u].norm_rel_mean;
                r[14] = tol;
            }
        }
        snprintf(name, sizeof name, "offdiag_%lld", (long long) id);
        if (status == ATTN_OK)
            status = attn_results_write_table(
                st->results, name, table, rows, OFF_COLS,
                "point_id,layer,head,n,causal,seed,block,distance,count,rank_rel_mean,"
                "rank_rel_max,rank_abs_mean,rank_abs_max,norm_rel_mean,tol");
    }
    if (cfg->nbands > 0 && status == ATTN_OK) {
        rows = 0;
        for (size_t t = 0; t <= cfg->nbands && status == ATTN_OK; t++) {
            size_t k = t == 0 ? SIZE_MAX : cfg->bands[t - 1];
            attn_farfield_rank fr;
            status = attn_farfield_rank_compute(A, n, k, tol, normA, &fr);
            if (status != ATTN_OK)
                break;
            double *r = table + (rows++) * FAR_COLS;
            memcpy(r, key, sizeof key);
            r[6] = t == 0 ? -1.0 : (double) k;
            r[7] = fr.rank_rel;
            r[8] = fr.rank_abs;
            r[9] = fr.energy90;
            r[10] = fr.energy99;
            r[11] = fr.stable_rank;
            r[12] = fr.norm_rel;
            r[13] = fr.mass;
            r[14] = tol;
        }
        snprintf(name, sizeof name, "farfield_%lld", (long long) id);
        if (status == ATTN_OK)
            status = attn_results_write_table(
                st->results, name, table, rows, FAR_COLS,
                "point_id,layer,head,n,causal,seed,band,rank_rel,rank_abs,energy90,energy99,"
                "stable_rank,norm_rel,mass,tol");
    }
    free(table);
    free(od);
    return status == ATTN_OK ? ATTN_OK : attn_error_context(status, "[blocks] study");
}

/* The method's error against the softmax it truncates (a method that is its own attention
 * function, such as FAST): exact attention of its transformed Q, K at its scale, compared with the
 * output of the last apply (st->O). */
static int target_error(run_state *st, attn_plan *plan, const attn_problem *pb, const double *Q,
                        const double *K, const double *V, double *err)
{
    size_t n = pb->n, m = pb->m, d = pb->d, dv = pb->dv;
    double *Qt = calloc(n * d, sizeof *Qt), *Kt = calloc(m * d, sizeof *Kt);
    double *Ot = calloc(n * dv, sizeof *Ot);
    attn_problem tp = *pb;
    attn_plan *exact = NULL;
    attn_output_errors oe;
    int status = Qt == NULL || Kt == NULL || Ot == NULL
                     ? ATTN_ERR(ATTN_ENOMEM, "target inputs %zu x %zu", n, d)
                     : attn_plan_target(plan, Q, K, Qt, Kt, &tp.scale);
    if (status == ATTN_OK)
        status = attn_plan_create(&exact, "exact", &tp);
    if (status == ATTN_OK)
        status = attn_plan_apply(exact, Qt, Kt, V, Ot);
    if (status == ATTN_OK)
        status = attn_output_errors_compute(st->O, Ot, n, dv, &oe);
    if (status == ATTN_OK)
        *err = oe.rel_fro;
    attn_plan_destroy(exact);
    free(Qt);
    free(Kt);
    free(Ot);
    return status == ATTN_OK ? ATTN_OK : attn_error_context(status, "error against the target");
}

/* Compute one point into row (status and message filled on failure by the caller). */
static int compute_point(run_state *st, const point *p, attn_row *row, int64_t id)
{
    const sweep_config *cfg = st->cfg;
    const attn_inputs *in = st->in[0];
    const double *Q, *K, *V;
    attn_inputs_head(in, p->layer, p->head, &Q, &K, &V);
    attn_problem pb = { .n = p->n, .m = p->n, .d = in->d, .dv = in->dv, .causal = p->causal,
                        .scale = in->scale };
    size_t n = p->n, dv = in->dv;
    ATTN_TRY(exact_for(st, p, &pb, Q, K, V), "n = %zu", n);
    row->time_exact_s = st->ex.time_s;
    row->norm_attn_spec = st->ex.norm_A;
    /* The structure study belongs to the input: its first point computes it. */
    if (cfg->blocks && p->spec == 0 && st->ex.A != NULL)
        ATTN_TRY(block_study(st, p, id), "n = %zu", n);

    /* The method's spec, with the point's seed when the method draws random numbers. */
    char spec[1100];
    const attn_method *method = NULL;
    double values[64];
    int parsed = attn_spec_parse(cfg->specs[p->spec], &method, values);
    if (parsed != ATTN_OK)
        return parsed;
    const attn_param *params = attn_method_params(method);
    for (size_t t = 0; params[t].name != NULL; t++)
        if (strcmp(params[t].name, "seed") == 0)
            values[t] = (double) cfg->seeds[p->seed_index];
    attn_spec_format(method, values, spec, sizeof spec);
    attn_plan *plan = NULL;
    double t = now();
    ATTN_TRY(attn_plan_create(&plan, spec, &pb), "plan");
    row->time_plan_s = now() - t;
    row->spec = attn_plan_spec(plan);
    const char *budget = attn_method_budget(method);
    row->budget = budget != NULL ? attn_plan_param(plan, budget) : NAN;
    attn_cost cost;
    attn_plan_cost(plan, &cost);
    row->flops = cost.flops;
    row->exps = cost.exps;
    row->plan_bytes = cost.bytes;

    int status = time_apply(plan, Q, K, V, st->O, cfg->repeats, &row->time_apply_s);
    attn_output_errors oe;
    if (status == ATTN_OK)
        status = attn_output_errors_compute(st->O, st->ex.O, n, dv, &oe);
    if (status == ATTN_OK) {
        row->err_out_rel_fro = oe.rel_fro;
        row->err_out_rel_spec = oe.rel_spec;
        row->err_out_max_abs = oe.max_abs;
        row->err_out_max_abs_rel = oe.max_abs_rel;
        /* ||E||_2 / (||A||_2 ||V||_2) with ||E||_2 = rel_spec ||O||_2. */
        double norm_O;
        status = attn_spectral_norm(st->ex.O, n, dv, &norm_O, NULL);
        row->err_out_kde_norm = oe.rel_spec * norm_O / (st->ex.norm_A * st->ex.norm_V);
    }
    if (status == ATTN_OK && attn_plan_has_target(plan))
        status = target_error(st, plan, &pb, Q, K, V, &row->err_target_rel_fro);
    if (status == ATTN_OK && st->ex.A != NULL) {
        attn_matrix_errors me;
        status = attn_plan_materialize(plan, Q, K, V, st->Ah);
        if (status == ATTN_OK)
            status = attn_matrix_errors_compute(st->Ah, st->ex.A, n, n, &me);
        if (status == ATTN_OK) {
            row->err_attn_rel_fro = me.rel_fro;
            row->row_tv_mean = me.tv_mean;
            row->row_tv_max = me.tv_max;
            row->row_kl_mean = me.kl_mean;
            row->row_kl_flag = me.kl_flags;
        }
        if (status == ATTN_OK && n <= cfg->rank_n_max) {
            attn_rank_stats rs;
            status = attn_singular_values(st->Ah, n, n, st->sv);
            if (status == ATTN_OK) {
                attn_rank_stats_compute(st->sv, n, cfg->eps_rank_tol, &rs);
                row->eps_rank = rs.eps_rank;
                row->eps_rank_tol = cfg->eps_rank_tol;
                row->stable_rank = rs.stable_rank;
                row->effective_rank = rs.effective_rank;
                status = attn_results_write_spectrum(st->results, id, st->sv, n);
            }
        }
    }
    /* row->spec points into the plan: append before destroying it. */
    row->peak_rss_bytes = peak_rss();
    if (status == ATTN_OK) {
        status = attn_results_append(st->results, row);
        if (status != ATTN_OK)
            status = attn_error_context(status, "writing point %lld", (long long) id);
    }
    attn_plan_destroy(plan);
    return status;
}

static void progress(run_state *st, int final)
{
    if (st->opts->quiet)
        return;
    /* On a terminal the line is redrawn twice a second; in a log, one line every 15 s. */
    int tty = isatty(fileno(stderr));
    double t = now();
    if (!final && t - st->last_progress < (tty ? 0.5 : 15.0))
        return;
    st->last_progress = t;
    const sweep_summary *s = st->summary;
    size_t handled = s->done + s->skipped;
    double elapsed = t - st->t0;
    double eta = s->done > 0 ? elapsed / (double) s->done * (double) (s->mine - handled) : NAN;
    char eta_text[32] = "?";
    if (!isnan(eta))
        snprintf(eta_text, sizeof eta_text, "%.0f s", eta);
    fprintf(stderr, "%sattn-sweep: %zu/%zu points (%zu skipped, %zu failed, %zu of them not "
                    "applicable), %.1f s elapsed, ETA %s%s",
            tty ? "\r" : "", handled, s->mine, s->skipped, s->failed, s->unsupported, elapsed,
            final ? "0 s" : eta_text, tty && !final ? "   " : "\n");
    fflush(stderr);
}

static int run_visit(void *user, const point *p, int64_t id)
{
    run_state *st = user;
    const sweep_config *cfg = st->cfg;
    if ((size_t) id % st->opts->ntasks != st->opts->task)
        return ATTN_OK;
    if (attn_results_has(st->results, id)) {
        st->summary->skipped++;
        progress(st, 0);
        return ATTN_OK;
    }
    /* Inputs of this source and seed (synthetic sources differ per seed). */
    if (st->in[0] == NULL || st->in_source != p->source ||
        (is_synthetic(st->in[0]) && st->in_seed != p->seed_index)) {
        attn_inputs_destroy(st->in[0]);
        st->in[0] = NULL;
        cache_clear(&st->ex);
        ATTN_TRY(read_source(cfg, p->source, cfg->seeds[p->seed_index], &st->in[0]), "%s",
                 cfg->sources[p->source]);
        st->in_source = p->source;
        st->in_seed = p->seed_index;
    }
    const attn_inputs *in = st->in[0];
    attn_row row;
    attn_row_init(&row);
    row.point_id = id;
    row.data_source = cfg->sources[p->source];
    row.data_label = in->label;
    row.layer = (int64_t) p->layer;
    row.head = (int64_t) p->head;
    row.n = (int64_t) p->n;
    row.m = (int64_t) p->n;
    row.d = (int64_t) in->d;
    row.dv = (int64_t) in->dv;
    row.causal = p->causal;
    row.spec = cfg->specs[p->spec];
    row.config_spec = cfg->labels[p->spec];
    char method[128];
    snprintf(method, sizeof method, "%.*s", (int) strcspn(cfg->specs[p->spec], ":"),
             cfg->specs[p->spec]);
    row.method = method;
    row.seed = (int64_t) cfg->seeds[p->seed_index];
    row.repeats = cfg->repeats;
    row.status = 0;
    row.message = "";
    int status = compute_point(st, p, &row, id);
    st->summary->done++;
    if (status != ATTN_OK) {
        /* A failed point is recorded with its status and message; the sweep goes on. */
        char message[2048];
        snprintf(message, sizeof message, "%s", attn_last_error());
        attn_row failed;
        attn_row_init(&failed);
        failed = row;
        failed.spec = cfg->specs[p->spec];
        failed.status = status;
        failed.message = message;
        st->summary->failed++;
        /* A combination the method refuses by design (ATTN_EUNSUP) is recorded like any failure
         * but only counted on the terminal: a grid over both masks meets it at every point. */
        st->summary->unsupported += status == ATTN_EUNSUP;
        if (!st->opts->quiet && status != ATTN_EUNSUP)
            fprintf(stderr, "\nattn-sweep: point %lld (%s, %s layer %zu head %zu n %zu causal %d) "
                            "failed: %s\n",
                    (long long) id, cfg->specs[p->spec], in->label, p->layer, p->head, p->n,
                    p->causal, message);
        int wstatus = attn_results_append(st->results, &failed);
        if (wstatus != ATTN_OK)
            return attn_error_context(wstatus, "recording failed point %lld", (long long) id);
    }
    progress(st, 0);
    return ATTN_OK;
}

int sweep_run(const sweep_config *cfg, const sweep_options *opts, sweep_summary *summary)
{
    int status;
    run_state st = { .cfg = cfg, .opts = opts, .summary = summary };
    memset(summary, 0, sizeof *summary);
    status = sweep_count(cfg, &summary->total);
    if (status != ATTN_OK)
        return status;
    for (size_t id = 0; id < summary->total; id++)
        summary->mine += id % opts->ntasks == opts->task;

    attn_provenance prov = { .program = "attn-sweep", .command_line = opts->command_line,
                             .config_text = cfg->text, .config_hash = cfg->hash };
    status = attn_results_open(&st.results, opts->output, &prov);
    if (status != ATTN_OK)
        return status;
    size_t nmax = 0, dvmax = 0;
    for (size_t t = 0; t < cfg->nns; t++)
        nmax = cfg->ns[t] > nmax ? cfg->ns[t] : nmax;
    /* Scratch for the largest point, grown when a source has a wider dv. */
    st.t0 = now();
    st.last_progress = 0;
    int64_t id = 0;
    for (size_t s = 0; s < cfg->nsources && status == ATTN_OK; s++) {
        attn_inputs *probe = NULL;
        status = read_source(cfg, s, cfg->seeds[0], &probe);
        if (status != ATTN_OK)
            break;
        if (probe->dv > dvmax || st.O == NULL) {
            dvmax = probe->dv > dvmax ? probe->dv : dvmax;
            free(st.O);
            st.O = calloc(nmax * dvmax, sizeof *st.O);
        }
        if (st.Ah == NULL) {
            size_t an = nmax < cfg->matrix_n_max ? nmax : cfg->matrix_n_max;
            st.Ah = calloc(an * an + 1, sizeof *st.Ah);
            st.sv = calloc(an + 1, sizeof *st.sv);
        }
        if (st.O == NULL || st.Ah == NULL || st.sv == NULL) {
            attn_inputs_destroy(probe);
            status = ATTN_ERR(ATTN_ENOMEM, "sweep scratch for n = %zu", nmax);
            break;
        }
        status = walk_source(cfg, s, probe, &id, run_visit, &st);
        attn_inputs_destroy(probe);
    }
    progress(&st, 1);
    attn_inputs_destroy(st.in[0]);
    cache_clear(&st.ex);
    free(st.O);
    free(st.Ah);
    free(st.sv);
    int cstatus = attn_results_close(st.results);
    return status != ATTN_OK ? status : cstatus;
}
