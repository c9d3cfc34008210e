/* test_kdeformer.c — KDEformer (kdeformer) and the bucket orders of the shared LSH code.
 *
 * The sort-key tables (gray: neighbours differ in one bit for r = 1..10; reference: the released
 * inverted sequence and its 31 multi-bit steps at r = 7); exactness at block = max(n, m), causal
 * and not; the materialized matrix (nonnegative, rows summing to one, A V = apply, zero above the
 * diagonal when causal) at ragged shapes; the draw weights 1 / (S p_j) against p computed here from
 * the definition (lambda by LAPACK); unbiasedness of the numerator and normaliser over 200 seeds
 * (pooled z-tests, with the accumulator's maximum undone through lsh_plan_sums); the error falling
 * as samples grow; causality bit for bit; seeds; the bad-input messages.  Random and real data
 * (the OCR model, bidirectional, d = 15; the language model, causal, n = 512).
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <lapacke.h>

#include "attn.h"
#include "attn_io.h"
#include "lsh_testutil.h"
#include "methods/lsh.h"
#include "testutil.h"

#define OCR_FILE "data/ppocrv4-svtr-attn.h5"
#define LM_FILE "data/stories260k-attn.h5"

static int popcount(unsigned x)
{
    int c = 0;
    for (; x != 0; x &= x - 1)
        c++;
    return c;
}

/* seq[k] = the bucket whose sort key is k (the order in which sorting visits the buckets);
 * fails unless the sort key is a bijection of [0, 2^r). */
static unsigned *bucket_sequence(unsigned r, int order)
{
    size_t count = (size_t) 1 << r;
    unsigned *seq = calloc(count, sizeof *seq);
    unsigned char *seen = calloc(count, 1);
    cr_assert(seq != NULL && seen != NULL);
    for (unsigned b = 0; b < count; b++) {
        uint32_t k = lsh_sort_key(b, order);
        cr_assert(k < count && !seen[k], "order %d, r = %u: sort key %u of bucket %u repeats or "
                  "leaves [0, 2^r)", order, r, k, b);
        seen[k] = 1;
        seq[k] = b;
    }
    free(seen);
    return seq;
}

Test(kdeformer, gray_order_neighbours_differ_in_one_bit)
{
    for (unsigned r = 1; r <= 10; r++) {
        unsigned *seq = bucket_sequence(r, LSH_ORDER_GRAY);
        for (size_t k = 0; k + 1 < ((size_t) 1 << r); k++)
            cr_assert_eq(popcount(seq[k] ^ seq[k + 1]), 1,
                         "gray, r = %u: buckets %u and %u at sorted positions %zu, %zu differ in "
                         "%d bits", r, seq[k], seq[k + 1], k, k + 1, popcount(seq[k] ^ seq[k + 1]));
        free(seq);
    }
}

Test(kdeformer, reference_order_is_the_inverted_gray_sequence)
{
    /* The published code sorts by Gray(b): sorted order visits Gray^-1(k) (METHODS 1.6-3). */
    static const unsigned want[] = { 0, 1, 3, 2, 7, 6, 4, 5, 15, 14, 12, 13, 8, 9, 11, 10, 31 };
    unsigned *seq = bucket_sequence(7, LSH_ORDER_REFERENCE);
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++)
        cr_assert_eq(seq[k], want[k], "reference, position %zu: bucket %u, expected %u", k, seq[k],
                     want[k]);
    int multi = 0, worst = 0;
    for (size_t k = 0; k + 1 < 128; k++) {
        int h = popcount(seq[k] ^ seq[k + 1]);
        multi += h > 1;
        worst = h > worst ? h : worst;
    }
    cr_assert_eq(multi, 31, "reference, r = 7: %d of 127 neighbours differ in more than one bit, "
                 "expected 31", multi);
    cr_assert_eq(worst, 4, "reference, r = 7: largest neighbour distance %d, expected 4", worst);
    free(seq);
}

