/* nystrom.c — Nystromformer: softmax attention through landmarks and a pseudo-inverse.
 *
 * Definition, exactly as computed.  With c landmarks (below) and the problem's scale s,
 *
 *     Q~ (c x d) = means of c contiguous segments of the rows of Q,
 *     K~ (c x d) = means of c contiguous segments of the rows of K,
 *     F   = softmax(s Q  K~^T)   (n x c),
 *     A_s = softmax(s Q~ K~^T)   (c x c),
 *     B   = softmax(s Q~ K^T)    (c x m),
 *     O   = F Z (B V),           Z ~ A_s^+ (the Moore-Penrose pseudo-inverse of A_s),
 *
 * every softmax along rows, subtracting the row maximum.  Segments: n rows cut into c segments
 * the way the published T2T-ViT variant does when c does not divide n: the first c - (n mod c)
 * segments have floor(n / c) rows and the remaining n mod c have floor(n / c) + 1 (so segment t
 * of Q covers rows [t q + max(0, t - (c - r)), ...) with q = floor(n / c), r = n mod c).  K is cut
 * the same way by its own length m, so m != n is supported.  `landmarks` larger than min(n, m)
 * behaves as min(n, m) (every segment has at least one row); the canonical spec keeps the value
 * given, as band keeps a window wider than the problem.
 *
 * Z (`pinv`):
 *   iterative  the published iteration, `iterations` times (default 6):
 *                  Z <- (Z / 4) (13 I - A_s Z (15 I - A_s Z (7 I - A_s Z))),
 *              from Z_0 = A_s^T / (||A_s||_1 ||A_s||_inf) (max column sum times max row sum; the
 *              row sums are 1 up to rounding).  The eigenvalues of A_s Z_0 = A_s A_s^T / (...) lie
 *              in [0, 1] and each step maps x to x (13 - 15 x + 7 x^2 - x^3) / 4, which converges
 *              to 1 (with order 4) for every x in (0, 1]: a singular value sigma is inverted after
 *              about log(||A_s||_1 ||A_s||_inf / sigma^2) / log(13/4) steps, so 6 steps invert
 *              only the part of A_s whose sigma^2 is within about 3.25^6 ~ 1200 of the top.  Then
 *              Y = Z (B V) (c x dv) and O = F Y.
 *   svd        LAPACK dgesdd, A_s = U S W^T; singular values sigma_k <= rcond sigma_1 count as zero
 *              (`rcond`, auto = c DBL_EPSILON: the torch.linalg.pinv and NumPy matrix_rank
 *              default), leaving r terms.  O = (F W_r) (S_r^-1 U_r^T (B V)), in that order: each
 *              rank-one term is then formed as (F w_k) (u_k^T B V / sigma_k), whose rounding stays
 *              near DBL_EPSILON when F and B are close to A_s (the exact limit below), where
 *              forming Z or W_r S_r^-1 U_r^T B V first would multiply it by the condition number.
 * `iterations` is unused with svd, and `rcond` with iterative; such specs are accepted.  With
 * c < n the exact pseudo-inverse is not the better choice: where A_s is ill-conditioned it
 * amplifies the mismatch between F Z B and P (measured: relative output errors of 2 to 100 on
 * sharp random rows and on the sharpest OCR head, against 0.5 to 1 for 6 iterations, which invert
 * only the dominant part of A_s and so act as a regularisation).
 *
 * Apply.  Q~ and K~ first (one pass each), A_s and Z (or the SVD), then B V streamed in tiles of
 * ATTN_TILE_Q landmark rows over ATTN_TILE_K key tiles with the shared accumulator (B is never
 * stored), then the queries in tiles of ATTN_TILE_Q rows: the tile of F (logits by dgemm, softmax
 * per row) times Y.  Neither an n x m nor an n x c matrix is formed.
 * Cost: 2 (n + m) c d + 2 c^2 d for the logits, (n + m) c + c^2 exps, 2 c m dv for B V, then
 * iterative: 8 c^3 per iteration + 2 c^2 dv + 2 n c dv; svd: dgesdd (about 21 c^3) + 2 c^2 dv +
 * 2 n c (r + dv).  Scratch O(c^2 + c (d + dv) + ATTN_TILE_Q (ATTN_TILE_K + c)) doubles, independent
 * of n and m.  Materialize is the generic fallback (the method is linear in V with weights that
 * do not depend on V).
 *
 * Exact cases.  With c = min(n, m) and invertible A_s the algebra gives exact attention: if c = n,
 * every segment of Q is one row, so Q~ = Q, F = A_s and O = A_s A_s^-1 P V = P V (P the exact
 * matrix); if c = m, K~ = K, F = P, A_s = B and O = P B^-1 B V = P V.  In floating point only
 * m = n, where F = A_s = B = P, keeps the rounding at the level of the softmaxes (the SVD order
 * above); with m != n one of F, B differs from A_s and the rounding of F W or of B V is amplified
 * by cond(A_s) (measured 1e-14 to 5e-10 on the test inputs).  So the declared exact limit is
 * landmarks = n, pinv = svd on square problems only (rcond auto: a singular value dropped there
 * costs at most about rcond relative error).  The iterative pseudo-inverse reaches it only when
 * enough iterations have inverted the whole spectrum (see above), and then only to about
 * cond(P) DBL_EPSILON, since Z is formed explicitly (measured: 1e-13 to 6e-11 after 50 steps, but
 * 1e-6 on the sharpest OCR head, whose P has condition number near 1e10).  n = 1 or m = 1: c = 1, A_s = [1],
 * Z = [1] and O = B V with B the exact row (n = 1) or F = 1 (m = 1): exact attention.
 * Not causal: a segment mean mixes future tokens into every landmark, so the method is refused on
 * causal problems rather than leaking the future.  Not row-stochastic: the rows of F Z B sum to
 * one (up to the error of Z) but entries can be negative.  No budget monotonicity is claimed.
 *
 * Reference: Xiong, Zeng, Chakraborty, Tan, Fung, Li, Singh, "Nystromformer: A Nystrom-Based
 * Algorithm for Approximating Self-Attention", AAAI 2021, arXiv:2102.03902.
 * Departures from the published code: (1) it special-cases landmarks == sequence length to exact
 * softmax; attnlab does not, and lets the algebra give the exact limit (tested to its tolerance).
 * (2) Its LRA variant tests the config key inv_coeff_init_option but reads inv_init_coeff_option,
 * so it always takes the "original" initialisation Z_0 = A_s^T / max column sum, with the maximum
 * taken over every head and batch element at once; attnlab uses that initialisation per head and
 * divides also by the max row sum (1 up to rounding), the textbook Z_0 = A^T / (||A||_1 ||A||_inf).
 * (3) It scales Q and K by d^(-1/4) each before the means; attnlab applies s once to the logits
 * (the same thing, as means are linear).  (4) The SVD pseudo-inverse is attnlab's.  (5) No
 * depthwise convolution on V (learned), no padding mask, double precision; the T2T-ViT segment
 * rule above replaces the published requirement that c divide n.
 */
