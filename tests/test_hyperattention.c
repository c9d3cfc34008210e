/* test_hyperattention.c — HyperAttention (hyperattention).
 *
 * Exactness at block = max(n, m) and below min_seq_len, causal and not; min_seq_len resolving to
 * the block; the materialized matrix (nonnegative, rows summing to one, A V = apply) at ragged
 * shapes; the uniform draw weights n_k / S read off the matrix; unbiasedness of the numerator and
 * normaliser over 200 seeds with exclude_block = 1, and the upward bias of exclude_block = 0 (the
 * released float path), exactly on a constructed case; pad_zero_key = 1 adding T b - n_k terms e^0
 * to the last block's rows only; the causal recursion (rows of the top half exact with
 * min_seq_len = n / 2, the bottom-right piece exact up to the shared normaliser); the error
 * falling as samples grow; causality bit for bit; the cost of the recursion; the bad-input
 * messages.  Random and real data (the OCR model, bidirectional; the language model, causal).
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "attn.h"
#include "attn_io.h"
#include "lsh_testutil.h"
#include "methods/lsh.h"
#include "testutil.h"

#define OCR_FILE "data/ppocrv4-svtr-attn.h5"
#define LM_FILE "data/stories260k-attn.h5"

/* ---------------------------------------------------------------------------------------------
 * Exactness and the resolved threshold.
 */
Test(hyperattention, exact_at_full_block)
{
    static const size_t shapes[][3] = { { 1, 1, 0 },     { 1, 1, 1 },     { 37, 37, 1 },
                                        { 300, 300, 0 }, { 300, 300, 1 }, { 70, 131, 0 },
                                        { 131, 70, 0 } };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        size_t n = shapes[s][0], m = shapes[s][1];
        attn_problem pb = { .n = n, .m = m, .d = 13, .dv = 7, .causal = (int) shapes[s][2] };
        double *Q, *K, *V;
        tu_random_qkv(n, m, 13, 7, 23 + s, &Q, &K, &V);
        char spec[128];
        snprintf(spec, sizeof spec, "hyperattention:block=%zu,samples=64", n > m ? n : m);
        tu_expect_exact(spec, &pb, Q, K, V, 1e-12, "random, block = max(n, m)");
        /* Below min_seq_len everything is exact whatever the block (the published 4096). */
        snprintf(spec, sizeof spec, "hyperattention:block=8,samples=16,min_seq_len=4096");
        tu_expect_exact(spec, &pb, Q, K, V, 1e-12, "random, min_seq_len = 4096");
        free(Q);
        free(K);
        free(V);
    }
    const double *q, *k, *v;
    attn_inputs *in = tu_load_head(OCR_FILE, 1, 3, &q, &k, &v);
    attn_problem pb = tu_inputs_problem(in, 0);
    tu_expect_exact("hyperattention:block=192", &pb, q, k, v, 1e-12, "ocr");
    attn_inputs_destroy(in);
    in = tu_load_head(LM_FILE, 2, 0, &q, &k, &v);
    pb = tu_inputs_problem(in, 1);
    tu_expect_exact("hyperattention:block=512", &pb, q, k, v, 1e-12, "lm");
    tu_expect_exact("hyperattention:block=16,min_seq_len=512", &pb, q, k, v, 1e-12, "lm");
    attn_inputs_destroy(in);
}

Test(hyperattention, min_seq_len_follows_the_block)
{
    attn_problem pb = { .n = 1000, .m = 1000, .d = 8, .dv = 8 };
    attn_plan *plan = tu_plan("hyperattention:block=48", &pb);
    cr_assert(strstr(attn_plan_spec(plan), "min_seq_len=48") != NULL, "spec %s",
              attn_plan_spec(plan));
    attn_plan_destroy(plan);
    plan = tu_plan("hyperattention", &pb);
    cr_assert(strstr(attn_plan_spec(plan), "block=256,") != NULL &&
              strstr(attn_plan_spec(plan), "min_seq_len=256") != NULL, "default spec %s",
              attn_plan_spec(plan));
    attn_plan_destroy(plan);
    /* And a sweep over the block is not silently exact. */
    double *Q, *K, *V;
    tu_random_qkv(1000, 1000, 8, 8, 2, &Q, &K, &V);
    double err = tu_error_vs_reference("hyperattention:block=48,samples=32", &pb, Q, K, V);
    cr_assert(err > 1e-3, "block = 48 at n = 1000 is exact (error %.3g)", err);
    free(Q);
    free(K);
    free(V);
}