Test(kdeformer, lsh_order_reaches_the_hash)
{
    /* Same seed, same directions, other bucket order: other blocks, so another estimate. */
    attn_problem pb = { .n = 300, .m = 300, .d = 13, .dv = 7 };
    double *Q, *K, *V;
    tu_random_qkv(300, 300, 13, 7, 5, &Q, &K, &V);
    double *O1 = tu_apply("kdeformer:block=16,samples=32,lsh_order=reference", &pb, Q, K, V);
    double *O2 = tu_apply("kdeformer:block=16,samples=32,lsh_order=gray", &pb, Q, K, V);
    cr_assert(tu_max_abs_diff(O1, O2, 300 * 7) > 1e-6, "lsh_order has no effect");
    free(O1);
    free(O2);
    free(Q);
    free(K);
    free(V);
}

/* ---------------------------------------------------------------------------------------------
 * Exactness.
 */
Test(kdeformer, exact_at_full_block_random)
{
    static const size_t shapes[][3] = { { 1, 1, 0 }, { 37, 37, 1 }, { 300, 300, 0 },
                                        { 300, 300, 1 }, { 70, 131, 0 }, { 131, 70, 0 } };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        size_t n = shapes[s][0], m = shapes[s][1];
        attn_problem pb = { .n = n, .m = m, .d = 13, .dv = 7, .causal = (int) shapes[s][2] };
        double *Q, *K, *V;
        tu_random_qkv(n, m, 13, 7, 17 + s, &Q, &K, &V);
        char spec[128];
        snprintf(spec, sizeof spec, "kdeformer:block=%zu,samples=64", n > m ? n : m);
        tu_expect_exact(spec, &pb, Q, K, V, 1e-12, "random");
        free(Q);
        free(K);
        free(V);
    }
}

Test(kdeformer, exact_at_full_block_real)
{
    const double *q, *k, *v;
    attn_inputs *in = tu_load_head(OCR_FILE, 1, 3, &q, &k, &v);
    attn_problem pb = tu_inputs_problem(in, 0);
    tu_expect_exact("kdeformer:block=192", &pb, q, k, v, 1e-12, "ocr");
    attn_inputs_destroy(in);
    in = tu_load_head(LM_FILE, 2, 0, &q, &k, &v);
    pb = tu_inputs_problem(in, 1);
    tu_expect_exact("kdeformer:block=512", &pb, q, k, v, 1e-12, "lm");
    attn_inputs_destroy(in);
}

Test(kdeformer, exact_limit_spec)
{
    attn_problem pb = { .n = 70, .m = 131, .d = 4, .dv = 3 };
    char spec[256];
    cr_assert_eq(attn_method_exact_spec(attn_method_find("kdeformer"), &pb, spec, sizeof spec),
                 ATTN_OK, "%s", attn_last_error());
    cr_assert(strstr(spec, "block=131") != NULL, "exact spec %s", spec);
}

/* ---------------------------------------------------------------------------------------------
 * The materialized matrix.
 */
Test(kdeformer, materialize_random_ragged)
{
    static const char *const specs[] = { "kdeformer:block=16,samples=32",
                                         "kdeformer:block=7,samples=5,bits=3,lsh_order=gray",
                                         "kdeformer:block=1,samples=1" };
    lsh_tu_check_matrix_shapes(specs, sizeof specs / sizeof specs[0], 101, 1);
}

Test(kdeformer, materialize_real)
{
    lsh_tu_check_matrix_real("kdeformer:block=24,samples=48", "kdeformer:block=32,samples=64", 1);
}

/* ---------------------------------------------------------------------------------------------
 * The draw weights.  With Q = 0 every logit is 0, so row i of the matrix is
 * (1[j in B(i)] + 1[j not in B(i)] c_j / (S p_j)) / D_i: the block entries all equal 1 / D_i (and
 * are the smallest, since S p_j < 1 here), and every other nonzero entry times D_i S p_j is its
 * draw count c_j, an integer.  p_j comes from the definition: u_j = ||[v_j, 1]|| / lambda + 1 / m,
 * lambda the top eigenvalue of [V, 1]^T [V, 1] (LAPACK dsyev; V has mean 1.5, so the top
 * eigenvalue is well separated and 20 power iterations converge to rounding).
 */
