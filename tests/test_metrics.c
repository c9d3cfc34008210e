/* test_metrics.c — closed-form checks of lib/core/metrics.c: singular values, spectral norm (SVD
 * and Lanczos paths), rank statistics, output errors, matrix errors (TV, KL and its flags), error
 * paths. */
#include "config.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "attn.h"

/* Agreement to a few rounding errors of O(size) operations: an SVD of a k x k matrix is backward
 * stable with an error of a small multiple of k eps. */
#define SVD_TOL(k) (64.0 * DBL_EPSILON * (double) (k))

static double rel_diff(double a, double b)
{
    return fabs(a - b) / fabs(b);
}

/* splitmix64: a fixed, portable stream of uniform doubles in [-1, 1). */
static double uniform(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return 2.0 * (double) (z >> 11) * 0x1.0p-53 - 1.0;
}

static double *alloc_doubles(size_t count)
{
    double *x = calloc(count, sizeof *x);
    cr_assert(x != NULL, "calloc of %zu doubles", count);
    return x;
}

static double norm2(const double *x, size_t count)
{
    double s = 0.0;
    for (size_t t = 0; t < count; t++)
        s += x[t] * x[t];
    return sqrt(s);
}

/* ----------------------------------------------------------------------------------------------
 * Singular values and rank statistics.
 */

Test(metrics, singular_values_of_scaled_permutation)
{
    /* A 3 x 4 matrix with one nonzero per row and column: X^T X is diagonal with the squares of the
     * entries, so the singular values are their absolute values, sorted. */
    double X[3 * 4] = { 0 };
    double sv[3];
    X[0 * 4 + 2] = 2.385;
    X[1 * 4 + 0] = -7.25;
    X[2 * 4 + 3] = 0.5125;
    cr_assert(eq(int, attn_singular_values(X, 3, 4, sv), ATTN_OK), "%s", attn_last_error());
    cr_assert(le(dbl, rel_diff(sv[0], 7.25), SVD_TOL(4)), "sv[0] = %.17g", sv[0]);
    cr_assert(le(dbl, rel_diff(sv[1], 2.385), SVD_TOL(4)), "sv[1] = %.17g", sv[1]);
    cr_assert(le(dbl, rel_diff(sv[2], 0.5125), SVD_TOL(4)), "sv[2] = %.17g", sv[2]);

    /* eps = 0.1: 0.5125 < 0.725 = 0.1 sigma_1, so two values count.  Stable rank from the squares;
     * effective rank from p_k = sigma_k / 10.1475. */
    attn_rank_stats st;
    const double s[3] = { 7.25, 2.385, 0.5125 };
    double total = s[0] + s[1] + s[2];
    double h = 0.0;
    for (int k = 0; k < 3; k++)
        h -= s[k] / total * log(s[k] / total);
    attn_rank_stats_compute(sv, 3, 0.1, &st);
    cr_assert(eq(dbl, st.eps_rank, 2.0));
    cr_assert(
        le(dbl, rel_diff(st.stable_rank, (s[0] * s[0] + s[1] * s[1] + s[2] * s[2]) / (s[0] * s[0])),
           SVD_TOL(4)),
        "stable rank %.17g", st.stable_rank);
    cr_assert(le(dbl, rel_diff(st.effective_rank, exp(h)), SVD_TOL(4)), "effective rank %.17g",
              st.effective_rank);
}