#include "config.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <lapacke.h>

#include "attn_impl.h"

enum nystrom_pinv { PINV_ITERATIVE, PINV_SVD };
static const char *const pinv_choices[] = { "iterative", "svd", NULL };

/* Parameter indices, in table order. */
enum { PAR_LANDMARKS, PAR_PINV, PAR_ITERATIONS, PAR_RCOND };

static const attn_param nystrom_params[] = {
    { .name = "landmarks", .value = 64, .lo = 1, .hi = INFINITY, .integer = 1,
      .doc = "c, landmarks (segment means of Q and K); values above min(n, m) act as min(n, m)" },
    { .name = "pinv", .value = PINV_ITERATIVE, .choices = pinv_choices,
      .doc = "pseudo-inverse of the c x c kernel: iterative (the published iteration) or svd" },
    { .name = "iterations", .value = 6, .lo = 1, .hi = 1e6, .integer = 1,
      .doc = "steps of the iterative pseudo-inverse (unused with svd)" },
    { .name = "rcond", .value = -1, .lo = 0, .hi = 1,
      .doc = "svd: singular values <= rcond sigma_1 count as zero (auto: c DBL_EPSILON)" },
    { 0 },
};

typedef struct nystrom_state {
    size_t c;           /* landmarks used: min(landmarks, n, m) */
    int svd;            /* 1: pinv = svd */
    size_t iterations;  /* iterative steps */
    double rcond;       /* svd cutoff, relative to sigma_1 */
    double *Qt, *Kt;    /* c x d landmarks Q~ and K~ */
    double *As;         /* c x c kernel A_s (destroyed by the SVD) */
    double *Z, *AZ, *T1, *T2;  /* iterative: c x c each */
    double *sv;         /* svd: c singular values */
    double *Ub, *VTb;   /* svd: c x c, LAPACK's U and V^T of A_s^T (see pinv_svd) */
    double *work;       /* svd: dgesdd workspace */
    lapack_int *iwork;  /* svd: 8 c */
    lapack_int lwork;
    size_t rank;        /* svd: terms kept by the last apply */
    double *BV;         /* c x dv */
    double *Y;          /* c x dv: Z B V (iterative) or S_r^-1 U_r^T B V (svd) */
    double *Ft;         /* ATTN_TILE_Q x c: a tile of F */
    double *G;          /* svd: ATTN_TILE_Q x c: F_tile W_r */
    double *S;          /* ATTN_TILE_Q x ATTN_TILE_K logits of the B V stream */
    double *buf;        /* storage of acc */
    attn_acc acc;       /* ATTN_TILE_Q landmark rows */
} nystrom_state;

