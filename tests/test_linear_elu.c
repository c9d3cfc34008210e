/* test_linear_elu.c — linear attention with phi = elu + 1.
 *
 * apply and materialize against an independent long-double evaluation written here from the
 * header's definition (phi(x) = x + 1 for x > 0, exp(x) otherwise, on raw q, k; naive O(n^2 d)
 * sums; eps added to the denominator), causal and bidirectional, square and rectangular,
 * n = 1, 37, 300, 1000, random and real data; eps: rows sum to one at eps = 0 and to
 * den / (den + eps) otherwise; the scale is ignored; a zero denominator is an error at eps = 0
 * and a zero row at eps > 0; bad parameters.  Real data: the OCR model (bidirectional, d = 15)
 * and the small language model (causal, d = 8).
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

#define OCR_FILE "data/ppocrv4-svtr-attn.h5"
#define LM_FILE "data/stories260k-attn.h5"

static long double elu1(double x)
{
    return x > 0 ? (long double) x + 1.0L : expl((long double) x);
}

/* O (n x dv) = phi(q_i)^T sum_j phi(k_j) v_j^T / (phi(q_i)^T sum_j phi(k_j) + eps), naive. */
static double *naive_elu(const attn_problem *pb, const double *Q, const double *K,
                         const double *V, long double eps)
{
    size_t n = pb->n, m = pb->m, d = pb->d, dv = pb->dv;
    long double *num = calloc(dv, sizeof *num);
    cr_assert(num != NULL);
    double *O = tu_alloc(n * dv);
    for (size_t i = 0; i < n; i++) {
        long double den = 0.0L;
        for (size_t c = 0; c < dv; c++)
            num[c] = 0.0L;
        for (size_t j = 0; j < (pb->causal ? i + 1 : m); j++) {
            long double kij = 0.0L;
            for (size_t c = 0; c < d; c++)
                kij += elu1(Q[i * d + c]) * elu1(K[j * d + c]);
            den += kij;
            for (size_t c = 0; c < dv; c++)
                num[c] += kij * V[j * dv + c];
        }
        for (size_t c = 0; c < dv; c++)
            O[i * dv + c] = (double) (num[c] / (den + eps));
    }
    free(num);
    return O;
}

/* Sums of positive terms and one division: 1e-12 relative. */
#define NAIVE_TOL 1e-12

static void expect_naive(const char *spec, double eps, const attn_problem *pb, const double *Q,
                         const double *K, const double *V, const char *what)
{
    double *O = tu_apply(spec, pb, Q, K, V);
    double *R = naive_elu(pb, Q, K, V, eps);
    double err = tu_rel_fro(O, R, pb->n * pb->dv);
    cr_assert(err <= NAIVE_TOL, "%s on %s (n = %zu, m = %zu, causal = %d): |O - naive| / |naive| "
              "= %.3g", spec, what, pb->n, pb->m, pb->causal, err);
    free(O);
    free(R);
}

Test(linear_elu, apply_matches_naive_random)
{
    static const size_t shapes[][3] = { /* n, m, causal */
        { 1, 1, 0 }, { 1, 1, 1 }, { 37, 37, 0 }, { 37, 37, 1 }, { 300, 300, 0 }, { 300, 300, 1 },
        { 70, 131, 0 }, { 131, 70, 0 }, { 1000, 1000, 0 }, { 1000, 1000, 1 },
    };
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        size_t n = shapes[t][0], m = shapes[t][1], d = 13, dv = 7;
        attn_problem pb = { .n = n, .m = m, .d = d, .dv = dv, .causal = (int) shapes[t][2] };
        double *Q, *K, *V;
        tu_random_qkv(n, m, d, dv, 40 + t, &Q, &K, &V);
        expect_naive("linear_elu", 1e-6L, &pb, Q, K, V, "random data");
        expect_naive("linear_elu:eps=0", 0.0L, &pb, Q, K, V, "random data");
        /* A large eps: the offset really enters every denominator. */
        expect_naive("linear_elu:eps=37.25", 37.25L, &pb, Q, K, V, "random data");
        free(Q);
        free(K);
        free(V);
    }
}