Test(metrics, singular_values_2x2_and_2x3_closed_form)
{
    /* 2.385 [[3, 0], [4, 5]]: M^T M / 2.385^2 = [[25, 20], [20, 25]], eigenvalues 45 and 5, so the
     * singular values are 2.385 * 3 sqrt(5) and 2.385 * sqrt(5). */
    double M[4] = { 3 * 2.385, 0, 4 * 2.385, 5 * 2.385 };
    double sv[2];
    cr_assert(eq(int, attn_singular_values(M, 2, 2, sv), ATTN_OK), "%s", attn_last_error());
    cr_assert(le(dbl, rel_diff(sv[0], 2.385 * 3 * sqrt(5.0)), SVD_TOL(2)), "%.17g", sv[0]);
    cr_assert(le(dbl, rel_diff(sv[1], 2.385 * sqrt(5.0)), SVD_TOL(2)), "%.17g", sv[1]);

    /* The wide 2 x 3 matrix 1.7 [[1, 1, 0], [0, 1, 1]]: W W^T / 1.7^2 = [[2, 1], [1, 2]] with
     * eigenvalues 3 and 1, so sigma = 1.7 sqrt(3) and 1.7.  Also checks the row-major layout: the
     * transpose has the same values, a misread 3 x 2 layout [[1, 1], [0, 0], [1, 1]] has 2 and 0.
     */
    double W[6] = { 1.7, 1.7, 0, 0, 1.7, 1.7 };
    cr_assert(eq(int, attn_singular_values(W, 2, 3, sv), ATTN_OK), "%s", attn_last_error());
    cr_assert(le(dbl, rel_diff(sv[0], 1.7 * sqrt(3.0)), SVD_TOL(3)), "%.17g", sv[0]);
    cr_assert(le(dbl, rel_diff(sv[1], 1.7), SVD_TOL(3)), "%.17g", sv[1]);
    /* The input is not destroyed (the SVD runs on a copy). */
    cr_assert(eq(dbl, W[1], 1.7));
}

Test(metrics, singular_values_3x3_tridiagonal)
{
    /* 2.385 tridiag(-1, 2, -1) is symmetric positive definite with eigenvalues
     * 2.385 (2 - 2 cos(k pi / 4)), k = 1, 2, 3: 2.385 (2 + sqrt 2), 2.385 * 2, 2.385 (2 - sqrt 2);
     * for an SPD matrix they are also its singular values. */
    const double a = 2.385;
    double T[9] = { 2 * a, -a, 0, -a, 2 * a, -a, 0, -a, 2 * a };
    double sv[3];
    double norm;
    int iterations = -1;
    cr_assert(eq(int, attn_singular_values(T, 3, 3, sv), ATTN_OK), "%s", attn_last_error());
    cr_assert(le(dbl, rel_diff(sv[0], a * (2 + sqrt(2.0))), SVD_TOL(3)), "%.17g", sv[0]);
    cr_assert(le(dbl, rel_diff(sv[1], a * 2), SVD_TOL(3)), "%.17g", sv[1]);
    cr_assert(le(dbl, rel_diff(sv[2], a * (2 - sqrt(2.0))), SVD_TOL(3)), "%.17g", sv[2]);
    /* A small matrix takes the SVD path: 0 iterations. */
    cr_assert(eq(int, attn_spectral_norm(T, 3, 3, &norm, &iterations), ATTN_OK), "%s",
              attn_last_error());
    cr_assert(eq(int, iterations, 0));
    cr_assert(le(dbl, rel_diff(norm, a * (2 + sqrt(2.0))), SVD_TOL(3)), "%.17g", norm);
}

Test(metrics, rank_one_matrix)
{
    /* X = u v^T: one nonzero singular value |u| |v|.  The others are rounding noise, below
     * SVD_TOL * sigma_1, so the stable rank 1 + sum (noise / sigma_1)^2 and the effective rank
     * exp(-sum p log p) are 1 to within that noise (p log p ~ 1e-13 log 1e-13 for the noise terms).
     */
    enum { n = 7, c = 5 };
    double u[n];
    double v[c];
    double X[n * c];
    double sv[c];
    double norm;
    for (size_t i = 0; i < n; i++)
        u[i] = 1.3 + 0.37 * (double) i * (i % 2 ? -1 : 1);
    for (size_t j = 0; j < c; j++)
        v[j] = 2.385 - 0.71 * (double) j;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < c; j++)
            X[i * c + j] = u[i] * v[j];
    double expect = norm2(u, n) * norm2(v, c);

    cr_assert(eq(int, attn_singular_values(X, n, c, sv), ATTN_OK), "%s", attn_last_error());
    cr_assert(le(dbl, rel_diff(sv[0], expect), SVD_TOL(n)), "%.17g vs %.17g", sv[0], expect);
    for (size_t k = 1; k < c; k++)
        cr_assert(le(dbl, sv[k], SVD_TOL(n) * expect), "sv[%zu] = %.3g", k, sv[k]);
    cr_assert(eq(int, attn_spectral_norm(X, n, c, &norm, NULL), ATTN_OK), "%s", attn_last_error());
    cr_assert(le(dbl, rel_diff(norm, expect), SVD_TOL(n)), "%.17g vs %.17g", norm, expect);

    attn_rank_stats st;
    attn_rank_stats_compute(sv, c, 1e-8, &st);
    cr_assert(eq(dbl, st.eps_rank, 1.0));
    cr_assert(le(dbl, fabs(st.stable_rank - 1.0), 1e-12), "stable rank %.17g", st.stable_rank);
    cr_assert(le(dbl, fabs(st.effective_rank - 1.0), 1e-10), "effective rank %.17g",
              st.effective_rank);
}

