/* inputs.c — Q/K/V inputs: the reader of HDF5 files in the layout of the bundled real data
 * (/layerL/{q,k,v} [head, n, d], optionally below a group), and the synthetic generators gauss and
 * local.
 *
 * Every random draw comes from a gsl_rng (MT19937).  Each (layer, head, operand) has a stream of
 * its own, seeded from (seed, layer, head, operand), and draws its rows in order, so reading a
 * prefix of n' tokens gives exactly the first n' rows of the full draw, on every machine.
 */
#include "config.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>

#include "attn_io.h"
#include "io/h5util.h"

/* The three operands, in the order of their arrays and random streams. */
static const char *const operand_names[3] = { "q", "k", "v" };

/* a * b * c * e, or 0 with *ok cleared when the product overflows size_t. */
static size_t product4(size_t a, size_t b, size_t c, size_t e, int *ok)
{
    size_t f[4] = { a, b, c, e };
    size_t p = 1;
    for (size_t i = 0; i < 4; i++) {
        if (f[i] != 0 && p > SIZE_MAX / f[i]) {
            *ok = 0;
            return 0;
        }
        p *= f[i];
    }
    return p;
}

/* Allocate q, k, v for the shape already stored in in. */
static int inputs_alloc(attn_inputs *in)
{
    int ok = 1;
    size_t nq = product4(in->layers, in->heads, in->n, in->d, &ok);
    size_t nv = product4(in->layers, in->heads, in->n, in->dv, &ok);
    if (!ok)
        return ATTN_ERR(ATTN_ENOMEM, "%zu layers x %zu heads x %zu tokens x %zu dimensions do not "
                        "fit in memory", in->layers, in->heads, in->n,
                        in->d > in->dv ? in->d : in->dv);
    in->q = calloc(nq, sizeof *in->q);
    in->k = calloc(nq, sizeof *in->k);
    in->v = calloc(nv, sizeof *in->v);
    if (in->q == NULL || in->k == NULL || in->v == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "q, k, v: %zu + %zu + %zu doubles", nq, nq, nv);
    return ATTN_OK;
}

void attn_inputs_head(const attn_inputs *in, size_t layer, size_t head, const double **q,
                      const double **k, const double **v)
{
    size_t block = layer * in->heads + head;
    *q = in->q + block * in->n * in->d;
    *k = in->k + block * in->n * in->d;
    *v = in->v + block * in->n * in->dv;
}

void attn_inputs_destroy(attn_inputs *in)
{
    if (in == NULL)
        return;
    free(in->source);
    free(in->label);
    free(in->q);
    free(in->k);
    free(in->v);
    free(in);
}

/* ---------------------------------------------------------------------------------------------
 * HDF5 files.
 */

/* The label of a file source: the file name without directory and extension, followed by the
 * group without its leading slash ("ppocrv4-svtr-attn-long/n4096"). */
static char *file_label(const char *path, const char *group)
{
    const char *base = strrchr(path, '/');
    const char *dot;
    size_t stem, glen = 0;
    char *label;
    base = base != NULL ? base + 1 : path;
    dot = strrchr(base, '.');
    stem = dot != NULL && dot != base ? (size_t) (dot - base) : strlen(base);
    while (group != NULL && *group == '/')
        group++;
    if (group != NULL)
        glen = strlen(group);
    while (glen > 0 && group[glen - 1] == '/')
        glen--;
    label = calloc(stem + glen + 2, 1);
    if (label == NULL)
        return NULL;
    memcpy(label, base, stem);
    if (glen > 0) {
        label[stem] = '/';
        memcpy(label + stem + 1, group, glen);
    }
    return label;
}

/* Open the three datasets of one layer and check their ranks; dims[op] receives their shapes. */
static int layer_open(hid_t file, const char *layer, hid_t dset[3], hsize_t dims[3][3])
{
    char name[512];
    for (int op = 0; op < 3; op++) {
        int rank;
        hsize_t all[8];
        int status;
        snprintf(name, sizeof name, "%s/%s", layer, operand_names[op]);
        status = attn_h5_dataset_open(&dset[op], file, name);
        if (status == ATTN_OK)
            status = attn_h5_dims(dset[op], &rank, all, 8);
        if (status != ATTN_OK)
            return status;
        if (rank != 3)
            return ATTN_ERR(ATTN_ESHAPE, "dataset %s: rank %d, expected 3 ([head, n, d])", name,
                            rank);
        memcpy(dims[op], all, sizeof dims[op]);
    }
    return ATTN_OK;
}

