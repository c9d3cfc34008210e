/* test_fmm_multilevel.c — Fast Multipole Attention (fmm_multilevel).
 *
 * A hand-computed 8-token example (level tables written out by hand, weights in closed form); the
 * weights at many shapes against an independent construction from the definition (which level
 * brings key j to query i, the sub-block means, the softmax in long double), which also checks
 * that the levels tile the allowed keys; exactness with one level, with single-key tokens and,
 * for the monopole estimate, on keys and values constant on the sub-blocks; query downsampling
 * against fine queries; the error falling with the block; the resolved level count; the cost;
 * the bad-input messages.  Random and real data (the OCR model, bidirectional; the language
 * model, causal).
 */
#include "config.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "attn.h"
#include "attn_io.h"
#include "testutil.h"

#define OCR_FILE "data/ppocrv4-svtr-attn.h5"
#define LM_FILE "data/stories260k-attn.h5"

/* ---------------------------------------------------------------------------------------------
 * Hand-computed 8-token example.
 *
 * d = 1, scale 1, q_i = 0.5 + 0.25 i, k_j = ln w_j with w = the primes 2, 3, ..., 19, V the 8 x 8
 * identity (the output rows are the attention rows).  A fine key j has weight w_j^{q_i}; the
 * token of keys {a, b} has the mean key (ln w_a + ln w_b) / 2, so each of its keys gets
 * (w_a w_b)^{q_i / 2} (scale_attn = 1: the token's weight 2 (w_a w_b)^{q_i / 2} spread over its
 * two keys; scale_attn = 0: half of that).
 *
 * block = 1, p = 1, levels = 3: the near field is {i - 1, i, i + 1}; level 1 has cells of one
 * position (single-key tokens, exact weights), level 2 (the coarsest) cells of two, one token
 * each.  Tables, written by hand from the definition: 'x' a fine key or a single-key token,
 * 'a' and 'b' the keys of one two-key token, '.' no weight.
 *   Bidirectional, i = 0: near {0, 1}; level 1, P = 0: cells {-2..3} minus {-1, 0, 1} = {2, 3};
 *     level 2, c = 0: every cell outside {-1, 0, 1}: {2, 3} = keys {4, 5}, {6, 7}.
 *   i = 2: near {1, 2, 3}; level 1, P = 1: {0..5} minus {1, 2, 3} = {0, 4, 5}; level 2, c = 1:
 *     outside {0, 1, 2}: cell 3 = keys {6, 7}.  (And so on.)
 *   Causal, i = 4: near {3, 4}; level 1, P = 2: {2, 3} below c - 1 = 3: {2}; level 2, c = 2:
 *     cells below 1: cell 0 = keys {0, 1}.
 */
#define EX_N 8
static const double primes[EX_N] = { 2, 3, 5, 7, 11, 13, 17, 19 };

static const char *const ex_bidir[EX_N] = {
    "xxxxaabb", "xxxxaabb", "xxxxxxaa", "xxxxxxaa",
    "aaxxxxxx", "aaxxxxxx", "aabbxxxx", "aabbxxxx",
};
static const char *const ex_causal[EX_N] = {
    "x.......", "xx......", "xxx.....", "xxxx....",
    "aaxxx...", "aaxxxx..", "aabbxxx.", "aabbxxxx",
};

static void check_example(const char *spec, int causal, int scale_attn,
                          const char *const *table)
{
    attn_problem pb = { .n = EX_N, .m = EX_N, .d = 1, .dv = EX_N, .causal = causal, .scale = 1 };
    double Q[EX_N], K[EX_N], V[EX_N * EX_N] = { 0 };
    for (size_t i = 0; i < EX_N; i++) {
        Q[i] = 0.5 + 0.25 * (double) i;
        K[i] = log(primes[i]);
        V[i * EX_N + i] = 1.0;
    }
    double *O = tu_apply(spec, &pb, Q, K, V);
    for (size_t i = 0; i < EX_N; i++) {
        double want[EX_N], z = 0.0;
        for (size_t j = 0; j < EX_N; j++) {
            char c = table[i][j];
            want[j] = 0.0;
            if (c == 'x') {
                want[j] = pow(primes[j], Q[i]);
            } else if (c != '.') {
                /* The partner of j in its token: the other key with the same letter. */
                size_t other = j ^ 1;
                cr_assert_eq(table[i][other], c, "table row %zu: token %c is not a pair", i, c);
                want[j] = pow(primes[j] * primes[other], Q[i] / 2.0) / (scale_attn ? 1.0 : 2.0);
            }
            z += want[j];
        }
        for (size_t j = 0; j < EX_N; j++) {
            double got = O[i * EX_N + j];
            if (want[j] == 0.0) {
                cr_assert(got == 0.0, "%s causal = %d: A[%zu][%zu] = %g outside the support",
                          spec, causal, i, j, got);
                continue;
            }
            /* exp of a rounded logit (|l| < 7) against pow: a few ulps of 7, relative. */
            cr_assert(fabs(got - want[j] / z) <= 64.0 * DBL_EPSILON * want[j] / z,
                      "%s causal = %d: A[%zu][%zu] = %.17g, expected %.17g", spec, causal, i, j,
                      got, want[j] / z);
        }
    }
    free(O);
}

Test(fmm_multilevel, eight_tokens_by_hand)
{
    check_example("fmm_multilevel:block=1,p=1,levels=3", 0, 1, ex_bidir);
    check_example("fmm_multilevel:block=1,p=1,levels=3", 1, 1, ex_causal);
    check_example("fmm_multilevel:block=1,p=1,levels=3,scale_attn=0", 0, 0, ex_bidir);
    check_example("fmm_multilevel:block=1,p=1,levels=3,scale_attn=0", 1, 0, ex_causal);
}