Test(metrics, rank_stats_equal_values_and_zeros)
{
    /* Four equal singular values and two zeros: p_k = 1/4 on four values, so the effective rank is
     * exp(log 4) = 4 (zeros skipped); the stable rank is 4; the eps-rank is 4 for any eps < 1. */
    const double sv[6] = { 2.385, 2.385, 2.385, 2.385, 0.0, 0.0 };
    attn_rank_stats st;
    attn_rank_stats_compute(sv, 6, 0.5, &st);
    cr_assert(eq(dbl, st.eps_rank, 4.0));
    cr_assert(le(dbl, fabs(st.stable_rank - 4.0), 8 * DBL_EPSILON), "%.17g", st.stable_rank);
    cr_assert(le(dbl, fabs(st.effective_rank - 4.0), 16 * DBL_EPSILON), "%.17g", st.effective_rank);

    /* All zero: nothing to normalize by; documented as eps_rank 0 and NaN ranks. */
    const double zeros[3] = { 0.0, 0.0, 0.0 };
    attn_rank_stats_compute(zeros, 3, 1e-6, &st);
    cr_assert(eq(dbl, st.eps_rank, 0.0));
    cr_assert(isnan(st.stable_rank));
    cr_assert(isnan(st.effective_rank));
}

/* ----------------------------------------------------------------------------------------------
 * Spectral norm: the Lanczos path.
 */

Test(metrics, lanczos_matches_svd_of_transpose)
{
    /* 5000 x 40 > 4096 rows: Lanczos.  The reference is the SVD of the 40 x 5000 transpose, a
     * different layout through attn_singular_values.  Every row is centered (sums to zero), like
     * the rows of Ah - A for row-stochastic matrices, so an all-ones start vector would be in the
     * null space.  With 40 columns the Krylov space is exhausted after at most 40 steps. */
    enum { n = 5000, c = 40 };
    uint64_t state = 2385;
    double *X = alloc_doubles((size_t) n * c);
    double *Xt = alloc_doubles((size_t) n * c);
    double sv[c];
    double norm;
    int iterations = -1;
    for (size_t i = 0; i < n; i++) {
        double mean = 0.0;
        for (size_t j = 0; j < c; j++) {
            X[i * c + j] = uniform(&state) * (1.0 + 0.05 * (double) j);
            mean += X[i * c + j] / c;
        }
        for (size_t j = 0; j < c; j++)
            X[i * c + j] -= mean;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < c; j++)
            Xt[j * n + i] = X[i * c + j];

    cr_assert(eq(int, attn_singular_values(Xt, c, n, sv), ATTN_OK), "%s", attn_last_error());
    cr_assert(eq(int, attn_spectral_norm(X, n, c, &norm, &iterations), ATTN_OK), "%s",
              attn_last_error());
    cr_assert(ge(int, iterations, 1));
    cr_assert(le(int, iterations, c));
    cr_assert(le(dbl, rel_diff(norm, sv[0]), 1e-9), "Lanczos %.17g, SVD %.17g, %d steps", norm,
              sv[0], iterations);
    free(X);
    free(Xt);
}

