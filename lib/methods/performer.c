/* performer.c — Performer (FAVOR+): normalised linear attention with positive orthogonal random
 * features estimating the softmax kernel.
 *
 * Definition, as computed.  s is the problem's scale, M = features, x~ = s^{1/2} x and W (M x d)
 * the random matrix below.  The features
 *     phi(x) = M^{-1/2} exp(W x~ - |x~|^2 / 2)    in R^M
 * are positive, and E_W[phi(q).phi(k)] = exp(s q.k) when the rows of W are N(0, I_d)
 * (scaling = chi).  The output is normalised linear attention with phi (linear.h):
 *     O = diag(phi(Q) phi(K)^T 1)^{-1} phi(Q) phi(K)^T V   under the mask (causal: j <= i),
 * with no epsilon in the denominator.  Constant factors of a row cancel in the ratio, so the
 * kernel is handed the stabilised rows: for a query, exp(W q~ - max_f (W q~)_f) (the M^{-1/2}
 * and exp(-|q~|^2 / 2) cancel exactly in its ratio); for a key, exp(W k~ - max_f (W k~)_f) with
 * log-scale lk = max_f (W k~)_f - |k~|^2 / 2 kept apart.  The kernel weighs key j for query i by
 * exp(lk_j - R_i), R_i the maximum of lk over the keys query i sees: bidirectionally one maximum
 * over all keys (the published global key shift), causally the running maximum over keys j <= i,
 * so that a later key never changes an earlier row, not even in its last bit (a global shift
 * over all keys cancels mathematically but not in rounding).  Every factor is at most 1: nothing
 * overflows; a row whose products all underflow is an error naming the row (needs |x~| of tens).
 *
 * W.  With ortho = 1: ceil(M / d) blocks, each a d x d matrix of N(0, 1) draws (column-major
 * fill) factored by QR (LAPACKE_dgeqrf, dorgqr) with the signs of R's diagonal moved into Q, so
 * that Q is Haar-distributed; the block's rows are Q's columns (orthonormal); the last block keeps
 * its first M - d floor(M / d) rows.  Then every row is rescaled: scaling = chi, by the norm of an
 * independent N(0, I_d) vector (rows then have the N(0, I_d) marginal, so the estimate is
 * unbiased), or scaling = sqrt_d, to length sqrt(d) (lower variance, biased).  With ortho = 0: iid
 * N(0, I_d) rows (scaling = chi leaves them; sqrt_d rescales each to length sqrt(d)).  All draws
 * come from a gsl_rng_mt19937 set to seed + 1 (GSL maps a zero seed to 4357, so seed + 1 gives
 * every seed its own stream): the blocks first, then the lengths.  W is drawn once, in init, from
 * shapes and parameters only: every apply and materialize of a plan uses it, and a plan of the
 * same spec draws the same W.
 *
 * Cost: 2 (n + m) M d flops for the projections and (n + m) M exps, 2 (n + m) M (dv + 1) for
 * the state and its use, causal plus about 2 n chunk (M + dv + 1) for
 * the diagonal blocks (chunk = ATTN_LINEAR_CHUNK): O(n M (d + dv)).  Scratch O(chunk M + M dv)
 * plus W (M d), independent of n.  Never exact: the error falls like M^{-1/2}.  Rows of its matrix
 * are positive and sum to one (ATTN_ROW_STOCHASTIC).
 *
 * Reference: Choromanski, Likhosherstov, Dohan, Song, Gane, Sarlos, Hawkins, Davis, Mohiuddin,
 * Kaiser, Belanger, Colwell, Weller, "Rethinking Attention with Performers", ICLR 2021,
 * arXiv:2009.14794.
 * Departures from the published code (METHODS.md 3.1):
 *   - No epsilon: the JAX code (PF-G) adds numerical_stabilizer = 1e-6 to the features and the
 *     PyTorch port (PF-L) 1e-4 to the features and 1e-6 to causal key sums; here eps = 0 and only
 *     the max-shifts remain (they cancel).  Causal, the key shift is the running maximum, not
 *     PF-G's global maximum over all keys (which lets later keys into earlier rows' rounding).
 *   - Redraws: PF-G draws a new W on every call (seeded from the sum of the queries) and PF-L
 *     every 1000 training calls; here W is fixed by `seed`, and a no-training study redraws by
 *     varying the seed.  KDEformer's own Performer baseline uses iid Gaussian W: ortho = 0.
 *   - QR signs: the code takes numpy's Q as is, whose columns have sign constraints (not Haar,
 *     so the estimate is slightly biased); here the signs of R's diagonal are folded into Q.
 *   - The scaling is s^{1/2} x (the problem's scale), which is PF-G's d^{-1/4} x when s = 1/sqrt(d).
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <lapacke.h>

#include "linear.h"

enum performer_scaling { SCALING_CHI, SCALING_SQRT_D };
enum performer_index { P_FEATURES, P_ORTHO, P_SCALING, P_SEED };

static const char *const scaling_choices[] = { "chi", "sqrt_d", NULL };

static const attn_param performer_params[] = {
    { .name = "features", .value = 256, .lo = 1, .hi = INFINITY, .integer = 1,
      .doc = "M, random features (the budget; PF-G nb_features)" },
    { .name = "ortho", .value = 1, .lo = 0, .hi = 1, .integer = 1,
      .doc = "1: orthogonal blocks of W (FAVOR+); 0: iid Gaussian rows" },
    { .name = "scaling", .value = SCALING_CHI, .choices = scaling_choices,
      .doc = "row lengths of W: chi (norms of Gaussian vectors, unbiased) or sqrt_d" },
    { .name = "seed", .value = 0, .lo = 0, .hi = 4294967295.0, .integer = 1,
      .doc = "seed of the gsl_rng_mt19937 drawing W" },
    { 0 },
};

typedef struct performer_state {
    size_t M;             /* features */
    size_t d;             /* head dimension */
    double alpha;         /* s^{1/2} */
    double *W;            /* M x d random matrix */
    double *scratch;      /* attn_linear_scratch_doubles(pb, M) */
    attn_linear_map map;  /* the features below, ctx = this state */
} performer_state;

