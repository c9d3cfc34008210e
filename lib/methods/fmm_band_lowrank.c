/* fmm_band_lowrank.c — FMMformer: banded softmax (near field) plus normalised linear attention
 * (far field), blended without training.
 *
 * Definition, as computed.  s is the problem's scale; B(i) = {j : |i - j| <= k} (causal:
 * {j : i - k <= j <= i}) and C(i) = every key (causal: j <= i).
 *   Near field  D_ij = exp(s q_i.k_j) / sum_{j' in B(i)} exp(s q_i.k_j')  for j in B(i), else 0:
 *               exactly the `band` method with w = k (same tiles, same bits).
 *   Far field   r element-wise feature maps phi_1(x) = elu(x) + 1, phi_2(x) = elu(-x) + 1,
 *               phi_3(x) = tanh(x) + 1, concatenated: Phi(x) = [phi_1(x), ..., phi_r(x)], F = r d
 *               positive features of x = q_i, k_j as given (prescale = 1: of sqrt(s) q_i,
 *               sqrt(s) k_j).  key_norm = 1 divides each block phi_l(k_j) by its l1 norm.  Then
 *                   L_ij = Phi(q_i).Phi(k_j) / sum_{j' in C(i)} Phi(q_i).Phi(k_j')  (j in C(i)),
 *               i.e. L = diag(Phi(Q) Phi(K)^T 1)^{-1} Phi(Q) Phi(K)^T under the mask, so L V is a
 *               convex combination of values (METHODS.md 2.6; the LM form in both settings).
 *               A row whose denominator underflows to 0 (|q|, |k| entries of several hundred) gets
 *               a zero far field rather than NaN.
 *   Output      O = w1 D V + w2 L V with
 *                 blend = fixed,  part = both: (w1, w2) = (w_near, w_far), default (1/2, 1/2);
 *                 part = near: (1, 0) and part = far: (0, 1) (only that half is computed);
 *                 blend = oracle: the (w1, w2) minimising ||w1 D V + w2 L V - P V||_F, P the exact
 *                 softmax (2 x 2 normal equations, METHODS.md 2.6 (ii); the one weight of the
 *                 half kept when part = near or far; minimum-norm solution when D V and L V are
 *                 collinear).  w_near and w_far are used only by blend = fixed with part = both.
 *
 * Apply.  The near field streams query tiles over their windows with the shared accumulator,
 * exactly as band.c.  The far field runs over fixed, position-aligned chunks with dgemm, keeping
 * numerators and denominators apart: bidirectional, the state S = Phi(K)^T V (F x dv) and
 * z = Phi(K)^T 1 over all keys, then Phi(Q_c) S and Phi(Q_c) z per chunk of FAR_CHUNK_BIDIR rows;
 * causal, per chunk c of FAR_CHUNK rows, G = Phi(Q_c) Phi(K_c)^T masked to its lower triangle,
 * G V_c and the row sums of G, plus Phi(Q_c) S and Phi(Q_c) z for the earlier chunks, then
 * S += Phi(K_c)^T V_c and z += Phi(K_c)^T 1.  The near rows of a chunk are computed just before
 * the chunk blends them (the same band tiles), while those positions are in cache.  Causal row i
 * depends only on rows <= i, bit for bit: chunks and tiles are placed by position, never by data,
 * and masked entries are exact zeros.  All scratch is allocated by init; apply allocates nothing.
 *
 * Cost: near field O(n (2k + 1 + tile) (d + dv)) flops and as many exps (band.c); far field
 * 4 n F (dv + 1) flops for the states and their use, causal plus about 2 n FAR_CHUNK (F + dv) for
 * the diagonal blocks, and one vectorised exp per entry of Q and K for the features; scratch
 * O(tile ATTN_TILE_K + chunk (F + dv) + FAR_CHUNK^2 + F dv), independent of n.  blend = oracle
 * adds exact attention (2 n^2 (d + dv) flops, quadratic: an analysis tool) and 2 n dv doubles.
 * Exact when part = near and k >= n - 1 (the exact limit), or blend = fixed, w_near = 1, w_far = 0
 * and k >= n - 1.  Needs m == n (a band in index space).
 *
 * Capabilities.  ATTN_ROW_STOCHASTIC holds for part = near, part = far, and fixed blends with
 * nonnegative weights summing to one, the default (both D and L are row-stochastic: every feature
 * is positive); other fixed weights and blend = oracle scale or mix rows otherwise (rows sum to
 * w1 + w2).  Not ATTN_BUDGET_MONOTONE: L overlaps the band, so the blend's row TV to exact can
 * rise with k; part = near alone is monotone, as band.  blend = oracle is for analysis: its
 * scalars are fitted on all rows and on V, so it is neither linear in V nor causal, and it
 * supplies its own materialize (w1 D + w2 L with the weights fitted for that V).
 *
 * Reference: Nguyen, Suliafu, Osher, Chen, Wang, "FMMformer: Efficient and Flexible Transformer
 * via Decomposed Near-field and Far-field Attention", NeurIPS 2021, arXiv:2108.02347.
 * Mapping onto the published code and departures (METHODS.md section 2):
 *   - Band: the code's `diag_size` (LRA, LM) and `bandwidth` (causal FMM) equal k + 1 (its mask
 *     removes tril(., -diag_size) and, bidirectionally, triu(., +diag_size)); "band 5" is k = 4.
 *     The code masks n x n logits; here the band is a sliding window, O(n k) memory.
 *   - r is the code's number of `kernels`: 1 = ['elu'], 2 = ['elu', 'elu_flip'], 3 adds tanh + 1
 *     (the causal FMM code's third map; the code uses tanh(x) + 1, not tanh(x)).
 *   - Far-field normalisation: normalised in both settings, with ONE denominator over the
 *     concatenated features (L above).  The LRA code is unnormalised,
 *     phi(Q) (phi(K)^T V) / sqrt(n) with no denominator; the causal FMM and LM code normalise
 *     each kernel separately (with key l1 normalisation, offered here as key_norm = 1 per
 *     feature block, and an epsilon 1e-6 / 1e-5 in the denominator, not used here) and blend the
 *     kernels with learnable weights; the LM code also multiplies by 1/sqrt(d_head), not done
 *     here.  Feature maps act on the unscaled q, k, as in the code (prescale = 1 is an ablation).
 *   - Blend: the code selects one of about 20 `type_blend` modes through `sparse_ratio`, with
 *     learnable scalar, per-head or per-(head, channel) weights (often initialised to 0, never
 *     constrained); the paper writes one learnable (w1, w2).  Nothing is trained here: fixed
 *     weights (default 1/2, 1/2, the pathfinder mode's initialisation) or the oracle least-squares
 *     scalars, the best any per-head scalar blend can do.
 */