/* ---------------------------------------------------------------------------------------------
 * The materialized matrix.
 */
Test(hyperattention, materialize_random_ragged)
{
    static const char *const specs[] = {
        "hyperattention:block=16,samples=32",
        "hyperattention:block=7,samples=5,bits=3,lsh_order=gray,min_seq_len=1",
        "hyperattention:block=16,samples=32,exclude_block=0",
        "hyperattention:block=1,samples=1",
    };
    lsh_tu_check_matrix_shapes(specs, sizeof specs / sizeof specs[0], 201, 0);
}

Test(hyperattention, materialize_real)
{
    lsh_tu_check_matrix_real("hyperattention:block=24,samples=48", "hyperattention:block=32,samples=64", 0);
}

/* With Q = 0 every logit is 0: the block entries of row i all equal 1 / D_i and every other
 * nonzero entry is c_j (n_k / S) / D_i, c_j the draws of key j: an integer multiple of m / S. */
Test(hyperattention, draws_are_uniform_with_weight_m_over_samples)
{
    size_t n = 256, m = 256, d = 6, dv = 3, block = 32, S = 16;
    attn_problem pb = { .n = n, .m = m, .d = d, .dv = dv };
    double *Q = tu_alloc(n * d), *K = tu_alloc(m * d), *V = tu_alloc(m * dv);
    tu_fill_gauss(K, m * d, 3, 1.0);
    tu_fill_gauss(V, m * dv, 4, 1.0);
    double *A = tu_materialize("hyperattention:block=32,samples=16,seed=4", &pb, Q, K, V);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        const double *row = A + i * m;
        double amin = INFINITY;
        for (size_t j = 0; j < m; j++)
            if (row[j] > 0.0 && row[j] < amin)
                amin = row[j];
        size_t in_block = 0;
        for (size_t j = 0; j < m; j++) {
            if (row[j] == 0.0)
                continue;
            if (fabs(row[j] - amin) <= 1e-12 * amin) {
                in_block++;
                continue;
            }
            double c = row[j] / amin * (double) S / (double) m;
            cr_assert(fabs(c - round(c)) <= 1e-9 && round(c) >= 1.0,
                      "row %zu, key %zu: weight ratio times S / m = %.12g", i, j, c);
            kept += (size_t) round(c);
        }
        cr_assert_eq(in_block, block, "row %zu: %zu entries at the block weight", i, in_block);
    }
    cr_assert_eq(kept, S * (n - block), "draws kept over all rows: %zu, expected %zu", kept,
                 S * (n - block));
    free(A);
    free(Q);
    free(K);
    free(V);
}

/* ---------------------------------------------------------------------------------------------
 * Unbiasedness and the exclude_block switch.  Statistics of lsh_tu_unbiased_z (lsh_testutil.h): per
 * seed, the row averages of den_i - 1 and num_i - o_i (both rescaled by the exact e^{-lse_i}); z
 * over seeds, seeds from 500.
 */
