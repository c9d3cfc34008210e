/* lsh_testutil.c — checks shared by the suites of the two sorted-LSH sampling methods (kdeformer
 * and hyperattention). */
#include "config.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <criterion/criterion.h>

#include "attn.h"
#include "lsh_testutil.h"
#include "methods/lsh.h"
#include "testutil.h"

void lsh_tu_check_matrix(const char *spec, const attn_problem *pb, const double *Q,
                         const double *K, const double *V, const char *what, int check_finite)
{
    size_t n = pb->n, m = pb->m, dv = pb->dv;
    attn_plan *plan = tu_plan(spec, pb);
    double *A = tu_alloc(n * m), *AV = tu_alloc(n * dv), *O = tu_alloc(n * dv);
    cr_assert_eq(attn_plan_materialize(plan, Q, K, V, A), ATTN_OK, "%s", attn_last_error());
    cr_assert_eq(attn_plan_apply(plan, Q, K, V, O), ATTN_OK, "%s", attn_last_error());
    if (check_finite)
        for (size_t t = 0; t < n * dv; t++)
            cr_assert(isfinite(O[t]), "%s on %s: O[%zu] = %g", spec, what, t, O[t]);
    for (size_t i = 0; i < n; i++) {
        double sum = 0.0;
        for (size_t j = 0; j < m; j++) {
            double a = A[i * m + j];
            cr_assert(a >= 0.0, "%s on %s: A[%zu][%zu] = %g", spec, what, i, j, a);
            cr_assert(!(pb->causal && j > i && a != 0.0), "%s on %s: A[%zu][%zu] = %g above the "
                      "diagonal", spec, what, i, j, a);
            sum += a;
        }
        /* m rounded terms: 4 m eps. */
        cr_assert(fabs(sum - 1.0) <= 4.0 * (double) m * DBL_EPSILON,
                  "%s on %s: row %zu sums to %.17g", spec, what, i, sum);
    }
    tu_matmul(A, V, AV, n, m, dv);
    double err = tu_rel_fro(AV, O, n * dv);
    cr_assert(err <= 64.0 * (double) m * DBL_EPSILON, "%s on %s (n = %zu, m = %zu, causal = %d): "
              "|AV - O| / |O| = %.3g", spec, what, n, m, pb->causal, err);
    free(A);
    free(AV);
    free(O);
    attn_plan_destroy(plan);
}

lsh_tu_unbiased lsh_tu_unbiased_z(const char *base, const attn_problem *pb, const double *Q,
                                  const double *K, const double *V, size_t seeds,
                                  size_t first_seed)
{
    size_t n = pb->n, dv = pb->dv;
    double *R = tu_alloc(n * dv), *lse = tu_alloc(n), *num = tu_alloc(n * dv), *den = tu_alloc(n);
    cr_assert_eq(attn_reference(pb, Q, K, V, R, lse), ATTN_OK);
    double *x = tu_alloc(seeds * (dv + 1));
    for (size_t s = 0; s < seeds; s++) {
        char spec[256];
        snprintf(spec, sizeof spec, "%s,seed=%zu", base, first_seed + s);
        attn_plan *plan = tu_plan(spec, pb);
        cr_assert_eq(lsh_plan_sums(plan, Q, K, V, lse, num, den), ATTN_OK, "%s",
                     attn_last_error());
        attn_plan_destroy(plan);
        double *row = x + s * (dv + 1);
        for (size_t i = 0; i < n; i++) {
            row[dv] += den[i] / (double) n;
            for (size_t c = 0; c < dv; c++)
                row[c] += (num[i * dv + c] - R[i * dv + c]) / (double) n;
        }
        row[dv] -= 1.0;
    }
    lsh_tu_unbiased res = { 0.0, 0.0, 0.0 };
    for (size_t c = 0; c <= dv; c++) {
        double mean = 0.0, var = 0.0;
        for (size_t s = 0; s < seeds; s++)
            mean += x[s * (dv + 1) + c] / (double) seeds;
        for (size_t s = 0; s < seeds; s++)
            var += pow(x[s * (dv + 1) + c] - mean, 2) / (double) (seeds - 1);
        double z = mean / sqrt(var / (double) seeds);
        if (c == dv) {
            res.z_den = z;
            res.mean_den = mean;
        } else if (fabs(z) > res.z_num_max) {
            res.z_num_max = fabs(z);
        }
    }
    free(R);
    free(lse);
    free(num);
    free(den);
    free(x);
    return res;
}

double lsh_tu_mean_error(const char *base, size_t samples, const attn_problem *pb,
                         const double *Q, const double *K, const double *V, size_t seeds,
                         size_t first_seed)
{
    double sum = 0.0;
    for (size_t s = 0; s < seeds; s++) {
        char spec[256];
        snprintf(spec, sizeof spec, "%s,samples=%zu,seed=%zu", base, samples, first_seed + s);
        sum += tu_error_vs_reference(spec, pb, Q, K, V);
    }
    return sum / (double) seeds;
}

void lsh_tu_check_matrix_shapes(const char *const *specs, size_t nspecs, unsigned long seed0,
                                int check_finite)
{
    static const size_t shapes[][3] = { { 1, 1, 0 },       { 1, 1, 1 },      { 37, 37, 0 },
                                        { 37, 37, 1 },     { 300, 300, 0 },  { 300, 300, 1 },
                                        { 1000, 1000, 0 }, { 1000, 1000, 1 }, { 70, 131, 0 },
                                        { 131, 70, 0 } };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (size_t c = 0; c < nspecs; c++) {
            size_t n = shapes[s][0], m = shapes[s][1];
            attn_problem pb = { .n = n, .m = m, .d = 13, .dv = 7, .causal = (int) shapes[s][2] };
            double *Q, *K, *V;
            tu_random_qkv(n, m, 13, 7, seed0 + s, &Q, &K, &V);
            lsh_tu_check_matrix(specs[c], &pb, Q, K, V, "random", check_finite);
            free(Q);
            free(K);
            free(V);
        }
}

void lsh_tu_check_matrix_real(const char *ocr_spec, const char *lm_spec, int check_finite)
{
    const double *q, *k, *v;
    attn_inputs *in = tu_load_head("data/ppocrv4-svtr-attn.h5", 1, 3, &q, &k, &v);
    attn_problem pb = tu_inputs_problem(in, 0);
    lsh_tu_check_matrix(ocr_spec, &pb, q, k, v, "ocr", check_finite);
    attn_inputs_destroy(in);
    in = tu_load_head("data/stories260k-attn.h5", 2, 0, &q, &k, &v);
    pb = tu_inputs_problem(in, 1);
    lsh_tu_check_matrix(lm_spec, &pb, q, k, v, "lm", check_finite);
    attn_inputs_destroy(in);
}