static void nystrom_fini(attn_plan *plan)
{
    nystrom_state *st = plan->state;
    if (st == NULL)
        return;
    double *owned[] = { st->Qt, st->Kt, st->As, st->Z,  st->AZ, st->T1, st->T2, st->sv, st->Ub,
                        st->VTb, st->work, st->BV, st->Y, st->Ft, st->G, st->S, st->buf };
    for (size_t t = 0; t < sizeof owned / sizeof owned[0]; t++)
        free(owned[t]);
    free(st->iwork);
    free(st);
}

/* Ask dgesdd how much workspace a c x c SVD with singular vectors needs. */
static int svd_workspace(nystrom_state *st)
{
    double query = 0.0;
    lapack_int c = (lapack_int) st->c, info;
    info = LAPACKE_dgesdd_work(LAPACK_COL_MAJOR, 'S', c, c, NULL, c, NULL, NULL, c, NULL, c,
                               &query, -1, NULL);
    if (info != 0)
        return ATTN_ERR(ATTN_ELAPACK, "nystrom: dgesdd workspace query for %zu x %zu returned "
                        "info = %d", st->c, st->c, (int) info);
    if (!(query >= 1.0) || query > (double) INT_MAX)
        return ATTN_ERR(ATTN_EUNSUP, "nystrom: dgesdd asks for %.0f doubles of workspace for "
                        "c = %zu, more than a LAPACK int indexes", query, st->c);
    st->lwork = (lapack_int) query;
    return ATTN_OK;
}

