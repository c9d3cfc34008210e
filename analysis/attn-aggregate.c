/* attn-aggregate.c — medians, quartiles, log-log slopes and crossover n of a results file, as TSV.
 *
 *     attn-aggregate FILE.h5 --by k1,k2,... --of c1,c2,...   [-o OUT.tsv]
 *     attn-aggregate FILE.h5 --by k1,k2,... --fit COL        [-o OUT.tsv]
 *
 * Rows of /points with status != 0 (failed points) are left out; a `# ` line says how many.  The
 * remaining rows are grouped by the key columns, and the groups are written sorted by the keys in
 * the order given (strings lexicographically, numbers numerically, NaN last), so that a key list
 * ending in n gives lines that gnuplot draws in order of n.
 *
 * --of: columns k1.. kK, count (rows in the group), and for each c: c_med, c_q25, c_q75, the
 *   median and quartiles of c over the group's rows (type-7 quantiles, NaN ignored; see stats.h).
 * --fit COL: the keys must not include n.  In each group, the median of COL per n and the median
 *   of time_exact_s per n are taken; log(COL) = intercept + slope log(n) is fitted by least squares
 *   (gsl_fit_linear) over the n's with a finite positive median, and the crossover is the first n
 *   at which COL's median is below exact's (interpolated in log n; see attn_stats_crossover).
 *   Columns: k1.. kK, points (n's in the fit), n_min, n_max, slope, slope_se, intercept,
 *   crossover_n, crossover_lo, crossover_hi.  A group with fewer than 2 n's gets a NaN slope.
 *
 * Output conventions are those of attn-h5cat: `# key: value` provenance lines, a header line,
 * doubles as %.17g (NaN as "NaN"), integers as integers, written through a temporary file that is
 * renamed at the end.  Exit status: 0, 1 on an error, 2 on a bad command line.
 */
#include "config.h"

#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn.h"
#include "attn_io.h"
#include "stats.h"
#include "tsv.h"

static const char *program = "attn-aggregate";

/* A comma-separated list of column names, split and resolved against the table. */
typedef struct column_list {
    size_t count;
    char **names;       /* [count], owned */
    size_t *index;      /* [count] column indices in the table */
} column_list;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: %s FILE.h5 --by k1,k2,... (--of c1,c2,... | --fit COL) [-o OUT.tsv]\n"
            "\n"
            "Group the points with status 0 of an attnlab results file by the key columns\n"
            "and write one TSV row per group (stdout without -o), sorted by the keys.\n"
            "  --by k1,k2,...   key columns\n"
            "  --of c1,c2,...   count, and c_med c_q25 c_q75 (type-7 quantiles) and c_mean of each column\n"
            "  --fit COL        per group (keys without n): slope of log(median COL) against\n"
            "                   log n, its standard error, and the crossover n against the\n"
            "                   median time_exact_s\n"
            "  -o, --output OUT.tsv   write OUT.tsv (through a temporary file renamed at the end)\n"
            "  -h, --help       this text\n",
            program);
}

/* ---------------------------------------------------------------------------------------------
 * Output: the conventions shared with attn-h5cat are in tsv.h.
 */

/* A value of column c of the table at row, by the conventions of tsv.h. */
static void put_cell(FILE *out, const attn_table *table, size_t c, size_t row)
{
    if (table->types[c] == ATTN_COL_STR)
        attn_tsv_put_string(out, table->str[c][row]);
    else
        attn_tsv_put_number(out, table->types[c], table->num[c][row]);
}

/* ---------------------------------------------------------------------------------------------
 * Column lists.
 */

static void column_list_free(column_list *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->names[i]);
    free(l->names);
    free(l->index);
    l->count = 0;
    l->names = NULL;
    l->index = NULL;
}

/* Split "a,b,c"; returns 0 on an empty name (a bad command line), 1 otherwise; *l empty on 0. */
static int column_list_split(column_list *l, const char *list)
{
    size_t count = 1;
    for (const char *p = list; *p != '\0'; p++)
        count += *p == ',';
    l->count = 0;
    l->names = calloc(count, sizeof *l->names);
    l->index = calloc(count, sizeof *l->index);
    if (l->names == NULL || l->index == NULL) {
        fprintf(stderr, "%s: error: out of memory\n", program);
        exit(EXIT_FAILURE);
    }
    const char *p = list;
    while (1) {
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t) (end - p) : strlen(p);
        if (len == 0) {
            column_list_free(l);
            return 0;
        }
        char *name = calloc(len + 1, 1);
        if (name == NULL) {
            fprintf(stderr, "%s: error: out of memory\n", program);
            exit(EXIT_FAILURE);
        }
        memcpy(name, p, len);
        l->names[l->count++] = name;
        if (end == NULL)
            break;
        p = end + 1;
    }
    return 1;
}