Test(metrics, lanczos_low_rank_square)
{
    /* X = 3.7 a1 b1^T + 2.385 a2 b2^T + 0.9 a3 b3^T, 4097 x 4097 (Lanczos path), where the a_k (and
     * the b_k) have disjoint supports i mod 3 = k - 1 and unit norm, hence are orthonormal: this is
     * an SVD of X, and ||X||_2 = 3.7.  The entries vary in sign and size; b1 even sums to zero. */
    enum { n = 4097 };
    const double s[3] = { 3.7, 2.385, 0.9 };
    double *a = alloc_doubles(3 * (size_t) n);
    double *b = alloc_doubles(3 * (size_t) n);
    double *X = alloc_doubles((size_t) n * n);
    double norm;
    int iterations = -1;
    for (size_t i = 0; i < n; i++) {
        size_t k = i % 3;
        a[k * n + i] = 1.0 + 0.5 * sin(0.37 * (double) i);
        b[k * n + i] = (k == 0) ? ((i / 3) % 2 ? -1.0 : 1.0) * (1.0 + (double) ((i / 6) % 5))
                                : cos(0.11 * (double) i) + 0.25;
    }
    /* b1 lives on the 1366 indices i = 0, 3, ..., 4095, which form pairs with entries +x, -x. */
    for (size_t k = 0; k < 3; k++) {
        double na = norm2(a + k * n, n);
        double nb = norm2(b + k * n, n);
        for (size_t i = 0; i < n; i++) {
            a[k * n + i] /= na;
            b[k * n + i] /= nb;
        }
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            X[i * n + j] = s[i % 3] * a[(i % 3) * n + i] * b[(i % 3) * n + j];

    cr_assert(eq(int, attn_spectral_norm(X, n, n, &norm, &iterations), ATTN_OK), "%s",
              attn_last_error());
    /* Rank 3: the Krylov spaces become invariant after at most 3 steps, plus one to see it. */
    cr_assert(ge(int, iterations, 1));
    cr_assert(le(int, iterations, 4), "%d steps", iterations);
    cr_assert(le(dbl, rel_diff(norm, 3.7), 1e-9), "Lanczos %.17g, expected 3.7 (%d steps)", norm,
              iterations);
    free(a);
    free(b);
    free(X);
}

Test(metrics, lanczos_zero_matrix)
{
    /* The zero matrix has norm 0; Lanczos must not divide by it. */
    enum { n = 4100, c = 3 };
    double *X = alloc_doubles((size_t) n * c);
    double norm = -1.0;
    int iterations = -1;
    cr_assert(eq(int, attn_spectral_norm(X, n, c, &norm, &iterations), ATTN_OK), "%s",
              attn_last_error());
    cr_assert(eq(dbl, norm, 0.0));
    cr_assert(eq(int, iterations, 0));
    free(X);
}

Test(metrics, lanczos_start_vector_in_null_space)
{
    /* The one input Lanczos cannot handle: every row orthogonal to its fixed start vector, which
     * for c = 2 is proportional to (1 + frac(g), 1 + frac(2 g)), g = (sqrt 5 - 1) / 2 (see
     * metrics.c).  Then X v = 0 to rounding while X != 0; the result must be ATTN_ENOCONV with a
     * message, never a silent 0. */
    enum { n = 4100, c = 2 };
    const double g = 0.6180339887498949;
    const double v0 = 1.0 + g;
    const double v1 = 1.0 + (2.0 * g - 1.0);
    double *X = alloc_doubles((size_t) n * c);
    double norm;
    for (size_t i = 0; i < n; i++) {
        double t = 2.385 * sin(0.3 * (double) i + 0.1);
        X[i * c + 0] = t * v1;
        X[i * c + 1] = -t * v0;
    }
    cr_assert(eq(int, attn_spectral_norm(X, n, c, &norm, NULL), ATTN_ENOCONV));
    cr_assert(ne(ptr, strstr(attn_last_error(), "null space"), NULL), "message: %s",
              attn_last_error());
    free(X);
}

/* ----------------------------------------------------------------------------------------------
 * Output errors.
 */

Test(metrics, output_errors_one_entry)
{
    /* O (8 x 3) has the Walsh columns h1, h2, h3 (entries +-1, mutually orthogonal, norm sqrt 8)
     * scaled by 2.385, 1.5, 0.75, so O^T O = 8 diag(2.385^2, 1.5^2, 0.75^2):
     * ||O||_2 = 2.385 sqrt 8, ||O||_F = sqrt(8 (2.385^2 + 1.5^2 + 0.75^2)), max |O| = 2.385.
     * Oh = O + delta e_5 e_1^T, so E has a single nonzero entry: ||E||_F = ||E||_2 = max |E| =
     * |delta|. */
    enum { n = 8, dv = 3 };
    const double scale[dv] = { 2.385, 1.5, 0.75 };
    const double delta = -0.0371;
    double O[n * dv];
    double Oh[n * dv];
    attn_output_errors err;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < dv; k++) {
            /* Walsh function k + 1: (-1)^(popcount(i & (k + 1))). */
            unsigned bits = (unsigned) (i & (k + 1));
            double sign = __builtin_popcount(bits) % 2 ? -1.0 : 1.0;
            O[i * dv + k] = scale[k] * sign;
        }
    memcpy(Oh, O, sizeof O);
    Oh[5 * dv + 1] += delta;

    cr_assert(eq(int, attn_output_errors_compute(Oh, O, n, dv, &err), ATTN_OK), "%s",
              attn_last_error());
    double o_fro = sqrt(8.0 * (scale[0] * scale[0] + scale[1] * scale[1] + scale[2] * scale[2]));
    double o_spec = scale[0] * sqrt(8.0);
    /* |delta| is Oh - O rounded: (O + delta) - O differs from delta by up to eps |O|. */
    double tol = 8 * DBL_EPSILON * 2.385 / fabs(delta);
    cr_assert(le(dbl, rel_diff(err.rel_fro, fabs(delta) / o_fro), tol), "%.17g", err.rel_fro);
    cr_assert(le(dbl, rel_diff(err.rel_spec, fabs(delta) / o_spec), tol + SVD_TOL(n)), "%.17g",
              err.rel_spec);
    cr_assert(le(dbl, rel_diff(err.max_abs, fabs(delta)), tol), "%.17g", err.max_abs);
    cr_assert(le(dbl, rel_diff(err.max_abs_rel, fabs(delta) / 2.385), tol), "%.17g",
              err.max_abs_rel);
}

