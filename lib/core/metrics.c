/* metrics.c — error and structure metrics of approximate attention (METHODS.md Part B section 5).
 *
 * Output errors (attn_output_errors_compute).  For E = Oh - O (n x dv): ||E||_F / ||O||_F,
 * ||E||_2 / ||O||_2, max |E_ik| and max |E_ik| / max |O_ik|.  Cost O(n dv^2) for the two SVDs of
 * n x dv matrices, one n x dv scratch matrix.
 *
 * Matrix errors (attn_matrix_errors_compute).  For an exact attention matrix A and an approximation
 * Ah (n x m): ||Ah - A||_F / ||A||_F, the total variation TV_i = (1/2) sum_j |Ah_ij - A_ij| of each
 * row (mean and max over rows) and the mean over rows of
 * KL(A_i || Ah_i) = sum_j A_ij log(A_ij / Ah_ij), which is stored as NaN with a flag where it is
 * infinite or undefined.  Cost O(n m), no allocation.
 *
 * Spectral norm (attn_spectral_norm).  Singular values by LAPACKE_dgesdd when n, c <= 4096,
 * O(n c min(n, c)); otherwise Golub-Kahan-Lanczos bidiagonalization with full reorthogonalization,
 * O(n c) per step and (n + c) doubles of memory per step, at most 100 steps.
 *
 * Singular values (attn_singular_values) and rank statistics (attn_rank_stats_compute): the
 * eps-rank #{sigma_k > eps sigma_1}, the stable rank sum sigma_k^2 / sigma_1^2 and the effective
 * rank exp(-sum p_k log p_k), p_k = sigma_k / sum sigma (Roy & Vetterli).
 *
 * The KDEformer normalisation ||Oh - O||_2 / (||A||_2 ||V||_2), in which the guarantees of
 * KDEformer and HyperAttention are stated, is computed by the caller from the pieces these helpers
 * provide: rel_spec * ||O||_2 / (||A||_2 ||V||_2), each norm from attn_spectral_norm.
 *
 * References.
 *   G. Golub, W. Kahan, "Calculating the singular values and pseudo-inverse of a matrix",
 *     SIAM J. Numer. Anal. Ser. B 2 (1965) 205-224 (the bidiagonalization); Golub & Van Loan,
 *     Matrix Computations, 4th ed., section 10.4 (Lanczos bidiagonalization).
 *   L. Giraud, J. Langou, M. Rozloznik, "The loss of orthogonality in the Gram-Schmidt
 *     orthogonalization process", Comput. Math. Appl. 50 (2005) 1069-1075 (classical
 *     Gram-Schmidt twice is enough).
 *   O. Roy, M. Vetterli, "The effective rank: a measure of effective dimensionality",
 *     EUSIPCO 2007.
 *   A. Zandieh, I. Han, M. Daliri, A. Karbasi, "KDEformer: Accelerating Transformers via Kernel
 *     Density Estimation", ICML 2023, arXiv:2302.02451 (the normalised spectral error).
 *
 * This file uses CBLAS and LAPACKE only (no GSL header: see TOOLCHAIN.md, the cblas.h clash).
 */
#include "config.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <lapacke.h>

#include "attn.h"

/* Largest dimension for which attn_spectral_norm uses a full SVD: a 4096 x 4096 dgesdd (values
 * only) takes about a second and 128 MiB for its copy; beyond that the Lanczos iteration is
 * cheaper. */
#define SVD_MAX_DIM 4096
/* Lanczos bidiagonalization: most steps, and the relative change of the estimate that stops it. */
#define GKL_MAX_STEPS 100
#define GKL_RTOL 1e-10

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

static size_t max_size(size_t a, size_t b)
{
    return a > b ? a : b;
}

/* LAPACKE (LP64) and CBLAS take int dimensions. */
static int check_dims(const char *what, size_t n, size_t c)
{
    if (n == 0 || c == 0)
        return ATTN_ERR(ATTN_ESHAPE, "%s: the matrix is %zu x %zu, expected at least 1 x 1", what,
                        n, c);
    if (n > INT_MAX || c > INT_MAX)
        return ATTN_ERR(ATTN_ESHAPE,
                        "%s: the matrix is %zu x %zu, beyond LAPACK's 32-bit dimensions "
                        "(at most %d)",
                        what, n, c, INT_MAX);
    return ATTN_OK;
}

