/* test_sparse.c — the sparse baselines sparse_fixed, sparse_logsparse and sparse_axial.
 *
 * Hand-computed 8-token examples (support tables written out by hand, values in closed form), the
 * support pattern at many shapes against an independent long-double masked softmax, exactness at
 * the exact limits, ragged shapes and n = 1, the analytic cost, and the bad-input messages.
 */
#include "config.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "attn.h"
#include "testutil.h"

/* ---------------------------------------------------------------------------------------------
 * Hand-computed 8-token examples.
 *
 * d = 1, scale 1, q_i = 0.5 + 0.25 i, k_j = ln w_j with w = the primes 2, 3, ..., 19, so that
 * exp(s q_i k_j) = w_j^{q_i} and the renormalized softmax over a support S_i is, in closed form,
 *
 *     A_ij = w_j^{q_i} / sum_{j' in S_i} w_j'^{q_i}   (j in S_i),   A_ij = 0 otherwise.
 *
 * V is the 8 x 8 identity, so the output rows are the attention rows.  The support tables below
 * were written by hand from each method's definition ('x': in S_i, '.': not).
 */
#define EX_N 8
static const double primes[EX_N] = { 2, 3, 5, 7, 11, 13, 17, 19 };

/* sparse_fixed, block 3 (blocks {0,1,2}, {3,4,5}, ragged {6,7}), summary 2: the summary columns
 * are {1,2}, {4,5} and {6,7}. */
static const char *const fixed_b3_c2_causal[EX_N] = {
    "x.......", "xx......", "xxx.....", /* block 0: own prefix only */
    ".xxx....", ".xxxx...", ".xxxxx..", /* block 1: {1,2} + own prefix */
    ".xx.xxx.", ".xx.xxxx",             /* block 2: {1,2}, {4,5} + own prefix */
};
static const char *const fixed_b3_c2_bidir[EX_N] = {
    "xxx.xxxx", "xxx.xxxx", "xxx.xxxx", /* own block + {4,5} + {6,7} */
    ".xxxxxxx", ".xxxxxxx", ".xxxxxxx", /* {1,2} + own block + {6,7} */
    ".xx.xxxx", ".xx.xxxx",             /* {1,2} + {4,5} + own block */
};
/* sparse_fixed, block 3, summary 1: the summary columns are 2, 5 and 7. */
static const char *const fixed_b3_c1_causal[EX_N] = {
    "x.......", "xx......", "xxx.....", "..xx....",
    "..xxx...", "..xxxx..", "..x..xx.", "..x..xxx",
};
static const char *const fixed_b3_c1_bidir[EX_N] = {
    "xxx..x.x", "xxx..x.x", "xxx..x.x", "..xxxx.x",
    "..xxxx.x", "..xxxx.x", "..x..xxx", "..x..xxx",
};
/* sparse_logsparse, local 0: i and i - 1, i - 2, i - 4 (bidirectional: and i + 1, i + 2, i + 4). */
static const char *const logsparse_l0_causal[EX_N] = {
    "x.......", "xx......", "xxx.....", ".xxx....",
    "x.xxx...", ".x.xxx..", "..x.xxx.", "...x.xxx",
};
static const char *const logsparse_l0_bidir[EX_N] = {
    "xxx.x...", "xxxx.x..", "xxxxx.x.", ".xxxxx.x",
    "x.xxxxx.", ".x.xxxxx", "..x.xxxx", "...x.xxx",
};
/* sparse_logsparse, local 3: the window {i - 3, ..., i} plus i - 4. */
static const char *const logsparse_l3_causal[EX_N] = {
    "x.......", "xx......", "xxx.....", "xxxx....",
    "xxxxx...", ".xxxxx..", "..xxxxx.", "...xxxxx",
};
/* sparse_axial, block 3: rows {0,1,2}, {3,4,5}, ragged {6,7}; columns {0,3,6}, {1,4,7}, {2,5}. */
static const char *const axial_b3_causal[EX_N] = {
    "x.......", "xx......", "xxx.....", /* row 0: row prefix only */
    "x..x....", ".x.xx...", "..xxxx..", /* row 1: row prefix + the one position above */
    "x..x..x.", ".x..x.xx",             /* row 2: row prefix + the two above */
};
static const char *const axial_b3_bidir[EX_N] = {
    "xxxx..x.", "xxx.x..x", "xxx..x..", "x..xxxx.",
    ".x.xxx.x", "..xxxx..", "x..x..xx", ".x..x.xx",
};