Test(metrics, output_errors_zero_exact_is_einval)
{
    /* ||O|| = 0: the relative error is undefined and must not come back as NaN or inf. */
    double O[6] = { 0 };
    double Oh[6] = { 0.1, 0, 0, 0, 0, 2.385 };
    attn_output_errors err;
    cr_assert(eq(int, attn_output_errors_compute(Oh, O, 2, 3, &err), ATTN_EINVAL));
    cr_assert(ne(ptr, strstr(attn_last_error(), "exact output is zero"), NULL), "message: %s",
              attn_last_error());
    cr_assert(ne(ptr, strstr(attn_last_error(), "relative error undefined"), NULL), "message: %s",
              attn_last_error());
}

Test(metrics, output_errors_nan_is_named)
{
    double O[6] = { 1.5, -2.385, 0.3, 0.7, 0.1, 4.0 };
    double Oh[6] = { 1.5, -2.385, 0.3, 0.7, NAN, 4.0 };
    attn_output_errors err;
    cr_assert(eq(int, attn_output_errors_compute(Oh, O, 2, 3, &err), ATTN_ENONFINITE));
    cr_assert(ne(ptr, strstr(attn_last_error(), "Oh: row 1, column 1 is nan"), NULL), "message: %s",
              attn_last_error());
}

/* ----------------------------------------------------------------------------------------------
 * Matrix errors.
 */