#include "config.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attn_impl.h"

/* Rows of a far-field chunk.  Causal: the diagonal blocks cost 2 FAR_CHUNK (F + dv) flops per
 * row against 4 F dv for the state, so the chunk stays small.  Far field alone at n = 16384,
 * d = dv = 64, r = 2, one thread: chunk 16: 27.6 ms, 24 and 32: 26.3 ms, 48: 27.2 ms, 64: 29.9 ms,
 * 96: 32.9 ms.  Bidirectional: the chunk only batches the dgemms; 128 to 512 run alike, 4% faster
 * than 64. */
#define FAR_CHUNK 32
#define FAR_CHUNK_BIDIR 256

enum fbl_blend { BLEND_FIXED, BLEND_ORACLE };
enum fbl_part { PART_BOTH, PART_NEAR, PART_FAR };
/* Positions of the parameters in fbl_params (the order of plan->values). */
enum fbl_index { P_K, P_R, P_W_NEAR, P_W_FAR, P_BLEND, P_PART, P_PRESCALE, P_KEY_NORM };

static const char *const blend_choices[] = { "fixed", "oracle", NULL };
static const char *const part_choices[] = { "both", "near", "far", NULL };

static const attn_param fbl_params[] = {
    { .name = "k", .value = 32, .lo = 0, .hi = INFINITY, .integer = 1,
      .doc = "near-field half-width: keys |i - j| <= k (causal: i - k <= j <= i); "
             "the published diag_size / bandwidth is k + 1" },
    { .name = "r", .value = 2, .lo = 1, .hi = 3, .integer = 1,
      .doc = "far-field feature maps (the code's kernels): 1 elu+1; 2 adds elu(-x)+1; "
             "3 adds tanh+1" },
    { .name = "w_near", .value = 0.5, .lo = -INFINITY, .hi = INFINITY,
      .doc = "weight of D V (blend = fixed, part = both); finite" },
    { .name = "w_far", .value = 0.5, .lo = -INFINITY, .hi = INFINITY,
      .doc = "weight of L V (blend = fixed, part = both); finite" },
    { .name = "blend", .value = BLEND_FIXED, .choices = blend_choices,
      .doc = "fixed: w_near, w_far; oracle: least-squares weights against exact P V "
             "(quadratic cost, analysis only)" },
    { .name = "part", .value = PART_BOTH, .choices = part_choices,
      .doc = "both halves, or near (D V) or far (L V) alone with weight 1" },
    { .name = "prescale", .value = 0, .lo = 0, .hi = 1, .integer = 1,
      .doc = "0: feature maps of raw q, k (published code); 1: of sqrt(s) q, sqrt(s) k" },
    { .name = "key_norm", .value = 0, .lo = 0, .hi = 1, .integer = 1,
      .doc = "1: divide each phi_l(k_j) by its l1 norm (the causal FMM code)" },
    { 0 },
};