/* p = 2 > block = 1: level-1 tokens hold one key each, and so do level 2's (two sub-blocks of a
 * two-wide cell), so every token is a single key and the plan is exact attention (the 8-token
 * tables with every letter an 'x', i.e. every allowed key). */
Test(fmm_multilevel, single_key_tokens_are_exact)
{
    static const char *const all_bidir[EX_N] = {
        "xxxxxxxx", "xxxxxxxx", "xxxxxxxx", "xxxxxxxx",
        "xxxxxxxx", "xxxxxxxx", "xxxxxxxx", "xxxxxxxx",
    };
    static const char *const all_causal[EX_N] = {
        "x.......", "xx......", "xxx.....", "xxxx....",
        "xxxxx...", "xxxxxx..", "xxxxxxx.", "xxxxxxxx",
    };
    check_example("fmm_multilevel:block=1,p=2,levels=3", 0, 1, all_bidir);
    check_example("fmm_multilevel:block=1,p=2,levels=3", 1, 1, all_causal);
    for (int causal = 0; causal <= 1; causal++) {
        attn_problem pb = { .n = 37, .m = 37, .d = 6, .dv = 5, .causal = causal };
        double *Q, *K, *V;
        tu_random_qkv(37, 37, 6, 5, 71, &Q, &K, &V);
        /* block = 2, p = 4: the level-1 (2 wide) and level-2 (4 wide) tokens are single keys. */
        tu_expect_exact("fmm_multilevel:block=2,p=4,levels=3", &pb, Q, K, V, 1e-12, NULL);
        tu_expect_exact("fmm_multilevel:block=1,p=9,levels=4", &pb, Q, K, V, 1e-12, NULL);
        free(Q);
        free(K);
        free(V);
    }
}

/* ---------------------------------------------------------------------------------------------
 * The independent construction.  Everything below restates the definition from positions alone,
 * without the library's token indices or runs.
 */
typedef struct fml_cfg {
    size_t block, p, levels; /* levels 0: auto */
    int scale_attn, downsample;
} fml_cfg;

/* The level count auto resolves to, counted differently from the library: one plus the number
 * of L >= 0 with m 2^(L+1) < n, so that the top cells m 2^(L-1) are in [n / 4, n / 2). */
static size_t auto_levels(size_t n, size_t m)
{
    size_t L = 0;
    while ((m << (L + 1)) < n)
        L++;
    return L + 1;
}

/* Positions [*lo, *hi) of the sub-block that holds position j at a level of cell width w with p
 * sub-blocks per cell (at most w of them), found by trying each. */
static void sub_block_of(size_t j, size_t n, size_t w, size_t p, size_t *lo, size_t *hi)
{
    size_t pl = p < w ? p : w, C = j / w;
    for (size_t t = 0; t < pl; t++) {
        size_t a = C * w + t * w / pl, e = C * w + (t + 1) * w / pl;
        a = a < n ? a : n;
        e = e < n ? e : n;
        if (a <= j && j < e) {
            *lo = a;
            *hi = e;
            return;
        }
    }
    cr_assert_fail("position %zu is in no sub-block (n = %zu, w = %zu, p = %zu)", j, n, w, p);
}

/* The level (0: near field, l >= 1: coarse) whose list brings key j to query i, or -1; *hits
 * gets how many levels claim it, which must be at most one. */
static int covering_level(size_t i, size_t j, size_t m, size_t L, int causal, int *hits)
{
    int level = -1;
    *hits = 0;
    if (causal && j > i)
        return -1;
    size_t bi = i / m, bj = j / m;
    if (bj + 1 >= bi && bj <= bi + 1) {
        level = 0;
        (*hits)++;
    }
    for (size_t l = 1; l <= L; l++) {
        size_t w = m << (l - 1), c = i / w, cj = j / w, P = c / 2;
        int neighbour = cj + 1 >= c && cj <= c + 1;
        int in = !neighbour && (l == L || (cj + 2 >= 2 * P && cj <= 2 * P + 3));
        if (causal)
            in = in && cj + 1 < c;
        if (in) {
            level = (int) l;
            (*hits)++;
        }
    }
    return level;
}

/* Rows [lo, hi) of X (cols columns), averaged in long double. */
static void mean_rows(const double *X, size_t cols, size_t lo, size_t hi, long double *out)
{
    for (size_t c = 0; c < cols; c++) {
        long double s = 0.0L;
        for (size_t j = lo; j < hi; j++)
            s += (long double) X[j * cols + c];
        out[c] = s / (long double) (hi - lo);
    }
}

/* The expected matrix (n x n, long double) of cfg on (Q, K) by the definition.  Also checks the
 * tiling: no key claimed twice; with levels >= 2 every allowed key claimed once; with one level
 * exactly the near field. */