static void check_example(const char *spec, int causal, const char *const *table)
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
        double z = 0.0;
        for (size_t j = 0; j < EX_N; j++)
            if (table[i][j] == 'x')
                z += pow(primes[j], Q[i]);
        for (size_t j = 0; j < EX_N; j++) {
            double got = O[i * EX_N + j];
            if (table[i][j] == 'x') {
                double want = pow(primes[j], Q[i]) / z;
                /* exp of a rounded logit (|l| < 7) against pow: a few ulps of 7, relative. */
                cr_assert(fabs(got - want) <= 64.0 * DBL_EPSILON * want,
                          "%s causal = %d: A[%zu][%zu] = %.17g, expected %.17g", spec, causal, i,
                          j, got, want);
            } else {
                cr_assert(got == 0.0, "%s causal = %d: A[%zu][%zu] = %g outside the support",
                          spec, causal, i, j, got);
            }
        }
    }
    free(O);
}

Test(sparse_fixed, eight_tokens_block3_summary2)
{
    check_example("sparse_fixed:block=3,summary=2", 1, fixed_b3_c2_causal);
    check_example("sparse_fixed:block=3,summary=2", 0, fixed_b3_c2_bidir);
}

Test(sparse_fixed, eight_tokens_block3_summary1)
{
    check_example("sparse_fixed:block=3", 1, fixed_b3_c1_causal);
    check_example("sparse_fixed:block=3", 0, fixed_b3_c1_bidir);
}

Test(sparse_logsparse, eight_tokens)
{
    check_example("sparse_logsparse", 1, logsparse_l0_causal);
    check_example("sparse_logsparse", 0, logsparse_l0_bidir);
    check_example("sparse_logsparse:local=3", 1, logsparse_l3_causal);
}

Test(sparse_axial, eight_tokens_block3)
{
    check_example("sparse_axial:block=3", 1, axial_b3_causal);
    check_example("sparse_axial:block=3", 0, axial_b3_bidir);
}

/* ---------------------------------------------------------------------------------------------
 * The support pattern at many shapes.  Each predicate restates the definition independently of
 * the library's index arithmetic; the expected matrix is the softmax over the support in long
 * double.
 */
typedef int (*support_fn)(size_t i, size_t j, size_t n, size_t p1, size_t p2, int causal);

static int fixed_support(size_t i, size_t j, size_t n, size_t b, size_t c, int causal)
{
    if (causal && j > i)
        return 0;
    if (i / b == j / b)
        return 1;
    size_t start = (j / b) * b, len = n - start < b ? n - start : b;
    size_t cnt = c < len ? c : len;
    return j - start >= len - cnt;
}

static int logsparse_support(size_t i, size_t j, size_t n, size_t L, size_t unused, int causal)
{
    if (causal && j > i)
        return 0;
    size_t dist = i > j ? i - j : j - i;
    return dist <= L || (dist & (dist - 1)) == 0;
}

static int axial_support(size_t i, size_t j, size_t n, size_t b, size_t unused, int causal)
{
    if (causal && j > i)
        return 0;
    return i / b == j / b || i % b == j % b;
}

typedef struct shape {
    size_t n, d, dv;
    int causal;
} shape;

/* Materialize spec and compare with the masked softmax of support: exactly zero outside, the
 * long-double softmax inside; apply against the long-double output.  Returns the support size
 * summed over rows. */