typedef struct fbl_state {
    size_t k;         /* band half-width, clipped to n */
    size_t r;         /* feature maps */
    size_t F;         /* features per row, r d */
    int blend;        /* enum fbl_blend */
    int part;         /* enum fbl_part */
    int key_norm;     /* 1: l1-normalise each key feature block */
    double alpha;     /* multiplies q, k before the feature maps: 1 or sqrt(s) */
    double wn, wf;    /* weights of a fixed blend (part applied) */
    int near, far;    /* which halves apply computes */
    double fit[2];    /* oracle weights of the last apply */
    size_t chunk;     /* far-field rows per chunk: FAR_CHUNK (causal) or FAR_CHUNK_BIDIR */
    size_t tile;      /* near-field queries per tile */
    attn_acc acc;     /* tile rows (oracle: at least ATTN_TILE_Q) */
    double *S;        /* acc rows x ATTN_TILE_K logits */
    double *accbuf;   /* storage of acc */
    double *PQ;       /* chunk x F query features */
    double *PK;       /* chunk x F key features */
    double *E;        /* chunk x d exponentials */
    double *G;        /* FAR_CHUNK x FAR_CHUNK intra-chunk kernel (causal) */
    double *Out;      /* chunk x dv far numerators */
    double *den;      /* chunk far denominators */
    double *ones;     /* chunk ones */
    double *state;    /* F x dv: Phi(K)^T V over the keys summed so far */
    double *z;        /* F: Phi(K)^T 1 over the same keys */
    double *ND, *FD;  /* oracle: D V and L V, n x dv each */
} fbl_state;

static void fbl_fini(attn_plan *plan)
{
    fbl_state *st = plan->state;
    if (st == NULL)
        return;
    free(st->S);
    free(st->accbuf);
    free(st->PQ);
    free(st->PK);
    free(st->E);
    free(st->G);
    free(st->Out);
    free(st->den);
    free(st->ones);
    free(st->state);
    free(st->z);
    free(st->ND);
    free(st->FD);
    free(st);
}

/* One row of features: phi (r d entries) from x (d entries) and e = exp(-|alpha x|).  With
 *     elu(x) + 1 = x + 1 (x > 0) or e,   elu(-x) + 1 = 1 - x (x < 0) or e,
 *     tanh(x) + 1 = 2 / (1 + e^2) (x >= 0) or 2 e^2 / (1 + e^2)
 * one exp per entry serves all three maps, and the last form avoids the cancellation of
 * tanh(x) + 1 for negative x.  Branch-free selects, so the loops vectorize (as softmax.c's). */
__attribute__((target_clones("avx512f", "avx2,fma", "default"), optimize("O3"))) static void
feature_row(const double *x, const double *e, size_t d, size_t r, double alpha, double *phi)
{
    for (size_t c = 0; c < d; c++) {
        double v = alpha * x[c];
        phi[c] = v > 0.0 ? v + 1.0 : e[c];
    }
    if (r >= 2)
        for (size_t c = 0; c < d; c++) {
            double v = alpha * x[c];
            phi[d + c] = v < 0.0 ? 1.0 - v : e[c];
        }
    if (r >= 3)
        for (size_t c = 0; c < d; c++) {
            double v = alpha * x[c], e2 = e[c] * e[c];
            double num = v >= 0.0 ? 2.0 : 2.0 * e2;
            phi[2 * d + c] = num / (1.0 + e2);
        }
}

