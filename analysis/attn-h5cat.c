/* attn-h5cat.c — a results file (HDF5) as a TSV table for gnuplot, awk and pandas.
 *
 *     attn-h5cat FILE.h5 [-o OUT.tsv] [--columns a,b,c] [--where col=value]... [--spectra]
 *
 * Output: `# key: value` lines with the provenance of the file (source path, program, version,
 * git_describe, config_hash, utc_time, blas_vendor and command_line of the sweep, then this
 * program's version and command), one header line of tab-separated column names, and one line per
 * row.  Doubles are printed with %.17g (they read back to the same bits; NaN as "NaN"), integers as
 * integers, strings as they are with tabs and newlines replaced by spaces.
 *
 * Without --spectra the rows are those of /points.  With --spectra there is one row per singular
 * value of every /spectra/<point_id>, with the columns of spectra_columns[] below; sigma_rel is
 * sigma / sigma_1.  --where col=value keeps the rows whose column equals value (numerically for
 * numeric columns, so n=1024 matches 1024 and NaN matches NaN); several --where must all hold.
 * --columns selects and orders the columns written.
 *
 * With --blocks NAME there is one row per row of every /blocks/NAME_<point_id> table (the
 * near/far structure tables a sweep's [blocks] section writes: NAME = offdiag or farfield), with
 * the columns data_label and data_source of that point's /points row followed by the table's own
 * columns (its column_names attribute; every table of the name must have the same ones).
 *
 * The TSV is written to a temporary file beside OUT and renamed at the end, so a failure never
 * leaves a half-written OUT.  Exit status: 0, 1 on an error (message on stderr), 2 on a bad command
 * line.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn.h"
#include "attn_io.h"
#include "tsv.h"

static const char *program = "attn-h5cat";

/* One column of the table written: a name, a type and borrowed values. */
typedef struct view_col {
    const char *name;
    int type;               /* enum attn_column_type */
    const double *num;      /* [rows], numeric columns */
    char *const *str;       /* [rows], string columns */
} view_col;

typedef struct view {
    size_t rows;
    size_t ncols;
    view_col *cols;         /* [ncols] */
} view;

/* A --where filter resolved against a view. */
typedef struct where {
    const char *arg;        /* "col=value" as given */
    size_t col;
    const char *value;      /* text after '=' */
    double num;             /* value as a number, numeric columns */
} where;

/* Columns of --spectra: copied from the point's row of /points, or taken from its spectrum. */
enum spectra_source { FROM_POINTS, SPECTRUM_K, SPECTRUM_SIGMA, SPECTRUM_SIGMA_REL };
static const struct {
    const char *name;
    int type;                   /* enum attn_column_type */
    int source;                 /* enum spectra_source */
} spectra_columns[] = {
    { "point_id", ATTN_COL_I64, FROM_POINTS },   { "data_label", ATTN_COL_STR, FROM_POINTS },
    { "layer", ATTN_COL_I64, FROM_POINTS },      { "head", ATTN_COL_I64, FROM_POINTS },
    { "n", ATTN_COL_I64, FROM_POINTS },          { "causal", ATTN_COL_I64, FROM_POINTS },
    { "method", ATTN_COL_STR, FROM_POINTS },     { "spec", ATTN_COL_STR, FROM_POINTS },
    { "config_spec", ATTN_COL_STR, FROM_POINTS },
    { "k", ATTN_COL_I64, SPECTRUM_K },           { "sigma", ATTN_COL_F64, SPECTRUM_SIGMA },
    { "sigma_rel", ATTN_COL_F64, SPECTRUM_SIGMA_REL },
};
#define NSPECTRA_COLS (sizeof spectra_columns / sizeof spectra_columns[0])

/* The spectra table: owned arrays, one row per singular value, a column per spectra_columns[]
 * entry (num for numeric columns, str for string columns). */
