/* test_sweep.c — sweep configs: lists and ranges, INI errors with line numbers, overrides, the
 * deterministic grid, and a run into a results file read back. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <criterion/criterion.h>

#include "attn.h"
#include "attn_io.h"
#include "sweep.h"
#include "testutil.h"

static void expect_list(const char *text, const double *want, size_t count)
{
    double *v = NULL;
    size_t n = 0;
    cr_assert_eq(sweep_parse_list("test", text, &v, &n), ATTN_OK, "%s: %s", text,
                 attn_last_error());
    cr_assert_eq(n, count, "%s: %zu values, expected %zu", text, n, count);
    for (size_t t = 0; t < n; t++)
        cr_assert_eq(v[t], want[t], "%s: value %zu is %g, expected %g", text, t, v[t], want[t]);
    free(v);
}

Test(sweep, lists_and_ranges)
{
    expect_list("256:8192:x2", (double[]){ 256, 512, 1024, 2048, 4096, 8192 }, 6);
    expect_list("1, 2,5", (double[]){ 1, 2, 5 }, 3);
    expect_list("3:6", (double[]){ 3, 4, 5, 6 }, 4);
    expect_list("0:1:+0.25", (double[]){ 0, 0.25, 0.5, 0.75, 1 }, 5);
    expect_list("128 192\n256:1024:x4", (double[]){ 128, 192, 256, 1024 }, 4);
    expect_list("100:1000:x3", (double[]){ 100, 300, 900 }, 3);
}

Test(sweep, bad_lists_are_named)
{
    double *v = NULL;
    size_t n = 0;
    cr_assert_eq(sweep_parse_list("[sweep] n", "12,abc", &v, &n), ATTN_ECONFIG);
    cr_assert(tu_error_has("[sweep] n: 'abc' is not a number"));
    cr_assert_eq(sweep_parse_list("[sweep] n", "64:8:x2", &v, &n), ATTN_ECONFIG);
    cr_assert(tu_error_has("must run upwards"));
    cr_assert_eq(sweep_parse_list("[sweep] n", "8:64:x1", &v, &n), ATTN_ECONFIG);
    cr_assert_eq(sweep_parse_list("[sweep] n", " ", &v, &n), ATTN_ECONFIG);
    cr_assert(tu_error_has("empty list"));
}

static char *write_ini(const char *name, const char *text)
{
    char rel[256];
    snprintf(rel, sizeof rel, "tests/sweep-work/%s", name);
    char *dir = tu_build_path("tests/sweep-work");
    mkdir(dir, 0777);
    free(dir);
    char *path = tu_build_path(rel);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
    return path;
}

/* A sweep of the config text written to tests/sweep-work/<name>.ini, loaded (failing the test on
 * error), with its results file tests/sweep-work/<name>.h5 removed: *path and *out are set. */
static sweep_config *fresh_sweep(const char *name, const char *text, char **path, char **out)
{
    char file[256];
    snprintf(file, sizeof file, "%s.ini", name);
    *path = write_ini(file, text);
    sweep_config *cfg = NULL;
    cr_assert_eq(sweep_config_load(&cfg, *path, NULL, 0), ATTN_OK, "%s", attn_last_error());
    snprintf(file, sizeof file, "tests/sweep-work/%s.h5", name);
    *out = tu_build_path(file);
    remove(*out);
    return cfg;
}

/* Options of a quiet, single-task run into out. */
static sweep_options quiet_run(const char *out)
{
    return (sweep_options){ .output = out, .task = 0, .ntasks = 1, .quiet = 1,
                            .command_line = "test" };
}