/* Phi (rows x F, row-major) = the concatenated feature maps of alpha X, X rows x d.  With l1,
 * each block of d features is divided by its sum.  E is scratch of rows x d doubles. */
static void features(const double *X, size_t rows, size_t d, size_t r, double alpha, int l1,
                     double *Phi, double *E)
{
    size_t F = r * d;
    for (size_t t = 0; t < rows * d; t++)
        E[t] = -fabs(alpha * X[t]);
    attn_vexp_sum(E, rows * d, 0.0);
    for (size_t i = 0; i < rows; i++) {
        double *phi = Phi + i * F;
        feature_row(X + i * d, E + i * d, d, r, alpha, phi);
        if (l1)
            for (size_t l = 0; l < r; l++) {
                double sum = 0.0;
                for (size_t c = 0; c < d; c++)
                    sum += phi[l * d + c];
                /* A block that underflowed entirely stays zero rather than becoming NaN. */
                double inv = sum > 0.0 ? 1.0 / sum : 0.0;
                for (size_t c = 0; c < d; c++)
                    phi[l * d + c] *= inv;
            }
    }
}

/* Keys [lo, hi) that some query of the near-field tile [q0, q0 + nr) may see (as band.c). */
static void tile_keys(const fbl_state *st, const attn_problem *pb, size_t q0, size_t nr,
                      size_t *lo, size_t *hi)
{
    size_t last = q0 + nr - 1;
    *lo = q0 > st->k ? q0 - st->k : 0;
    *hi = pb->causal ? last + 1 : last + st->k + 1;
    if (*hi > pb->m)
        *hi = pb->m;
    if (*lo > *hi)
        *lo = *hi;
}

/* Rows [q_from, ...) of O = D V, tile by tile (q_from a multiple of the tile), until the tile
 * that reaches row q_until - 1 is done; returns the first row not done.  The tiles are band.c's,
 * whatever the range, so the output has the band's bits. */
static size_t near_rows(fbl_state *st, const attn_problem *pb, const double *Q, const double *K,
                        const double *V, double *O, size_t q_from, size_t q_until)
{
    size_t q0 = q_from;
    for (; q0 < q_until && q0 < pb->n; q0 += st->tile) {
        size_t nr = pb->n - q0 < st->tile ? pb->n - q0 : st->tile;
        size_t lo, hi;
        tile_keys(st, pb, q0, nr, &lo, &hi);
        st->acc.rows = nr;
        attn_stream_rows(pb, Q, K, V, q0, nr, lo, hi, st->k, pb->causal ? 0 : st->k, &st->acc,
                         st->S, O);
    }
    return q0;
}

/* O = P V, the exact softmax output (oracle only). */
static void exact_apply(fbl_state *st, const attn_problem *pb, const double *Q, const double *K,
                        const double *V, double *O)
{
    for (size_t q0 = 0; q0 < pb->n; q0 += ATTN_TILE_Q) {
        size_t nr = pb->n - q0 < ATTN_TILE_Q ? pb->n - q0 : ATTN_TILE_Q;
        size_t k_hi = pb->causal ? q0 + nr : pb->m;
        st->acc.rows = nr;
        attn_stream_rows(pb, Q, K, V, q0, nr, 0, k_hi, SIZE_MAX, pb->causal ? 0 : SIZE_MAX,
                         &st->acc, st->S, O);
    }
}

/* Far field: with f_i = (L V)_i, O_i = wn (D V)_i + wf f_i (wn = 0: O_i = wf f_i, no near field).
 * The near rows are computed just before the chunk that blends them, while Q, K and V of those
 * positions are still in cache.  Numerators and denominators are kept apart (Out, den), so that
 * every dgemm reads V in place. */