static long double *expected_matrix(const attn_problem *pb, const double *Q, const double *K,
                                    const fml_cfg *cfg, const char *spec)
{
    size_t n = pb->n, d = pb->d;
    size_t m = cfg->block < n ? cfg->block : n;
    size_t levels = cfg->levels ? cfg->levels : auto_levels(n, m), L = levels - 1;
    long double s = pb->scale > 0 ? (long double) pb->scale : 1.0L / sqrtl((long double) d);
    /* km[l][j]: mean key of j's sub-block at level l; qm likewise (l = 0 unused). */
    long double *km = calloc((L + 1) * n * d, sizeof *km);
    long double *qm = calloc((L + 1) * n * d, sizeof *qm);
    long double *A = calloc(n * n, sizeof *A);
    size_t *cnt = calloc((L + 1) * n, sizeof *cnt);
    cr_assert(km != NULL && qm != NULL && A != NULL && cnt != NULL);
    for (size_t l = 1; l <= L; l++)
        for (size_t j = 0; j < n; j++) {
            size_t lo, hi;
            sub_block_of(j, n, m << (l - 1), cfg->p, &lo, &hi);
            mean_rows(K, d, lo, hi, km + (l * n + j) * d);
            mean_rows(Q, d, lo, hi, qm + (l * n + j) * d);
            cnt[l * n + j] = hi - lo;
        }
    for (size_t i = 0; i < n; i++) {
        long double *row = A + i * n, mx = -INFINITY;
        for (size_t j = 0; j < n; j++) {
            int hits;
            int level = covering_level(i, j, m, L, pb->causal, &hits);
            int allowed = !pb->causal || j <= i;
            cr_assert(hits <= 1, "%s, n = %zu: key %zu reaches query %zu at %d levels", spec, n,
                      j, i, hits);
            if (L >= 1)
                cr_assert(hits == allowed, "%s, n = %zu, causal = %d: key %zu reaches query %zu "
                          "at %d levels (allowed: %d)", spec, n, pb->causal, j, i, hits, allowed);
            row[j] = -INFINITY;
            if (level < 0)
                continue;
            long double l = 0.0L;
            if (level == 0) {
                for (size_t c = 0; c < d; c++)
                    l += (long double) Q[i * d + c] * (long double) K[j * d + c];
                l *= s;
            } else {
                const long double *kb = km + ((size_t) level * n + j) * d;
                const long double *qb = qm + ((size_t) level * n + i) * d;
                for (size_t c = 0; c < d; c++)
                    l += (cfg->downsample ? qb[c] : (long double) Q[i * d + c]) * kb[c];
                l *= s;
                /* Each key of a token gets exp(logit) (scale_attn: the token's c exp(logit)
                 * spread over c keys), else exp(logit) / c. */
                if (!cfg->scale_attn)
                    l -= logl((long double) cnt[(size_t) level * n + j]);
            }
            row[j] = l;
            mx = l > mx ? l : mx;
        }
        long double z = 0.0L;
        for (size_t j = 0; j < n; j++) {
            row[j] = row[j] == -INFINITY ? 0.0L : expl(row[j] - mx);
            z += row[j];
        }
        for (size_t j = 0; j < n; j++)
            row[j] /= z;
    }
    free(km);
    free(qm);
    free(cnt);
    return A;
}

static void format_spec(char *spec, size_t len, const fml_cfg *cfg)
{
    char levels[32] = "auto";
    if (cfg->levels)
        snprintf(levels, sizeof levels, "%zu", cfg->levels);
    snprintf(spec, len, "fmm_multilevel:block=%zu,p=%zu,levels=%s,downsample_queries=%d,"
             "scale_attn=%d", cfg->block, cfg->p, levels, cfg->downsample, cfg->scale_attn);
}

/* Materialize cfg and apply it, and compare with the independent construction: zero exactly
 * off the support, the expected weight on it, a positive weight wherever one is expected, and
 * the output against the expected A V. */
static void check_weights(const attn_problem *pb, const double *Q, const double *K,
                          const double *V, const fml_cfg *cfg, const char *what)
{
    size_t n = pb->n, dv = pb->dv;
    char spec[160];
    format_spec(spec, sizeof spec, cfg);
    long double *E = expected_matrix(pb, Q, K, cfg, spec);
    attn_plan *plan = tu_plan(spec, pb);
    double *A = tu_alloc(n * n), *O = tu_alloc(n * dv), *R = tu_alloc(n * dv);
    cr_assert_eq(attn_plan_materialize(plan, Q, K, V, A), ATTN_OK, "%s", attn_last_error());
    cr_assert_eq(attn_plan_apply(plan, Q, K, V, O), ATTN_OK, "%s", attn_last_error());
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            double got = A[i * n + j];
            long double want = E[i * n + j];
            if (want == 0.0L) {
                cr_assert(got == 0.0, "%s on %s, n = %zu, causal = %d: A[%zu][%zu] = %g outside "
                          "the support", spec, what, n, pb->causal, i, j, got);
                continue;
            }
            /* Weights in [0, 1] from logits and means rounded in double: the means of up to n
             * keys and the softmax of up to n terms each cost a few n eps. */
            cr_assert(fabsl((long double) got - want) <= 32.0L * n * DBL_EPSILON,
                      "%s on %s, n = %zu, causal = %d: A[%zu][%zu] = %.17g, expected %.17Lg",
                      spec, what, n, pb->causal, i, j, got, want);
            cr_assert(got > 0.0 || want < 1e-300L, "%s on %s: A[%zu][%zu] = 0 inside the "
                      "support", spec, what, i, j);
        }
    for (size_t i = 0; i < n; i++)
        for (size_t c = 0; c < dv; c++) {
            long double acc = 0.0L;
            for (size_t j = 0; j < n; j++)
                acc += E[i * n + j] * (long double) V[j * dv + c];
            R[i * dv + c] = (double) acc;
        }
    double err = tu_rel_fro(O, R, n * dv);
    cr_assert(err <= 64.0 * (double) n * DBL_EPSILON, "%s on %s, n = %zu, causal = %d: output "
              "error %.3g against the construction", spec, what, n, pb->causal, err);
    attn_plan_destroy(plan);
    free(E);
    free(A);
    free(O);
    free(R);
}