static double check_support(const char *spec, const shape *sh, support_fn in, size_t p1, size_t p2)
{
    size_t n = sh->n, d = sh->d, dv = sh->dv;
    attn_problem pb = { .n = n, .m = n, .d = d, .dv = dv, .causal = sh->causal };
    double *Q, *K, *V;
    tu_random_qkv(n, n, d, dv, 5 + n, &Q, &K, &V);
    double *A = tu_alloc(n * n), *O = tu_alloc(n * dv), *R = tu_alloc(n * dv);
    long double *row = calloc(n, sizeof *row);
    cr_assert_not_null(row);
    /* One plan, both calls. */
    attn_plan *plan = tu_plan(spec, &pb);
    cr_assert_eq(attn_plan_materialize(plan, Q, K, V, A), ATTN_OK, "%s", attn_last_error());
    cr_assert_eq(attn_plan_apply(plan, Q, K, V, O), ATTN_OK, "%s", attn_last_error());
    long double s = 1.0L / sqrtl((long double) d);
    double support = 0.0;
    for (size_t i = 0; i < n; i++) {
        long double mx = -INFINITY, z = 0.0L;
        for (size_t j = 0; j < n; j++) {
            row[j] = -INFINITY;
            if (!in(i, j, n, p1, p2, sh->causal))
                continue;
            long double l = 0.0L;
            for (size_t c = 0; c < d; c++)
                l += (long double) Q[i * d + c] * (long double) K[j * d + c];
            row[j] = s * l;
            mx = row[j] > mx ? row[j] : mx;
            support += 1.0;
        }
        for (size_t j = 0; j < n; j++)
            if (row[j] != -INFINITY)
                z += expl(row[j] - mx);
        for (size_t c = 0; c < dv; c++)
            R[i * dv + c] = 0.0;
        for (size_t j = 0; j < n; j++) {
            double got = A[i * n + j];
            if (row[j] == -INFINITY) {
                cr_assert(got == 0.0, "%s, n = %zu, causal = %d: A[%zu][%zu] = %g outside the "
                          "support", spec, n, sh->causal, i, j, got);
                continue;
            }
            long double want = expl(row[j] - mx) / z;
            /* A softmax over at most n terms rounded in double: n eps relative to the row max. */
            cr_assert(fabsl((long double) got - want) <= 16.0L * n * DBL_EPSILON,
                      "%s, n = %zu, causal = %d: A[%zu][%zu] = %.17g, expected %.17Lg", spec, n,
                      sh->causal, i, j, got, want);
            cr_assert(got > 0.0 || want < 1e-300L, "%s: A[%zu][%zu] = 0 inside the support",
                      spec, i, j);
            for (size_t c = 0; c < dv; c++)
                R[i * dv + c] += (double) (want * (long double) V[j * dv + c]);
        }
    }
    double err = tu_rel_fro(O, R, n * dv);
    cr_assert(err <= 64.0 * (double) n * DBL_EPSILON, "%s, n = %zu, causal = %d: output error %.3g",
              spec, n, sh->causal, err);
    attn_plan_destroy(plan);
    free(row);
    free(Q);
    free(K);
    free(V);
    free(A);
    free(O);
    free(R);
    return support;
}

/* n = 1, small, ragged for every block below, a multiple of the blocks, and past a key tile. */
static const size_t sizes[] = { 1, 2, 3, 8, 37, 64, 100, 300 };
#define NSIZES (sizeof sizes / sizeof sizes[0])

Test(sparse_fixed, support_pattern)
{
    const size_t blocks[] = { 1, 2, 3, 5, 8, 16, 64, 1000 }, summaries[] = { 1, 2, 3 };
    for (size_t s = 0; s < NSIZES; s++)
        for (size_t bi = 0; bi < sizeof blocks / sizeof blocks[0]; bi++)
            for (size_t ci = 0; ci < 3 && summaries[ci] <= blocks[bi]; ci++)
                for (int causal = 0; causal <= 1; causal++) {
                    shape sh = { .n = sizes[s], .d = 5, .dv = 3, .causal = causal };
                    char spec[64];
                    snprintf(spec, sizeof spec, "sparse_fixed:block=%zu,summary=%zu", blocks[bi],
                             summaries[ci]);
                    size_t b = blocks[bi] < sh.n ? blocks[bi] : sh.n;
                    check_support(spec, &sh, fixed_support, b, summaries[ci]);
                }
}

Test(sparse_logsparse, support_pattern)
{
    /* local below and at the dgemm threshold (7 gathered, 8 keys through dgemm) and far above. */
    const size_t locals[] = { 0, 1, 3, 6, 7, 8, 20, 99, 5000 };
    for (size_t s = 0; s < NSIZES; s++)
        for (size_t li = 0; li < sizeof locals / sizeof locals[0]; li++)
            for (int causal = 0; causal <= 1; causal++) {
                shape sh = { .n = sizes[s], .d = 5, .dv = 3, .causal = causal };
                char spec[64];
                snprintf(spec, sizeof spec, "sparse_logsparse:local=%zu", locals[li]);
                check_support(spec, &sh, logsparse_support, locals[li], 0);
            }
}

Test(sparse_axial, support_pattern)
{
    const size_t blocks[] = { 1, 2, 3, 5, 8, 16, 64, 1000 };
    for (size_t s = 0; s < NSIZES; s++)
        for (size_t bi = 0; bi < sizeof blocks / sizeof blocks[0]; bi++)
            for (int causal = 0; causal <= 1; causal++) {
                shape sh = { .n = sizes[s], .d = 5, .dv = 3, .causal = causal };
                char spec[64];
                snprintf(spec, sizeof spec, "sparse_axial:block=%zu", blocks[bi]);
                size_t b = blocks[bi] < sh.n ? blocks[bi] : sh.n;
                check_support(spec, &sh, axial_support, b, 0);
            }
}

