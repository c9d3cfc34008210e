/* test_exact.c — exact streaming attention against the long-double reference, and its invariances.
 *
 * Tolerance 1e-12 relative (Frobenius) everywhere: the streaming kernel rounds logits, exps and
 * sums in double, which METHODS.md (Part B 4.3) measures at 1e-16..1e-13 for these logit ranges.
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

static void random_case(size_t n, size_t m, size_t d, size_t dv, int causal, double temp)
{
    double *Q = tu_alloc(n * d), *K = tu_alloc(m * d), *V = tu_alloc(m * dv);
    tu_fill_gauss(Q, n * d, n + 1, temp);
    tu_fill_gauss(K, m * d, m + 2, 1.0);
    tu_fill_gauss(V, m * dv, m + 3, 1.0);
    attn_problem pb = { .n = n, .m = m, .d = d, .dv = dv, .causal = causal };
    double err = tu_error_vs_reference("exact", &pb, Q, K, V);
    cr_assert(err <= 1e-12, "n = %zu, m = %zu, causal = %d, temp = %g: error %.3g", n, m, causal,
              temp, err);
    free(Q);
    free(K);
    free(V);
}

Test(exact, random_n2048_bidirectional)
{
    random_case(2048, 2048, 64, 64, 0, 1.0);
}

Test(exact, random_n2048_causal)
{
    random_case(2048, 2048, 64, 64, 1, 1.0);
}

Test(exact, random_peaked_logits)
{
    /* Temperature 8: logits spread over tens of units, rows nearly one-hot. */
    random_case(700, 700, 64, 48, 1, 8.0);
    random_case(700, 700, 64, 48, 0, 8.0);
}

Test(exact, rectangular_and_tiny)
{
    random_case(300, 777, 15, 9, 0, 2.385);
    random_case(777, 300, 15, 9, 0, 2.385);
    random_case(1, 1, 3, 2, 0, 1.0);
    random_case(1, 1, 3, 2, 1, 1.0);
    random_case(1, 513, 3, 2, 0, 1.0);
}

static void real_file(const char *file, int causal)
{
    attn_inputs *in = tu_read_inputs(file, 0);
    attn_problem pb = tu_inputs_problem(in, causal);
    for (size_t l = 0; l < in->layers; l++)
        for (size_t h = 0; h < in->heads; h++) {
            const double *q, *k, *v;
            attn_inputs_head(in, l, h, &q, &k, &v);
            double err = tu_error_vs_reference("exact", &pb, q, k, v);
            cr_assert(err <= 1e-12, "%s layer %zu head %zu causal %d: error %.3g", file, l, h,
                      causal, err);
        }
    attn_inputs_destroy(in);
}

Test(exact, every_head_of_the_ocr_data)
{
    real_file("data/ppocrv4-svtr-attn.h5", 0);
    real_file("data/ppocrv4-svtr-attn-n1024.h5", 0);
}

Test(exact, every_head_of_the_language_model)
{
    real_file("data/stories260k-attn.h5", 1);
}

Test(exact, causal_row_is_prefix_attention)
{
    /* Row i of causal attention is bidirectional attention of query i over keys 0..i. */
    size_t n = 97, d = 11, dv = 5;
    double *Q, *K, *V;
    tu_random_qkv(n, n, d, dv, 1, &Q, &K, &V);
    attn_problem pb = { .n = n, .m = n, .d = d, .dv = dv, .causal = 1 };
    double *O = tu_apply("exact", &pb, Q, K, V);
    size_t rows[] = { 0, 1, 63, 64, 96 };
    for (size_t r = 0; r < 5; r++) {
        size_t i = rows[r];
        attn_problem one = { .n = 1, .m = i + 1, .d = d, .dv = dv };
        double *o = tu_apply("exact", &one, Q + i * d, K, V);
        cr_assert(tu_rel_fro(o, O + i * dv, dv) <= 1e-14, "row %zu", i);
        free(o);
    }
    free(O);
    free(Q);
    free(K);
    free(V);
}

Test(exact, permutation_and_shift_invariance)
{
    size_t n = 130, m = 301, d = 9, dv = 4;
    double *Q, *K, *V;
    tu_random_qkv(n, m, d, dv, 4, &Q, &K, &V);
    double *K2 = tu_alloc(m * d), *V2 = tu_alloc(m * dv);
    attn_problem pb = { .n = n, .m = m, .d = d, .dv = dv };
    double *O = tu_apply("exact", &pb, Q, K, V);
    /* Permuting keys and values together (j -> 11 j mod 301, a bijection since 301 = 7 * 43)
     * leaves O unchanged. */
    for (size_t j = 0; j < m; j++) {
        size_t p = (11 * j) % m;
        memcpy(K2 + p * d, K + j * d, d * sizeof *K2);
        memcpy(V2 + p * dv, V + j * dv, dv * sizeof *V2);
    }
    double *Op = tu_apply("exact", &pb, Q, K2, V2);
    cr_assert(tu_rel_fro(Op, O, n * dv) <= 1e-14);
    /* Adding one vector u to every key adds q_i . u to every logit of row i: no change. */
    for (size_t j = 0; j < m; j++)
        for (size_t c = 0; c < d; c++)
            K2[j * d + c] = K[j * d + c] + 0.37 * (double) (c + 1);
    double *Os = tu_apply("exact", &pb, Q, K2, V);
    cr_assert(tu_rel_fro(Os, O, n * dv) <= 1e-13, "%g", tu_rel_fro(Os, O, n * dv));
    free(O);
    free(Op);
    free(Os);
    free(Q);
    free(K);
    free(V);
    free(K2);
    free(V2);
}

Test(exact, matrix_times_v_and_lse)
{
    size_t n = 80, d = 6, dv = 3;
    double *Q, *K, *V;
    tu_random_qkv(n, n, d, dv, 7, &Q, &K, &V);
    for (int causal = 0; causal <= 1; causal++) {
        attn_problem pb = { .n = n, .m = n, .d = d, .dv = dv, .causal = causal };
        double *A = tu_alloc(n * n), *AV = tu_alloc(n * dv), *R = tu_alloc(n * dv);
        double lse[80];
        cr_assert_eq(attn_exact_matrix(&pb, Q, K, A), ATTN_OK);
        cr_assert_eq(attn_reference(&pb, Q, K, V, R, lse), ATTN_OK);
        tu_matmul(A, V, AV, n, n, dv);
        cr_assert(tu_rel_fro(AV, R, n * dv) <= 1e-13);
        /* lse of row 0 in the causal case is its one logit. */
        if (causal) {
            double s = 0;
            for (size_t c = 0; c < d; c++)
                s += Q[c] * K[c];
            cr_assert(fabs(lse[0] - s / sqrt((double) d)) <= 1e-14);
        }
        free(A);
        free(AV);
        free(R);
    }
    free(Q);
    free(K);
    free(V);
}