/* The deepest levels allowed: block 2^(levels - 2) <= n. */
static size_t max_levels(size_t n, size_t block)
{
    if (block > n)
        return 1;
    size_t levels = 2;
    while ((block << (levels - 1)) <= n)
        levels++;
    return levels;
}

Test(fmm_multilevel, weights_match_the_definition)
{
    /* n = 1, tiny, ragged for every block, odd, a power of two, and past one key tile. */
    const size_t ns[] = { 1, 2, 5, 37, 64, 100, 300 };
    const size_t blocks[] = { 1, 2, 3, 5, 8, 16 };
    const size_t ps[] = { 1, 2, 3, 7 };
    size_t checked = 0;
    for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++) {
        size_t n = ns[a];
        double *Q, *K, *V;
        tu_random_qkv(n, n, 5, 3, 300 + n, &Q, &K, &V);
        for (size_t b = 0; b < sizeof blocks / sizeof blocks[0]; b++)
            for (size_t c = 0; c < sizeof ps / sizeof ps[0]; c++) {
                /* The large n only at a few settings: the construction is O(n^2 d L). */
                if (n >= 300 && (blocks[b] % 4 == 0 || ps[c] == 7))
                    continue;
                size_t deepest = max_levels(n, blocks[b]);
                size_t levels[] = { 0, 1, 2, 3, deepest };
                for (size_t e = 0; e < 5; e++) {
                    if (levels[e] > deepest)
                        continue;
                    for (int causal = 0; causal <= 1; causal++)
                        for (int sa = 0; sa <= 1; sa++)
                            for (int ds = 0; ds <= !causal; ds++) {
                                if (n >= 300 && (sa == 0 || e == 2))
                                    continue;
                                attn_problem pb = { .n = n, .m = n, .d = 5, .dv = 3,
                                                    .causal = causal };
                                fml_cfg cfg = { .block = blocks[b], .p = ps[c],
                                                .levels = levels[e], .scale_attn = sa,
                                                .downsample = ds };
                                check_weights(&pb, Q, K, V, &cfg, "random data");
                                checked++;
                            }
                }
            }
        free(Q);
        free(K);
        free(V);
    }
    cr_assert(checked > 1000, "only %zu settings checked", checked);
}

/* Real data, including blocks past one query tile (64) and one key tile (3 m > 256), and
 * coarse query rows past one tile (p_2 = 70). */
Test(fmm_multilevel, weights_match_the_definition_on_real_data)
{
    const fml_cfg ocr_cfgs[] = {
        { .block = 32, .p = 2, .levels = 0, .scale_attn = 1 },
        { .block = 16, .p = 3, .levels = 0, .scale_attn = 1 },
        { .block = 8, .p = 2, .levels = 3, .scale_attn = 0 },
        { .block = 90, .p = 2, .levels = 2, .scale_attn = 1 },
        { .block = 5, .p = 4, .levels = 0, .scale_attn = 1, .downsample = 1 },
        { .block = 12, .p = 2, .levels = 2, .scale_attn = 1, .downsample = 1 },
        { .block = 40, .p = 70, .levels = 3, .scale_attn = 1, .downsample = 1 },
    };
    const fml_cfg lm_cfgs[] = {
        { .block = 32, .p = 2, .levels = 0, .scale_attn = 1 },
        { .block = 16, .p = 3, .levels = 0, .scale_attn = 1 },
        { .block = 8, .p = 2, .levels = 3, .scale_attn = 0 },
        { .block = 100, .p = 3, .levels = 3, .scale_attn = 1 },
    };
    const double *q, *k, *v;
    attn_inputs *ocr = tu_load_head(OCR_FILE, 1, 3, &q, &k, &v);
    attn_problem pb = tu_inputs_problem(ocr, 0);
    for (size_t t = 0; t < sizeof ocr_cfgs / sizeof ocr_cfgs[0]; t++)
        check_weights(&pb, q, k, v, &ocr_cfgs[t], "OCR layer 1 head 3");
    attn_inputs_destroy(ocr);
    attn_inputs *lm = tu_load_head(LM_FILE, 0, 1, &q, &k, &v);
    pb = tu_inputs_problem(lm, 1);
    for (size_t t = 0; t < sizeof lm_cfgs / sizeof lm_cfgs[0]; t++)
        check_weights(&pb, q, k, v, &lm_cfgs[t], "LM layer 0 head 1");
    attn_inputs_destroy(lm);
}

/* ---------------------------------------------------------------------------------------------
 * Exactness.
 */