/* The index of column name into *index; numeric: the column must not hold strings.  The messages
 * are those of attn-h5cat: "unknown column 'x' (columns: a, b, ...)". */
static int column_find(const attn_table *table, const char *name, const char *option,
                       int numeric, size_t *index)
{
    for (size_t c = 0; c < table->ncols; c++) {
        if (strcmp(table->names[c], name) == 0) {
            if (numeric && table->types[c] == ATTN_COL_STR)
                return ATTN_ERR(ATTN_EINVAL, "%s: column '%s' holds strings, expected numbers",
                                option, name);
            *index = c;
            return ATTN_OK;
        }
    }
    char list[2048] = "";
    size_t used = 0;
    for (size_t c = 0; c < table->ncols && used < sizeof list; c++)
        used += (size_t) snprintf(list + used, sizeof list - used, "%s%s", c > 0 ? ", " : "",
                                  table->names[c]);
    return ATTN_ERR(ATTN_EINVAL, "unknown column '%s' (columns: %s)", name, list);
}

/* Resolve every name of l to a column index. */
static int column_list_resolve(column_list *l, const attn_table *table, const char *option,
                               int numeric)
{
    for (size_t i = 0; i < l->count; i++) {
        int status = column_find(table, l->names[i], option, numeric, &l->index[i]);
        if (status != ATTN_OK)
            return status;
    }
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Grouping: sort the row indices by the keys, then cut runs of equal keys.
 */

/* The sort's context (qsort has none). */
static const attn_table *sort_table;
static const column_list *sort_keys;

static int compare_cell(const attn_table *table, size_t c, size_t a, size_t b)
{
    if (table->types[c] == ATTN_COL_STR) {
        const char *x = table->str[c][a] != NULL ? table->str[c][a] : "";
        const char *y = table->str[c][b] != NULL ? table->str[c][b] : "";
        return strcmp(x, y);
    }
    double x = table->num[c][a];
    double y = table->num[c][b];
    if (isnan(x) || isnan(y))
        return isnan(x) - isnan(y);     /* NaN last; two NaN are equal */
    return (x > y) - (x < y);
}

static int compare_keys(size_t a, size_t b)
{
    for (size_t i = 0; i < sort_keys->count; i++) {
        int c = compare_cell(sort_table, sort_keys->index[i], a, b);
        if (c != 0)
            return c;
    }
    return 0;
}

static int compare_rows(const void *pa, const void *pb)
{
    size_t a = *(const size_t *) pa;
    size_t b = *(const size_t *) pb;
    int c = compare_keys(a, b);
    return c != 0 ? c : (a > b) - (a < b);    /* file order within a group */
}

/* The rows with status 0 (all rows when there is no status column), sorted by the keys. */
static int select_rows(const attn_table *table, const column_list *keys, size_t **rows,
                       size_t *nrows, size_t *excluded)
{
    *rows = calloc(table->rows + 1, sizeof **rows);
    if (*rows == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "%zu row indices", table->rows);
    long st = -1;
    for (size_t c = 0; c < table->ncols; c++)
        if (strcmp(table->names[c], "status") == 0)
            st = (long) c;
    *nrows = 0;
    for (size_t r = 0; r < table->rows; r++)
        if (st < 0 || table->num[st][r] == 0.0)
            (*rows)[(*nrows)++] = r;
    *excluded = table->rows - *nrows;
    sort_table = table;
    sort_keys = keys;
    qsort(*rows, *nrows, sizeof **rows, compare_rows);
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------
 * The two kinds of output.
 */

static void put_keys(FILE *out, const attn_table *table, const column_list *keys, size_t row)
{
    for (size_t i = 0; i < keys->count; i++) {
        put_cell(out, table, keys->index[i], row);
        fputc('\t', out);
    }
}

static int write_of(FILE *out, const attn_table *table, const column_list *keys,
                    const column_list *of, const size_t *rows, size_t nrows)
{
    double *x = calloc(nrows + 1, sizeof *x);
    if (x == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "%zu values", nrows);
    fputs("# count: rows in the group; c_med, c_q25, c_q75: median and quartiles of c over them "
          "(type 7: linear interpolation of the sorted values, NaN ignored); c_mean: their mean\n",
          out);
    for (size_t i = 0; i < keys->count; i++)
        fprintf(out, "%s\t", keys->names[i]);
    fputs("count", out);
    for (size_t i = 0; i < of->count; i++)
        fprintf(out, "\t%s_med\t%s_q25\t%s_q75\t%s_mean", of->names[i], of->names[i],
                of->names[i], of->names[i]);
    fputc('\n', out);
    for (size_t start = 0; start < nrows;) {
        size_t end = start + 1;
        while (end < nrows && compare_keys(rows[start], rows[end]) == 0)
            end++;
        put_keys(out, table, keys, rows[start]);
        fprintf(out, "%zu", end - start);
        for (size_t i = 0; i < of->count; i++) {
            const double *col = table->num[of->index[i]];
            for (size_t r = start; r < end; r++)
                x[r - start] = col[rows[r]];
            size_t N = attn_stats_sort_finite(x, end - start);
            fputc('\t', out);
            attn_tsv_put_double(out, attn_stats_quantile_sorted(x, N, 0.5));
            fputc('\t', out);
            attn_tsv_put_double(out, attn_stats_quantile_sorted(x, N, 0.25));
            fputc('\t', out);
            attn_tsv_put_double(out, attn_stats_quantile_sorted(x, N, 0.75));
            double sum = 0.0;
            for (size_t r = 0; r < N; r++)
                sum += x[r];
            fputc('\t', out);
            attn_tsv_put_double(out, N > 0 ? sum / (double) N : NAN);
        }
        fputc('\n', out);
        start = end;
    }
    free(x);
    return ATTN_OK;
}

/* Scratch of write_fit, one value per row of the largest group. */
typedef struct fit_scratch {
    double *n;
    double *y;
    double *e;
    double *un;
    double *ymed;
    double *un_e;
    double *emed;
} fit_scratch;

static int write_fit(FILE *out, const attn_table *table, const column_list *keys, size_t col,
                     size_t ncol, size_t ecol, const size_t *rows, size_t nrows)
{
    fit_scratch s;
    double **arrays[] = { &s.n, &s.y, &s.e, &s.un, &s.ymed, &s.un_e, &s.emed };
    int status = ATTN_OK;
    size_t nfew = 0;
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++) {
        *arrays[i] = calloc(nrows + 1, sizeof **arrays[i]);
        if (*arrays[i] == NULL)
            status = ATTN_ERR(ATTN_ENOMEM, "%zu values", nrows);
    }
    const char *name = table->names[col];
    fprintf(out,
            "# fit: log(median %s per n) = intercept + slope log(n), least squares "
            "(gsl_fit_linear) over the n's with a finite positive median; points = those n's; "
            "slope_se NaN with fewer than 3 points\n"
            "# crossover: first n at which median %s < median time_exact_s; crossover_lo/hi "
            "bracket it, crossover_n interpolates log(ratio) linearly in log n; NaN when never "
            "faster; crossover_n = the first n and crossover_lo = NaN when faster from the first "
            "n\n",
            name, name);
    for (size_t i = 0; i < keys->count; i++)
        fprintf(out, "%s\t", keys->names[i]);
    fputs("points\tn_min\tn_max\tslope\tslope_se\tintercept\tcrossover_n\tcrossover_lo\t"
          "crossover_hi\n", out);
    for (size_t start = 0; status == ATTN_OK && start < nrows;) {
        size_t end = start + 1;
        while (end < nrows && compare_keys(rows[start], rows[end]) == 0)
            end++;
        size_t count = end - start;
        for (size_t r = start; r < end; r++) {
            s.n[r - start] = table->num[ncol][rows[r]];
            s.y[r - start] = table->num[col][rows[r]];
            s.e[r - start] = table->num[ecol][rows[r]];
        }
        size_t nu = 0;
        size_t nu_e = 0;
        status = attn_stats_group_median(s.n, s.y, count, s.un, s.ymed, &nu);
        if (status == ATTN_OK)
            status = attn_stats_group_median(s.n, s.e, count, s.un_e, s.emed, &nu_e);
        attn_loglog_fit fit;
        attn_crossover cross;
        if (status == ATTN_OK)
            status = attn_stats_loglog_fit(s.un, s.ymed, nu, &fit);
        if (status == ATTN_OK)
            status = attn_stats_crossover(s.un, s.ymed, s.emed, nu, &cross);
        if (status != ATTN_OK)
            break;
        double n_min = NAN;
        double n_max = NAN;
        for (size_t i = 0; i < nu; i++) {
            if (isfinite(s.ymed[i]) && s.ymed[i] > 0.0) {
                n_min = isnan(n_min) ? s.un[i] : n_min;
                n_max = s.un[i];
            }
        }
        if (isnan(fit.slope))
            nfew++;
        put_keys(out, table, keys, rows[start]);
        fprintf(out, "%zu", fit.points);
        const double v[] = { n_min, n_max, fit.slope, fit.slope_se, fit.intercept,
                             cross.n, cross.n_lo, cross.n_hi };
        for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
            fputc('\t', out);
            attn_tsv_put_double(out, v[i]);
        }
        fputc('\n', out);
        start = end;
    }
    if (status == ATTN_OK && nfew > 0)
        fprintf(out, "# %zu group(s) with fewer than 2 distinct n: NaN slope\n", nfew);
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++)
        free(*arrays[i]);
    return status;
}