Test(sweep, config_expands_methods_canonically)
{
    char *path = write_ini("expand.ini", "[sweep]\n"
                                         "data = gauss:n=64,d=4 local:n=32,d=4\n"
                                         "n = 16:64:x2\n"
                                         "causal = 0,1\n"
                                         "[method exact]\n"
                                         "[method band]\n"
                                         "w = 1:4:x2 ; a comment\n");
    sweep_config *cfg = NULL;
    cr_assert_eq(sweep_config_load(&cfg, path, NULL, 0), ATTN_OK, "%s", attn_last_error());
    cr_assert_str_eq(cfg->name, "expand");
    cr_assert_eq(cfg->nsources, 2);
    cr_assert_eq(cfg->nspecs, 4);
    cr_assert_str_eq(cfg->specs[0], "exact");
    cr_assert_str_eq(cfg->specs[1], "band:w=1");
    cr_assert_str_eq(cfg->specs[3], "band:w=4");
    cr_assert_str_eq(cfg->labels[0], "exact");
    cr_assert_str_eq(cfg->labels[3], "band:w=4");
    cr_assert_eq(cfg->repeats, 3);
    /* gauss: 3 n x 2 causal x 4 specs; local (32 tokens): 2 n x 2 x 4. */
    size_t total = 0;
    cr_assert_eq(sweep_count(cfg, &total), ATTN_OK, "%s", attn_last_error());
    cr_assert_eq(total, 24 + 16);
    cr_assert(strstr(cfg->text, "spec = band:w=2") != NULL);
    char hash[17];
    strcpy(hash, cfg->hash);
    sweep_config_free(cfg);
    /* The same file gives the same hash; an override changes it. */
    cr_assert_eq(sweep_config_load(&cfg, path, NULL, 0), ATTN_OK);
    cr_assert_str_eq(cfg->hash, hash);
    sweep_config_free(cfg);
    const char *set[] = { "band.w=8", "sweep.repeats=1", "causal=1" };
    cr_assert_eq(sweep_config_load(&cfg, path, set, 3), ATTN_OK, "%s", attn_last_error());
    cr_assert_str_neq(cfg->hash, hash);
    cr_assert_eq(cfg->nspecs, 2);
    cr_assert_str_eq(cfg->specs[1], "band:w=8");
    cr_assert_eq(cfg->repeats, 1);
    cr_assert_eq(cfg->ncausal, 1);
    sweep_config_free(cfg);
    free(path);
}

Test(sweep, several_sections_of_one_method)
{
    char *path = write_ini("named.ini", "[sweep]\n"
                                        "data = gauss:n=32,d=4\n"
                                        "n = 32\n"
                                        "[method band/narrow]\n"
                                        "w = 1, 2\n"
                                        "[method band/wide]\n"
                                        "w = 16\n");
    sweep_config *cfg = NULL;
    cr_assert_eq(sweep_config_load(&cfg, path, NULL, 0), ATTN_OK, "%s", attn_last_error());
    cr_assert_eq(cfg->nspecs, 3);
    cr_assert_str_eq(cfg->specs[0], "band:w=1");
    cr_assert_str_eq(cfg->specs[2], "band:w=16");
    sweep_config_free(cfg);
    const char *set[] = { "band/wide.w=8" };
    cr_assert_eq(sweep_config_load(&cfg, path, set, 1), ATTN_OK, "%s", attn_last_error());
    cr_assert_str_eq(cfg->specs[2], "band:w=8");
    sweep_config_free(cfg);
    free(path);
}

static void expect_config_error(const char *name, const char *text, const char *needle)
{
    char *path = write_ini(name, text);
    sweep_config *cfg = NULL;
    cr_assert_neq(sweep_config_load(&cfg, path, NULL, 0), ATTN_OK, "%s loaded", name);
    cr_assert_null(cfg);
    cr_assert(tu_error_has(needle));
    free(path);
}

Test(sweep, config_errors_are_named)
{
    expect_config_error("syntax.ini", "[sweep]\ndata = gauss:n=8\nn = 8\nno equals sign\n",
                        "syntax.ini:4: syntax error");
    expect_config_error("nomethod.ini", "[sweep]\ndata = gauss:n=8\nn = 8\n",
                        "no [method ID] sections");
    expect_config_error("unknown.ini", "[sweep]\ndata = gauss:n=8\nn = 8\n[method nope]\n",
                        "unknown method 'nope'");
    expect_config_error("key.ini", "[sweep]\ndata = gauss:n=8\nn = 8\nsize = 3\n[method exact]\n",
                        "[sweep]: unknown key 'size'");
    expect_config_error("missing.ini", "[sweep]\nn = 8\n[method exact]\n",
                        "[sweep]: missing key 'data'");
    expect_config_error("causal.ini", "[sweep]\ndata = gauss:n=8\nn = 8\ncausal = 2\n[method exact]\n",
                        "[sweep] causal: 2 is not 0 or 1");
    expect_config_error("param.ini", "[sweep]\ndata = gauss:n=8\nn = 8\n[method band]\nw = 1.5\n",
                        "parameter w = 1.5 must be an integer");
    expect_config_error("section.ini", "[sweeps]\ndata = gauss:n=8\n",
                        "unknown section [sweeps]");
    expect_config_error("badnamed.ini", "[sweep]\ndata = gauss:n=8\nn = 8\n[method bnd/x]\nw = 1\n",
                        "unknown method 'bnd'");
}