typedef struct spectra {
    size_t rows;
    double *num[NSPECTRA_COLS];
    char **str[NSPECTRA_COLS];
} spectra;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: %s FILE.h5 [-o OUT.tsv] [--columns a,b,c] [--where col=value]... [--spectra | --blocks NAME]\n"
            "\n"
            "Write the /points table of an attnlab results file as TSV (stdout without -o).\n"
            "  -o, --output OUT.tsv   write OUT.tsv (through a temporary file renamed at the end)\n"
            "  --columns a,b,c        only these columns, in this order\n"
            "  --where col=value      only rows with col equal to value (numeric columns compare\n"
            "                         as numbers); repeat to require several\n"
            "  --spectra              one row per singular value of /spectra/<point_id>, columns\n"
            "                         point_id data_label layer head n causal method spec config_spec k sigma\n"
            "                         sigma_rel (sigma / sigma_1)\n"
            "  --blocks NAME          one row per row of the tables /blocks/NAME_<point_id> (NAME:\n"
            "                         offdiag or farfield), columns data_label data_source and\n"
            "                         the table's own\n"
            "  -h, --help             this text\n",
            program);
}

/* ---------------------------------------------------------------------------------------------
 * Output: the conventions shared with attn-aggregate are in tsv.h.
 */

/* A value of column c at row, by the conventions of tsv.h. */
static void put_value(FILE *out, const view_col *c, size_t row)
{
    if (c->type == ATTN_COL_STR)
        attn_tsv_put_string(out, c->str[row]);
    else
        attn_tsv_put_number(out, c->type, c->num[row]);
}

/* ---------------------------------------------------------------------------------------------
 * Views, filters and columns.
 */

static int view_from_table(view *v, const attn_table *table)
{
    v->rows = table->rows;
    v->ncols = table->ncols;
    v->cols = calloc(table->ncols, sizeof *v->cols);
    if (v->cols == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "%zu columns", table->ncols);
    for (size_t c = 0; c < table->ncols; c++) {
        v->cols[c].name = table->names[c];
        v->cols[c].type = table->types[c];
        v->cols[c].num = table->num[c];
        v->cols[c].str = table->str[c];
    }
    return ATTN_OK;
}

static int unknown_column(const view *v, const char *name)
{
    char list[2048] = "";
    size_t used = 0;
    for (size_t c = 0; c < v->ncols && used < sizeof list; c++)
        used += (size_t) snprintf(list + used, sizeof list - used, "%s%s", c > 0 ? ", " : "",
                                  v->cols[c].name);
    return ATTN_ERR(ATTN_EINVAL, "unknown column '%s' (columns: %s)", name, list);
}

static long view_find(const view *v, const char *name)
{
    for (size_t c = 0; c < v->ncols; c++)
        if (strcmp(v->cols[c].name, name) == 0)
            return (long) c;
    return -1;
}

static int where_resolve(const view *v, where *w)
{
    const char *eq = strchr(w->arg, '=');
    size_t len = (size_t) (eq - w->arg);
    char name[256];
    if (len >= sizeof name)
        return ATTN_ERR(ATTN_EINVAL, "--where %s: column name too long", w->arg);
    memcpy(name, w->arg, len);
    name[len] = '\0';
    long c = view_find(v, name);
    if (c < 0)
        return unknown_column(v, name);
    w->col = (size_t) c;
    w->value = eq + 1;
    if (v->cols[c].type != ATTN_COL_STR) {
        char *end = NULL;
        errno = 0;
        w->num = strtod(w->value, &end);
        if (end == w->value || *end != '\0' || errno == ERANGE)
            return ATTN_ERR(ATTN_EINVAL, "--where %s: '%s' is not a number (column %s is numeric)",
                            w->arg, w->value, name);
    }
    return ATTN_OK;
}

static int where_match(const view *v, const where *w, size_t nwhere, size_t row)
{
    for (size_t i = 0; i < nwhere; i++) {
        const view_col *c = &v->cols[w[i].col];
        if (c->type == ATTN_COL_STR) {
            const char *s = c->str[row] != NULL ? c->str[row] : "";
            if (strcmp(s, w[i].value) != 0)
                return 0;
        } else {
            double x = c->num[row];
            if (!(x == w[i].num || (isnan(x) && isnan(w[i].num))))
                return 0;
        }
    }
    return 1;
}