static void far_apply(fbl_state *st, const attn_problem *pb, const double *Q, const double *K,
                      const double *V, double *O, double wn, double wf)
{
    size_t n = pb->n, d = pb->d, dv = pb->dv, F = st->F, chunk = st->chunk;
    size_t near_done = 0;
    memset(st->state, 0, F * dv * sizeof *st->state);
    memset(st->z, 0, F * sizeof *st->z);
    if (!pb->causal)
        for (size_t c0 = 0; c0 < n; c0 += chunk) {
            size_t nc = n - c0 < chunk ? n - c0 : chunk;
            features(K + c0 * d, nc, d, st->r, st->alpha, st->key_norm, st->PK, st->E);
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int) F, (int) dv, (int) nc,
                        1.0, st->PK, (int) F, V + c0 * dv, (int) dv, 1.0, st->state, (int) dv);
            cblas_dgemv(CblasRowMajor, CblasTrans, (int) nc, (int) F, 1.0, st->PK, (int) F,
                        st->ones, 1, 1.0, st->z, 1);
        }
    for (size_t c0 = 0; c0 < n; c0 += chunk) {
        size_t nc = n - c0 < chunk ? n - c0 : chunk;
        features(Q + c0 * d, nc, d, st->r, st->alpha, 0, st->PQ, st->E);
        double beta = 0.0;
        if (pb->causal) {
            features(K + c0 * d, nc, d, st->r, st->alpha, st->key_norm, st->PK, st->E);
            /* Within the chunk: G = Phi(Q_c) Phi(K_c)^T with the keys after each query zeroed. */
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int) nc, (int) nc, (int) F, 1.0,
                        st->PQ, (int) F, st->PK, (int) F, 0.0, st->G, (int) chunk);
            for (size_t a = 0; a < nc; a++) {
                double *g = st->G + a * chunk, den = 0.0;
                for (size_t b = a + 1; b < nc; b++)
                    g[b] = 0.0;
                for (size_t b = 0; b <= a; b++)
                    den += g[b];
                st->den[a] = den;
            }
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) nc, (int) dv, (int) nc,
                        1.0, st->G, (int) chunk, V + c0 * dv, (int) dv, 0.0, st->Out, (int) dv);
            beta = 1.0;
        }
        /* The keys of earlier chunks (causal) or of every chunk (bidirectional). */
        if (!pb->causal || c0 > 0) {
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) nc, (int) dv, (int) F,
                        1.0, st->PQ, (int) F, st->state, (int) dv, beta, st->Out, (int) dv);
            cblas_dgemv(CblasRowMajor, CblasNoTrans, (int) nc, (int) F, 1.0, st->PQ, (int) F,
                        st->z, 1, beta, st->den, 1);
        }
        /* Then fold this chunk's keys into the state (causal). */
        if (pb->causal && c0 + nc < n) {
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int) F, (int) dv, (int) nc,
                        1.0, st->PK, (int) F, V + c0 * dv, (int) dv, 1.0, st->state, (int) dv);
            cblas_dgemv(CblasRowMajor, CblasTrans, (int) nc, (int) F, 1.0, st->PK, (int) F,
                        st->ones, 1, 1.0, st->z, 1);
        }
        if (wn != 0.0)
            near_done = near_rows(st, pb, Q, K, V, O, near_done, c0 + nc);
        for (size_t a = 0; a < nc; a++) {
            const double *num = st->Out + a * dv;
            /* Positive features give den > 0; only total underflow leaves 0 (zero far field). */
            double g = st->den[a] > 0.0 ? wf / st->den[a] : 0.0;
            double *o = O + (c0 + a) * dv;
            if (wn == 0.0)
                for (size_t c = 0; c < dv; c++)
                    o[c] = g * num[c];
            else
                for (size_t c = 0; c < dv; c++)
                    o[c] = wn * o[c] + g * num[c];
        }
    }
}

/* The weights w minimising ||w[0] X1 + w[1] X2 - P||_F over count entries (X1 or X2 NULL: that
 * weight is 0 and the other is fitted alone).  Normal equations G w = g with G the 2 x 2 Gram
 * matrix; when G is singular to working precision (X1, X2 collinear, or n = 1) the minimum-norm
 * solution through the rank-one part of G. */
static void fit_weights(const double *X1, const double *X2, const double *P, size_t count,
                        double w[2])
{
    double a = 0.0, b = 0.0, c = 0.0, g1 = 0.0, g2 = 0.0;
    for (size_t t = 0; t < count; t++) {
        double x1 = X1 != NULL ? X1[t] : 0.0, x2 = X2 != NULL ? X2[t] : 0.0;
        a += x1 * x1;
        b += x1 * x2;
        c += x2 * x2;
        g1 += x1 * P[t];
        g2 += x2 * P[t];
    }
    w[0] = 0.0;
    w[1] = 0.0;
    if (X2 == NULL || c == 0.0) {
        w[0] = a > 0.0 ? g1 / a : 0.0;
        return;
    }
    if (X1 == NULL || a == 0.0) {
        w[1] = g2 / c;
        return;
    }
    /* det is computed to about eps a c; below a few hundred eps a c it carries no digits. */
    double det = a * c - b * b;
    if (det > 256.0 * DBL_EPSILON * a * c) {
        w[0] = (c * g1 - b * g2) / det;
        w[1] = (a * g2 - b * g1) / det;
        return;
    }
    /* G ~ lambda u u^T with u = (sqrt a, sign(b) sqrt c) / sqrt(a + c), lambda = a + c. */
    double lambda = a + c, u1 = sqrt(a / lambda), u2 = copysign(sqrt(c / lambda), b);
    double proj = (u1 * g1 + u2 * g2) / lambda;
    w[0] = proj * u1;
    w[1] = proj * u2;
}