Test(metrics, matrix_errors_tv_and_kl_by_hand)
{
    /* Row 0: A = (0.5, 0.3, 0.2), Ah = (0.4, 0.4, 0.2):
     *   TV = (0.1 + 0.1 + 0) / 2 = 0.1,  KL = 0.5 log(0.5/0.4) + 0.3 log(0.3/0.4) + 0.2 log 1
     *      = 0.5 log 1.25 + 0.3 log 0.75 = 0.0252671539...
     * Row 1: A = (0.25, 0.25, 0.5), Ah = (0.125, 0.375, 0.5):
     *   TV = (0.125 + 0.125) / 2 = 0.125,  KL = 0.25 log 2 + 0.25 log(2/3) = 0.25 log(4/3)
     * Row 2: A = (0.6, 0.4, 0), Ah = (0.5, 0.3, 0.2): the A = 0 term contributes 0:
     *   TV = (0.1 + 0.1 + 0.2) / 2 = 0.2,  KL = 0.6 log 1.2 + 0.4 log(4/3)
     * Frobenius: |Ah - A|^2 = 0.02 + 0.03125 + 0.06 = 0.11125, |A|^2 = 0.38 + 0.375 + 0.52 = 1.275.
     */
    const double A[9] = { 0.5, 0.3, 0.2, 0.25, 0.25, 0.5, 0.6, 0.4, 0.0 };
    const double Ah[9] = { 0.4, 0.4, 0.2, 0.125, 0.375, 0.5, 0.5, 0.3, 0.2 };
    attn_matrix_errors err;
    double kl0 = 0.5 * log(1.25) + 0.3 * log(0.75);
    double kl1 = 0.25 * log(4.0 / 3.0);
    double kl2 = 0.6 * log(1.2) + 0.4 * log(4.0 / 3.0);
    cr_assert(le(dbl, fabs(kl0 - 0.0252671539), 1e-10), "hand value of row 0: %.12g", kl0);

    cr_assert(eq(int, attn_matrix_errors_compute(Ah, A, 3, 3, &err), ATTN_OK), "%s",
              attn_last_error());
    /* Inputs like 0.3 are not exact binary fractions: differences carry relative errors of a few
     * eps, and the KL sums about 10 rounded terms. */
    const double tol = 32 * DBL_EPSILON;
    cr_assert(le(dbl, rel_diff(err.tv_mean, (0.1 + 0.125 + 0.2) / 3), tol), "%.17g", err.tv_mean);
    cr_assert(le(dbl, rel_diff(err.tv_max, 0.2), tol), "%.17g", err.tv_max);
    cr_assert(le(dbl, rel_diff(err.kl_mean, (kl0 + kl1 + kl2) / 3), tol), "%.17g", err.kl_mean);
    cr_assert(eq(u32, err.kl_flags, 0));
    cr_assert(le(dbl, rel_diff(err.rel_fro, sqrt(0.11125 / 1.275)), tol), "%.17g", err.rel_fro);
}

Test(metrics, matrix_errors_kl_infinite_flag)
{
    /* Ah puts no mass on key 1 where A has 0.3: KL(A_0 || Ah_0) = +inf, stored as NaN + flag.  TV
     * is still defined: row 0 (0.15 + 0.3 + 0.15) / 2 = 0.3, row 1 equal rows, 0. */
    const double A[6] = { 0.45, 0.3, 0.25, 0.2385, 0.5, 0.2615 };
    const double Ah[6] = { 0.6, 0.0, 0.4, 0.2385, 0.5, 0.2615 };
    attn_matrix_errors err;
    cr_assert(eq(int, attn_matrix_errors_compute(Ah, A, 2, 3, &err), ATTN_OK), "%s",
              attn_last_error());
    cr_assert(isnan(err.kl_mean));
    cr_assert(eq(u32, err.kl_flags, ATTN_KL_INFINITE));
    cr_assert(le(dbl, rel_diff(err.tv_max, 0.3), 16 * DBL_EPSILON), "%.17g", err.tv_max);
    cr_assert(le(dbl, rel_diff(err.tv_mean, 0.15), 16 * DBL_EPSILON), "%.17g", err.tv_mean);
    cr_assert(isfinite(err.rel_fro));
}

Test(metrics, matrix_errors_kl_undefined_flag)
{
    /* A negative entry in Ah (a Nystrom-type approximation) leaves log undefined: NaN + flag.  The
     * other row is infinite at the same time, so both bits are set. */
    const double A[6] = { 0.45, 0.3, 0.25, 0.2385, 0.5, 0.2615 };
    const double Ah[6] = { 0.7, -0.05, 0.35, 0.0, 0.6, 0.4 };
    attn_matrix_errors err;
    cr_assert(eq(int, attn_matrix_errors_compute(Ah, A, 2, 3, &err), ATTN_OK), "%s",
              attn_last_error());
    cr_assert(isnan(err.kl_mean));
    cr_assert(eq(u32, err.kl_flags, ATTN_KL_UNDEFINED | ATTN_KL_INFINITE));

    const double Ah2[6] = { 0.7, -0.05, 0.35, 0.2385, 0.5, 0.2615 };
    cr_assert(eq(int, attn_matrix_errors_compute(Ah2, A, 2, 3, &err), ATTN_OK), "%s",
              attn_last_error());
    cr_assert(isnan(err.kl_mean));
    cr_assert(eq(u32, err.kl_flags, ATTN_KL_UNDEFINED));
    /* TV: row 0 (0.25 + 0.35 + 0.1) / 2 = 0.35, row 1 0. */
    cr_assert(le(dbl, rel_diff(err.tv_max, 0.35), 16 * DBL_EPSILON), "%.17g", err.tv_max);
}