/* Resolve --columns a,b,c into indices (*sel, *nsel); NULL list means every column. */
static int columns_resolve(const view *v, const char *list, size_t **sel, size_t *nsel)
{
    size_t count = 1;
    for (const char *p = list; p != NULL && *p != '\0'; p++)
        count += *p == ',';
    *sel = calloc(list != NULL ? count : v->ncols + 1, sizeof **sel);
    if (*sel == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "column selection");
    *nsel = 0;
    if (list == NULL) {
        for (size_t c = 0; c < v->ncols; c++)
            (*sel)[(*nsel)++] = c;
        return ATTN_OK;
    }
    const char *p = list;
    while (1) {
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t) (end - p) : strlen(p);
        char name[256];
        if (len == 0 || len >= sizeof name)
            return ATTN_ERR(ATTN_EINVAL, "--columns %s: empty or too long column name", list);
        memcpy(name, p, len);
        name[len] = '\0';
        long c = view_find(v, name);
        if (c < 0)
            return unknown_column(v, name);
        (*sel)[(*nsel)++] = (size_t) c;
        if (end == NULL)
            break;
        p = end + 1;
    }
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------
 * --spectra: one row per singular value.
 */

static void spectra_free(spectra *s)
{
    for (size_t c = 0; c < NSPECTRA_COLS; c++) {
        if (s->str[c] != NULL)
            for (size_t r = 0; r < s->rows; r++)
                free(s->str[c][r]);
        free(s->str[c]);
        free(s->num[c]);
    }
}

/* Grow every column of s to hold cap rows. */
static int spectra_reserve(spectra *s, size_t cap)
{
    if (cap > SIZE_MAX / sizeof(double))
        return ATTN_ERR(ATTN_ENOMEM, "spectra table of %zu rows", cap);
    for (size_t c = 0; c < NSPECTRA_COLS; c++) {
        if (spectra_columns[c].type == ATTN_COL_STR) {
            char **p = realloc(s->str[c], cap * sizeof *p);
            if (p == NULL)
                return ATTN_ERR(ATTN_ENOMEM, "spectra table of %zu rows", cap);
            s->str[c] = p;
        } else {
            double *p = realloc(s->num[c], cap * sizeof *p);
            if (p == NULL)
                return ATTN_ERR(ATTN_ENOMEM, "spectra table of %zu rows", cap);
            s->num[c] = p;
        }
    }
    return ATTN_OK;
}

static char *copy_string(const char *s)
{
    s = s != NULL ? s : "";
    char *c = calloc(strlen(s) + 1, 1);
    if (c != NULL)
        strcpy(c, s);
    return c;
}

/* The /points column a spectra column is copied from, checked to hold the expected kind. */
static int spectra_source_column(const attn_table *table, const char *path, size_t c, long *src)
{
    *src = attn_table_column(table, spectra_columns[c].name);
    if (*src < 0)
        return attn_error_context(ATTN_EFORMAT, "%s", path);
    if ((table->types[*src] == ATTN_COL_STR) != (spectra_columns[c].type == ATTN_COL_STR))
        return ATTN_ERR(ATTN_EFORMAT, "%s: column /points/%s holds %s, expected %s", path,
                        spectra_columns[c].name,
                        table->types[*src] == ATTN_COL_STR ? "strings" : "numbers",
                        spectra_columns[c].type == ATTN_COL_STR ? "strings" : "numbers");
    return ATTN_OK;
}

/* Append the k singular values sv of the point in row r of table to s. */
static int spectra_append(spectra *s, const attn_table *table, size_t r, const long *src,
                          const double *sv, size_t k)
{
    for (size_t j = 0; j < k; j++) {
        size_t row = s->rows;
        for (size_t c = 0; c < NSPECTRA_COLS; c++) {
            switch (spectra_columns[c].source) {
            case FROM_POINTS:
                if (spectra_columns[c].type == ATTN_COL_STR) {
                    s->str[c][row] = copy_string(table->str[src[c]][r]);
                    if (s->str[c][row] == NULL) {
                        while (c-- > 0)     /* the strings of this row copied so far */
                            if (spectra_columns[c].type == ATTN_COL_STR)
                                free(s->str[c][row]);
                        return ATTN_ERR(ATTN_ENOMEM, "spectra table");
                    }
                } else {
                    s->num[c][row] = table->num[src[c]][r];
                }
                break;
            case SPECTRUM_K:
                s->num[c][row] = (double) (j + 1);
                break;
            case SPECTRUM_SIGMA:
                s->num[c][row] = sv[j];
                break;
            default:
                s->num[c][row] = sv[j] / sv[0];
                break;
            }
        }
        s->rows++;
    }
    return ATTN_OK;
}