static int fbl_init(attn_plan *plan)
{
    const attn_problem *pb = &plan->problem;
    const double *v = plan->values;
    if (!isfinite(v[P_W_NEAR]))
        return ATTN_ERR(ATTN_EPARAM, "fmm_band_lowrank: parameter w_near = %g must be finite",
                        v[P_W_NEAR]);
    if (!isfinite(v[P_W_FAR]))
        return ATTN_ERR(ATTN_EPARAM, "fmm_band_lowrank: parameter w_far = %g must be finite",
                        v[P_W_FAR]);
    fbl_state *st = attn_plan_calloc(plan, 1, sizeof *st);
    if (st == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "fmm_band_lowrank: plan state");
    plan->state = st;
    size_t n = pb->n, d = pb->d, dv = pb->dv;
    /* A band wider than the problem changes nothing: clip it so index arithmetic stays small. */
    st->k = v[P_K] >= (double) n ? n : (size_t) v[P_K];
    st->r = (size_t) v[P_R];
    st->F = st->r * d;
    st->blend = (int) v[P_BLEND];
    st->part = (int) v[P_PART];
    st->key_norm = (int) v[P_KEY_NORM];
    st->alpha = v[P_PRESCALE] != 0.0 ? sqrt(pb->scale) : 1.0;
    st->wn = st->part == PART_BOTH ? v[P_W_NEAR] : (st->part == PART_NEAR ? 1.0 : 0.0);
    st->wf = st->part == PART_BOTH ? v[P_W_FAR] : (st->part == PART_FAR ? 1.0 : 0.0);
    if (st->blend == BLEND_ORACLE) {
        st->near = st->part != PART_FAR;
        st->far = st->part != PART_NEAR;
    } else {
        st->near = st->wn != 0.0;
        st->far = st->wf != 0.0;
    }

    st->tile = st->k + 1 < ATTN_TILE_Q ? (st->k + 1 < 8 ? 8 : st->k + 1) : ATTN_TILE_Q;
    size_t rows = st->blend == BLEND_ORACLE && st->tile < ATTN_TILE_Q ? ATTN_TILE_Q : st->tile;
    if (st->near || st->blend == BLEND_ORACLE) {
        st->S = attn_plan_calloc(plan, rows * ATTN_TILE_K, sizeof *st->S);
        st->accbuf = attn_plan_calloc(plan, attn_acc_doubles(rows, dv), sizeof *st->accbuf);
        if (st->S == NULL || st->accbuf == NULL)
            return ATTN_ERR(ATTN_ENOMEM, "fmm_band_lowrank: %zu x %d tile scratch", rows,
                            ATTN_TILE_K);
        attn_acc_init(&st->acc, rows, dv, st->accbuf);
    }
    if (st->far) {
        size_t F = st->F, chunk = pb->causal ? FAR_CHUNK : FAR_CHUNK_BIDIR;
        st->chunk = chunk;
        st->PQ = attn_plan_calloc(plan, chunk * F, sizeof *st->PQ);
        st->PK = attn_plan_calloc(plan, chunk * F, sizeof *st->PK);
        st->E = attn_plan_calloc(plan, chunk * d, sizeof *st->E);
        st->G = pb->causal ? attn_plan_calloc(plan, chunk * chunk, sizeof *st->G) : NULL;
        st->Out = attn_plan_calloc(plan, chunk * dv, sizeof *st->Out);
        st->den = attn_plan_calloc(plan, chunk, sizeof *st->den);
        st->ones = attn_plan_calloc(plan, chunk, sizeof *st->ones);
        st->state = attn_plan_calloc(plan, F * dv, sizeof *st->state);
        st->z = attn_plan_calloc(plan, F, sizeof *st->z);
        if (st->PQ == NULL || st->PK == NULL || st->E == NULL || (pb->causal && st->G == NULL) ||
            st->Out == NULL || st->den == NULL || st->ones == NULL || st->state == NULL ||
            st->z == NULL)
            return ATTN_ERR(ATTN_ENOMEM, "fmm_band_lowrank: far-field scratch (%zu rows, %zu "
                            "features, dv = %zu)", chunk, F, dv);
        for (size_t a = 0; a < chunk; a++)
            st->ones[a] = 1.0;
    }
    if (st->blend == BLEND_ORACLE) {
        if (st->near && (st->ND = attn_plan_calloc(plan, n * dv, sizeof *st->ND)) == NULL)
            return ATTN_ERR(ATTN_ENOMEM, "fmm_band_lowrank: oracle near output %zu x %zu", n, dv);
        if (st->far && (st->FD = attn_plan_calloc(plan, n * dv, sizeof *st->FD)) == NULL)
            return ATTN_ERR(ATTN_ENOMEM, "fmm_band_lowrank: oracle far output %zu x %zu", n, dv);
    }
    return ATTN_OK;
}