Test(metrics, matrix_errors_zero_exact_is_einval)
{
    const double A[4] = { 0 };
    const double Ah[4] = { 0.25, 0.75, 0.5, 0.5 };
    attn_matrix_errors err;
    cr_assert(eq(int, attn_matrix_errors_compute(Ah, A, 2, 2, &err), ATTN_EINVAL));
    cr_assert(ne(ptr, strstr(attn_last_error(), "exact matrix is zero"), NULL), "message: %s",
              attn_last_error());
}

/* ----------------------------------------------------------------------------------------------
 * Error paths of the SVD helpers.
 */

Test(metrics, singular_values_errors)
{
    double X[6] = { 1.5, -2.385, 0.3, 0.7, 0.1, 4.0 };
    double sv[2];
    double norm;
    X[5] = INFINITY;
    cr_assert(eq(int, attn_singular_values(X, 2, 3, sv), ATTN_ENONFINITE));
    cr_assert(ne(ptr, strstr(attn_last_error(), "X: row 1, column 2 is inf"), NULL), "message: %s",
              attn_last_error());
    cr_assert(eq(int, attn_spectral_norm(X, 2, 3, &norm, NULL), ATTN_ENONFINITE));
    cr_assert(isnan(norm));
    cr_assert(eq(int, attn_singular_values(X, 0, 3, sv), ATTN_ESHAPE));
    cr_assert(ne(ptr, strstr(attn_last_error(), "0 x 3"), NULL), "message: %s", attn_last_error());
}

/* ---------------------------------------------------------------------------------------------
 * Near/far structure (lib/core/structure.c).
 */

/* A = kron(C, ones(b, b) / b) with C (nb x nb) positive: every b x b block is C_IJ / b times the
 * all-ones block, so every off-diagonal block has rank exactly one and norm C_IJ. */
Test(structure, block_constant_matrix_has_rank_one_blocks)
{
    enum { NB = 5, B = 4, N = NB * B };
    double C[NB * NB], *A = calloc(N * N, sizeof *A);
    uint64_t state = 7;
    for (size_t t = 0; t < NB * NB; t++)
        C[t] = 1.5 + uniform(&state);
    for (size_t i = 0; i < N; i++)
        for (size_t j = 0; j < N; j++)
            A[i * N + j] = C[(i / B) * NB + j / B] / B;
    double norm_A;
    cr_assert_eq(attn_spectral_norm(A, N, N, &norm_A, NULL), ATTN_OK);
    attn_offdiag_rank out[NB];
    for (int causal = 0; causal <= 1; causal++) {
        size_t count = 0;
        cr_assert_eq(attn_offdiag_ranks(A, N, B, causal, 1e-9, norm_A, out, &count), ATTN_OK);
        cr_assert_eq(count, (size_t) NB - 1);
        for (size_t t = 0; t < count; t++) {
            size_t dist = t + 1;
            cr_assert_eq(out[t].distance, dist);
            cr_assert_eq(out[t].count, (causal ? 1 : 2) * (NB - dist), "distance %zu", dist);
            cr_assert_eq(out[t].rank_rel_mean, 1.0);
            cr_assert_eq(out[t].rank_rel_max, 1.0);
            cr_assert_eq(out[t].rank_abs_max, 1.0);
            /* ||block||_2 = C_IJ / b * b: the mean over the blocks at this distance. */
            double mean = 0.0;
            for (size_t bi = 0; bi < NB; bi++)
                for (size_t bj = 0; bj < NB; bj++)
                    if ((bi > bj ? bi - bj : bj - bi) == dist && !(causal && bj > bi))
                        mean += C[bi * NB + bj];
            mean /= (double) out[t].count;
            cr_assert(fabs(out[t].norm_rel_mean * norm_A - mean) <= SVD_TOL(B) * mean,
                      "distance %zu: mean block norm %.17g, expected %.17g", dist,
                      out[t].norm_rel_mean * norm_A, mean);
        }
    }
    free(A);
}

/* Ragged blocks: n = 10, b = 4 gives blocks of 4, 4, 2; the identity's off-diagonal blocks are
 * zero (rank 0), and a tolerance relative to ||A||_2 counts only values above it. */