Test(kdeformer, draws_are_weighted_by_value_norms)
{
    size_t n = 256, m = 256, d = 6, dv = 3, block = 32, S = 16;
    attn_problem pb = { .n = n, .m = m, .d = d, .dv = dv };
    double *Q = tu_alloc(n * d), *K = tu_alloc(m * d), *V = tu_alloc(m * dv);
    tu_fill_gauss(K, m * d, 3, 1.0);
    tu_fill_gauss(V, m * dv, 4, 1.0);
    for (size_t t = 0; t < m * dv; t++)
        V[t] += 1.5;
    size_t k = dv + 1;
    double G[16] = { 0 }, w[4];
    for (size_t j = 0; j < m; j++)
        for (size_t a = 0; a < k; a++)
            for (size_t b = 0; b < k; b++)
                G[a * k + b] += (a < dv ? V[j * dv + a] : 1.0) * (b < dv ? V[j * dv + b] : 1.0);
    cr_assert_eq(LAPACKE_dsyev(LAPACK_ROW_MAJOR, 'N', 'U', (lapack_int) k, G, (lapack_int) k, w), 0);
    double lambda = w[k - 1], total = 0.0;
    double *p = tu_alloc(m);
    for (size_t j = 0; j < m; j++) {
        double sq = 1.0;
        for (size_t c = 0; c < dv; c++)
            sq += V[j * dv + c] * V[j * dv + c];
        p[j] = sqrt(sq) / lambda + 1.0 / (double) m;
        total += p[j];
    }
    for (size_t j = 0; j < m; j++)
        p[j] /= total;
    double *A = tu_materialize("kdeformer:block=32,samples=16,seed=9", &pb, Q, K, V);
    size_t drawn_total = 0;
    for (size_t i = 0; i < n; i++) {
        const double *row = A + i * m;
        double amin = INFINITY;
        for (size_t j = 0; j < m; j++)
            if (row[j] > 0.0 && row[j] < amin)
                amin = row[j];
        size_t in_block = 0, draws = 0;
        for (size_t j = 0; j < m; j++) {
            if (row[j] == 0.0)
                continue;
            if (fabs(row[j] - amin) <= 1e-12 * amin) {
                in_block++;
                continue;
            }
            double c = row[j] / amin * (double) S * p[j];
            cr_assert(fabs(c - round(c)) <= 1e-8 && round(c) >= 1.0,
                      "row %zu, key %zu: weight / block weight * S p_j = %.12g, not a draw count",
                      i, j, c);
            draws += (size_t) round(c);
        }
        cr_assert_eq(in_block, block, "row %zu: %zu entries at the block weight, expected %zu", i,
                     in_block, block);
        cr_assert(draws <= S, "row %zu: %zu draws kept of %zu", i, draws, S);
        drawn_total += draws;
    }
    /* Each draw lies in one of the 8 blocks, so it is kept by 7/8 of the rows. */
    cr_assert_eq(drawn_total, S * (n - block), "draws kept over all rows: %zu, expected %zu",
                 drawn_total, S * (n - block));
    free(A);
    free(p);
    free(Q);
    free(K);
    free(V);
}

/* ---------------------------------------------------------------------------------------------
 * Unbiasedness of the numerator and normaliser over seeds: pooled z-tests over 200 seeds
 * (lsh_tu_unbiased_z in lsh_testutil.h), seeds from 1000.
 */
Test(kdeformer, numerator_and_normaliser_unbiased)
{
    double *Q, *K, *V;
    attn_problem pb = { .n = 256, .m = 256, .d = 13, .dv = 7 };
    tu_random_qkv(256, 256, 13, 7, 41, &Q, &K, &V);
    /* Soften the queries (scale 2.385 makes single keys dominate; the estimator is unbiased
     * either way, but a heavy tail would need far more seeds for the z statistic). */
    for (size_t t = 0; t < 256 * 13; t++)
        Q[t] *= 0.4;
    lsh_tu_unbiased r = lsh_tu_unbiased_z("kdeformer:block=32,samples=32", &pb, Q, K, V, 200, 1000);
    cr_assert(fabs(r.z_den) <= 4.0 && r.z_num_max <= 4.0,
              "random: z of the normaliser %.3g, largest |z| of the numerator %.3g", r.z_den,
              r.z_num_max);
    free(Q);
    free(K);
    free(V);
    const double *q, *k, *v;
    attn_inputs *in = tu_load_head(OCR_FILE, 1, 3, &q, &k, &v);
    attn_problem ocr = tu_inputs_problem(in, 0);
    r = lsh_tu_unbiased_z("kdeformer:block=24,samples=32", &ocr, q, k, v, 200, 1000);
    cr_assert(fabs(r.z_den) <= 4.0 && r.z_num_max <= 4.0,
              "ocr: z of the normaliser %.3g, largest |z| of the numerator %.3g", r.z_den,
              r.z_num_max);
    attn_inputs_destroy(in);
}