Test(sweep, run_writes_points_and_rerun_skips)
{
    char *path = NULL, *out = NULL;
    sweep_config *cfg = fresh_sweep("run", "[sweep]\n"
                                           "data = local:n=48,d=6,heads=2\n"
                                           "n = 24, 48\n"
                                           "causal = 0, 1\n"
                                           "repeats = 1\n"
                                           "matrix_n_max = 48\n"
                                           "rank_n_max = 24\n"
                                           "[method exact]\n"
                                           "[method band]\n"
                                           "w = 3\n", &path, &out);
    sweep_options opts = quiet_run(out);
    sweep_summary sum;
    cr_assert_eq(sweep_run(cfg, &opts, &sum), ATTN_OK, "%s", attn_last_error());
    /* 2 heads x 2 n x 2 causal x 2 specs. */
    cr_assert_eq(sum.total, 16);
    cr_assert_eq(sum.done, 16);
    cr_assert_eq(sum.failed, 0);
    cr_assert_eq(sweep_run(cfg, &opts, &sum), ATTN_OK, "%s", attn_last_error());
    cr_assert_eq(sum.done, 0);
    cr_assert_eq(sum.skipped, 16);

    attn_table *tab = NULL;
    cr_assert_eq(attn_table_read(&tab, out), ATTN_OK, "%s", attn_last_error());
    cr_assert_eq(tab->rows, 16);
    long spec = attn_table_column(tab, "spec"), err = attn_table_column(tab, "err_out_rel_fro");
    long tv = attn_table_column(tab, "row_tv_mean"), n = attn_table_column(tab, "n");
    long rank = attn_table_column(tab, "eps_rank"), status = attn_table_column(tab, "status");
    cr_assert(spec >= 0 && err >= 0 && tv >= 0 && n >= 0 && rank >= 0 && status >= 0);
    for (size_t r = 0; r < tab->rows; r++) {
        cr_assert_eq(tab->num[status][r], 0.0);
        if (strcmp(tab->str[spec][r], "exact") == 0) {
            cr_assert_eq(tab->num[err][r], 0.0, "exact against itself");
            cr_assert(tab->num[tv][r] <= 1e-15);
        } else {
            cr_assert_str_eq(tab->str[spec][r], "band:w=3");
            cr_assert(tab->num[err][r] > 1e-6, "band w = 3 is not exact at n >= 24");
        }
        /* Ranks are computed for n <= rank_n_max only. */
        cr_assert_eq(isnan(tab->num[rank][r]), tab->num[n][r] > 24);
    }
    attn_table_destroy(tab);

    /* A different config refuses the file and leaves it as it was. */
    const char *set[] = { "band.w=5" };
    sweep_config *other = NULL;
    cr_assert_eq(sweep_config_load(&other, path, set, 1), ATTN_OK);
    cr_assert_eq(sweep_run(other, &opts, &sum), ATTN_ECONFIG);
    cr_assert(tu_error_has("different config"));
    cr_assert_eq(attn_table_read(&tab, out), ATTN_OK);
    cr_assert_eq(tab->rows, 16);
    attn_table_destroy(tab);
    sweep_config_free(other);
    sweep_config_free(cfg);
    free(out);
    free(path);
}

/* A point that fails (here the plan refuses summary > block at the small n, where the auto block
 * is 8) is recorded with its status and message, and the sweep goes on to the other points. */
Test(sweep, failed_points_are_recorded_and_the_sweep_goes_on)
{
    char *path = NULL, *out = NULL;
    sweep_config *cfg = fresh_sweep("failing", "[sweep]\n"
                                               "data = gauss:n=1024,d=4\n"
                                               "n = 64, 1024\n"
                                               "repeats = 1\n"
                                               "matrix_n_max = 0\n"
                                               "[method sparse_fixed]\n"
                                               "summary = 20\n", &path, &out);
    sweep_options opts = quiet_run(out);
    sweep_summary sum;
    cr_assert_eq(sweep_run(cfg, &opts, &sum), ATTN_OK, "%s", attn_last_error());
    cr_assert_eq(sum.done, 2);
    cr_assert_eq(sum.failed, 1);
    attn_table *tab = NULL;
    cr_assert_eq(attn_table_read(&tab, out), ATTN_OK, "%s", attn_last_error());
    cr_assert_eq(tab->rows, 2);
    long n = attn_table_column(tab, "n"), status = attn_table_column(tab, "status");
    long message = attn_table_column(tab, "message"), err = attn_table_column(tab, "err_out_rel_fro");
    for (size_t r = 0; r < tab->rows; r++) {
        if (tab->num[n][r] == 64) {
            cr_assert_eq(tab->num[status][r], (double) ATTN_EPARAM);
            cr_assert(strstr(tab->str[message][r], "summary = 20 exceeds block = 8") != NULL,
                      "message: %s", tab->str[message][r]);
            cr_assert(isnan(tab->num[err][r]));
        } else {
            cr_assert_eq(tab->num[status][r], 0.0);
            cr_assert_str_eq(tab->str[message][r], "");
            cr_assert(tab->num[err][r] > 0.0);
        }
    }
    attn_table_destroy(tab);
    sweep_config_free(cfg);
    free(out);
    free(path);
}