Test(hyperattention, numerator_and_normaliser_unbiased)
{
    double *Q, *K, *V;
    attn_problem pb = { .n = 256, .m = 256, .d = 13, .dv = 7 };
    tu_random_qkv(256, 256, 13, 7, 43, &Q, &K, &V);
    for (size_t t = 0; t < 256 * 13; t++)
        Q[t] *= 0.4; /* a lighter tail, as in test_kdeformer.c */
    lsh_tu_unbiased r = lsh_tu_unbiased_z("hyperattention:block=32,samples=32", &pb, Q, K, V,
                                          200, 500);
    cr_assert(fabs(r.z_den) <= 4.0 && r.z_num_max <= 4.0,
              "random: z of the normaliser %.3g, largest |z| of the numerator %.3g", r.z_den,
              r.z_num_max);
    /* The released float path (exclude_block = 0) adds the block sum a second time on average:
     * the normaliser is biased upward. */
    lsh_tu_unbiased r0 = lsh_tu_unbiased_z("hyperattention:block=32,samples=32,exclude_block=0",
                                           &pb, Q, K, V, 200, 500);
    cr_assert(r0.z_den > 10.0, "exclude_block = 0: z of the normaliser %.3g, expected a large "
              "upward bias", r0.z_den);
    free(Q);
    free(K);
    free(V);
    const double *q, *k, *v;
    attn_inputs *in = tu_load_head(OCR_FILE, 1, 3, &q, &k, &v);
    attn_problem ocr = tu_inputs_problem(in, 0);
    r = lsh_tu_unbiased_z("hyperattention:block=24,samples=32", &ocr, q, k, v, 200, 500);
    cr_assert(fabs(r.z_den) <= 4.0 && r.z_num_max <= 4.0,
              "ocr: z of the normaliser %.3g, largest |z| of the numerator %.3g", r.z_den,
              r.z_num_max);
    attn_inputs_destroy(in);
    in = tu_load_head(LM_FILE, 2, 0, &q, &k, &v);
    attn_problem lm = tu_inputs_problem(in, 1);
    lm.n = lm.m = 256;
    r = lsh_tu_unbiased_z("hyperattention:block=16,samples=16", &lm, q, k, v, 200, 500);
    cr_assert(fabs(r.z_den) <= 4.0 && r.z_num_max <= 4.0,
              "lm causal: z of the normaliser %.3g, largest |z| of the numerator %.3g", r.z_den,
              r.z_num_max);
    attn_inputs_destroy(in);
}

/* Identical keys: every logit of row i is s_i and every key lands in one bucket, so with
 * exclude_block = 0 all S draws count: D~_i = (b + m) e^{s_i} = (1 + b / m) D_i, exactly, on every
 * row and seed.  With exclude_block = 1 only draws outside the row's block count. */
Test(hyperattention, exclude_block_zero_double_counts)
{
    size_t n = 128, m = 128, d = 5, dv = 3;
    attn_problem pb = { .n = n, .m = m, .d = d, .dv = dv };
    double *Q = tu_alloc(n * d), *K = tu_alloc(m * d), *V = tu_alloc(m * dv);
    double *R = tu_alloc(n * dv), *lse = tu_alloc(n), *num = tu_alloc(n * dv), *den = tu_alloc(n);
    tu_fill_gauss(Q, n * d, 8, 1.3);
    tu_fill_gauss(V, m * dv, 9, 1.0);
    static const double key[5] = { 0.31, -1.7, 0.55, 2.1, -0.42 };
    for (size_t j = 0; j < m; j++)
        memcpy(K + j * d, key, sizeof key);
    cr_assert_eq(attn_reference(&pb, Q, K, V, R, lse), ATTN_OK);
    for (unsigned long seed = 0; seed < 5; seed++) {
        char spec[128];
        snprintf(spec, sizeof spec, "hyperattention:block=32,samples=24,exclude_block=0,seed=%lu",
                 seed);
        attn_plan *plan = tu_plan(spec, &pb);
        cr_assert_eq(lsh_plan_sums(plan, Q, K, V, lse, num, den), ATTN_OK);
        for (size_t i = 0; i < n; i++)
            cr_assert(fabs(den[i] - 1.25) <= 1e-13, "%s: row %zu: D~ / D = %.17g, expected 1.25",
                      spec, i, den[i]);
        attn_plan_destroy(plan);
    }
    /* exclude_block = 1: E[D~ / D] = 1; each row keeps the draws outside its block. */
    double mean = 0.0;
    for (unsigned long seed = 0; seed < 200; seed++) {
        char spec[128];
        snprintf(spec, sizeof spec, "hyperattention:block=32,samples=24,seed=%lu", seed);
        attn_plan *plan = tu_plan(spec, &pb);
        cr_assert_eq(lsh_plan_sums(plan, Q, K, V, lse, num, den), ATTN_OK);
        for (size_t i = 0; i < n; i++) {
            /* D~ / D = (32 + kept 128 / 24) / 128 with kept an integer in [0, 24]. */
            double kept = (den[i] * 128.0 - 32.0) * 24.0 / 128.0;
            cr_assert(fabs(kept - round(kept)) <= 1e-9 && kept > -0.5 && kept < 24.5,
                      "%s: row %zu keeps %.12g draws", spec, i, kept);
            mean += den[i] / (200.0 * (double) n);
        }
        attn_plan_destroy(plan);
    }
    /* Each draw is outside a row's block with probability 3/4: E[D~ / D] = (32 + 96) / 128. */
    cr_assert(fabs(mean - 1.0) < 0.02, "exclude_block = 1: mean D~ / D = %.6g", mean);
    free(Q);
    free(K);
    free(V);
    free(R);
    free(lse);
    free(num);
    free(den);
}