Test(linear_elu, apply_matches_naive_real)
{
    const double *q, *k, *v;
    attn_inputs *in = tu_load_head(OCR_FILE, 1, 3, &q, &k, &v);
    attn_problem pb = tu_inputs_problem(in, 0);
    expect_naive("linear_elu", 1e-6L, &pb, q, k, v, OCR_FILE);
    pb.causal = 1;
    expect_naive("linear_elu", 1e-6L, &pb, q, k, v, OCR_FILE);
    pb.causal = 0;
    pb.n = 100; /* rectangular: the first 100 queries, all keys */
    expect_naive("linear_elu:eps=0", 0.0L, &pb, q, k, v, OCR_FILE);
    attn_inputs_destroy(in);

    in = tu_load_head(LM_FILE, 2, 0, &q, &k, &v);
    pb = tu_inputs_problem(in, 1);
    expect_naive("linear_elu", 1e-6L, &pb, q, k, v, LM_FILE);
    pb.causal = 0;
    expect_naive("linear_elu:eps=0", 0.0L, &pb, q, k, v, LM_FILE);
    attn_inputs_destroy(in);
}

/* Rows of the materialized matrix: with eps = 0 they sum to one (m eps rounding), with eps > 0 to
 * den_i / (den_i + eps) with den_i = phi(q_i).sum_j phi(k_j) from the naive sums. */
Test(linear_elu, row_sums_and_eps)
{
    size_t n = 150, d = 9, dv = 4;
    double *Q, *K, *V;
    tu_random_qkv(n, n, d, dv, 8, &Q, &K, &V);
    /* Entries shrunk so that the denominators are small and eps = 0.5 shows clearly. */
    for (size_t t = 0; t < n * d; t++) {
        Q[t] = -3.0 + 0.2 * Q[t];
        K[t] = -3.1 + 0.2 * K[t];
    }
    for (int causal = 0; causal <= 1; causal++) {
        attn_problem pb = { .n = n, .m = n, .d = d, .dv = dv, .causal = causal };
        double *A0 = tu_materialize("linear_elu:eps=0", &pb, Q, K, V);
        double *Ae = tu_materialize("linear_elu:eps=0.5", &pb, Q, K, V);
        for (size_t i = 0; i < n; i++) {
            long double den = 0.0L;
            double s0 = 0.0, se = 0.0;
            for (size_t j = 0; j < (causal ? i + 1 : n); j++) {
                for (size_t c = 0; c < d; c++)
                    den += elu1(Q[i * d + c]) * elu1(K[j * d + c]);
            }
            for (size_t j = 0; j < n; j++) {
                cr_assert(A0[i * n + j] >= 0.0 && Ae[i * n + j] >= 0.0);
                if (causal && j > i)
                    cr_assert(A0[i * n + j] == 0.0 && Ae[i * n + j] == 0.0);
                s0 += A0[i * n + j];
                se += Ae[i * n + j];
            }
            cr_assert(fabs(s0 - 1.0) <= 4.0 * (double) n * DBL_EPSILON,
                      "causal = %d, eps = 0: row %zu sums to %.17g", causal, i, s0);
            double expect = (double) (den / (den + 0.5L));
            cr_assert(fabs(se - expect) <= 1e-13 && expect < 0.99,
                      "causal = %d, eps = 0.5: row %zu sums to %.17g, expected %.17g", causal, i,
                      se, expect);
        }
        /* materialize times V is apply. */
        double *O = tu_apply("linear_elu:eps=0.5", &pb, Q, K, V), *AV = tu_alloc(n * dv);
        tu_matmul(Ae, V, AV, n, n, dv);
        double err = tu_rel_fro(AV, O, n * dv);
        cr_assert(err <= 64.0 * (double) n * DBL_EPSILON, "causal = %d: |AV - O| / |O| = %.3g",
                  causal, err);
        free(O);
        free(AV);
        free(A0);
        free(Ae);
    }
    free(Q);
    free(K);
    free(V);
}