Test(kdeformer, causal_sums_unbiased)
{
    /* The causal recursion adds exact diagonal pieces and unbiased off-diagonal estimates. */
    const double *q, *k, *v;
    attn_inputs *in = tu_load_head(LM_FILE, 2, 0, &q, &k, &v);
    attn_problem pb = tu_inputs_problem(in, 1);
    pb.n = pb.m = 256;
    lsh_tu_unbiased r = lsh_tu_unbiased_z("kdeformer:block=16,samples=16", &pb, q, k, v, 200, 1000);
    cr_assert(fabs(r.z_den) <= 4.0 && r.z_num_max <= 4.0,
              "lm causal: z of the normaliser %.3g, largest |z| of the numerator %.3g", r.z_den,
              r.z_num_max);
    attn_inputs_destroy(in);
}

/* ---------------------------------------------------------------------------------------------
 * Error against samples, causality, seeds.
 */
Test(kdeformer, error_falls_as_samples_grow)
{
    double *Q, *K, *V;
    attn_problem pb = { .n = 512, .m = 512, .d = 13, .dv = 7 };
    tu_random_qkv(512, 512, 13, 7, 61, &Q, &K, &V);
    for (int causal = 0; causal <= 1; causal++) {
        pb.causal = causal;
        double e16 = lsh_tu_mean_error("kdeformer:block=32", 16, &pb, Q, K, V, 10, 7);
        double e1024 = lsh_tu_mean_error("kdeformer:block=32", 1024, &pb, Q, K, V, 10, 7);
        /* The residual's standard error falls like 1 / sqrt(S): 64 times the draws. */
        cr_assert(e1024 < 0.5 * e16, "random, causal = %d: mean error %.4g at 16 samples, %.4g "
                  "at 1024", causal, e16, e1024);
    }
    free(Q);
    free(K);
    free(V);
    const double *q, *k, *v;
    attn_inputs *in = tu_load_head(LM_FILE, 2, 0, &q, &k, &v);
    attn_problem lm = tu_inputs_problem(in, 1);
    double e16 = lsh_tu_mean_error("kdeformer:block=32", 16, &lm, q, k, v, 10, 7);
    double e1024 = lsh_tu_mean_error("kdeformer:block=32", 1024, &lm, q, k, v, 10, 7);
    cr_assert(e1024 < 0.5 * e16, "lm: mean error %.4g at 16 samples, %.4g at 1024", e16, e1024);
    attn_inputs_destroy(in);
    in = tu_load_head(OCR_FILE, 1, 3, &q, &k, &v);
    attn_problem ocr = tu_inputs_problem(in, 0);
    e16 = lsh_tu_mean_error("kdeformer:block=24", 16, &ocr, q, k, v, 10, 7);
    e1024 = lsh_tu_mean_error("kdeformer:block=24", 1024, &ocr, q, k, v, 10, 7);
    cr_assert(e1024 < 0.5 * e16, "ocr: mean error %.4g at 16 samples, %.4g at 1024", e16, e1024);
    attn_inputs_destroy(in);
}