/* pad_zero_key = 1 with n = m = 100, b = 64: T = 2, the last block holds 36 keys plus 28 zero
 * keys, each adding e^0 = 1 to the normaliser of the 36 rows paired with it and nothing to their
 * numerators; the other rows are unchanged.  Same seed, so the same draws. */
Test(hyperattention, pad_zero_key_adds_logit_zero_keys)
{
    size_t n = 100, m = 100, d = 9, dv = 4;
    attn_problem pb = { .n = n, .m = m, .d = d, .dv = dv };
    double *Q, *K, *V;
    tu_random_qkv(n, m, d, dv, 77, &Q, &K, &V);
    double *num0 = tu_alloc(n * dv), *den0 = tu_alloc(n), *num1 = tu_alloc(n * dv),
           *den1 = tu_alloc(n);
    attn_plan *p0 = tu_plan("hyperattention:block=64,samples=16,seed=3", &pb);
    attn_plan *p1 = tu_plan("hyperattention:block=64,samples=16,seed=3,pad_zero_key=1", &pb);
    cr_assert_eq(lsh_plan_sums(p0, Q, K, V, NULL, num0, den0), ATTN_OK);
    cr_assert_eq(lsh_plan_sums(p1, Q, K, V, NULL, num1, den1), ATTN_OK);
    size_t padded = 0;
    for (size_t i = 0; i < n; i++) {
        double extra = den1[i] - den0[i];
        cr_assert(fabs(extra) <= 1e-12 * den0[i] || fabs(extra - 28.0) <= 1e-12 * den1[i],
                  "row %zu: the normaliser changed by %.17g, expected 0 or 28", i, extra);
        padded += fabs(extra - 28.0) <= 1e-12 * den1[i];
        for (size_t c = 0; c < dv; c++)
            cr_assert(fabs(num1[i * dv + c] - num0[i * dv + c]) <=
                          1e-12 * (fabs(num0[i * dv + c]) + den0[i]),
                      "row %zu: the numerator changed", i);
    }
    cr_assert_eq(padded, 36, "%zu rows saw the padded keys, expected the 36 of the last block",
                 padded);
    /* As a matrix, those rows sum to D / (D + 28) < 1; A V is still the output. */
    double *A = tu_alloc(n * m), *O = tu_alloc(n * dv), *AV = tu_alloc(n * dv);
    cr_assert_eq(attn_plan_materialize(p1, Q, K, V, A), ATTN_OK);
    cr_assert_eq(attn_plan_apply(p1, Q, K, V, O), ATTN_OK);
    size_t short_rows = 0;
    for (size_t i = 0; i < n; i++) {
        double sum = 0.0;
        for (size_t j = 0; j < m; j++)
            sum += A[i * m + j];
        double want = den0[i] / den1[i];
        cr_assert(fabs(sum - want) <= 1e-12, "row %zu sums to %.17g, expected %.17g", i, sum,
                  want);
        short_rows += sum < 1.0 - 1e-9;
    }
    cr_assert_eq(short_rows, 36);
    tu_matmul(A, V, AV, n, m, dv);
    cr_assert(tu_rel_fro(AV, O, n * dv) <= 1e-13);
    attn_plan_destroy(p0);
    attn_plan_destroy(p1);
    free(A);
    free(O);
    free(AV);
    free(num0);
    free(den0);
    free(num1);
    free(den1);
    free(Q);
    free(K);
    free(V);
}