/* The feature map acts on raw q, k: the problem's scale changes nothing, bit for bit. */
Test(linear_elu, scale_is_not_used)
{
    size_t n = 120, d = 8, dv = 5;
    double *Q, *K, *V;
    tu_random_qkv(n, n, d, dv, 19, &Q, &K, &V);
    for (int causal = 0; causal <= 1; causal++) {
        attn_problem pb = { .n = n, .m = n, .d = d, .dv = dv, .causal = causal };
        double *O1 = tu_apply("linear_elu", &pb, Q, K, V);
        pb.scale = 0.0371;
        double *O2 = tu_apply("linear_elu", &pb, Q, K, V);
        cr_assert(memcmp(O1, O2, n * dv * sizeof *O1) == 0, "causal = %d: scale changed O",
                  causal);
        free(O1);
        free(O2);
    }
    free(Q);
    free(K);
    free(V);
}

/* Queries of entries -800: phi(q) = exp(-800) underflows to 0 in every feature.  With eps = 0 the
 * denominator is 0: an error naming the row (never NaN); with eps > 0 the row is 0 / eps = 0. */
Test(linear_elu, zero_denominator)
{
    size_t n = 40, d = 3, dv = 2, bad = 29;
    double *Q, *K, *V;
    tu_random_qkv(n, n, d, dv, 2, &Q, &K, &V);
    for (size_t c = 0; c < d; c++)
        Q[bad * d + c] = -800.0;
    for (int causal = 0; causal <= 1; causal++) {
        attn_problem pb = { .n = n, .m = n, .d = d, .dv = dv, .causal = causal };
        attn_plan *plan = tu_plan("linear_elu:eps=0", &pb);
        double *O = tu_alloc(n * dv);
        int status = attn_plan_apply(plan, Q, K, V, O);
        cr_assert_eq(status, ATTN_EINVAL, "causal = %d: status %d", causal, status);
        cr_assert(tu_error_has("row 29"), "message: %s", attn_last_error());
        attn_plan_destroy(plan);
        free(O);
        O = tu_apply("linear_elu", &pb, Q, K, V);
        for (size_t c = 0; c < dv; c++)
            cr_assert(O[bad * dv + c] == 0.0, "causal = %d: O[%zu][%zu] = %g", causal, bad, c,
                      O[bad * dv + c]);
        free(O);
    }
    free(Q);
    free(K);
    free(V);
}

static void expect_bad(const char *spec, const attn_problem *pb, const char *needle)
{
    tu_expect_refused(spec, pb, ATTN_EPARAM, needle);
}

Test(linear_elu, bad_parameters_name_the_value)
{
    attn_problem pb = { .n = 16, .m = 16, .d = 4, .dv = 4 };
    expect_bad("linear_elu:eps=-1e-9", &pb, "eps = -1e-9");
    expect_bad("linear_elu:eps=inf", &pb, "eps = inf");
    expect_bad("linear_elu:eps=nan", &pb, "eps = 'nan'");
    expect_bad("linear_elu:features=8", &pb, "features");
}

Test(linear_elu, canonical_spec_caps_and_cost)
{
    const attn_method *method = attn_method_find("linear_elu");
    cr_assert_not_null(method);
    cr_assert_null(attn_method_budget(method), "linear_elu has no budget");
    unsigned caps = attn_method_caps(method);
    cr_assert(!(caps & ATTN_ROW_STOCHASTIC), "eps > 0 by default: rows sum below one");
    cr_assert((caps & ATTN_CAN_RECT) && (caps & ATTN_CAN_CAUSAL) && (caps & ATTN_CAN_BIDIR));
    char buf[64];
    attn_problem pb = { .n = 1000, .m = 1000, .d = 16, .dv = 8, .causal = 0 };
    cr_assert_eq(attn_method_exact_spec(method, &pb, buf, sizeof buf), ATTN_EUNSUP);
    attn_plan *plan = tu_plan("linear_elu", &pb);
    cr_assert_str_eq(attn_plan_spec(plan), "linear_elu:eps=1e-06");
    attn_cost cost;
    attn_plan_cost(plan, &cost);
    /* State and its use: 2 (n + m) d (dv + 1); exps (n + m) d. */
    double expected = 2.0 * 2000.0 * 16.0 * 9.0;
    cr_assert(fabs(cost.flops - expected) <= 1e-9 * expected, "flops %.6g, expected %.6g",
              cost.flops, expected);
    cr_assert(cost.exps == 2000.0 * 16.0, "exps %.6g", cost.exps);
    attn_plan_destroy(plan);
}