static int fbl_apply(attn_plan *plan, const double *Q, const double *K, const double *V,
                     double *O)
{
    fbl_state *st = plan->state;
    const attn_problem *pb = &plan->problem;
    size_t count = pb->n * pb->dv;
    if (st->blend == BLEND_ORACLE) {
        if (st->near)
            near_rows(st, pb, Q, K, V, st->ND, 0, pb->n);
        if (st->far)
            far_apply(st, pb, Q, K, V, st->FD, 0.0, 1.0);
        exact_apply(st, pb, Q, K, V, O);
        fit_weights(st->ND, st->FD, O, count, st->fit);
        for (size_t t = 0; t < count; t++) {
            double o = st->near ? st->fit[0] * st->ND[t] : 0.0;
            O[t] = st->far ? o + st->fit[1] * st->FD[t] : o;
        }
        return ATTN_OK;
    }
    if (st->far) {
        /* With the near field, far_apply makes its rows chunk by chunk. */
        far_apply(st, pb, Q, K, V, O, st->near ? st->wn : 0.0, st->wf);
    } else if (st->near) {
        near_rows(st, pb, Q, K, V, O, 0, pb->n);
        if (st->wn != 1.0)
            for (size_t t = 0; t < count; t++)
                O[t] *= st->wn;
    } else {
        memset(O, 0, count * sizeof *O);
    }
    return ATTN_OK;
}

/* A = w1 D + w2 L (n x n), built explicitly; blend = oracle first fits (w1, w2) on this V by one
 * apply. */
static int fbl_materialize(attn_plan *plan, const double *Q, const double *K, const double *V,
                           double *A)
{
    fbl_state *st = plan->state;
    const attn_problem *pb = &plan->problem;
    size_t n = pb->n, d = pb->d, F = st->F;
    double w1 = st->near ? st->wn : 0.0, w2 = st->far ? st->wf : 0.0;
    int status = ATTN_OK;
    double *O = NULL, *PQ = NULL, *PK = NULL, *E = NULL, *row = NULL;
    if (st->blend == BLEND_ORACLE) {
        O = calloc(n * pb->dv, sizeof *O);
        if (O == NULL)
            return ATTN_ERR(ATTN_ENOMEM, "fmm_band_lowrank materialize: %zu x %zu output", n,
                            pb->dv);
        fbl_apply(plan, Q, K, V, O);
        free(O);
        w1 = st->near ? st->fit[0] : 0.0;
        w2 = st->far ? st->fit[1] : 0.0;
    }
    memset(A, 0, n * n * sizeof *A);
    if (st->far) {
        PQ = calloc(n * F, sizeof *PQ);
        PK = calloc(n * F, sizeof *PK);
        E = calloc(n * d, sizeof *E);
        if (PQ == NULL || PK == NULL || E == NULL) {
            status = ATTN_ERR(ATTN_ENOMEM, "fmm_band_lowrank materialize: %zu x %zu features", n,
                              F);
            goto done;
        }
        features(Q, n, d, st->r, st->alpha, 0, PQ, E);
        features(K, n, d, st->r, st->alpha, st->key_norm, PK, E);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int) n, (int) n, (int) F, 1.0, PQ,
                    (int) F, PK, (int) F, 0.0, A, (int) n);
        for (size_t i = 0; i < n; i++) {
            double *a = A + i * n, den = 0.0;
            size_t end = pb->causal ? i + 1 : n;
            for (size_t j = end; j < n; j++)
                a[j] = 0.0;
            for (size_t j = 0; j < end; j++)
                den += a[j];
            double g = den > 0.0 ? w2 / den : 0.0;
            for (size_t j = 0; j < end; j++)
                a[j] *= g;
        }
    }
    if (st->near) {
        row = calloc(2 * st->k + 1, sizeof *row);
        if (row == NULL) {
            status = ATTN_ERR(ATTN_ENOMEM, "fmm_band_lowrank materialize: %zu band logits",
                              2 * st->k + 1);
            goto done;
        }
        for (size_t i = 0; i < n; i++) {
            size_t lo = i > st->k ? i - st->k : 0;
            size_t hi = pb->causal ? i + 1 : (n - i > st->k ? i + st->k + 1 : n);
            size_t cnt = hi - lo;
            attn_logits(Q + i * d, 1, K + lo * d, cnt, d, pb->scale, row, cnt);
            double sum = attn_vexp_sum(row, cnt, attn_row_max(row, cnt));
            for (size_t j = 0; j < cnt; j++)
                A[i * n + lo + j] += w1 * (row[j] / sum);
        }
    }