static int nystrom_init(attn_plan *plan)
{
    const attn_problem *pb = &plan->problem;
    double *v = plan->values;
    nystrom_state *st = attn_plan_calloc(plan, 1, sizeof *st);
    if (st == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "nystrom: plan state");
    plan->state = st;
    size_t cmax = pb->n < pb->m ? pb->n : pb->m;
    st->c = v[PAR_LANDMARKS] >= (double) cmax ? cmax : (size_t) v[PAR_LANDMARKS];
    st->svd = (int) v[PAR_PINV] == PINV_SVD;
    st->iterations = (size_t) v[PAR_ITERATIONS];
    if (v[PAR_RCOND] == nystrom_params[PAR_RCOND].value)
        v[PAR_RCOND] = (double) st->c * DBL_EPSILON;
    st->rcond = v[PAR_RCOND];
    size_t c = st->c, d = pb->d, dv = pb->dv;
    /* Every BLAS and LAPACK dimension below is at most c, d, dv or ATTN_TILE_K; c x c must be
     * addressable. */
    if (c > INT_MAX || d > INT_MAX || dv > INT_MAX || c > SIZE_MAX / c)
        return ATTN_ERR(ATTN_EUNSUP, "nystrom: c = %zu landmarks, d = %zu, dv = %zu: more than a "
                        "BLAS int indexes", c, d, dv);
    size_t tile = ATTN_TILE_Q;
    st->Qt = attn_plan_calloc(plan, c * d, sizeof *st->Qt);
    st->Kt = attn_plan_calloc(plan, c * d, sizeof *st->Kt);
    st->As = attn_plan_calloc(plan, c * c, sizeof *st->As);
    st->BV = attn_plan_calloc(plan, c * dv, sizeof *st->BV);
    st->Y = attn_plan_calloc(plan, c * dv, sizeof *st->Y);
    st->Ft = attn_plan_calloc(plan, tile * c, sizeof *st->Ft);
    st->S = attn_plan_calloc(plan, tile * ATTN_TILE_K, sizeof *st->S);
    st->buf = attn_plan_calloc(plan, attn_acc_doubles(tile, dv), sizeof *st->buf);
    if (st->Qt == NULL || st->Kt == NULL || st->As == NULL || st->BV == NULL || st->Y == NULL ||
        st->Ft == NULL || st->S == NULL || st->buf == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "nystrom: scratch for c = %zu landmarks, d = %zu, dv = %zu",
                        c, d, dv);
    attn_acc_init(&st->acc, tile, dv, st->buf);
    if (!st->svd) {
        st->Z = attn_plan_calloc(plan, c * c, sizeof *st->Z);
        st->AZ = attn_plan_calloc(plan, c * c, sizeof *st->AZ);
        st->T1 = attn_plan_calloc(plan, c * c, sizeof *st->T1);
        st->T2 = attn_plan_calloc(plan, c * c, sizeof *st->T2);
        if (st->Z == NULL || st->AZ == NULL || st->T1 == NULL || st->T2 == NULL)
            return ATTN_ERR(ATTN_ENOMEM, "nystrom: four %zu x %zu matrices of the iteration", c,
                            c);
        return ATTN_OK;
    }
    int status = svd_workspace(st);
    if (status != ATTN_OK)
        return status;
    st->sv = attn_plan_calloc(plan, c, sizeof *st->sv);
    st->Ub = attn_plan_calloc(plan, c * c, sizeof *st->Ub);
    st->VTb = attn_plan_calloc(plan, c * c, sizeof *st->VTb);
    st->work = attn_plan_calloc(plan, (size_t) st->lwork, sizeof *st->work);
    st->iwork = attn_plan_calloc(plan, 8 * c, sizeof *st->iwork);
    st->G = attn_plan_calloc(plan, tile * c, sizeof *st->G);
    if (st->sv == NULL || st->Ub == NULL || st->VTb == NULL || st->work == NULL ||
        st->iwork == NULL || st->G == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "nystrom: SVD of %zu x %zu (%d doubles of workspace)", c, c,
                        (int) st->lwork);
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Landmarks and softmax rows.
 */

/* out (c x d) = the means of the c contiguous segments of the rows x d matrix X: the first
 * c - rows mod c segments have floor(rows / c) rows, the others one more. */
static void segment_means(const double *X, size_t rows, size_t d, size_t c, double *out)
{
    size_t q = rows / c, r = rows % c, start = 0;
    for (size_t t = 0; t < c; t++) {
        size_t len = t < c - r ? q : q + 1;
        double *o = out + t * d;
        memcpy(o, X + start * d, d * sizeof *o);
        for (size_t i = start + 1; i < start + len; i++)
            for (size_t u = 0; u < d; u++)
                o[u] += X[i * d + u];
        for (size_t u = 0; u < d; u++)
            o[u] /= (double) len;
        start += len;
    }
}

/* Each of the nr rows of X (cols entries, leading dimension ld) <- its softmax. */
static void softmax_rows(double *X, size_t nr, size_t cols, size_t ld)
{
    for (size_t a = 0; a < nr; a++) {
        double *row = X + a * ld;
        double inv = 1.0 / attn_vexp_sum(row, cols, attn_row_max(row, cols));
        for (size_t b = 0; b < cols; b++)
            row[b] *= inv;
    }
}

/* ---------------------------------------------------------------------------------------------
 * Pseudo-inverses.
 */

/* X (c x c) <- alpha I - X. */
static void identity_minus(double *X, size_t c, double alpha)
{
    for (size_t t = 0; t < c * c; t++)
        X[t] = -X[t];
    for (size_t t = 0; t < c; t++)
        X[t * c + t] += alpha;
}

static void gemm_cc(const double *A, const double *B, double *C, size_t c, double alpha)
{
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) c, (int) c, (int) c, alpha, A,
                (int) c, B, (int) c, 0.0, C, (int) c);
}