/* Phi (rows x M) = exp(W x~ - max_f (W x~)_f) of the rows x d queries X. */
static void query_map(const void *ctx, const double *X, size_t rows, double *Phi)
{
    const performer_state *st = ctx;
    attn_linear_project(X, rows, st->d, st->W, st->M, st->alpha, Phi);
    for (size_t i = 0; i < rows; i++) {
        double *p = Phi + i * st->M;
        attn_vexp_sum(p, st->M, attn_row_max(p, st->M));
    }
}

/* The same rows for keys, with lk = max_f (W k~)_f - |k~|^2 / 2. */
static void key_map(const void *ctx, const double *X, size_t rows, double *Phi, double *lk)
{
    const performer_state *st = ctx;
    attn_linear_project(X, rows, st->d, st->W, st->M, st->alpha, Phi);
    for (size_t j = 0; j < rows; j++) {
        double *p = Phi + j * st->M, h = 0.0;
        for (size_t c = 0; c < st->d; c++) {
            double x = st->alpha * X[j * st->d + c];
            h += x * x;
        }
        double top = attn_row_max(p, st->M);
        lk[j] = top - 0.5 * h;
        attn_vexp_sum(p, st->M, top);
    }
}

static void performer_fini(attn_plan *plan)
{
    performer_state *st = plan->state;
    if (st != NULL) {
        free(st->W);
        free(st->scratch);
        free(st);
    }
}

/* Euclidean norm of a d-vector. */
static double norm2(const double *x, size_t d)
{
    double s = 0.0;
    for (size_t c = 0; c < d; c++)
        s += x[c] * x[c];
    return sqrt(s);
}

/* W (M x d) as in the header, from rng. */
static int draw_matrix(performer_state *st, gsl_rng *rng, int ortho, int scaling)
{
    size_t M = st->M, d = st->d;
    double *W = st->W;
    if (!ortho) {
        for (size_t t = 0; t < M * d; t++)
            W[t] = gsl_ran_ugaussian(rng);
    } else {
        int status = ATTN_OK;
        double *G = calloc(d * d, sizeof *G), *tau = calloc(d, sizeof *tau);
        double *sgn = calloc(d, sizeof *sgn);
        if (G == NULL || tau == NULL || sgn == NULL)
            status = ATTN_ERR(ATTN_ENOMEM, "performer: %zu x %zu QR workspace", d, d);
        for (size_t f0 = 0; status == ATTN_OK && f0 < M; f0 += d) {
            size_t rows = M - f0 < d ? M - f0 : d;
            for (size_t t = 0; t < d * d; t++)
                G[t] = gsl_ran_ugaussian(rng);
            lapack_int info = LAPACKE_dgeqrf(LAPACK_COL_MAJOR, (lapack_int) d, (lapack_int) d, G,
                                             (lapack_int) d, tau);
            if (info != 0) {
                status = ATTN_ERR(ATTN_ELAPACK, "performer: dgeqrf of a %zu x %zu Gaussian block "
                                  "returned info = %d", d, d, (int) info);
                break;
            }
            for (size_t c = 0; c < d; c++)
                sgn[c] = G[c + c * d] < 0.0 ? -1.0 : 1.0;
            info = LAPACKE_dorgqr(LAPACK_COL_MAJOR, (lapack_int) d, (lapack_int) d,
                                  (lapack_int) d, G, (lapack_int) d, tau);
            if (info != 0) {
                status = ATTN_ERR(ATTN_ELAPACK, "performer: dorgqr of a %zu x %zu block "
                                  "returned info = %d", d, d, (int) info);
                break;
            }
            /* Row f0 + c of W is column c of Q (contiguous in column-major storage) times the
             * sign of R_cc: Q diag(sign R) is the Haar-distributed factor. */
            for (size_t c = 0; c < rows; c++)
                for (size_t r = 0; r < d; r++)
                    W[(f0 + c) * d + r] = sgn[c] * G[r + c * d];
        }
        free(G);
        free(tau);
        free(sgn);
        if (status != ATTN_OK)
            return status;
    }
    for (size_t f = 0; f < M; f++) {
        double *w = W + f * d, len = 0.0, cur = norm2(w, d);
        if (ortho && scaling == SCALING_CHI) {
            /* The norm of an independent N(0, I_d) vector: a chi_d length. */
            double s = 0.0;
            for (size_t c = 0; c < d; c++) {
                double g = gsl_ran_ugaussian(rng);
                s += g * g;
            }
            len = sqrt(s);
        } else if (scaling == SCALING_SQRT_D) {
            len = sqrt((double) d);
        } else {
            continue; /* iid rows keep their Gaussian lengths */
        }
        /* An iid row of exact zeros has no direction to rescale (probability 0). */
        if (cur > 0.0)
            for (size_t c = 0; c < d; c++)
                w[c] *= len / cur;
    }
    return ATTN_OK;
}

