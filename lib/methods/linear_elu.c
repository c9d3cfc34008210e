/* linear_elu.c — linear attention with the elu + 1 feature map (Katharopoulos et al.).
 *
 * Definition, as computed.  phi(x) = elu(x) + 1 elementwise (x + 1 for x > 0, exp(x) otherwise)
 * on the raw q, k (no scale: the problem's s is not used), F = d features, and
 *     O_i = phi(q_i)^T (sum_{j in C(i)} phi(k_j) v_j^T) / (phi(q_i)^T sum_{j in C(i)} phi(k_j) + eps)
 * with C(i) every key (bidirectional) or j <= i (causal, by prefix sums over position-aligned
 * chunks: row i depends on rows <= i bit for bit), through the shared kernel of linear.h.
 * Parameter eps >= 0 (finite), default 1e-6 as in the published code.
 *
 * Not an estimator of softmax attention: phi(q).phi(k) is a different similarity, there is no
 * budget knob, and its error against softmax does not vanish; it is a reference point.
 *
 * Rows of its matrix A = diag(phi(Q) phi(K)^T 1 + eps)^{-1} phi(Q) phi(K)^T are positive but, with
 * eps > 0, sum to den_i / (den_i + eps) < 1 (den_i = phi(q_i).sum_j phi(k_j)); the default
 * keeps the published eps, so the method does not claim ATTN_ROW_STOCHASTIC and the contract
 * suite's row-sum check is skipped for it.  With eps = 0 the rows sum to one (tested in
 * tests/test_linear_elu.c).  A denominator that is 0 (eps = 0 and every product underflowing,
 * entries below about -700) or overflows (entries near 1e154) is an error naming the row.
 *
 * Cost: 2 (n + m) d (dv + 1) flops for the state and its use, causal plus about
 * 2 n chunk (d + dv + 1) for the diagonal blocks; (n + m) d exps: O(n d dv).  Scratch
 * O(chunk d + d dv), independent of n.  No exact limit.
 *
 * Reference: Katharopoulos, Vyas, Pappas, Fleuret, "Transformers are RNNs: Fast Autoregressive
 * Transformers with Linear Attention", ICML 2020, arXiv:2006.16236.
 * Departures from the published code (fast-transformers linear_attention.py,
 * feature_maps/base.py): none in the definition; the code runs in float32 and computes the
 * bidirectional state KV = sum_j phi(k_j) v_j^T with einsum, the causal case with a dedicated
 * prefix-sum kernel; here float64 and chunked dgemm.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>

#include "linear.h"

static const attn_param linear_elu_params[] = {
    { .name = "eps", .value = 1e-6, .lo = 0, .hi = INFINITY,
      .doc = "added to every denominator (published 1e-6); finite, >= 0; 0 gives rows summing "
             "to one" },
    { 0 },
};

typedef struct linear_elu_state {
    size_t d;             /* features = head dimension */
    double eps;           /* denominator offset */
    double *scratch;      /* attn_linear_scratch_doubles(pb, d) */
    attn_linear_map map;
} linear_elu_state;

/* Phi (count entries) = elu(X) + 1: exp(min(x, 0)) through the vectorised exp, then x + 1 where
 * x > 0.  Branch-free selects so the loops vectorise (random signs defeat branch prediction). */
__attribute__((target_clones("avx512f", "avx2,fma", "default"), optimize("O3"))) static void
elu_entries(const double *X, size_t count, double *Phi)
{
    for (size_t t = 0; t < count; t++)
        Phi[t] = X[t] < 0.0 ? X[t] : 0.0;
    attn_vexp_sum(Phi, count, 0.0);
    for (size_t t = 0; t < count; t++)
        Phi[t] = X[t] > 0.0 ? X[t] + 1.0 : Phi[t];
}

static void elu_map(const void *ctx, const double *X, size_t rows, double *Phi)
{
    const linear_elu_state *st = ctx;
    elu_entries(X, rows * st->d, Phi);
}

static void elu_key_map(const void *ctx, const double *X, size_t rows, double *Phi, double *lk)
{
    (void) lk; /* unscaled map: the kernel passes NULL */
    elu_map(ctx, X, rows, Phi);
}

static void linear_elu_fini(attn_plan *plan)
{
    linear_elu_state *st = plan->state;
    if (st != NULL) {
        free(st->scratch);
        free(st);
    }
}

static int linear_elu_init(attn_plan *plan)
{
    const attn_problem *pb = &plan->problem;
    double eps = attn_plan_value(plan, "eps");
    if (!isfinite(eps))
        return ATTN_ERR(ATTN_EPARAM, "linear_elu: parameter eps = %g must be finite", eps);
    linear_elu_state *st = attn_plan_calloc(plan, 1, sizeof *st);
    if (st == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "linear_elu: plan state");
    plan->state = st;
    st->d = pb->d;
    st->eps = eps;
    size_t count = attn_linear_scratch_doubles(pb, pb->d);
    st->scratch = attn_plan_calloc(plan, count, sizeof *st->scratch);
    if (st->scratch == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "linear_elu: %zu doubles of scratch", count);
    st->map = (attn_linear_map){ .F = pb->d, .scaled = 0, .ctx = st, .query = elu_map,
                                 .key = elu_key_map };
    return ATTN_OK;
}

static int linear_elu_apply(attn_plan *plan, const double *Q, const double *K, const double *V,
                            double *O)
{
    linear_elu_state *st = plan->state;
    return attn_linear_apply(&st->map, &plan->problem, Q, K, V, st->eps, O, st->scratch,
                             "linear_elu");
}

static int linear_elu_materialize(attn_plan *plan, const double *Q, const double *K,
                                  const double *V, double *A)
{
    linear_elu_state *st = plan->state;
    return attn_linear_materialize(&st->map, &plan->problem, Q, K, st->eps, A, "linear_elu");
}

static void linear_elu_cost(const attn_plan *plan, attn_cost *cost)
{
    const attn_problem *pb = &plan->problem;
    cost->flops = 0.0;
    cost->exps = ((double) pb->n + (double) pb->m) * (double) pb->d;
    attn_linear_cost(pb, pb->d, cost);
}

const attn_method attn_method_linear_elu = {
    .id = "linear_elu",
    .summary = "linear attention with the elu + 1 feature map (not an estimator of softmax)",
    .reference = "Katharopoulos, Vyas, Pappas, Fleuret, Transformers are RNNs, ICML 2020, "
                 "arXiv:2006.16236",
    .caps = ATTN_CAN_CAUSAL | ATTN_CAN_BIDIR | ATTN_CAN_RECT,
    .params = linear_elu_params,
    .budget = NULL,
    .init = linear_elu_init,
    .fini = linear_elu_fini,
    .apply = linear_elu_apply,
    .materialize = linear_elu_materialize,
    .cost = linear_elu_cost,
    .exact_limit = NULL,
};