Test(fmm_multilevel, one_level_covering_everything_is_exact)
{
    const size_t ns[] = { 1, 2, 5, 37, 300 };
    for (size_t s = 0; s < sizeof ns / sizeof ns[0]; s++)
        for (int causal = 0; causal <= 1; causal++) {
            size_t n = ns[s];
            attn_problem pb = { .n = n, .m = n, .d = 6, .dv = 5, .causal = causal };
            double *Q, *K, *V;
            tu_random_qkv(n, n, 6, 5, 41 + n, &Q, &K, &V);
            char spec[128];
            cr_assert_eq(attn_method_exact_spec(attn_method_find("fmm_multilevel"), &pb, spec,
                                                sizeof spec),
                         ATTN_OK, "%s", attn_last_error());
            tu_expect_exact(spec, &pb, Q, K, V, 1e-12, "random data");
            snprintf(spec, sizeof spec, "fmm_multilevel:block=%zu,levels=1", 2 * n + 3);
            tu_expect_exact(spec, &pb, Q, K, V, 1e-12, "random data");
            /* block >= n resolves levels = auto to 1. */
            snprintf(spec, sizeof spec, "fmm_multilevel:block=%zu", n);
            tu_expect_exact(spec, &pb, Q, K, V, 1e-12, "random data");
            free(Q);
            free(K);
            free(V);
        }
    const double *q, *k, *v;
    attn_inputs *ocr = tu_load_head(OCR_FILE, 1, 3, &q, &k, &v);
    attn_problem pb = tu_inputs_problem(ocr, 0);
    tu_expect_exact("fmm_multilevel:block=192,levels=1", &pb, q, k, v, 1e-12, OCR_FILE);
    /* Two blocks of 96: each sees the other, the whole sequence. */
    tu_expect_exact("fmm_multilevel:block=96", &pb, q, k, v, 1e-12, OCR_FILE);
    attn_inputs_destroy(ocr);
    attn_inputs *lm = tu_load_head(LM_FILE, 2, 0, &q, &k, &v);
    pb = tu_inputs_problem(lm, 1);
    tu_expect_exact("fmm_multilevel:block=512,levels=1", &pb, q, k, v, 1e-12, LM_FILE);
    tu_expect_exact("fmm_multilevel:block=256", &pb, q, k, v, 1e-12, LM_FILE);
    attn_inputs_destroy(lm);
}

/* Overwrite the rows of X (n x cols) so that they are constant on every sub-block of the
 * coarsest level (hence, the sub-blocks nesting, on every level's), each a copy of the block's
 * first row rounded to a multiple of 2^-10: dyadic entries of a few units, so that the sums of up
 * to 2^40 of them, and hence the means, are exact. */
static void make_constant_on_sub_blocks(double *X, size_t n, size_t cols, size_t w, size_t p)
{
    for (size_t j = 0; j < n;) {
        size_t lo, hi;
        sub_block_of(j, n, w, p, &lo, &hi);
        for (size_t c = 0; c < cols; c++)
            X[lo * cols + c] = ldexp(round(ldexp(X[lo * cols + c], 10)), -10);
        for (size_t r = lo + 1; r < hi; r++)
            memcpy(X + r * cols, X + lo * cols, cols * sizeof *X);
        j = hi;
    }
}

/* With keys and values constant on every sub-block, a token's c exp(s q . k~) v~ is the exact
 * sum over its keys (scale_attn = 1: the monopole estimate is exact), so the whole plan is exact
 * attention; with queries constant too, downsampled queries are the queries themselves. */
Test(fmm_multilevel, monopole_exact_on_constant_sub_blocks)
{
    const struct {
        size_t n, block, p, levels;
    } cases[] = {
        { 64, 4, 2, 3 }, { 64, 4, 2, 5 }, { 300, 8, 2, 0 }, { 300, 5, 3, 4 },
        { 257, 16, 3, 0 }, { 100, 3, 2, 6 }, { 129, 4, 3, 2 }, { 1000, 32, 2, 0 },
    };
    char spec[160];
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        size_t n = cases[t].n, d = 7, dv = 4;
        size_t levels = cases[t].levels ? cases[t].levels : auto_levels(n, cases[t].block);
        size_t wtop = cases[t].block << (levels >= 2 ? levels - 2 : 0);
        double *Q, *K, *V;
        tu_random_qkv(n, n, d, dv, 500 + t, &Q, &K, &V);
        make_constant_on_sub_blocks(K, n, d, wtop, cases[t].p);
        make_constant_on_sub_blocks(V, n, dv, wtop, cases[t].p);
        for (int causal = 0; causal <= 1; causal++) {
            attn_problem pb = { .n = n, .m = n, .d = d, .dv = dv, .causal = causal };
            snprintf(spec, sizeof spec, "fmm_multilevel:block=%zu,p=%zu,levels=%zu",
                     cases[t].block, cases[t].p, levels);
            tu_expect_exact(spec, &pb, Q, K, V, 1e-12, "keys and values constant on sub-blocks");
            /* scale_attn = 0 undercounts the tokens: not exact (the check can fail). */
            snprintf(spec, sizeof spec, "fmm_multilevel:block=%zu,p=%zu,levels=%zu,scale_attn=0",
                     cases[t].block, cases[t].p, levels);
            cr_assert(tu_error_vs_reference(spec, &pb, Q, K, V) > 1e-6,
                      "%s, n = %zu: exact without the count weights?", spec, n);
        }
        make_constant_on_sub_blocks(Q, n, d, wtop, cases[t].p);
        attn_problem pb = { .n = n, .m = n, .d = d, .dv = dv, .causal = 0 };
        snprintf(spec, sizeof spec, "fmm_multilevel:block=%zu,p=%zu,levels=%zu,"
                 "downsample_queries=1", cases[t].block, cases[t].p, levels);
        tu_expect_exact(spec, &pb, Q, K, V, 1e-12, "queries, keys and values constant");
        free(Q);
        free(K);
        free(V);
    }
}

/* Queries constant on the sub-blocks: their means are themselves, so downsampling changes
 * nothing (keys and values arbitrary, the result not exact attention). */