static void layer_close(hid_t dset[3])
{
    for (int op = 0; op < 3; op++)
        if (dset[op] >= 0) {
            H5Dclose(dset[op]);
            dset[op] = H5I_INVALID_HID;
        }
}

/* Check the shapes of one layer against those of layer 0 (ref, ref_layer): q and k share
 * [heads, n, d]; v has the heads and n of q; every layer has the shapes of layer 0. */
static int layer_check(const char *layer, hsize_t dims[3][3], const char *ref_layer,
                       hsize_t ref[3][3])
{
    char a[96], b[96];
    if (dims[0][0] == 0 || dims[0][1] == 0 || dims[0][2] == 0 || dims[2][2] == 0)
        return ATTN_ERR(ATTN_ESHAPE, "%s: q has shape %s and v has shape %s; heads, n, d and dv "
                        "must all be >= 1", layer, attn_h5_shape_text(a, sizeof a, dims[0], 3),
                        attn_h5_shape_text(b, sizeof b, dims[2], 3));
    if (memcmp(dims[1], dims[0], sizeof dims[0]) != 0)
        return ATTN_ERR(ATTN_ESHAPE, "dataset %s/k has shape %s but %s/q has %s; q and k need the "
                        "same [head, n, d]", layer, attn_h5_shape_text(a, sizeof a, dims[1], 3),
                        layer, attn_h5_shape_text(b, sizeof b, dims[0], 3));
    if (dims[2][0] != dims[0][0] || dims[2][1] != dims[0][1])
        return ATTN_ERR(ATTN_ESHAPE, "dataset %s/v has shape %s but %s/q has %s; v needs the heads "
                        "and n of q", layer, attn_h5_shape_text(a, sizeof a, dims[2], 3), layer,
                        attn_h5_shape_text(b, sizeof b, dims[0], 3));
    for (int op = 0; op < 3; op += 2)
        if (ref != NULL && memcmp(dims[op], ref[op], sizeof dims[op]) != 0)
            return ATTN_ERR(ATTN_ESHAPE, "dataset %s/%s has shape %s but %s/%s has %s; every layer "
                            "needs the same shapes", layer, operand_names[op],
                            attn_h5_shape_text(a, sizeof a, dims[op], 3), ref_layer,
                            operand_names[op], attn_h5_shape_text(b, sizeof b, ref[op], 3));
    return ATTN_OK;
}

/* The causal attribute of a layer group (-1 when absent) and, for layer 0, the scale. */
static int layer_attrs(hid_t file, const char *layer, int *causal, double *scale)
{
    int status = ATTN_OK;
    hid_t g = H5Gopen2(file, layer, H5P_DEFAULT);
    if (g < 0)
        return ATTN_ERR(ATTN_EFORMAT, "%s is not a group", layer);
    *causal = -1;
    if (attn_h5_attr_exists(g, "causal")) {
        long long c;
        status = attn_h5_attr_read_int(g, "causal", &c);
        if (status == ATTN_OK && c != 0 && c != 1)
            status = ATTN_ERR(ATTN_EFORMAT, "attribute causal of %s is %lld, expected 0 or 1",
                              layer, c);
        *causal = (int) c;
    }
    if (status == ATTN_OK && scale != NULL) {
        *scale = 0.0;
        if (attn_h5_attr_exists(g, "scale"))
            status = attn_h5_attr_read_double(g, "scale", scale);
        if (status == ATTN_OK && (!isfinite(*scale) || *scale < 0))
            status = ATTN_ERR(ATTN_EFORMAT, "attribute scale of %s is %g, expected a finite "
                              "value >= 0", layer, *scale);
    }
    H5Gclose(g);
    return status;
}

/* Read layers group/layer0, layer1, ... of path into in.  Messages get the context
 * "reading <source>". */