static int performer_init(attn_plan *plan)
{
    const attn_problem *pb = &plan->problem;
    double features = attn_plan_value(plan, "features");
    /* The table's range admits inf; W must fit in memory, so any count above 2^31 is refused
     * (dgemm dimensions are int). */
    if (!(features <= 2147483647.0))
        return ATTN_ERR(ATTN_EPARAM, "performer: parameter features = %g must be a finite "
                        "integer at most 2147483647", features);
    performer_state *st = attn_plan_calloc(plan, 1, sizeof *st);
    if (st == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "performer: plan state");
    plan->state = st;
    st->M = (size_t) features;
    st->d = pb->d;
    st->alpha = sqrt(pb->scale);
    st->W = attn_plan_calloc(plan, st->M * st->d, sizeof *st->W);
    if (st->W == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "performer: %zu x %zu random matrix (features = %zu)",
                        st->M, st->d, st->M);
    size_t count = attn_linear_scratch_doubles(pb, st->M);
    st->scratch = attn_plan_calloc(plan, count, sizeof *st->scratch);
    if (st->scratch == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "performer: %zu doubles of scratch (features = %zu)", count,
                        st->M);
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    if (rng == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "performer: random number generator");
    gsl_rng_set(rng, (unsigned long) attn_plan_value(plan, "seed") + 1ul);
    int status = draw_matrix(st, rng, attn_plan_value(plan, "ortho") != 0.0,
                             (int) attn_plan_value(plan, "scaling"));
    gsl_rng_free(rng);
    if (status != ATTN_OK)
        return status;
    st->map = (attn_linear_map){ .F = st->M, .scaled = 1, .ctx = st, .query = query_map,
                                 .key = key_map };
    return ATTN_OK;
}

static int performer_apply(attn_plan *plan, const double *Q, const double *K, const double *V,
                           double *O)
{
    performer_state *st = plan->state;
    return attn_linear_apply(&st->map, &plan->problem, Q, K, V, 0.0, O, st->scratch,
                             "performer");
}

/* A = diag(phi(Q) phi(K)^T 1)^{-1} phi(Q) phi(K)^T under the mask, with apply's W and shifts. */
static int performer_materialize(attn_plan *plan, const double *Q, const double *K,
                                 const double *V, double *A)
{
    performer_state *st = plan->state;
    return attn_linear_materialize(&st->map, &plan->problem, Q, K, 0.0, A, "performer");
}

static void performer_cost(const attn_plan *plan, attn_cost *cost)
{
    const performer_state *st = plan->state;
    const attn_problem *pb = &plan->problem;
    double rows = (double) pb->n + (double) pb->m, M = (double) st->M;
    cost->flops = 2.0 * rows * M * (double) pb->d;
    cost->exps = rows * M;
    attn_linear_cost(pb, st->M, cost);
}

const attn_method attn_method_performer = {
    .id = "performer",
    .summary = "Performer (FAVOR+): normalised linear attention with positive orthogonal random "
               "features of the softmax kernel",
    .reference = "Choromanski et al., Rethinking Attention with Performers, ICLR 2021, "
                 "arXiv:2009.14794",
    .caps = ATTN_CAN_CAUSAL | ATTN_CAN_BIDIR | ATTN_CAN_RECT | ATTN_ROW_STOCHASTIC | ATTN_RANDOM,
    .params = performer_params,
    .budget = "features",
    .init = performer_init,
    .fini = performer_fini,
    .apply = performer_apply,
    .materialize = performer_materialize,
    .cost = performer_cost,
    .exact_limit = NULL,
};

int attn_performer_matrix(const attn_plan *plan, const double **W, size_t *features, size_t *d)
{
    if (plan == NULL || plan->method != &attn_method_performer)
        return ATTN_ERR(ATTN_EINVAL, "attn_performer_matrix: the plan is not a performer plan "
                        "(%s)", plan == NULL ? "NULL" : plan->method->id);
    const performer_state *st = plan->state;
    *W = st->W;
    *features = st->M;
    *d = st->d;
    return ATTN_OK;
}