static double max_abs(const double *x, size_t count)
{
    double mx = 0.0;
    for (size_t t = 0; t < count; t++)
        if (fabs(x[t]) > mx)
            mx = fabs(x[t]);
    return mx;
}

/* ||x - y||_2 of two vectors of count entries (y NULL: ||x||_2).  The squares are summed after
 * dividing by the largest entry, so that neither overflow (|x| > 1e154) nor underflow
 * (|x| < 1e-154) can spoil the result; two passes. */
static double dist2(const double *x, const double *y, size_t count)
{
    double scale = 0.0;
    double sum = 0.0;
    for (size_t t = 0; t < count; t++) {
        double a = fabs(y == NULL ? x[t] : x[t] - y[t]);
        if (a > scale)
            scale = a;
    }
    if (scale == 0.0)
        return 0.0;
    for (size_t t = 0; t < count; t++) {
        double a = (y == NULL ? x[t] : x[t] - y[t]) / scale;
        sum += a * a;
    }
    return scale * sqrt(sum);
}

/* Turn a LAPACKE return value into a status with a message naming the routine and the matrix. */
static int lapack_status(const char *routine, lapack_int info, size_t n, size_t c)
{
    if (info == 0)
        return ATTN_OK;
    if (info == LAPACK_WORK_MEMORY_ERROR || info == LAPACK_TRANSPOSE_MEMORY_ERROR)
        return ATTN_ERR(ATTN_ENOMEM, "%s: no memory for the workspace of the %zu x %zu matrix",
                        routine, n, c);
    if (info < 0)
        return ATTN_ERR(ATTN_ELAPACK,
                        "%s: info = %d (argument %d is invalid) for the %zu x %zu matrix", routine,
                        (int) info, (int) -info, n, c);
    return ATTN_ERR(ATTN_ELAPACK,
                    "%s: info = %d (the bidiagonal SVD did not converge) for the "
                    "%zu x %zu matrix",
                    routine, (int) info, n, c);
}

/* Singular values of the row-major n x c matrix X into sv (min(n, c), descending).  X is destroyed.
 * Read column-major, the row-major n x c array is the c x n matrix X^T with leading dimension c: it
 * has the same singular values, and LAPACKE hands it to LAPACK without the transposed copy that
 * LAPACK_ROW_MAJOR would make. */
static int svd_destroy(double *X, size_t n, size_t c, double *sv)
{
    lapack_int info = LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'N', (lapack_int) c, (lapack_int) n, X,
                                     (lapack_int) c, sv, NULL, 1, NULL, 1);
    return lapack_status("LAPACKE_dgesdd", info, n, c);
}

/* The same without destroying X: one copy of n x c doubles.  Dimensions already checked. */
static int svd_copy(const double *X, size_t n, size_t c, double *sv)
{
    int status;
    double *copy = calloc(n * c, sizeof *copy);
    if (copy == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "copy of the %zu x %zu matrix for its SVD (%zu bytes)", n, c,
                        n * c * sizeof *copy);
    memcpy(copy, X, n * c * sizeof *copy);
    status = svd_destroy(copy, n, c, sv);
    free(copy);
    return status;
}

int attn_singular_values(const double *X, size_t n, size_t c, double *sv)
{
    ATTN_TRY(check_dims("singular values", n, c), "attn_singular_values");
    ATTN_TRY(attn_check_finite("X", X, n, c), "singular values");
    return svd_copy(X, n, c, sv);
}

/* ---------------------------------------------------------------------------------------------
 * Output and matrix errors.
 */

/* Relative spectral error: from the SVDs of the n x dv matrices E and O, not from the eigenvalues
 * of the dv x dv Gram matrices E^T E and O^T O.  Both cost O(n dv^2) (dgesdd reduces the wide c x n
 * matrix by an LQ factorization first), but the Gram matrix squares the entries, so it underflows
 * for |E| < 1e-154 (a near-exact method's error is not far from that), and its rounding errors are
 * eps ||E||_2^2 in absolute terms; the SVD is backward stable on E itself, so sigma_1 comes with a
 * relative error of a few eps at any scale. */