static int read_file(attn_inputs *in, const char *path, const char *group, size_t n_max)
{
    int status = ATTN_OK;
    hid_t file = H5I_INVALID_HID;
    hid_t dset[3] = { H5I_INVALID_HID, H5I_INVALID_HID, H5I_INVALID_HID };
    hsize_t ref[3][3], dims[3][3];
    char gname[512], layer[600], ref_layer[600] = "";
    const char *source = in->source;
    size_t glen;

    status = attn_h5_open(&file, path, H5F_ACC_RDONLY);
    if (status != ATTN_OK)
        return status;

    /* The group prefix without a trailing slash: "" for the root, "/n4096" for a group. */
    snprintf(gname, sizeof gname, "%s%s", group != NULL && group[0] != '/' ? "/" : "",
             group != NULL ? group : "");
    glen = strlen(gname);
    while (glen > 0 && gname[glen - 1] == '/')
        gname[--glen] = '\0';
    if (glen > 0 && !attn_h5_exists(file, gname)) {
        status = ATTN_ERR(ATTN_EFORMAT, "reading %s: group %s is missing", path, gname);
        goto done;
    }

    for (in->layers = 0;; in->layers++) {
        snprintf(layer, sizeof layer, "%s/layer%zu", gname, in->layers);
        if (!attn_h5_exists(file, layer))
            break;
    }
    if (in->layers == 0) {
        status = ATTN_ERR(ATTN_EFORMAT, "reading %s: group %s has no layers (expected groups "
                          "%s/layer0, %s/layer1, ... holding q, k, v [head, n, d])", path,
                          glen > 0 ? gname : "/", gname, gname);
        goto done;
    }

    /* First pass: shapes and attributes of every layer. */
    for (size_t l = 0; l < in->layers && status == ATTN_OK; l++) {
        int causal = -1;
        snprintf(layer, sizeof layer, "%s/layer%zu", gname, l);
        status = layer_open(file, layer, dset, dims);
        if (status == ATTN_OK)
            status = layer_check(layer, dims, ref_layer, l > 0 ? ref : NULL);
        if (status == ATTN_OK)
            status = layer_attrs(file, layer, &causal, l == 0 ? &in->scale : NULL);
        if (status == ATTN_OK && l == 0) {
            memcpy(ref, dims, sizeof ref);
            snprintf(ref_layer, sizeof ref_layer, "%s", layer);
            in->causal = causal;
        } else if (status == ATTN_OK && causal != in->causal) {
            status = ATTN_ERR(ATTN_EFORMAT, "%s has causal = %d but %s has causal = %d; the layers "
                              "of one input must agree", layer, causal, ref_layer, in->causal);
        }
        layer_close(dset);
    }
    if (status != ATTN_OK)
        goto context;

    /* Files whose layers carry no causal attribute may carry one on the group (or root). */
    if (in->causal < 0) {
        hid_t g = H5Gopen2(file, glen > 0 ? gname : "/", H5P_DEFAULT);
        long long c;
        if (g >= 0 && attn_h5_attr_exists(g, "causal") && attn_h5_attr_read_int(g, "causal", &c)
            == ATTN_OK && (c == 0 || c == 1))
            in->causal = (int) c;
        if (g >= 0)
            H5Gclose(g);
    }

    in->heads = (size_t) ref[0][0];
    in->n = (size_t) ref[0][1];
    in->d = (size_t) ref[0][2];
    in->dv = (size_t) ref[2][2];
    if (n_max > in->n) {
        char a[96];
        status = ATTN_ERR(ATTN_ESHAPE, "reading %s: n = %zu asked, but the data has only n = %zu "
                          "tokens (%s/q is %s)", source, n_max, in->n, ref_layer,
                          attn_h5_shape_text(a, sizeof a, ref[0], 3));
        goto done;
    }
    if (n_max > 0)
        in->n = n_max;
    status = inputs_alloc(in);
    if (status != ATTN_OK)
        goto context;

    /* Second pass: the first n rows of every head, as doubles. */
    for (size_t l = 0; l < in->layers && status == ATTN_OK; l++) {
        snprintf(layer, sizeof layer, "%s/layer%zu", gname, l);
        status = layer_open(file, layer, dset, dims);
        for (int op = 0; op < 3 && status == ATTN_OK; op++) {
            char name[640];
            size_t cols = op == 2 ? in->dv : in->d;
            double *x = (op == 0 ? in->q : op == 1 ? in->k : in->v) + l * in->heads * in->n * cols;
            snprintf(name, sizeof name, "%s/%s", layer, operand_names[op]);
            status = attn_h5_read_rows3(dset[op], name, dims[op], in->n, x);
        }
        layer_close(dset);
    }
    if (status != ATTN_OK)
        goto context;

    /* NaN and Inf are errors naming the layer, head, operand, row and column. */
    for (size_t l = 0; l < in->layers; l++)
        for (size_t h = 0; h < in->heads; h++) {
            const double *x[3];
            attn_inputs_head(in, l, h, &x[0], &x[1], &x[2]);
            for (int op = 0; op < 3; op++) {
                size_t cols = op == 2 ? in->dv : in->d;
                status = attn_check_finite(operand_names[op], x[op], in->n, cols);
                if (status != ATTN_OK) {
                    status = attn_error_context(status, "reading %s: layer %zu, head %zu", source,
                                                l, h);
                    goto done;
                }
            }
        }
    goto done;

context:
    status = attn_error_context(status, "reading %s", source);
done:
    layer_close(dset);
    if (file >= 0)
        H5Fclose(file);
    return status;
}