/* Read /spectra/<point_id> of every point of table into s. */
static int spectra_read(spectra *s, const attn_table *table, const char *path)
{
    long src[NSPECTRA_COLS];
    long pid = -1;
    for (size_t c = 0; c < NSPECTRA_COLS; c++) {
        src[c] = -1;
        if (spectra_columns[c].source == FROM_POINTS)
            ATTN_TRY(spectra_source_column(table, path, c, &src[c]), "--spectra");
        if (strcmp(spectra_columns[c].name, "point_id") == 0)
            pid = src[c];
    }
    size_t cap = 0;
    for (size_t r = 0; r < table->rows; r++) {
        double *sv = NULL;
        size_t k = 0;
        int status = attn_results_read_spectrum(path, (int64_t) table->num[pid][r], &sv, &k);
        /* Spectra exist only for the points a sweep asked them for, and lib/io has no listing:
         * a missing dataset (lib/io says "dataset /spectra/<id> is missing") means "none". */
        if (status == ATTN_EFORMAT && strstr(attn_last_error(), "is missing") != NULL) {
            attn_error_clear();
            continue;
        }
        if (status != ATTN_OK)
            return status;
        if (s->rows + k > cap) {
            cap = 2 * (s->rows + k);
            status = spectra_reserve(s, cap);
        }
        if (status == ATTN_OK)
            status = spectra_append(s, table, r, src, sv, k);
        free(sv);
        if (status != ATTN_OK)
            return status;
    }
    return ATTN_OK;
}