/* [blocks]: the structure tables of each input are written once (by its first point), hold the
 * values attn_offdiag_ranks / attn_farfield_rank_compute give on the exact matrix, and only for
 * n <= matrix_n_max. */
Test(sweep, blocks_section_writes_structure_tables)
{
    char *path = NULL, *out = NULL;
    sweep_config *cfg = fresh_sweep("blocks", "[sweep]\n"
                                              "data = local:n=48,d=6,heads=2\n"
                                              "heads = 1\n"
                                              "n = 24, 48\n"
                                              "causal = 0, 1\n"
                                              "repeats = 1\n"
                                              "matrix_n_max = 24\n"
                                              "[blocks]\n"
                                              "sizes = 4, 8\n"
                                              "bands = 0, 2\n"
                                              "tol = 1e-4\n"
                                              "[method band]\n"
                                              "w = 3\n"
                                              "[method exact]\n", &path, &out);
    cr_assert(cfg->blocks && cfg->nblock_sizes == 2 && cfg->nbands == 2 && cfg->block_tol == 1e-4);
    sweep_options opts = quiet_run(out);
    sweep_summary sum;
    cr_assert_eq(sweep_run(cfg, &opts, &sum), ATTN_OK, "%s", attn_last_error());
    cr_assert_eq(sum.failed, 0);
    /* Points: n 24 (causal 0: ids 0, 1; causal 1: 2, 3), n 48 (4..7).  Tables for ids 0 and 2. */
    double *x = NULL;
    char *names = NULL;
    size_t rows = 0, cols = 0;
    for (int causal = 0; causal <= 1; causal++) {
        char name[64];
        snprintf(name, sizeof name, "offdiag_%d", 2 * causal);
        cr_assert_eq(attn_results_read_table(out, name, &x, &rows, &cols, &names), ATTN_OK, "%s",
                     attn_last_error());
        cr_assert_str_eq(names, "point_id,layer,head,n,causal,seed,block,distance,count,"
                                "rank_rel_mean,rank_rel_max,rank_abs_mean,rank_abs_max,"
                                "norm_rel_mean,tol");
        /* Block 4: distances 1..5; block 8: 1..2. */
        cr_assert_eq(rows, 7u);
        cr_assert_eq(x[0], 2.0 * causal);
        cr_assert_eq(x[2], 1.0);
        cr_assert_eq(x[4], (double) causal);
        cr_assert_eq(x[6], 4.0);
        cr_assert_eq(x[8], (causal ? 1.0 : 2.0) * 5.0, "blocks at distance 1");
        cr_assert_eq(x[5 * cols + 6], 8.0);
        free(x);
        free(names);
        snprintf(name, sizeof name, "farfield_%d", 2 * causal);
        cr_assert_eq(attn_results_read_table(out, name, &x, &rows, &cols, &names), ATTN_OK, "%s",
                     attn_last_error());
        cr_assert_eq(rows, 3u);
        cr_assert_eq(x[6], -1.0);
        cr_assert_eq(x[cols + 6], 0.0);
        cr_assert_eq(x[2 * cols + 6], 2.0);
        /* Nothing removed: the mass is 1 (rows of A sum to one); more removed, less mass. */
        cr_assert(fabs(x[13] - 1.0) < 1e-12, "mass %.17g", x[13]);
        cr_assert(x[2 * cols + 13] < x[cols + 13] && x[cols + 13] < x[13]);
        free(x);
        free(names);
    }
    /* n = 48 > matrix_n_max: no table; the second point of an input writes none either. */
    cr_assert_eq(attn_results_read_table(out, "offdiag_4", &x, &rows, &cols, &names),
                 ATTN_EFORMAT);
    cr_assert(tu_error_has("is missing"));
    cr_assert_eq(attn_results_read_table(out, "offdiag_1", &x, &rows, &cols, &names),
                 ATTN_EFORMAT);
    sweep_config_free(cfg);
    free(out);
    free(path);

    expect_config_error("blockskey.ini", "[sweep]\ndata = gauss:n=8\nn = 8\n[blocks]\nsize = 4\n"
                        "[method exact]\n", "[blocks]: unknown key 'size'");
    expect_config_error("blockszero.ini", "[sweep]\ndata = gauss:n=8\nn = 8\n[blocks]\n"
                        "sizes = 0\n[method exact]\n", "[blocks] sizes: 0 is not a block size");
    expect_config_error("blockstol.ini", "[sweep]\ndata = gauss:n=8\nn = 8\n[blocks]\n"
                        "sizes = 2\ntol = 2\n[method exact]\n", "[blocks] tol: 2, expected");
}