/* Y = Z (B V) with Z from the published iteration. */
static void pinv_iterative(nystrom_state *st, size_t dv)
{
    size_t c = st->c;
    const double *A = st->As;
    double colmax = 0.0, rowmax = 0.0;
    for (size_t j = 0; j < c; j++) {
        double col = 0.0, row = 0.0;
        for (size_t i = 0; i < c; i++) {
            col += A[i * c + j];
            row += A[j * c + i];
        }
        colmax = col > colmax ? col : colmax;
        rowmax = row > rowmax ? row : rowmax;
    }
    /* Local pointers, so that every apply starts from the same buffers. */
    double *Z = st->Z, *Znew = st->T2, *AZ = st->AZ, *T1 = st->T1;
    double inv = 1.0 / (colmax * rowmax);
    for (size_t i = 0; i < c; i++)
        for (size_t j = 0; j < c; j++)
            Z[i * c + j] = A[j * c + i] * inv;
    for (size_t it = 0; it < st->iterations; it++) {
        gemm_cc(A, Z, AZ, c, 1.0);             /* AZ = A_s Z */
        memcpy(T1, AZ, c * c * sizeof *T1);
        identity_minus(T1, c, 7.0);            /* 7 I - AZ */
        gemm_cc(AZ, T1, Znew, c, 1.0);
        identity_minus(Znew, c, 15.0);         /* 15 I - AZ (7 I - AZ) */
        gemm_cc(AZ, Znew, T1, c, 1.0);
        identity_minus(T1, c, 13.0);           /* 13 I - AZ (15 I - AZ (7 I - AZ)) */
        gemm_cc(Z, T1, Znew, c, 0.25);
        double *swap = Z;
        Z = Znew;
        Znew = swap;
    }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) c, (int) dv, (int) c, 1.0, Z,
                (int) c, st->BV, (int) dv, 0.0, st->Y, (int) dv);
}

/* The SVD of A_s, and Y (r x dv) = S_r^-1 U_r^T (B V).  dgesdd sees the row-major A_s as the
 * column-major A_s^T = Ub S VTb, so A_s = U S W^T with W = Ub (read row-major, Ub's row k is
 * w_k^T) and U = VTb^T (read row-major, VTb's row j holds U(j, .)). */
static int pinv_svd(nystrom_state *st, size_t dv)
{
    lapack_int c = (lapack_int) st->c;
    lapack_int info = LAPACKE_dgesdd_work(LAPACK_COL_MAJOR, 'S', c, c, st->As, c, st->sv, st->Ub,
                                          c, st->VTb, c, st->work, st->lwork, st->iwork);
    if (info != 0)
        return ATTN_ERR(ATTN_ELAPACK, "nystrom: LAPACKE_dgesdd on the %d x %d landmark kernel "
                        "returned info = %d (%s)", (int) c, (int) c, (int) info,
                        info > 0 ? "no convergence" : "bad argument");
    /* A_s has positive entries, so sigma_1 > 0 and r >= 1. */
    double cut = st->rcond * st->sv[0];
    size_t r = 0;
    while (r < st->c && st->sv[r] > cut)
        r++;
    st->rank = r;
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int) r, (int) dv, (int) c, 1.0, st->VTb,
                (int) c, st->BV, (int) dv, 0.0, st->Y, (int) dv);
    for (size_t k = 0; k < r; k++) {
        double inv = 1.0 / st->sv[k];
        for (size_t t = 0; t < dv; t++)
            st->Y[k * dv + t] *= inv;
    }
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Apply.
 */