int attn_output_errors_compute(const double *Oh, const double *O, size_t n, size_t dv,
                               attn_output_errors *err)
{
    int status;
    size_t count = n * dv;
    double *E = NULL;
    double *sv = NULL;
    double o_max;
    double e_max = 0.0;
    double e_fro;
    double e_spec;

    err->rel_fro = NAN;
    err->rel_spec = NAN;
    err->max_abs = NAN;
    err->max_abs_rel = NAN;
    ATTN_TRY(check_dims("output errors", n, dv), "attn_output_errors_compute");
    ATTN_TRY(attn_check_finite("Oh", Oh, n, dv), "output errors");
    ATTN_TRY(attn_check_finite("O", O, n, dv), "output errors");
    o_max = max_abs(O, count);
    if (o_max == 0.0)
        return ATTN_ERR(ATTN_EINVAL,
                        "output errors: exact output is zero; relative error undefined "
                        "(O is %zu x %zu)",
                        n, dv);

    E = calloc(count, sizeof *E);
    sv = calloc(min_size(n, dv), sizeof *sv);
    if (E == NULL || sv == NULL) {
        status =
            ATTN_ERR(ATTN_ENOMEM, "output errors: %zu x %zu difference and %zu singular values", n,
                     dv, min_size(n, dv));
        goto done;
    }
    for (size_t t = 0; t < count; t++) {
        E[t] = Oh[t] - O[t];
        if (!isfinite(E[t])) {
            status = ATTN_ERR(ATTN_ENONFINITE,
                              "output errors: Oh - O overflows at row %zu, column %zu "
                              "(Oh = %g, O = %g)",
                              t / dv, t % dv, Oh[t], O[t]);
            goto done;
        }
        if (fabs(E[t]) > e_max)
            e_max = fabs(E[t]);
    }
    e_fro = dist2(E, NULL, count);

    status = svd_destroy(E, n, dv, sv);
    if (status != ATTN_OK) {
        attn_error_context(status, "output errors: ||Oh - O||_2");
        goto done;
    }
    e_spec = sv[0];
    memcpy(E, O, count * sizeof *E);
    status = svd_destroy(E, n, dv, sv);
    if (status != ATTN_OK) {
        attn_error_context(status, "output errors: ||O||_2");
        goto done;
    }

    /* O is not zero, so ||O||_F and ||O||_2 = sv[0] are positive. */
    err->rel_fro = e_fro / dist2(O, NULL, count);
    err->rel_spec = e_spec / sv[0];
    err->max_abs = e_max;
    err->max_abs_rel = e_max / o_max;
done:
    free(E);
    free(sv);
    return status;
}

/* KL(A_i || Ah_i) = sum_j A_ij log(A_ij / Ah_ij), computed as given (rows are not renormalized),
 * with these conventions: a term with A_ij = 0 contributes 0; A_ij > 0 with Ah_ij = 0 makes the row
 * infinite (ATTN_KL_INFINITE); a negative entry in Ah (or in A) makes it undefined
 * (ATTN_KL_UNDEFINED).  When any row is infinite or undefined, kl_mean is NaN and kl_flags says why
 * (both bits may be set); inf is never stored.  TV and the Frobenius error are always defined.
 * ||A||_F = 0 is ATTN_EINVAL.  Inputs must be finite (ATTN_ENONFINITE naming the operand and
 * index).  O(n m), no allocation. */