/* The default block is chosen from n (2^ceil(log2 sqrt n)) and recorded in the canonical spec. */
Test(sparse, default_block_in_canonical_spec)
{
    const struct {
        size_t n;
        const char *fixed, *axial;
    } cases[] = {
        { 1, "sparse_fixed:block=1,summary=1", "sparse_axial:block=1" },
        { 37, "sparse_fixed:block=8,summary=1", "sparse_axial:block=8" },
        { 64, "sparse_fixed:block=8,summary=1", "sparse_axial:block=8" },
        { 100, "sparse_fixed:block=16,summary=1", "sparse_axial:block=16" },
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        attn_problem pb = { .n = cases[t].n, .m = cases[t].n, .d = 4, .dv = 4, .causal = 1 };
        attn_plan *plan = tu_plan("sparse_fixed", &pb);
        cr_assert_str_eq(attn_plan_spec(plan), cases[t].fixed);
        attn_plan_destroy(plan);
        plan = tu_plan("sparse_axial", &pb);
        cr_assert_str_eq(attn_plan_spec(plan), cases[t].axial);
        attn_plan_destroy(plan);
        plan = tu_plan("sparse_logsparse", &pb);
        cr_assert_str_eq(attn_plan_spec(plan), "sparse_logsparse:local=0");
        attn_plan_destroy(plan);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Exactness.
 */
static void check_exact(const char *spec, size_t n, int causal)
{
    size_t d = 6, dv = 5;
    attn_problem pb = { .n = n, .m = n, .d = d, .dv = dv, .causal = causal };
    double *Q, *K, *V;
    tu_random_qkv(n, n, d, dv, 41 + n, &Q, &K, &V);
    tu_expect_exact(spec, &pb, Q, K, V, 1e-13, NULL);
    free(Q);
    free(K);
    free(V);
}

Test(sparse, exact_at_the_exact_limit)
{
    const char *ids[] = { "sparse_fixed", "sparse_logsparse", "sparse_axial" };
    const size_t ns[] = { 1, 2, 5, 37, 64, 300 };
    for (size_t t = 0; t < 3; t++)
        for (size_t s = 0; s < sizeof ns / sizeof ns[0]; s++)
            for (int causal = 0; causal <= 1; causal++) {
                attn_problem pb = { .n = ns[s], .m = ns[s], .d = 6, .dv = 5, .causal = causal };
                char spec[128];
                cr_assert_eq(attn_method_exact_spec(attn_method_find(ids[t]), &pb, spec,
                                                    sizeof spec),
                             ATTN_OK, "%s", attn_last_error());
                check_exact(spec, ns[s], causal);
            }
}

/* The other exact cases the header comments name. */
Test(sparse, exact_special_cases)
{
    for (int causal = 0; causal <= 1; causal++) {
        /* Every position is its block's summary column. */
        check_exact("sparse_fixed:block=1,summary=1", 37, causal);
        check_exact("sparse_fixed:block=5,summary=5", 37, causal);
        /* One column: the own column is every earlier (every other) position. */
        check_exact("sparse_axial:block=1", 37, causal);
        /* Blocks past n are clipped to one block / one row. */
        check_exact("sparse_fixed:block=1000", 37, causal);
        check_exact("sparse_axial:block=1000", 37, causal);
        /* At n <= 3 the distances 1 and 2 reach every key. */
        check_exact("sparse_logsparse", 3, causal);
        check_exact("sparse_logsparse:local=1000", 37, causal);
    }
}

/* n = 1: the one key has weight 1, so O is V. */
Test(sparse, one_token_returns_v)
{
    const char *specs[] = { "sparse_fixed", "sparse_logsparse", "sparse_axial",
                            "sparse_fixed:block=4,summary=3", "sparse_logsparse:local=9" };
    double Q[3] = { 0.3, -1.2, 2.385 }, K[3] = { -0.7, 0.4, 1.1 }, V[2] = { 1.25, -3.5 };
    for (int causal = 0; causal <= 1; causal++)
        for (size_t t = 0; t < sizeof specs / sizeof specs[0]; t++) {
            attn_problem pb = { .n = 1, .m = 1, .d = 3, .dv = 2, .causal = causal };
            double *O = tu_apply(specs[t], &pb, Q, K, V);
            cr_assert(O[0] == V[0] && O[1] == V[1], "%s: O = (%g, %g)", specs[t], O[0], O[1]);
            free(O);
        }
}

/* ---------------------------------------------------------------------------------------------
 * Cost: where apply forms no masked logit, the analytic pair count is the support size.
 */
static double support_size(support_fn in, size_t n, size_t p1, size_t p2, int causal)
{
    double count = 0.0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            count += in(i, j, n, p1, p2, causal);
    return count;
}

static void check_cost(const char *spec, size_t n, int causal, double pairs)
{
    attn_problem pb = { .n = n, .m = n, .d = 6, .dv = 5, .causal = causal };
    attn_plan *plan = tu_plan(spec, &pb);
    attn_cost cost;
    attn_plan_cost(plan, &cost);
    cr_assert(cost.exps == pairs && cost.flops == 2.0 * pairs * 11.0,
              "%s, n = %zu, causal = %d: cost %g exps, %g flops; expected %g pairs", spec, n,
              causal, cost.exps, cost.flops, pairs);
    cr_assert(cost.bytes > 0.0);
    attn_plan_destroy(plan);
}

Test(sparse, cost_counts_the_support)
{
    const size_t ns[] = { 1, 37, 300, 1000 };
    for (size_t s = 0; s < sizeof ns / sizeof ns[0]; s++) {
        size_t n = ns[s];
        /* Bidirectional fixed: own block and other blocks' summaries, nothing masked. */
        check_cost("sparse_fixed:block=8,summary=2", n, 0,
                   support_size(fixed_support, n, 8 < n ? 8 : n, 2, 0));
        /* LogSparse with a gathered window: exactly the support, both forms. */
        for (int causal = 0; causal <= 1; causal++)
            check_cost("sparse_logsparse:local=3", n, causal,
                       support_size(logsparse_support, n, 3 < n - 1 ? 3 : n - 1, 0,
                                    causal));
        /* Bidirectional axial: the column pass also forms (and masks) each query's own logit. */
        check_cost("sparse_axial:block=8", n, 0,
                   support_size(axial_support, n, 8 < n ? 8 : n, 0, 0) + (double) n);
    }
}

/* Sub-quadratic: at the default block the flops grow like n^1.5 (fixed, axial) and n log n
 * (logsparse), far below exact attention's n^2. */
Test(sparse, cost_is_subquadratic)
{
    const char *ids[] = { "sparse_fixed", "sparse_axial", "sparse_logsparse" };
    const double slope_max[] = { 1.6, 1.6, 1.25 };
    for (size_t t = 0; t < 3; t++) {
        double flops[2];
        const size_t ns[2] = { 1024, 16384 };
        for (size_t s = 0; s < 2; s++) {
            attn_problem pb = { .n = ns[s], .m = ns[s], .d = 64, .dv = 64, .causal = 1 };
            attn_plan *plan = tu_plan(ids[t], &pb);
            attn_cost cost;
            attn_plan_cost(plan, &cost);
            flops[s] = cost.flops;
            attn_plan_destroy(plan);
        }
        double slope = log(flops[1] / flops[0]) / log(16.0);
        cr_assert(slope <= slope_max[t], "%s: flops slope %.3f over n = 1024..16384", ids[t],
                  slope);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Bad input.
 */
static void check_refused(const char *spec, size_t n, size_t m, int status, const char *needle)
{
    attn_problem pb = { .n = n, .m = m, .d = 4, .dv = 4 };
    tu_expect_refused(spec, &pb, status, needle);
}

Test(sparse, bad_input_is_named)
{
    check_refused("sparse_fixed:block=0", 16, 16, ATTN_EPARAM,
                  "sparse_fixed: parameter block = 0 is out of range [1, inf]");
    check_refused("sparse_axial:block=0", 16, 16, ATTN_EPARAM,
                  "sparse_axial: parameter block = 0 is out of range [1, inf]");
    check_refused("sparse_fixed:summary=0", 16, 16, ATTN_EPARAM,
                  "parameter summary = 0 is out of range [1, inf]");
    check_refused("sparse_fixed:block=2.5", 16, 16, ATTN_EPARAM, "block = 2.5 must be an integer");
    check_refused("sparse_logsparse:local=-1", 16, 16, ATTN_EPARAM,
                  "sparse_logsparse: parameter local = -1 is out of range [0, inf]");
    check_refused("sparse_fixed:block=3,summary=5", 16, 16, ATTN_EPARAM,
                  "sparse_fixed: summary = 5 exceeds block = 3");
    /* With the block chosen from n = 16 (4), the message says so. */
    check_refused("sparse_fixed:summary=9", 16, 16, ATTN_EPARAM,
                  "summary = 9 exceeds block = 4 (chosen from n = 16)");
    check_refused("sparse_axial", 16, 20, ATTN_EUNSUP,
                  "sparse_axial needs m == n (n = 16, m = 20)");
    check_refused("sparse_logsparse", 16, 20, ATTN_EUNSUP, "needs m == n");
    check_refused("sparse_fixed", 16, 20, ATTN_EUNSUP, "needs m == n");
}