/* A combination the method refuses by design is recorded with ATTN_EUNSUP and counted as not
 * applicable; a method that is its own attention function (fast) gets err_target_rel_fro, the
 * others NaN. */
Test(sweep, not_applicable_points_and_target_errors)
{
    char *path = NULL, *out = NULL;
    sweep_config *cfg = fresh_sweep("target", "[sweep]\n"
                                              "data = local:n=64,d=6,heads=1\n"
                                              "n = 64\n"
                                              "causal = 0, 1\n"
                                              "repeats = 1\n"
                                              "[method band]\n"
                                              "w = 3\n"
                                              "[method fast]\n"
                                              "[method fmm_multilevel]\n"
                                              "block = 8\n"
                                              "downsample_queries = 1\n", &path, &out);
    sweep_options opts = quiet_run(out);
    sweep_summary sum;
    cr_assert_eq(sweep_run(cfg, &opts, &sum), ATTN_OK, "%s", attn_last_error());
    cr_assert_eq(sum.done, 6u);
    cr_assert_eq(sum.failed, 1u, "only the causal point of the query-averaging variant fails");
    cr_assert_eq(sum.unsupported, 1u);
    attn_table *tab = NULL;
    cr_assert_eq(attn_table_read(&tab, out), ATTN_OK, "%s", attn_last_error());
    long method = attn_table_column(tab, "method"), status = attn_table_column(tab, "status");
    long target = attn_table_column(tab, "err_target_rel_fro");
    long err = attn_table_column(tab, "err_out_rel_fro"), causal = attn_table_column(tab, "causal");
    cr_assert(method >= 0 && status >= 0 && target >= 0 && err >= 0 && causal >= 0);
    for (size_t r = 0; r < tab->rows; r++) {
        const char *m = tab->str[method][r];
        if (strcmp(m, "fmm_multilevel") == 0 && tab->num[causal][r] == 1.0) {
            cr_assert_eq(tab->num[status][r], (double) ATTN_EUNSUP);
            continue;
        }
        cr_assert_eq(tab->num[status][r], 0.0, "%s", m);
        if (strcmp(m, "fast") == 0) {
            /* The Taylor truncation alone is far smaller than the change of attention function. */
            double t = tab->num[target][r];
            cr_assert(isfinite(t) && t > 0 && t < tab->num[err][r], "fast: target error %g, "
                      "error against softmax %g", t, tab->num[err][r]);
        } else {
            cr_assert(isnan(tab->num[target][r]), "%s has no target", m);
        }
    }
    attn_table_destroy(tab);
    sweep_config_free(cfg);
    free(out);
    free(path);
}

/* The word auto stands among the numbers of a parameter chosen from the problem; a parameter
 * without an automatic choice refuses it, naming the section. */
Test(sweep, auto_among_the_values)
{
    char *path = write_ini("auto.ini", "[sweep]\ndata = gauss:n=8\nn = 8\n"
                                       "[method fast]\ntemp = 8, auto\n");
    sweep_config *cfg = NULL;
    cr_assert_eq(sweep_config_load(&cfg, path, NULL, 0), ATTN_OK, "%s", attn_last_error());
    cr_assert_eq(cfg->nspecs, 2u);
    cr_assert_str_eq(cfg->labels[0], "fast:temp=auto");
    cr_assert_str_eq(cfg->labels[1], "fast:temp=8");
    cr_assert(strstr(cfg->specs[0], "temp=auto") != NULL, "%s", cfg->specs[0]);
    sweep_config_free(cfg);
    free(path);
    expect_config_error("autoband.ini", "[sweep]\ndata = gauss:n=8\nn = 8\n[method band]\n"
                        "w = auto\n", "[method band]");
}