/* ---------------------------------------------------------------------------------------------
 * Synthetic generators.
 */
enum { P_N, P_D, P_DV, P_HEADS, P_LAYERS, P_TEMP, P_WIDTH, P_NOISE, P_COUNT };

typedef struct synth_param {
    const char *name;
    double value;   /* default (dv: NAN, meaning "= d") */
    double lo;      /* smallest allowed value */
    double hi;      /* largest allowed value */
    int integer;    /* 1: must be an integer */
} synth_param;

static const synth_param synth_params[P_COUNT] = {
    [P_N] = { .name = "n", .value = 1024, .lo = 1, .hi = 1e9, .integer = 1 },
    [P_D] = { .name = "d", .value = 64, .lo = 1, .hi = 1e6, .integer = 1 },
    [P_DV] = { .name = "dv", .value = NAN, .lo = 1, .hi = 1e6, .integer = 1 },
    [P_HEADS] = { .name = "heads", .value = 1, .lo = 1, .hi = 1e6, .integer = 1 },
    [P_LAYERS] = { .name = "layers", .value = 1, .lo = 1, .hi = 1e6, .integer = 1 },
    [P_TEMP] = { .name = "temp", .value = 1, .lo = 0, .hi = 1e6, .integer = 0 },
    [P_WIDTH] = { .name = "width", .value = 16, .lo = 1e-3, .hi = 1e9, .integer = 0 },
    [P_NOISE] = { .name = "noise", .value = 0.5, .lo = 0, .hi = 1e6, .integer = 0 },
};

typedef struct generator {
    const char *name;
    unsigned params;   /* bit p set: parameter p applies */
} generator;

static const generator generators[] = {
    { .name = "gauss", .params = 1u << P_N | 1u << P_D | 1u << P_DV | 1u << P_HEADS
                                 | 1u << P_LAYERS | 1u << P_TEMP },
    { .name = "local", .params = 1u << P_N | 1u << P_D | 1u << P_DV | 1u << P_HEADS
                                 | 1u << P_LAYERS | 1u << P_TEMP | 1u << P_WIDTH | 1u << P_NOISE },
};

/* The generator a source names ("gauss" or "gauss:..."), or NULL for a file. */
static const generator *generator_find(const char *source)
{
    for (size_t g = 0; g < sizeof generators / sizeof generators[0]; g++) {
        size_t len = strlen(generators[g].name);
        if (strncmp(source, generators[g].name, len) == 0
            && (source[len] == '\0' || source[len] == ':'))
            return &generators[g];
    }
    return NULL;
}

/* The names of a generator's parameters, for messages: "n, d, dv, heads, layers, temp". */
static const char *param_list(const generator *gen, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int p = 0; p < P_COUNT && used < len; p++)
        if (gen->params & 1u << p)
            used += (size_t) snprintf(buf + used, len - used, "%s%s", used > 0 ? ", " : "",
                                      synth_params[p].name);
    return buf;
}