/* ---------------------------------------------------------------------------------------------
 * The causal recursion.  n = 512, min_seq_len = 256: rows [0, 256) are one exact base piece;
 * rows [256, 512) are the exact causal piece on [256, 512) merged with the estimate of
 * Q[256, 512) x K[0, 256) (n_q = 256 is not below min_seq_len).  So the top rows equal exact
 * attention, the bottom rows do not, and inside the bottom-right piece the matrix keeps exact
 * ratios: A_ij / A_ik = e^{s_ij - s_ik}.
 */
Test(hyperattention, causal_recursion_on_halves)
{
    const double *q, *k, *v;
    attn_inputs *in = tu_load_head(LM_FILE, 2, 0, &q, &k, &v);
    attn_problem pb = tu_inputs_problem(in, 1);
    size_t n = pb.n, dv = pb.dv, h = n / 2;
    cr_assert_eq(n, 512);
    const char *spec = "hyperattention:block=32,samples=32,min_seq_len=256";
    double *O = tu_apply(spec, &pb, q, k, v), *R = tu_reference(&pb, q, k, v);
    cr_assert(tu_rel_fro(O, R, h * dv) <= 1e-12, "top half: error %.3g",
              tu_rel_fro(O, R, h * dv));
    double bottom = tu_rel_fro(O + h * dv, R + h * dv, h * dv);
    cr_assert(bottom > 1e-6, "bottom half is exact (%.3g): the off-diagonal piece was not "
              "estimated", bottom);
    double *A = tu_materialize(spec, &pb, q, k, v);
    for (size_t i = h; i < n; i += 17) {
        const double *a = A + i * n;
        double si = 0.0;
        for (size_t c = 0; c < pb.d; c++)
            si += q[i * pb.d + c] * k[h * pb.d + c];
        for (size_t j = h + 1; j <= i; j++) {
            double sj = 0.0;
            for (size_t c = 0; c < pb.d; c++)
                sj += q[i * pb.d + c] * k[j * pb.d + c];
            double want = exp(attn_problem_scale(&pb) * (sj - si));
            cr_assert(fabs(a[j] / a[h] - want) <= 1e-10 * want, "row %zu: A[%zu] / A[%zu] = %.15g, "
                      "expected %.15g", i, j, h, a[j] / a[h], want);
        }
    }
    free(A);
    free(O);
    free(R);
    attn_inputs_destroy(in);
}