Test(structure, ragged_blocks_and_zero_blocks)
{
    enum { N = 10 };
    double A[N * N] = { 0 };
    for (size_t i = 0; i < N; i++)
        A[i * N + i] = 1.0;
    attn_offdiag_rank out[3];
    size_t count = 0;
    cr_assert_eq(attn_offdiag_ranks(A, N, 4, 0, 1e-6, 1.0, out, &count), ATTN_OK);
    cr_assert_eq(count, 2u);
    cr_assert_eq(out[0].count, 4u);   /* (0,1) (1,0) (1,2) (2,1) */
    cr_assert_eq(out[1].count, 2u);   /* (0,2) (2,0): 4 x 2 and 2 x 4 */
    cr_assert_eq(out[0].rank_rel_max, 0.0);
    cr_assert_eq(out[1].rank_abs_max, 0.0);
    /* One entry 1e-3 in block (2, 0): rank 1 relative to itself, 0 at tol 1e-2 of ||A||_2. */
    A[9 * N + 1] = 1e-3;
    cr_assert_eq(attn_offdiag_ranks(A, N, 4, 1, 1e-2, 1.0, out, &count), ATTN_OK);
    cr_assert_eq(out[1].count, 1u);
    cr_assert_eq(out[1].rank_rel_max, 1.0);
    cr_assert_eq(out[1].rank_abs_max, 0.0);
    cr_assert_eq(attn_offdiag_ranks(A, N, 4, 0, 0.0, 1.0, out, &count), ATTN_EINVAL);
    cr_assert_eq(attn_offdiag_ranks(A, N, 0, 0, 1e-3, 1.0, out, &count), ATTN_EINVAL);
}

/* Far field of a tridiagonal matrix: nothing beyond band 1; at band 0 the two off-diagonals;
 * with nothing removed the whole matrix (the identity: every singular value 1). */
Test(structure, far_field_of_band_matrices)
{
    enum { N = 12 };
    double A[N * N] = { 0 };
    for (size_t i = 0; i < N; i++) {
        A[i * N + i] = 0.5;
        if (i > 0)
            A[i * N + i - 1] = 0.25;
        if (i + 1 < N)
            A[i * N + i + 1] = 0.25;
    }
    double norm_A;
    cr_assert_eq(attn_spectral_norm(A, N, N, &norm_A, NULL), ATTN_OK);
    attn_farfield_rank fr;
    cr_assert_eq(attn_farfield_rank_compute(A, N, 1, 1e-9, norm_A, &fr), ATTN_OK);
    cr_assert_eq(fr.rank_rel, 0.0);
    cr_assert_eq(fr.rank_abs, 0.0);
    cr_assert_eq(fr.norm_rel, 0.0);
    cr_assert_eq(fr.mass, 0.0);
    cr_assert_eq(attn_farfield_rank_compute(A, N, 0, 1e-9, norm_A, &fr), ATTN_OK);
    /* Mass: rows sum to 0.5 off the diagonal except the two end rows (0.25). */
    cr_assert(fabs(fr.mass - (0.5 * (N - 2) + 0.5) / N) < 1e-15, "mass %.17g", fr.mass);
    /* The off-diagonal part 0.25 (S + S^T) of the path graph: eigenvalues 0.5 cos(pi k/(N+1)),
     * none zero for even N: full rank. */
    cr_assert_eq(fr.rank_rel, (double) N);
    double sigma1 = 0.5 * cos(M_PI / (N + 1));
    cr_assert(fabs(fr.norm_rel * norm_A - sigma1) < 1e-14, "||F||_2 %.17g, expected %.17g",
              fr.norm_rel * norm_A, sigma1);
    double Id[N * N] = { 0 };
    for (size_t i = 0; i < N; i++)
        Id[i * N + i] = 1.0;
    cr_assert_eq(attn_farfield_rank_compute(Id, N, SIZE_MAX, 1e-9, 1.0, &fr), ATTN_OK);
    cr_assert_eq(fr.rank_rel, (double) N);
    cr_assert_eq(fr.energy90, ceil(0.9 * N));
    cr_assert_eq(fr.energy99, (double) N);
    cr_assert(fabs(fr.stable_rank - N) < 1e-12);
    cr_assert(fabs(fr.mass - 1.0) < 1e-15);
    cr_assert_eq(attn_farfield_rank_compute(Id, N, 0, -1.0, 1.0, &fr), ATTN_EINVAL);
}