int attn_matrix_errors_compute(const double *Ah, const double *A, size_t n, size_t m,
                               attn_matrix_errors *err)
{
    double a_fro;
    double tv_sum = 0.0;
    double tv_max = 0.0;
    double kl_sum = 0.0;
    unsigned flags = 0;

    err->rel_fro = NAN;
    err->tv_mean = NAN;
    err->tv_max = NAN;
    err->kl_mean = NAN;
    err->kl_flags = 0;
    if (n == 0 || m == 0)
        return ATTN_ERR(ATTN_ESHAPE,
                        "matrix errors: the matrix is %zu x %zu, expected at least 1 x 1", n, m);
    ATTN_TRY(attn_check_finite("Ah", Ah, n, m), "matrix errors");
    ATTN_TRY(attn_check_finite("A", A, n, m), "matrix errors");
    a_fro = dist2(A, NULL, n * m);
    if (a_fro == 0.0)
        return ATTN_ERR(ATTN_EINVAL,
                        "matrix errors: exact matrix is zero; relative error undefined "
                        "(A is %zu x %zu)",
                        n, m);

    for (size_t i = 0; i < n; i++) {
        const double *a = A + i * m;
        const double *ah = Ah + i * m;
        double tv = 0.0;
        double kl = 0.0;
        for (size_t j = 0; j < m; j++) {
            tv += fabs(ah[j] - a[j]);
            if (ah[j] < 0.0 || a[j] < 0.0)
                flags |= ATTN_KL_UNDEFINED;
            else if (a[j] > 0.0 && ah[j] == 0.0)
                flags |= ATTN_KL_INFINITE;
            else if (a[j] > 0.0)
                /* A difference of logs, not the log of a quotient: a / ah overflows when ah is
                 * subnormal. */
                kl += a[j] * (log(a[j]) - log(ah[j]));
        }
        tv *= 0.5;
        tv_sum += tv;
        if (tv > tv_max)
            tv_max = tv;
        kl_sum += kl;
    }

    err->rel_fro = dist2(Ah, A, n * m) / a_fro;
    err->tv_mean = tv_sum / (double) n;
    err->tv_max = tv_max;
    err->kl_mean = flags != 0 ? NAN : kl_sum / (double) n;
    err->kl_flags = flags;
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Spectral norm.
 */

/* Orthogonalize x (len entries) against the k orthonormal rows of B (k x len, row-major) by
 * classical Gram-Schmidt applied twice ("twice is enough", Giraud et al.), each pass two dgemv.  h
 * holds k doubles of scratch. */
static void reorthogonalize(const double *B, size_t k, size_t len, double *x, double *h)
{
    if (k == 0)
        return;
    for (int pass = 0; pass < 2; pass++) {
        cblas_dgemv(CblasRowMajor, CblasNoTrans, (int) k, (int) len, 1.0, B, (int) len, x, 1, 0.0,
                    h, 1);
        cblas_dgemv(CblasRowMajor, CblasTrans, (int) k, (int) len, -1.0, B, (int) len, h, 1, 1.0, x,
                    1);
    }
}

/* Largest singular value of the k x k upper bidiagonal matrix with diagonal alpha[0..k) and
 * superdiagonal beta[0..k-1), by dbdsqr without vectors (which runs the dqds algorithm, accurate to
 * a few eps relative).  d and e are 2k doubles of scratch (dbdsqr destroys its input). */
static int top_ritz(const double *alpha, const double *beta, size_t k, double *scratch,
                    double *theta)
{
    double *d = scratch;
    double *e = scratch + k;
    lapack_int info;
    memcpy(d, alpha, k * sizeof *d);
    if (k > 1)
        memcpy(e, beta, (k - 1) * sizeof *e);
    info = LAPACKE_dbdsqr(LAPACK_COL_MAJOR, 'U', (lapack_int) k, 0, 0, 0, d, e, NULL, 1, NULL, 1,
                          NULL, 1);
    if (info != 0)
        return attn_error_context(lapack_status("LAPACKE_dbdsqr", info, k, k), "Lanczos step %zu",
                                  k);
    *theta = d[0];
    return ATTN_OK;
}

/* Golub-Kahan-Lanczos bidiagonalization of the n x c matrix X (dimensions and finiteness checked).
 *
 * From a unit start vector v_0 in R^c it builds orthonormal u_0, u_1, ... in R^n and v_0, v_1, ...
 * in R^c with X V_k = U_k B_k, B_k upper bidiagonal with diagonal alpha and superdiagonal beta:
 *     alpha_k u_k = X v_k - beta_{k-1} u_{k-1},   beta_k v_{k+1} = X^T u_k - alpha_k v_k,
 * each new vector orthogonalized against all earlier ones (full reorthogonalization, so no spurious
 * copies of converged values appear).  The estimate theta_k, the largest singular value of B_k (the
 * largest Ritz value), never decreases and never exceeds ||X||_2.  It stops
 *   - when theta changes by less than GKL_RTOL relative from one step to the next;
 *   - when alpha_k or beta_k falls below max(n, c) eps ||X||_F, the worst-case rounding level of a
 *     matrix-vector product: the Krylov spaces are then invariant (to that level) and contain the
 *     start vector's component along the top singular vector, so theta is ||X||_2 to rounding;
 *   - when k reaches min(n, c), where the bases span the whole space and theta is exact.
 * Otherwise, after GKL_MAX_STEPS, it returns ATTN_ENOCONV with the last estimate in *norm.
 *
 * The start vector is deterministic: v_j proportional to 1 + frac((j + 1) g), g = (sqrt 5 - 1) / 2.
 * Its entries are positive, so it is not orthogonal to any nonzero nonnegative vector, in
 * particular to the top right singular vector of a nonnegative matrix (an attention matrix), which
 * Perron-Frobenius lets us take nonnegative.  It is not constant, because the all-ones vector is in
 * the null space of the difference Ah - A of two row-stochastic matrices (every row sums to zero),
 * the matrix whose norm is most often wanted. */
static int lanczos_norm(const double *X, size_t n, size_t c, double *norm, int *iterations)
{
    int status = ATTN_OK;
    size_t kmax = min_size(GKL_MAX_STEPS, min_size(n, c));
    double *U = calloc(kmax * n, sizeof *U); /* u_0 .. u_{kmax-1}, one per row */
    double *V = calloc(kmax * c, sizeof *V); /* v_0 .. v_{kmax-1}, one per row */
    double *alpha = calloc(kmax, sizeof *alpha);
    double *beta = calloc(kmax, sizeof *beta);
    double *scratch = calloc(2 * kmax, sizeof *scratch); /* top_ritz, and h for reorthogonalize */
    const double g = 0.6180339887498949;
    double x_fro;
    double tiny;
    double theta = 0.0;
    double theta_prev = 0.0;
    double change = INFINITY;
    double vnorm;
    size_t steps = 0;
    int done = 0;

    if (U == NULL || V == NULL || alpha == NULL || beta == NULL || scratch == NULL) {
        status = ATTN_ERR(ATTN_ENOMEM,
                          "Lanczos bases for the %zu x %zu matrix (%zu steps, %zu "
                          "doubles)",
                          n, c, kmax, kmax * (n + c + 4));
        goto done;
    }
    x_fro = dist2(X, NULL, n * c);
    if (x_fro == 0.0) {
        done = 1; /* the zero matrix: norm 0 without a step */
        goto done;
    }
    /* Worst-case rounding of a matrix-vector product with a unit vector: each entry of X v carries
     * an error of at most c eps |X_i| |v|, in norm at most max(n, c) eps ||X||_F.  A new Lanczos
     * vector no larger than that is rounding noise: the space built so far is invariant. */
    tiny = (double) max_size(n, c) * DBL_EPSILON * x_fro;

    for (size_t j = 0; j < c; j++) {
        double t = (double) (j + 1) * g;
        V[j] = 1.0 + (t - floor(t));
    }
    vnorm = cblas_dnrm2((int) c, V, 1);
    cblas_dscal((int) c, 1.0 / vnorm, V, 1);

    for (size_t k = 0; k < kmax; k++) {
        double *u = U + k * n;
        double *v = V + k * c;
        /* alpha_k u_k = X v_k - beta_{k-1} u_{k-1}, orthogonal to u_0 .. u_{k-1}. */
        cblas_dgemv(CblasRowMajor, CblasNoTrans, (int) n, (int) c, 1.0, X, (int) c, v, 1, 0.0, u,
                    1);
        if (k > 0)
            cblas_daxpy((int) n, -beta[k - 1], U + (k - 1) * n, 1, u, 1);
        reorthogonalize(U, k, n, u, scratch);
        alpha[k] = cblas_dnrm2((int) n, u, 1);
        steps = k + 1;
        if (k == 0 && alpha[0] <= tiny) {
            status =
                ATTN_ERR(ATTN_ENOCONV,
                         "Lanczos spectral norm of the %zu x %zu matrix: the start "
                         "vector lies in its numerical null space (|X v| = %.3g, |X|_F = %.3g)",
                         n, c, alpha[0], x_fro);
            goto done;
        }
        status = top_ritz(alpha, beta, steps, scratch, &theta);
        if (status != ATTN_OK)
            goto done;
        if (k > 0)
            change = fabs(theta - theta_prev) / theta;
        if (alpha[k] <= tiny || steps == min_size(n, c) || change <= GKL_RTOL) {
            done = 1;
            break;
        }
        theta_prev = theta;
        if (steps == kmax)
            break;
        cblas_dscal((int) n, 1.0 / alpha[k], u, 1);

        /* beta_k v_{k+1} = X^T u_k - alpha_k v_k, orthogonal to v_0 .. v_k. */
        double *vn = V + (k + 1) * c;
        cblas_dgemv(CblasRowMajor, CblasTrans, (int) n, (int) c, 1.0, X, (int) c, u, 1, 0.0, vn, 1);
        cblas_daxpy((int) c, -alpha[k], v, 1, vn, 1);
        reorthogonalize(V, k + 1, c, vn, scratch);
        beta[k] = cblas_dnrm2((int) c, vn, 1);
        if (beta[k] <= tiny) {
            done = 1; /* theta, from B_{k+1}, is already final */
            break;
        }
        cblas_dscal((int) c, 1.0 / beta[k], vn, 1);
    }
    if (!done)
        status = ATTN_ERR(ATTN_ENOCONV,
                          "Lanczos spectral norm of the %zu x %zu matrix: the estimate "
                          "%.17g still changed by %.3g relative after %zu steps (tolerance %g)",
                          n, c, theta, change, steps, GKL_RTOL);
done:
    if (status == ATTN_OK || status == ATTN_ENOCONV)
        *norm = theta;
    if (iterations != NULL)
        *iterations = (int) steps;
    free(U);
    free(V);
    free(alpha);
    free(beta);
    free(scratch);
    return status;
}

/* ||X||_2 of the n x c matrix X.
 *
 * Method.  When n <= 4096 and c <= 4096: the largest singular value from LAPACKE_dgesdd (values
 * only, on a copy), exact to a few eps relative; *iterations = 0.  Otherwise: Golub-Kahan-Lanczos
 * bidiagonalization with full reorthogonalization from a fixed deterministic start vector (see
 * lanczos_norm), at most 100 steps of two dgemv each, stopped when the largest Ritz value changes
 * by less than 1e-10 relative or an invariant subspace is found; *iterations = the number of steps.
 * The Lanczos estimate never exceeds ||X||_2: at the stop it is below it by about the last change.
 * The zero matrix gives 0 (with 0 steps).
 *
 * Statuses: ATTN_ESHAPE (empty, or a dimension above INT_MAX), ATTN_ENONFINITE (names the entry),
 * ATTN_ENOMEM, ATTN_ELAPACK, ATTN_ENOCONV (no convergence in 100 steps, or a start vector in the
 * null space; *norm still receives the last estimate).  Memory: an n x c copy for the SVD,
 * 100 (n + c) doubles for Lanczos. */
int attn_spectral_norm(const double *X, size_t n, size_t c, double *norm, int *iterations)
{
    int status;
    double *sv = NULL;

    *norm = NAN;
    if (iterations != NULL)
        *iterations = 0;
    ATTN_TRY(check_dims("spectral norm", n, c), "attn_spectral_norm");
    ATTN_TRY(attn_check_finite("X", X, n, c), "spectral norm");
    if (n > SVD_MAX_DIM || c > SVD_MAX_DIM)
        return lanczos_norm(X, n, c, norm, iterations);

    sv = calloc(min_size(n, c), sizeof *sv);
    if (sv == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "spectral norm: %zu singular values", min_size(n, c));
    status = svd_copy(X, n, c, sv);
    if (status == ATTN_OK)
        *norm = sv[0];
    free(sv);
    return status;
}

/* ---------------------------------------------------------------------------------------------
 * Rank statistics.
 */

/* From singular values sv[0..k) (finite, nonnegative; sigma_1 is taken as their maximum, so the
 * order does not matter):
 *     eps_rank       = #{k: sigma_k > eps sigma_1}              (relative threshold)
 *     stable_rank    = sum_k sigma_k^2 / sigma_1^2              in [1, rank]
 *     effective_rank = exp(-sum_k p_k log p_k)                 in [1, rank] (Roy & Vetterli 2007)
 *                      with p_k = sigma_k / sum_l sigma_l, zero sigma_k skipped
 * All zero (or k = 0): eps_rank = 0, and stable and effective rank are NaN, since the normalisation
 * by sigma_1 or sum sigma is undefined.  The sums run over sigma_k / sigma_1, which cannot
 * overflow.  O(k). */
void attn_rank_stats_compute(const double *sv, size_t k, double eps, attn_rank_stats *stats)
{
    double s1 = 0.0;
    double count = 0.0;
    double sum = 0.0;
    double sum2 = 0.0;
    double entropy = 0.0;

    stats->eps_rank = 0.0;
    stats->stable_rank = NAN;
    stats->effective_rank = NAN;
    for (size_t t = 0; t < k; t++)
        if (sv[t] > s1)
            s1 = sv[t];
    if (s1 == 0.0)
        return;
    for (size_t t = 0; t < k; t++) {
        double r = sv[t] / s1;
        if (sv[t] > eps * s1)
            count += 1.0;
        sum += r;
        sum2 += r * r;
    }
    for (size_t t = 0; t < k; t++) {
        double p = sv[t] / s1 / sum;
        if (p > 0.0)
            entropy -= p * log(p);
    }
    stats->eps_rank = count;
    stats->stable_rank = sum2;
    stats->effective_rank = exp(entropy);
}