/* Parse "name:key=value,..." into values (defaults first).  ATTN_EPARAM names the parameter. */
static int synth_parse(const generator *gen, const char *source, double values[P_COUNT])
{
    const char *s = source + strlen(gen->name);
    char names[128];
    unsigned seen = 0;

    for (int p = 0; p < P_COUNT; p++)
        values[p] = synth_params[p].value;
    if (*s == ':')
        s++;
    while (*s != '\0') {
        const char *end = strchr(s, ',');
        const char *eq = memchr(s, '=', end != NULL ? (size_t) (end - s) : strlen(s));
        size_t len = end != NULL ? (size_t) (end - s) : strlen(s);
        char key[64], text[64], *stop;
        int p;
        double x;

        if (eq == NULL)
            return ATTN_ERR(ATTN_EPARAM, "%s: '%.*s' is not key=value (parameters: %s)",
                            gen->name, (int) len, s, param_list(gen, names, sizeof names));
        snprintf(key, sizeof key, "%.*s", (int) (eq - s), s);
        snprintf(text, sizeof text, "%.*s", (int) (len - (size_t) (eq - s) - 1), eq + 1);
        for (p = 0; p < P_COUNT; p++)
            if ((gen->params & 1u << p) && strcmp(key, synth_params[p].name) == 0)
                break;
        if (p == P_COUNT)
            return ATTN_ERR(ATTN_EPARAM, "%s: unknown parameter '%s' (parameters: %s)", gen->name,
                            key, param_list(gen, names, sizeof names));
        if (seen & 1u << p)
            return ATTN_ERR(ATTN_EPARAM, "%s: parameter %s given twice", gen->name, key);
        seen |= 1u << p;
        x = strtod(text, &stop);
        if (text[0] == '\0' || *stop != '\0' || !isfinite(x))
            return ATTN_ERR(ATTN_EPARAM, "%s: parameter %s = '%s' is not a number", gen->name,
                            key, text);
        if (x < synth_params[p].lo || x > synth_params[p].hi)
            return ATTN_ERR(ATTN_EPARAM, "%s: parameter %s = %s is out of range [%g, %g]",
                            gen->name, key, text, synth_params[p].lo, synth_params[p].hi);
        if (synth_params[p].integer && x != floor(x))
            return ATTN_ERR(ATTN_EPARAM, "%s: parameter %s = %s must be an integer", gen->name,
                            key, text);
        values[p] = x;
        s = end != NULL ? end + 1 : s + len;
        if (end != NULL && *s == '\0')
            return ATTN_ERR(ATTN_EPARAM, "%s: empty parameter after the last ','", gen->name);
    }
    if (isnan(values[P_DV]))
        values[P_DV] = values[P_D];
    return ATTN_OK;
}

/* "gauss", or the name followed by the parameters that differ from their defaults
 * ("local-n4096-width32"): short, and free of commas since labels go into TSV files. */
static char *synth_label(const generator *gen, const double values[P_COUNT])
{
    char buf[256];
    size_t used = (size_t) snprintf(buf, sizeof buf, "%s", gen->name);
    for (int p = 0; p < P_COUNT && used < sizeof buf; p++) {
        double dflt = p == P_DV ? values[P_D] : synth_params[p].value;
        if ((gen->params & 1u << p) && values[p] != dflt)
            used += (size_t) snprintf(buf + used, sizeof buf - used, "-%s%g", synth_params[p].name,
                                      values[p]);
    }
    return attn_io_dup_string(buf);
}