/* ---------------------------------------------------------------------------------------------
 * Main.
 */

static int bad_command_line(const char *message, const char *value)
{
    fprintf(stderr, "%s: %s%s\n", program, message, value != NULL ? value : "");
    usage(stderr);
    return 2;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        { "by", required_argument, NULL, 'b' },
        { "of", required_argument, NULL, 'f' },
        { "fit", required_argument, NULL, 'F' },
        { "output", required_argument, NULL, 'o' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *outpath = NULL;
    const char *by = NULL;
    const char *of_arg = NULL;
    const char *fit_col = NULL;
    int opt;
    opterr = 0;     /* getopt would name the program by its path; the messages are ours */
    while ((opt = getopt_long(argc, argv, "o:h", options, NULL)) != -1) {
        switch (opt) {
        case 'b':
            by = optarg;
            break;
        case 'f':
            of_arg = optarg;
            break;
        case 'F':
            fit_col = optarg;
            break;
        case 'o':
            outpath = optarg;
            break;
        case 'h':
            usage(stdout);
            return EXIT_SUCCESS;
        default:
            fprintf(stderr, "%s: unknown option or missing value: %s\n", program,
                    argv[optind - 1]);
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc - 1)
        return bad_command_line(optind >= argc ? "missing FILE.h5" : "expected exactly one FILE.h5",
                                NULL);
    if (by == NULL)
        return bad_command_line("--by is required", NULL);
    if ((of_arg == NULL) == (fit_col == NULL))
        return bad_command_line("give exactly one of --of and --fit", NULL);
    if (fit_col != NULL && fit_col[0] == '\0')
        return bad_command_line("--fit: empty column name", NULL);
    const char *path = argv[optind];

    column_list keys = { 0 };
    column_list of = { 0 };
    if (!column_list_split(&keys, by))
        return bad_command_line("--by: empty column name in ", by);
    if (of_arg != NULL && !column_list_split(&of, of_arg)) {
        column_list_free(&keys);
        return bad_command_line("--of: empty column name in ", of_arg);
    }
    if (fit_col != NULL) {
        for (size_t i = 0; i < keys.count; i++) {
            if (strcmp(keys.names[i], "n") == 0) {
                column_list_free(&keys);
                return bad_command_line("--fit: the --by keys must not include n (the fit runs "
                                        "over n within each group): --by ", by);
            }
        }
    }

    attn_table *table = NULL;
    size_t *rows = NULL;
    size_t nrows = 0;
    size_t excluded = 0;
    size_t col = 0;
    size_t ncol = 0;
    size_t ecol = 0;
    FILE *out = NULL;
    char *tmp = NULL;
    int status = attn_table_read(&table, path);
    if (status == ATTN_OK)
        status = column_list_resolve(&keys, table, "--by", 0);
    if (status == ATTN_OK && of_arg != NULL)
        status = column_list_resolve(&of, table, "--of", 1);
    if (status == ATTN_OK && fit_col != NULL) {
        /* The fit needs COL, n and exact's time, all numeric. */
        const char *need[] = { fit_col, "n", "time_exact_s" };
        size_t *index[] = { &col, &ncol, &ecol };
        for (size_t i = 0; status == ATTN_OK && i < 3; i++)
            status = column_find(table, need[i], "--fit", 1, index[i]);
    }
    if (status == ATTN_OK)
        status = select_rows(table, &keys, &rows, &nrows, &excluded);
    if (status == ATTN_OK && nrows == 0)
        status = ATTN_ERR(ATTN_EINVAL, "%s: no rows to aggregate (%zu rows in /points, %zu with "
                          "status != 0)", path, table->rows, excluded);
    if (status == ATTN_OK)
        status = attn_tsv_open(outpath, &out, &tmp);
    if (status == ATTN_OK) {
        attn_tsv_put_provenance(out, table, path, program, argc, argv);
        fprintf(out, "# excluded: %zu of %zu rows with status != 0\n", excluded, table->rows);
        if (of_arg != NULL)
            status = write_of(out, table, &keys, &of, rows, nrows);
        else
            status = write_fit(out, table, &keys, col, ncol, ecol, rows, nrows);
    }
    status = attn_tsv_close(out, tmp, outpath, status);

    free(rows);
    column_list_free(&keys);
    column_list_free(&of);
    attn_table_destroy(table);
    if (status != ATTN_OK) {
        fprintf(stderr, "%s: error: %s\n", program, attn_last_error());
        return EXIT_FAILURE;
    }
    return EXIT_SUCCESS;
}