static int view_from_spectra(view *v, const spectra *s)
{
    v->rows = s->rows;
    v->ncols = NSPECTRA_COLS;
    v->cols = calloc(NSPECTRA_COLS, sizeof *v->cols);
    if (v->cols == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "%zu columns", NSPECTRA_COLS);
    for (size_t c = 0; c < NSPECTRA_COLS; c++) {
        v->cols[c].name = spectra_columns[c].name;
        v->cols[c].type = spectra_columns[c].type;
        v->cols[c].num = s->num[c];
        v->cols[c].str = s->str[c];
    }
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------
 * --blocks NAME: the rows of /blocks/NAME_<point_id>, joined with /points.
 */

typedef struct blocks {
    size_t rows, ncols;       /* ncols: the tables' own columns */
    char *names;              /* their column_names attribute (owned) */
    char **name;              /* [ncols] pointers into a split copy of names */
    char *split;
    double **num;             /* [ncols] rows values */
    char **label, **source;   /* [rows] borrowed from the /points table */
} blocks;

static void blocks_free(blocks *b)
{
    for (size_t c = 0; c < b->ncols; c++)
        free(b->num[c]);
    free(b->num);
    free(b->name);
    free(b->split);
    free(b->names);
    free(b->label);
    free(b->source);
}

/* Take the column names of the first table read. */
static int blocks_columns(blocks *b, const char *names, size_t cols)
{
    b->names = copy_string(names);
    b->split = copy_string(names);
    b->name = calloc(cols, sizeof *b->name);
    b->num = calloc(cols, sizeof *b->num);
    if (b->names == NULL || b->split == NULL || b->name == NULL || b->num == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "blocks table");
    b->ncols = cols;
    size_t c = 0;
    for (char *t = strtok(b->split, ","); t != NULL && c < cols; t = strtok(NULL, ","))
        b->name[c++] = t;
    if (c != cols)
        return ATTN_ERR(ATTN_EFORMAT, "column_names '%s' names %zu columns, the table has %zu",
                        names, c, cols);
    return ATTN_OK;
}

static int blocks_read(blocks *b, const attn_table *table, const char *path, const char *name)
{
    long pid = attn_table_column(table, "point_id");
    long lab = attn_table_column(table, "data_label");
    long src = attn_table_column(table, "data_source");
    if (pid < 0 || lab < 0 || src < 0)
        return attn_error_context(ATTN_EFORMAT, "%s", path);
    size_t cap = 0;
    for (size_t r = 0; r < table->rows; r++) {
        char tname[512];
        double *x = NULL;
        char *names = NULL;
        size_t rows = 0, cols = 0;
        snprintf(tname, sizeof tname, "%s_%lld", name, (long long) table->num[pid][r]);
        int status = attn_results_read_table(path, tname, &x, &rows, &cols, &names);
        if (status == ATTN_EFORMAT && strstr(attn_last_error(), "is missing") != NULL) {
            attn_error_clear();
            continue;     /* tables exist only for the first point of an input */
        }
        if (status == ATTN_OK && b->names == NULL)
            status = blocks_columns(b, names, cols);
        else if (status == ATTN_OK && (cols != b->ncols || strcmp(names, b->names) != 0))
            status = ATTN_ERR(ATTN_EFORMAT, "%s: /blocks/%s has columns '%s', the first table "
                              "had '%s'", path, tname, names, b->names);
        if (status == ATTN_OK && b->rows + rows > cap) {
            cap = 2 * (b->rows + rows);
            for (size_t c = 0; status == ATTN_OK && c < b->ncols; c++) {
                double *p = realloc(b->num[c], cap * sizeof *p);
                if (p == NULL)
                    status = ATTN_ERR(ATTN_ENOMEM, "blocks table of %zu rows", cap);
                else
                    b->num[c] = p;
            }
            char **l = status == ATTN_OK ? realloc(b->label, cap * sizeof *l) : NULL;
            if (l != NULL)
                b->label = l;
            char **so = l != NULL ? realloc(b->source, cap * sizeof *so) : NULL;
            if (so != NULL)
                b->source = so;
            if (status == ATTN_OK && (l == NULL || so == NULL))
                status = ATTN_ERR(ATTN_ENOMEM, "blocks table of %zu rows", cap);
        }
        for (size_t t = 0; status == ATTN_OK && t < rows; t++) {
            for (size_t c = 0; c < cols; c++)
                b->num[c][b->rows] = x[t * cols + c];
            b->label[b->rows] = table->str[lab][r];
            b->source[b->rows] = table->str[src][r];
            b->rows++;
        }
        free(x);
        free(names);
        if (status != ATTN_OK)
            return status;
    }
    if (b->names == NULL)
        return ATTN_ERR(ATTN_EFORMAT, "%s has no /blocks/%s_<point_id> tables (a sweep writes "
                        "them when its config has a [blocks] section)", path, name);
    return ATTN_OK;
}

static int view_from_blocks(view *v, const blocks *b)
{
    v->rows = b->rows;
    v->ncols = b->ncols + 2;
    v->cols = calloc(v->ncols, sizeof *v->cols);
    if (v->cols == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "%zu columns", v->ncols);
    v->cols[0] = (view_col){ .name = "data_label", .type = ATTN_COL_STR, .str = b->label };
    v->cols[1] = (view_col){ .name = "data_source", .type = ATTN_COL_STR, .str = b->source };
    for (size_t c = 0; c < b->ncols; c++)
        v->cols[c + 2] = (view_col){ .name = b->name[c], .type = ATTN_COL_F64, .num = b->num[c] };
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Main.
 */

static int write_tsv(FILE *out, const view *v, const size_t *sel, size_t nsel, const where *w,
                     size_t nwhere)
{
    for (size_t i = 0; i < nsel; i++) {
        if (i > 0)
            fputc('\t', out);
        fputs(v->cols[sel[i]].name, out);
    }
    fputc('\n', out);
    for (size_t r = 0; r < v->rows; r++) {
        if (!where_match(v, w, nwhere, r))
            continue;
        for (size_t i = 0; i < nsel; i++) {
            if (i > 0)
                fputc('\t', out);
            put_value(out, &v->cols[sel[i]], r);
        }
        fputc('\n', out);
    }
    return ferror(out) ? ATTN_ERR(ATTN_EIO, "write error: %s", strerror(errno)) : ATTN_OK;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        { "output", required_argument, NULL, 'o' },
        { "columns", required_argument, NULL, 'c' },
        { "where", required_argument, NULL, 'w' },
        { "spectra", no_argument, NULL, 's' },
        { "blocks", required_argument, NULL, 'b' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *outpath = NULL;
    const char *columns = NULL;
    int want_spectra = 0;
    const char *blocks_name = NULL;
    size_t nwhere = 0;
    where *w = calloc((size_t) argc, sizeof *w);
    if (w == NULL) {
        fprintf(stderr, "%s: error: out of memory\n", program);
        return EXIT_FAILURE;
    }
    int opt;
    opterr = 0;     /* getopt would name the program by its path; the messages are ours */
    while ((opt = getopt_long(argc, argv, "o:h", options, NULL)) != -1) {
        switch (opt) {
        case 'o':
            outpath = optarg;
            break;
        case 'c':
            columns = optarg;
            break;
        case 'w':
            if (strchr(optarg, '=') == NULL || optarg[0] == '=') {
                fprintf(stderr, "%s: --where %s: expected col=value\n", program, optarg);
                usage(stderr);
                free(w);
                return 2;
            }
            w[nwhere++].arg = optarg;
            break;
        case 's':
            want_spectra = 1;
            break;
        case 'b':
            blocks_name = optarg;
            break;
        case 'h':
            usage(stdout);
            free(w);
            return EXIT_SUCCESS;
        default:
            fprintf(stderr, "%s: unknown option or missing value: %s\n", program,
                    argv[optind - 1]);
            usage(stderr);
            free(w);
            return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "%s: %s\n", program,
                optind >= argc ? "missing FILE.h5" : "expected exactly one FILE.h5");
        usage(stderr);
        free(w);
        return 2;
    }
    const char *path = argv[optind];
    if (want_spectra && blocks_name != NULL) {
        fprintf(stderr, "%s: --spectra and --blocks exclude each other\n", program);
        usage(stderr);
        free(w);
        return 2;
    }

    attn_table *table = NULL;
    spectra sp = { 0 };
    blocks bl = { 0 };
    view v = { 0 };
    size_t *sel = NULL;
    size_t nsel = 0;
    FILE *out = NULL;
    char *tmp = NULL;
    int status = attn_table_read(&table, path);
    if (status == ATTN_OK && want_spectra) {
        status = spectra_read(&sp, table, path);
        if (status == ATTN_OK)
            status = view_from_spectra(&v, &sp);
    } else if (status == ATTN_OK && blocks_name != NULL) {
        status = blocks_read(&bl, table, path, blocks_name);
        if (status == ATTN_OK)
            status = view_from_blocks(&v, &bl);
    } else if (status == ATTN_OK) {
        status = view_from_table(&v, table);
    }
    for (size_t i = 0; status == ATTN_OK && i < nwhere; i++)
        status = where_resolve(&v, &w[i]);
    if (status == ATTN_OK)
        status = columns_resolve(&v, columns, &sel, &nsel);
    if (status == ATTN_OK)
        status = attn_tsv_open(outpath, &out, &tmp);
    if (status == ATTN_OK) {
        attn_tsv_put_provenance(out, table, path, program, argc, argv);
        status = write_tsv(out, &v, sel, nsel, w, nwhere);
    }
    status = attn_tsv_close(out, tmp, outpath, status);

    free(sel);
    free(v.cols);
    spectra_free(&sp);
    blocks_free(&bl);
    attn_table_destroy(table);
    free(w);
    if (status != ATTN_OK) {
        fprintf(stderr, "%s: error: %s\n", program, attn_last_error());
        return EXIT_FAILURE;
    }
    return EXIT_SUCCESS;
}