Test(hyperattention, causal_rows_see_only_the_past)
{
    const double *q, *k, *v;
    attn_inputs *in = tu_load_head(LM_FILE, 2, 0, &q, &k, &v);
    attn_problem pb = tu_inputs_problem(in, 1);
    size_t n = pb.n, d = pb.d, dv = pb.dv;
    static const char *const specs[] = {
        "hyperattention:block=16,samples=64",
        "hyperattention:block=5,samples=7,bits=4,lsh_order=gray,min_seq_len=1,exclude_block=0",
        "hyperattention:block=24,samples=16,pad_zero_key=1",
    };
    for (size_t c = 0; c < sizeof specs / sizeof specs[0]; c++) {
        double *O = tu_apply(specs[c], &pb, q, k, v);
        for (size_t i = 0; i + 1 < n; i += 61) {
            double *Q2 = tu_alloc(n * d), *K2 = tu_alloc(n * d), *V2 = tu_alloc(n * dv);
            memcpy(Q2, q, n * d * sizeof *Q2);
            memcpy(K2, k, n * d * sizeof *K2);
            memcpy(V2, v, n * dv * sizeof *V2);
            tu_fill_gauss(Q2 + (i + 1) * d, (n - i - 1) * d, 16 + i, 2.7);
            tu_fill_gauss(K2 + (i + 1) * d, (n - i - 1) * d, 17 + i, 3.1);
            tu_fill_gauss(V2 + (i + 1) * dv, (n - i - 1) * dv, 18 + i, 5.3);
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

Test(hyperattention, error_falls_as_samples_grow)
{
    double *Q, *K, *V;
    attn_problem pb = { .n = 512, .m = 512, .d = 13, .dv = 7 };
    tu_random_qkv(512, 512, 13, 7, 67, &Q, &K, &V);
    for (int causal = 0; causal <= 1; causal++) {
        pb.causal = causal;
        double e16 = lsh_tu_mean_error("hyperattention:block=32", 16, &pb, Q, K, V, 10, 11);
        double e1024 = lsh_tu_mean_error("hyperattention:block=32", 1024, &pb, Q, K, V, 10, 11);
        cr_assert(e1024 < 0.5 * e16, "random, causal = %d: mean error %.4g at 16 samples, %.4g "
                  "at 1024", causal, e16, e1024);
    }
    free(Q);
    free(K);
    free(V);
    const double *q, *k, *v;
    attn_inputs *in = tu_load_head(LM_FILE, 2, 0, &q, &k, &v);
    attn_problem lm = tu_inputs_problem(in, 1);
    double e16 = lsh_tu_mean_error("hyperattention:block=32", 16, &lm, q, k, v, 10, 11);
    double e1024 = lsh_tu_mean_error("hyperattention:block=32", 1024, &lm, q, k, v, 10, 11);
    cr_assert(e1024 < 0.5 * e16, "lm: mean error %.4g at 16 samples, %.4g at 1024", e16, e1024);
    attn_inputs_destroy(in);
    in = tu_load_head(OCR_FILE, 1, 3, &q, &k, &v);
    attn_problem ocr = tu_inputs_problem(in, 0);
    e16 = lsh_tu_mean_error("hyperattention:block=24", 16, &ocr, q, k, v, 10, 11);
    e1024 = lsh_tu_mean_error("hyperattention:block=24", 1024, &ocr, q, k, v, 10, 11);
    cr_assert(e1024 < 0.5 * e16, "ocr: mean error %.4g at 16 samples, %.4g at 1024", e16, e1024);
    attn_inputs_destroy(in);
}

Test(hyperattention, cost_of_the_causal_recursion)
{
    /* n = 4096, b = S = 128, n_min = 256: off-diagonal pieces at h = 2048, 1024, 512, 256, each
     * level 2048 query rows of 128 + 128 keys; 16 exact causal pieces of 256 positions. */
    attn_problem pb = { .n = 4096, .m = 4096, .d = 64, .dv = 64, .causal = 1 };
    attn_plan *plan = tu_plan("hyperattention:block=128,samples=128,min_seq_len=256", &pb);
    attn_cost cost;
    attn_plan_cost(plan, &cost);
    double want = 4.0 * 2048.0 * 256.0 + 16.0 * 256.0 * 257.0 / 2.0;
    cr_assert(cost.exps == want, "exps %.17g, expected %.17g", cost.exps, want);
    cr_assert(cost.flops >= 256.0 * want, "flops %g", cost.flops);
    attn_plan_destroy(plan);
}

Test(hyperattention, bad_input_names_the_value)
{
    attn_problem pb = { .n = 64, .m = 64, .d = 8, .dv = 8 };
    static const char *const bad[][2] = {
        { "hyperattention:bits=0", "bits = 0" },
        { "hyperattention:bits=31", "bits = 31" },
        { "hyperattention:samples=0", "samples = 0" },
        { "hyperattention:block=0", "block = 0" },
        { "hyperattention:min_seq_len=0", "min_seq_len = 0" },
        { "hyperattention:exclude_block=2", "exclude_block = 2" },
        { "hyperattention:pad_zero_key=-1", "pad_zero_key = -1" },
        { "hyperattention:lsh_order=zorder", "zorder" },
    };
    for (size_t t = 0; t < sizeof bad / sizeof bad[0]; t++)
        tu_expect_refused(bad[t][0], &pb, ATTN_EPARAM, bad[t][1]);
    attn_problem rect = { .n = 64, .m = 32, .d = 8, .dv = 8, .causal = 1 };
    attn_plan *plan = NULL;
    cr_assert_eq(attn_plan_create(&plan, "hyperattention", &rect), ATTN_ESHAPE);
    cr_assert(tu_error_has("m = 32"), "message '%s'", attn_last_error());
}