Test(kdeformer, causal_rows_see_only_the_past)
{
    const double *q, *k, *v;
    attn_inputs *in = tu_load_head(LM_FILE, 2, 0, &q, &k, &v);
    attn_problem pb = tu_inputs_problem(in, 1);
    size_t n = pb.n, d = pb.d, dv = pb.dv;
    static const char *const specs[] = { "kdeformer:block=16,samples=64",
                                         "kdeformer:block=5,samples=7,bits=4,lsh_order=gray" };
    for (size_t c = 0; c < 2; c++) {
        double *O = tu_apply(specs[c], &pb, q, k, v);
        for (size_t i = 0; i + 1 < n; i += 73) {
            double *Q2 = tu_alloc(n * d), *K2 = tu_alloc(n * d), *V2 = tu_alloc(n * dv);
            memcpy(Q2, q, n * d * sizeof *Q2);
            memcpy(K2, k, n * d * sizeof *K2);
            memcpy(V2, v, n * dv * sizeof *V2);
            tu_fill_gauss(Q2 + (i + 1) * d, (n - i - 1) * d, 6 + i, 2.7);
            tu_fill_gauss(K2 + (i + 1) * d, (n - i - 1) * d, 7 + i, 3.1);
            tu_fill_gauss(V2 + (i + 1) * dv, (n - i - 1) * dv, 8 + i, 5.3);
            double *O2 = tu_apply(specs[c], &pb, Q2, K2, V2);
            cr_assert(memcmp(O, O2, (i + 1) * dv * sizeof *O) == 0,
                      "%s: rows <= %zu changed when inputs after %zu changed", specs[c], i, i);
            free(Q2);
            free(K2);
            free(V2);
            free(O2);
        }
        free(O);
    }
    attn_inputs_destroy(in);
}

Test(kdeformer, seeds_give_reproducible_draws)
{
    double *Q, *K, *V;
    attn_problem pb = { .n = 300, .m = 300, .d = 13, .dv = 7 };
    tu_random_qkv(300, 300, 13, 7, 3, &Q, &K, &V);
    double *a = tu_apply("kdeformer:block=16,samples=32,seed=5", &pb, Q, K, V);
    double *b = tu_apply("kdeformer:block=16,samples=32,seed=5", &pb, Q, K, V);
    double *c = tu_apply("kdeformer:block=16,samples=32,seed=6", &pb, Q, K, V);
    cr_assert(memcmp(a, b, 300 * 7 * sizeof *a) == 0, "two plans of seed 5 differ");
    cr_assert(tu_max_abs_diff(a, c, 300 * 7) > 1e-6, "seeds 5 and 6 give the same output");
    free(a);
    free(b);
    free(c);
    free(Q);
    free(K);
    free(V);
}

Test(kdeformer, cost_counts_the_pieces)
{
    attn_problem pb = { .n = 4096, .m = 4096, .d = 64, .dv = 64 };
    attn_plan *plan = tu_plan("kdeformer:block=128,samples=128", &pb);
    attn_cost cost;
    attn_plan_cost(plan, &cost);
    /* Block part and residual: 4096 (128 + 128) pairs of 2 (d + dv) flops; on top, hashing
     * 2 (2 4096) 64 7 and lambda's Gram matrix 2 4096 64^2 (15.5% more in all). */
    double pairs = 4096.0 * 256.0;
    cr_assert(cost.exps == pairs, "exps %g, expected %g", cost.exps, pairs);
    cr_assert(cost.flops >= pairs * 256.0 && cost.flops <= 1.2 * pairs * 256.0, "flops %g",
              cost.flops);
    cr_assert(cost.bytes > 0 && cost.bytes < 4096.0 * 4096.0, "scratch %g bytes", cost.bytes);
    attn_plan_destroy(plan);
}

/* ---------------------------------------------------------------------------------------------
 * Bad input.
 */
Test(kdeformer, bad_input_names_the_value)
{
    attn_problem pb = { .n = 64, .m = 64, .d = 8, .dv = 8 };
    tu_expect_refused("kdeformer:bits=0", &pb, ATTN_EPARAM, "bits = 0");
    tu_expect_refused("kdeformer:bits=31", &pb, ATTN_EPARAM, "bits = 31");
    tu_expect_refused("kdeformer:samples=0", &pb, ATTN_EPARAM, "samples = 0");
    tu_expect_refused("kdeformer:block=0", &pb, ATTN_EPARAM, "block = 0");
    tu_expect_refused("kdeformer:block=2.5", &pb, ATTN_EPARAM, "block = 2.5");
    tu_expect_refused("kdeformer:power_iters=0", &pb, ATTN_EPARAM, "power_iters = 0");
    tu_expect_refused("kdeformer:lsh_order=hilbert", &pb, ATTN_EPARAM, "hilbert");
    attn_problem rect = { .n = 64, .m = 32, .d = 8, .dv = 8, .causal = 1 };
    tu_expect_refused("kdeformer", &rect, ATTN_ESHAPE, "m = 32");
}