static int nystrom_apply(attn_plan *plan, const double *Q, const double *K, const double *V,
                         double *O)
{
    nystrom_state *st = plan->state;
    const attn_problem *pb = &plan->problem;
    size_t n = pb->n, m = pb->m, d = pb->d, dv = pb->dv, c = st->c;
    double s = pb->scale;
    segment_means(Q, n, d, c, st->Qt);
    segment_means(K, m, d, c, st->Kt);
    attn_logits(st->Qt, c, st->Kt, c, d, s, st->As, c);
    softmax_rows(st->As, c, c, c);
    /* B V, streamed over the keys for tiles of landmark rows. */
    for (size_t l0 = 0; l0 < c; l0 += ATTN_TILE_Q) {
        size_t nr = c - l0 < ATTN_TILE_Q ? c - l0 : ATTN_TILE_Q;
        st->acc.rows = nr;
        attn_stream_rows(pb, st->Qt, K, V, l0, nr, 0, m, SIZE_MAX, SIZE_MAX, &st->acc, st->S,
                         st->BV);
    }
    if (st->svd) {
        int status = pinv_svd(st, dv);
        if (status != ATTN_OK)
            return status;
    } else {
        pinv_iterative(st, dv);
    }
    for (size_t i0 = 0; i0 < n; i0 += ATTN_TILE_Q) {
        size_t nr = n - i0 < ATTN_TILE_Q ? n - i0 : ATTN_TILE_Q;
        attn_logits(Q + i0 * d, nr, st->Kt, c, d, s, st->Ft, c);
        softmax_rows(st->Ft, nr, c, c);
        if (st->svd) {
            int r = (int) st->rank;
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int) nr, r, (int) c, 1.0, st->Ft,
                        (int) c, st->Ub, (int) c, 0.0, st->G, r);
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) nr, (int) dv, r, 1.0,
                        st->G, r, st->Y, (int) dv, 0.0, O + i0 * dv, (int) dv);
        } else {
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) nr, (int) dv, (int) c,
                        1.0, st->Ft, (int) c, st->Y, (int) dv, 0.0, O + i0 * dv, (int) dv);
        }
    }
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Cost and exact limit.
 */
static void nystrom_cost(const attn_plan *plan, attn_cost *cost)
{
    const nystrom_state *st = plan->state;
    const attn_problem *pb = &plan->problem;
    double n = (double) pb->n, m = (double) pb->m, d = (double) pb->d, dv = (double) pb->dv;
    double c = (double) st->c;
    /* Means; logits of F, A_s and B; softmax normalisation; B V. */
    double flops = (n + m) * d + 2.0 * (n + m + c) * c * d + 2.0 * (n + c) * c + 2.0 * c * m * dv;
    if (st->svd) {
        /* dgesdd with vectors of a square matrix: about 21 c^3 (Golub and Van Loan's count for
         * the R-SVD); the rank r is known only after an apply, so c stands for it. */
        flops += 21.0 * c * c * c + 2.0 * c * c * dv + 2.0 * n * c * (c + dv);
    } else {
        flops += 8.0 * c * c * c * (double) st->iterations + 2.0 * c * c * dv + 2.0 * n * c * dv;
    }
    cost->flops = flops;
    cost->exps = (n + m + c) * c;
}

static int nystrom_exact_limit(const attn_problem *problem, double *values)
{
    if (problem->m != problem->n)
        return ATTN_ERR(ATTN_EUNSUP, "nystrom: with m != n (n = %zu, m = %zu) landmarks = "
                        "min(n, m) is exact only up to cond(A_s) DBL_EPSILON, not to rounding",
                        problem->n, problem->m);
    values[PAR_LANDMARKS] = (double) problem->n;
    values[PAR_PINV] = PINV_SVD;
    return ATTN_OK;
}

const attn_method attn_method_nystrom = {
    .id = "nystrom",
    .summary = "Nystromformer: F Z (B V) with landmarks from segment means and Z ~ pinv(A_s) "
               "(bidirectional only: segment means mix future tokens)",
    .reference = "Xiong, Zeng, Chakraborty, Tan, Fung, Li, Singh, Nystromformer: A Nystrom-Based "
                 "Algorithm for Approximating Self-Attention, AAAI 2021, arXiv:2102.03902",
    .caps = ATTN_CAN_BIDIR | ATTN_CAN_RECT,
    .params = nystrom_params,
    .budget = "landmarks",
    .causal_note = "its landmarks are means of segments of all positions, so every query would see "
                   "later tokens",
    .init = nystrom_init,
    .fini = nystrom_fini,
    .apply = nystrom_apply,
    .materialize = NULL,
    .cost = nystrom_cost,
    .exact_limit = nystrom_exact_limit,
};