/* SplitMix64's finalizer: decorrelates seeds that differ in a few bits. */
static uint64_t mix64(uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Seed the stream of (layer, head, stream) from the user's seed.  GSL's MT19937 uses 32 bits of
 * its seed. */
static void stream_seed(gsl_rng *r, unsigned long seed, size_t layer, size_t head, unsigned stream)
{
    const uint64_t golden = 0x9e3779b97f4a7c15ull;
    uint64_t x = mix64((uint64_t) seed + golden);
    x = mix64(x + golden * ((uint64_t) layer + 1));
    x = mix64(x + golden * ((uint64_t) head + 1));
    x = mix64(x + golden * ((uint64_t) stream + 1));
    gsl_rng_set(r, (unsigned long) (x & 0xffffffffu));
}

/* Streams of one (layer, head). */
enum { S_Q, S_K, S_V, S_FEATURES };

static void fill_gaussian(gsl_rng *r, double *x, size_t count, double factor)
{
    for (size_t t = 0; t < count; t++)
        x[t] = factor * gsl_ran_gaussian(r, 1.0);
}

/* gauss: q, k, v i.i.d. N(0, 1), q multiplied by temp. */
static void gauss_head(gsl_rng *r, const attn_inputs *in, const double values[P_COUNT],
                       unsigned long seed, size_t l, size_t h)
{
    const double *cq, *ck, *cv;
    attn_inputs_head(in, l, h, &cq, &ck, &cv);
    stream_seed(r, seed, l, h, S_Q);
    fill_gaussian(r, (double *) cq, in->n * in->d, values[P_TEMP]);
    stream_seed(r, seed, l, h, S_K);
    fill_gaussian(r, (double *) ck, in->n * in->d, 1.0);
    stream_seed(r, seed, l, h, S_V);
    fill_gaussian(r, (double *) cv, in->n * in->dv, 1.0);
}

/* local: attention concentrated near the diagonal, from random Fourier features of position.
 *
 * With R = floor(d/2) frequencies w_r ~ N(0, 1/width^2) and phases phi_r ~ U[0, 2 pi), the feature
 * of position t is f(t) = sqrt(2/d) [cos(w_r t + phi_r)]_r ++ [sin(w_r t + phi_r)]_r (a zero last
 * column when d is odd).  Then f(i).f(j) = (2/d) sum_r cos(w_r (i - j)), whose mean over the draws
 * is the Gaussian kernel exp(-(i - j)^2 / (2 width^2)) (for even d; f(i).f(i) = 1 exactly).
 *
 *     k_j = c f(j) + noise c z_j / sqrt(d)
 *     q_i = temp c f(i) + noise c z'_i / sqrt(d)        z, z' i.i.d. N(0, I_d)
 *     c^2 = A sqrt(d),  A = 3 + log(max(n / width, 1))
 *
 * so that with the default scale s = 1/sqrt(d) the logit s q_i.k_j peaks at temp A near i = j and
 * falls to about 0 beyond a few widths.  A row then holds about e^A width sqrt(2 pi / A) of weight
 * near the diagonal against about n elsewhere: with A as above the near part is e^3 ~ 20 times the
 * far part, so most of each row's mass lies within ~width positions at temp = 1, whatever n.  The
 * noise vectors have noise times the norm of the feature part (noise is a noise-to-signal ratio of
 * norms).  The kernel estimate fluctuates by about A / sqrt(d) away from the diagonal: d >= 32
 * gives a clean band.  v is i.i.d. N(0, 1). */
static void local_head(gsl_rng *r, const attn_inputs *in, const double values[P_COUNT],
                       unsigned long seed, size_t l, size_t h, double *w, double *phase)
{
    const double *cq, *ck, *cv;
    double *q, *k;
    size_t d = in->d;
    size_t R = d / 2;
    double A = 3.0 + log(fmax(values[P_N] / values[P_WIDTH], 1.0));
    double c = sqrt(A * sqrt((double) d));
    double amp = c * sqrt(2.0 / (double) d);
    double sigma = values[P_NOISE] * c / sqrt((double) d);

    attn_inputs_head(in, l, h, &cq, &ck, &cv);
    q = (double *) cq;
    k = (double *) ck;
    stream_seed(r, seed, l, h, S_FEATURES);
    for (size_t i = 0; i < R; i++) {
        w[i] = gsl_ran_gaussian(r, 1.0 / values[P_WIDTH]);
        phase[i] = 2.0 * M_PI * gsl_rng_uniform(r);
    }
    for (size_t t = 0; t < in->n; t++) {
        double *kt = k + t * d;
        for (size_t i = 0; i < R; i++) {
            double angle = w[i] * (double) t + phase[i];
            kt[i] = amp * cos(angle);
            kt[R + i] = amp * sin(angle);
        }
        if (d % 2 == 1)
            kt[d - 1] = 0.0;
        for (size_t i = 0; i < d; i++)
            q[t * d + i] = values[P_TEMP] * kt[i];
    }
    stream_seed(r, seed, l, h, S_Q);
    for (size_t t = 0; t < in->n * d; t++)
        q[t] += sigma * gsl_ran_gaussian(r, 1.0);
    stream_seed(r, seed, l, h, S_K);
    for (size_t t = 0; t < in->n * d; t++)
        k[t] += sigma * gsl_ran_gaussian(r, 1.0);
    stream_seed(r, seed, l, h, S_V);
    fill_gaussian(r, (double *) cv, in->n * in->dv, 1.0);
}

static int generate(attn_inputs *in, const generator *gen, size_t n_max, unsigned long seed)
{
    double values[P_COUNT];
    int status = synth_parse(gen, in->source, values);
    gsl_rng *r = NULL;
    double *w = NULL, *phase = NULL;

    if (status != ATTN_OK)
        return status;
    in->layers = (size_t) values[P_LAYERS];
    in->heads = (size_t) values[P_HEADS];
    in->n = (size_t) values[P_N];
    in->d = (size_t) values[P_D];
    in->dv = (size_t) values[P_DV];
    in->causal = -1;
    in->scale = 0.0;
    if (n_max > in->n)
        return ATTN_ERR(ATTN_ESHAPE, "%s: n = %zu asked, but the generator makes n = %zu tokens "
                        "(give %s:n=%zu,...)", in->source, n_max, in->n, gen->name, n_max);
    if (n_max > 0)
        in->n = n_max;
    in->label = synth_label(gen, values);
    if (in->label == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "label of %s", in->source);
    status = inputs_alloc(in);
    if (status != ATTN_OK)
        return status;
    r = gsl_rng_alloc(gsl_rng_mt19937);
    w = calloc(in->d / 2 + 1, sizeof *w);
    phase = calloc(in->d / 2 + 1, sizeof *phase);
    if (r == NULL || w == NULL || phase == NULL) {
        status = ATTN_ERR(ATTN_ENOMEM, "random generator of %s", in->source);
        goto done;
    }
    for (size_t l = 0; l < in->layers; l++)
        for (size_t h = 0; h < in->heads; h++) {
            if (strcmp(gen->name, "local") == 0)
                local_head(r, in, values, seed, l, h, w, phase);
            else
                gauss_head(r, in, values, seed, l, h);
        }
done:
    free(w);
    free(phase);
    if (r != NULL)
        gsl_rng_free(r);
    return status;
}

/* ---------------------------------------------------------------------------------------------
 * Entry point.
 */
int attn_inputs_read(attn_inputs **inputs, const char *source, size_t n_max, unsigned long seed)
{
    int status;
    attn_inputs *in;
    const generator *gen;

    *inputs = NULL;
    if (source == NULL || source[0] == '\0')
        return ATTN_ERR(ATTN_EINVAL, "empty input source (expected PATH.h5, PATH.h5:/GROUP, "
                        "gauss:... or local:...)");
    in = calloc(1, sizeof *in);
    if (in == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "inputs header");
    in->causal = -1;
    in->source = attn_io_dup_string(source);
    if (in->source == NULL) {
        status = ATTN_ERR(ATTN_ENOMEM, "copy of the source %s", source);
        goto fail;
    }
    gen = generator_find(source);
    if (gen != NULL) {
        status = generate(in, gen, n_max, seed);
    } else {
        /* PATH.h5:/GROUP, unless the whole string names an existing file. */
        char *path = attn_io_dup_string(source);
        char *group = NULL;
        if (path == NULL) {
            status = ATTN_ERR(ATTN_ENOMEM, "copy of the source %s", source);
            goto fail;
        }
        if (!attn_h5_file_exists(source)) {
            char *colon = NULL;
            for (char *p = strstr(path, ":/"); p != NULL; p = strstr(p + 1, ":/"))
                colon = p;
            if (colon != NULL) {
                *colon = '\0';
                group = colon + 1;
            }
        }
        attn_h5_init();
        in->label = file_label(path, group);
        status = in->label == NULL ? ATTN_ERR(ATTN_ENOMEM, "label of %s", source)
                                   : read_file(in, path, group, n_max);
        free(path);
    }
    if (status != ATTN_OK)
        goto fail;
    *inputs = in;
    return ATTN_OK;
fail:
    attn_inputs_destroy(in);
    return status;
}