Test(fmm_multilevel, downsampled_queries_equal_fine_queries_when_constant)
{
    const struct {
        size_t n, block, p, levels;
    } cases[] = {
        { 64, 4, 2, 0 }, { 300, 8, 2, 0 }, { 300, 5, 3, 4 }, { 131, 3, 2, 2 }, { 1000, 32, 2, 0 },
        { 1000, 16, 4, 5 },
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        size_t n = cases[t].n, d = 6, dv = 5;
        size_t levels = cases[t].levels ? cases[t].levels : auto_levels(n, cases[t].block);
        double *Q, *K, *V;
        tu_random_qkv(n, n, d, dv, 900 + t, &Q, &K, &V);
        make_constant_on_sub_blocks(Q, n, d, cases[t].block << (levels - 2), cases[t].p);
        attn_problem pb = { .n = n, .m = n, .d = d, .dv = dv, .causal = 0 };
        char fine[160], coarse[160];
        snprintf(fine, sizeof fine, "fmm_multilevel:block=%zu,p=%zu,levels=%zu", cases[t].block,
                 cases[t].p, levels);
        snprintf(coarse, sizeof coarse, "%.120s,downsample_queries=1", fine);
        double *O0 = tu_apply(fine, &pb, Q, K, V), *O1 = tu_apply(coarse, &pb, Q, K, V);
        double err = tu_rel_fro(O1, O0, n * dv);
        cr_assert(err <= 1e-12, "%s against %s, n = %zu: relative difference %.3g", coarse,
                  fine, n, err);
        /* The approximation is really one: far from exact on these keys. */
        cr_assert(tu_error_vs_reference(fine, &pb, Q, K, V) > 1e-4, "%s exact?", fine);
        /* With arbitrary queries the two differ. */
        double *Q2 = tu_alloc(n * d);
        tu_fill_gauss(Q2, n * d, 77 + t, 2.385);
        double *P0 = tu_apply(fine, &pb, Q2, K, V), *P1 = tu_apply(coarse, &pb, Q2, K, V);
        cr_assert(tu_rel_fro(P1, P0, n * dv) > 1e-6, "%s equals %s on arbitrary queries", coarse,
                  fine);
        free(Q);
        free(K);
        free(V);
        free(Q2);
        free(O0);
        free(O1);
        free(P0);
        free(P1);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Error against exact as the block grows, on random and real data.
 */
/* A block m <= p gives the same weights as 2 m (its level-1 tokens are single keys), so the
 * blocks compared start at 2 p = 4. */
static void check_error_falls(const attn_problem *pb, const double *Q, const double *K,
                              const double *V, const char *what)
{
    size_t n = pb->n;
    const size_t blocks[] = { 4, 16, 64, 100000 };
    double err[4];
    for (size_t b = 0; b < 4; b++) {
        char spec[64];
        snprintf(spec, sizeof spec, "fmm_multilevel:block=%zu", blocks[b] < n ? blocks[b] : n);
        err[b] = tu_error_vs_reference(spec, pb, Q, K, V);
        if (b > 0)
            cr_assert(err[b] < err[b - 1], "%s, causal = %d: error %.4g at block %zu, %.4g at "
                      "block %zu", what, pb->causal, err[b], blocks[b], err[b - 1],
                      blocks[b - 1]);
    }
    cr_assert(err[0] > 1e-3, "%s: error %.3g at block 4: no approximation?", what, err[0]);
    cr_assert(err[3] <= 1e-12, "%s: error %.3g at block >= n", what, err[3]);
}

/* Random queries scaled to logits of about half a unit: smooth rows, where averaging far keys is
 * a fair approximation (at the usual 2.385 the rows are sharp and far from local, and no
 * block short of n does much). */
static void smooth_random_qkv(size_t n, size_t d, size_t dv, unsigned long seed, double **Q,
                              double **K, double **V)
{
    tu_random_qkv(n, n, d, dv, seed, Q, K, V);
    for (size_t t = 0; t < n * d; t++)
        (*Q)[t] *= 0.2;
}

Test(fmm_multilevel, error_falls_as_block_grows)
{
    for (int causal = 0; causal <= 1; causal++) {
        size_t n = 1000, d = 16, dv = 8;
        attn_problem pb = { .n = n, .m = n, .d = d, .dv = dv, .causal = causal };
        double *Q, *K, *V;
        smooth_random_qkv(n, d, dv, 1234, &Q, &K, &V);
        check_error_falls(&pb, Q, K, V, "random data, n = 1000");
        free(Q);
        free(K);
        free(V);
    }
    const double *q, *k, *v;
    attn_inputs *ocr = tu_load_head(OCR_FILE, 0, 3, &q, &k, &v);
    attn_problem pb = tu_inputs_problem(ocr, 0);
    check_error_falls(&pb, q, k, v, "OCR layer 0 head 3");
    attn_inputs_destroy(ocr);
    attn_inputs *lm = tu_load_head(LM_FILE, 4, 0, &q, &k, &v);
    pb = tu_inputs_problem(lm, 1);
    check_error_falls(&pb, q, k, v, "LM layer 4 head 0");
    attn_inputs_destroy(lm);
}

/* ---------------------------------------------------------------------------------------------
 * Shapes, the resolved level count, the cost.
 */
Test(fmm_multilevel, auto_levels_in_canonical_spec)
{
    const struct {
        size_t n;
        const char *spec, *canonical;
    } cases[] = {
        { 1, "fmm_multilevel", "fmm_multilevel:block=32,p=2,levels=1,downsample_queries=0,"
                               "scale_attn=1" },
        /* Two blocks: the near field covers every key. */
        { 64, "fmm_multilevel", "fmm_multilevel:block=32,p=2,levels=1,downsample_queries=0,"
                                "scale_attn=1" },
        { 65, "fmm_multilevel", "fmm_multilevel:block=32,p=2,levels=2,downsample_queries=0,"
                                "scale_attn=1" },
        /* 32 blocks: 4 coarse levels, top cells 256 wide. */
        { 1000, "fmm_multilevel", "fmm_multilevel:block=32,p=2,levels=5,downsample_queries=0,"
                                  "scale_attn=1" },
        /* The paper's L = log2(n / m) - 1 = 8, top cells n / 4 = 4096 wide. */
        { 16384, "fmm_multilevel:p=3", "fmm_multilevel:block=32,p=3,levels=9,"
                                       "downsample_queries=0,scale_attn=1" },
        { 37, "fmm_multilevel:block=4,levels=auto", "fmm_multilevel:block=4,p=2,levels=4,"
                                                    "downsample_queries=0,scale_attn=1" },
        { 300, "fmm_multilevel:block=1000", "fmm_multilevel:block=1000,p=2,levels=1,"
                                            "downsample_queries=0,scale_attn=1" },
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        attn_problem pb = { .n = cases[t].n, .m = cases[t].n, .d = 4, .dv = 4, .causal = 1 };
        attn_plan *plan = tu_plan(cases[t].spec, &pb);
        cr_assert_str_eq(attn_plan_spec(plan), cases[t].canonical, "n = %zu", cases[t].n);
        attn_plan_destroy(plan);
    }
    for (size_t n = 1; n <= 600; n += 7)
        for (size_t block = 1; block <= 40; block += 3) {
            attn_problem pb = { .n = n, .m = n, .d = 2, .dv = 2, .causal = 0 };
            char spec[64];
            snprintf(spec, sizeof spec, "fmm_multilevel:block=%zu", block);
            attn_plan *plan = tu_plan(spec, &pb);
            size_t m = block < n ? block : n;
            cr_assert_eq((size_t) attn_plan_param(plan, "levels"), auto_levels(n, m),
                         "n = %zu, block = %zu", n, block);
            attn_plan_destroy(plan);
        }
}

/* n = 1, 37, 300, 1000 at the default spec and both forms: finite and row-stochastic; on smooth
 * rows (queries scaled to logits of about half a unit) the far field really helps. */
Test(fmm_multilevel, sizes_work)
{
    const size_t ns[] = { 1, 37, 300, 1000 };
    for (size_t s = 0; s < sizeof ns / sizeof ns[0]; s++)
        for (int causal = 0; causal <= 1; causal++)
            for (int ds = 0; ds <= !causal; ds++) {
                size_t n = ns[s], d = 8, dv = 6;
                attn_problem pb = { .n = n, .m = n, .d = d, .dv = dv, .causal = causal };
                double *Q, *K, *V;
                tu_random_qkv(n, n, d, dv, 60 + n, &Q, &K, &V);
                const char *spec = ds ? "fmm_multilevel:downsample_queries=1" : "fmm_multilevel";
                double *A = tu_materialize(spec, &pb, Q, K, V);
                for (size_t i = 0; i < n; i++) {
                    double sum = 0.0;
                    for (size_t j = 0; j < n; j++) {
                        cr_assert(A[i * n + j] >= 0.0 && isfinite(A[i * n + j]));
                        sum += A[i * n + j];
                    }
                    /* n terms rounded in double. */
                    cr_assert(fabs(sum - 1.0) <= 4.0 * (double) n * DBL_EPSILON,
                              "%s, n = %zu: row %zu sums to %.17g", spec, n, i, sum);
                }
                /* The coarse levels help: closer to exact than the near field alone. */
                if (n >= 300) {
                    double *Qs = tu_alloc(n * d);
                    for (size_t t = 0; t < n * d; t++)
                        Qs[t] = 0.2 * Q[t];
                    double err = tu_error_vs_reference(spec, &pb, Qs, K, V);
                    double near = tu_error_vs_reference("fmm_multilevel:levels=1", &pb, Qs, K, V);
                    cr_assert(err < 0.5 * near, "%s, n = %zu, causal = %d: error %.3g, near field "
                              "alone %.3g", spec, n, causal, err, near);
                    free(Qs);
                }
                free(A);
                free(Q);
                free(K);
                free(V);
            }
}

/* n = 1: the one key has weight 1, so O is V. */
Test(fmm_multilevel, one_token_returns_v)
{
    double Q[3] = { 0.3, -1.2, 2.385 }, K[3] = { -0.7, 0.4, 1.1 }, V[2] = { 1.25, -3.5 };
    const char *specs[] = { "fmm_multilevel", "fmm_multilevel:block=1,levels=2",
                            "fmm_multilevel:block=1,p=4,levels=2,scale_attn=0" };
    for (int causal = 0; causal <= 1; causal++)
        for (size_t t = 0; t < 3; t++) {
            attn_problem pb = { .n = 1, .m = 1, .d = 3, .dv = 2, .causal = causal };
            double *O = tu_apply(specs[t], &pb, Q, K, V);
            cr_assert(O[0] == V[0] && O[1] == V[1], "%s: O = (%g, %g)", specs[t], O[0], O[1]);
            free(O);
        }
    attn_problem pb = { .n = 1, .m = 1, .d = 3, .dv = 2, .causal = 0 };
    double *O = tu_apply("fmm_multilevel:block=1,levels=2,downsample_queries=1", &pb, Q, K, V);
    cr_assert(O[0] == V[0] && O[1] == V[1]);
    free(O);
}

/* The cost counts the logits apply forms: per query its near-field keys (causal: the previous
 * block and its whole own block, masked entries included) and the tokens of its lists, counted
 * here from the definition (cells of the list times p; no empty tokens: p divides the block and
 * the block divides n). */
Test(fmm_multilevel, cost_counts_the_pairs)
{
    const struct {
        size_t n, block, p, levels;
    } cases[] = { { 256, 8, 2, 0 }, { 512, 16, 4, 4 }, { 96, 4, 1, 2 }, { 1024, 32, 2, 0 } };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++)
        for (int causal = 0; causal <= 1; causal++) {
            size_t n = cases[t].n, m = cases[t].block, p = cases[t].p;
            size_t levels = cases[t].levels ? cases[t].levels : auto_levels(n, m), L = levels - 1;
            double pairs = 0.0;
            for (size_t i = 0; i < n; i++) {
                size_t b = i / m;
                pairs += (double) ((b >= 1 ? m : 0) + m + (!causal && (b + 1) * m < n ? m : 0));
                for (size_t l = 1; l <= L; l++) {
                    size_t w = m << (l - 1);
                    for (size_t cj = 0; cj < n / w; cj++) {
                        int hits;
                        /* The level of the cell's first key tells whether the cell is listed. */
                        if (covering_level(i, cj * w, m, L, causal, &hits) == (int) l)
                            pairs += (double) p;
                    }
                }
            }
            attn_problem pb = { .n = n, .m = n, .d = 6, .dv = 5, .causal = causal };
            char spec[96];
            snprintf(spec, sizeof spec, "fmm_multilevel:block=%zu,p=%zu,levels=%zu", m, p,
                     levels);
            attn_plan *plan = tu_plan(spec, &pb);
            attn_cost cost;
            attn_plan_cost(plan, &cost);
            cr_assert(cost.exps == pairs, "%s, causal = %d: %g exps, expected %g", spec, causal,
                      cost.exps, pairs);
            cr_assert(cost.flops >= 2.0 * pairs * 11.0 && cost.flops <= 2.2 * pairs * 11.0,
                      "%s: %g flops for %g pairs", spec, cost.flops, pairs);
            cr_assert(cost.bytes > 0.0);
            attn_plan_destroy(plan);
        }
}

/* At the default block the flops grow like n log n; with downsampled queries like n. */
Test(fmm_multilevel, cost_is_near_linear)
{
    const char *specs[] = { "fmm_multilevel", "fmm_multilevel:downsample_queries=1" };
    const double slope_max[] = { 1.15, 1.02 };
    for (size_t t = 0; t < 2; t++) {
        double flops[2];
        const size_t ns[2] = { 1024, 16384 };
        for (size_t s = 0; s < 2; s++) {
            attn_problem pb = { .n = ns[s], .m = ns[s], .d = 64, .dv = 64, .causal = 0 };
            attn_plan *plan = tu_plan(specs[t], &pb);
            attn_cost cost;
            attn_plan_cost(plan, &cost);
            flops[s] = cost.flops;
            attn_plan_destroy(plan);
        }
        double slope = log(flops[1] / flops[0]) / log(16.0);
        cr_assert(slope <= slope_max[t] && slope >= 0.99, "%s: flops slope %.3f over "
                  "n = 1024..16384", specs[t], slope);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Bad input.
 */
static void check_refused(const char *spec, size_t n, int causal, int status, const char *needle)
{
    attn_problem pb = { .n = n, .m = n, .d = 4, .dv = 4, .causal = causal };
    tu_expect_refused(spec, &pb, status, needle);
}

Test(fmm_multilevel, bad_input_is_named)
{
    check_refused("fmm_multilevel:block=0", 100, 0, ATTN_EPARAM,
                  "fmm_multilevel: parameter block = 0 is out of range [1, inf]");
    check_refused("fmm_multilevel:p=0", 100, 0, ATTN_EPARAM,
                  "fmm_multilevel: parameter p = 0 is out of range [1, inf]");
    check_refused("fmm_multilevel:levels=0", 100, 1, ATTN_EPARAM,
                  "fmm_multilevel: parameter levels = 0 is out of range [1, inf]");
    check_refused("fmm_multilevel:block=2.5", 100, 0, ATTN_EPARAM,
                  "block = 2.5 must be an integer");
    check_refused("fmm_multilevel:scale_attn=2", 100, 0, ATTN_EPARAM, "scale_attn = 2");
    check_refused("fmm_multilevel:levels=9", 1000, 0, ATTN_EPARAM,
                  "fmm_multilevel: levels = 9: the coarsest cells would hold block*2^7 = 4096 "
                  "keys > n = 1000 (at most levels = 6 for block = 32)");
    check_refused("fmm_multilevel:block=2000,levels=2", 1000, 1, ATTN_EPARAM,
                  "levels = 2: the coarsest cells would hold block*2^0 = 2000 keys > n = 1000 "
                  "(at most levels = 1 for block = 2000)");
    check_refused("fmm_multilevel:block=1,levels=100000", 64, 0, ATTN_EPARAM,
                  "levels = 100000: the coarsest cells would hold block*2^99998");
    check_refused("fmm_multilevel:downsample_queries=1", 100, 1, ATTN_EUNSUP,
                  "fmm_multilevel: downsample_queries = 1 needs a bidirectional problem "
                  "(causal = 1 given): averaging a cell's queries would let query i see later "
                  "queries");
    attn_problem rect = { .n = 16, .m = 20, .d = 4, .dv = 4 };
    attn_plan *plan = NULL;
    cr_assert_eq(attn_plan_create(&plan, "fmm_multilevel", &rect), ATTN_EUNSUP);
    cr_assert(tu_error_has("needs m == n (n = 16, m = 20)"));
    /* The deepest levels allowed is accepted, and so is p > block (single-key tokens). */
    attn_problem pb = { .n = 1000, .m = 1000, .d = 4, .dv = 4 };
    attn_plan_destroy(tu_plan("fmm_multilevel:levels=6", &pb));
    attn_plan_destroy(tu_plan("fmm_multilevel:block=4,p=9", &pb));
}