done:
    free(PQ);
    free(PK);
    free(E);
    free(row);
    return status;
}

static void fbl_cost(const attn_plan *plan, attn_cost *cost)
{
    const fbl_state *st = plan->state;
    const attn_problem *pb = &plan->problem;
    double n = (double) pb->n, d = (double) pb->d, dv = (double) pb->dv, F = (double) st->F;
    double flops = 0.0, exps = 0.0;
    if (st->near)
        for (size_t q0 = 0; q0 < pb->n; q0 += st->tile) {
            size_t nr = pb->n - q0 < st->tile ? pb->n - q0 : st->tile;
            size_t lo, hi;
            tile_keys(st, pb, q0, nr, &lo, &hi);
            double pairs = (double) nr * (double) (hi - lo);
            flops += 2.0 * pairs * (d + dv);
            exps += pairs;
        }
    if (st->far) {
        /* Features of Q and K (one exp per entry); S, z and their use by every query (causal:
         * the first chunk has no earlier state and the last adds none, counted anyway). */
        exps += 2.0 * n * d;
        flops += 4.0 * n * F * (dv + 1.0);
        /* Causal diagonal blocks: G, G V_c and the row sums of G. */
        if (pb->causal)
            for (size_t c0 = 0; c0 < pb->n; c0 += FAR_CHUNK) {
                double nc = (double) (pb->n - c0 < FAR_CHUNK ? pb->n - c0 : FAR_CHUNK);
                flops += 2.0 * nc * nc * (F + dv) + nc * (nc + 1.0) / 2.0;
            }
    }
    if (st->blend == BLEND_ORACLE) {
        for (size_t q0 = 0; q0 < pb->n; q0 += ATTN_TILE_Q) {
            size_t nr = pb->n - q0 < ATTN_TILE_Q ? pb->n - q0 : ATTN_TILE_Q;
            double pairs = (double) nr * (double) (pb->causal ? q0 + nr : pb->m);
            flops += 2.0 * pairs * (d + dv);
            exps += pairs;
        }
        flops += 10.0 * n * dv; /* Gram entries and the blend */
    }
    cost->flops = flops;
    cost->exps = exps;
}

static int fbl_exact_limit(const attn_problem *problem, double *values)
{
    values[P_K] = (double) (problem->n - 1);
    values[P_PART] = PART_NEAR;
    return ATTN_OK;
}

const attn_method attn_method_fmm_band_lowrank = {
    .id = "fmm_band_lowrank",
    .summary = "FMMformer: banded softmax near field plus normalised linear-attention far field, "
               "blended (fixed or oracle weights)",
    .reference = "Nguyen, Suliafu, Osher, Chen, Wang, FMMformer, NeurIPS 2021, arXiv:2108.02347",
    .caps = ATTN_CAN_CAUSAL | ATTN_CAN_BIDIR | ATTN_ROW_STOCHASTIC,
    .params = fbl_params,
    .budget = "k",
    .init = fbl_init,
    .fini = fbl_fini,
    .apply = fbl_apply,
    .materialize = fbl_materialize,
    .cost = fbl_cost,
    .exact_limit = fbl_exact_limit,
};
