/* lsh.h — the LSH block-diagonal plus sampled-residual estimator shared by kdeformer and
 * hyperattention (lsh_common.c).
 *
 * One non-causal sub-problem (queries Q_I, keys K_J, values V_J, n_q x n_k) is estimated as
 *   1. SimHash: r Gaussian directions w_1..w_r (one set per apply, drawn from the plan's rng);
 *      bucket(x) = sum_t [x . w_t > 0] 2^t, sort key g(bucket) (lsh_sort_key).
 *   2. Keys stably sorted by g and cut into T = ceil(n_k / b) blocks of b sorted keys (the last
 *      one ragged).  Queries are paired with a key block:
 *        bidirectional (as released): queries stably sorted by g, query block t = sorted ranks
 *        [floor(t b n_q / n_k), floor((t + 1) b n_q / n_k)) (the last one ends at n_q), paired
 *        with key block t (b_q = b n_q / n_k rows, as released; ragged blocks allowed);
 *        causal sub-problems (see lsh_common.c): query i goes to the key block holding the
 *        middle of the sorted keys of its own bucket (its insertion point when the bucket has no
 *        key), a rule that depends on query i and the keys only.
 *   3. Block part: H_i = sum_{j in B(i)} e^{s_ij} [v_j, 1], exact.
 *   4. Residual: `samples` draws j_1..j_S with replacement from p over the sorted keys (uniform
 *      for hyperattention; p_j proportional to ||[v_j, 1]|| / lambda + 1 / n_k for kdeformer,
 *      lambda the top eigenvalue of [V, 1]^T [V, 1] by power iteration); each draw enters with
 *      logit s_ij + log(1 / (S p_j)) unless it lies in the query's own block (exclude_block).
 *   5. Both parts go through the shared accumulator: numerator and normaliser share the draws,
 *      the maximum is subtracted per row, and o_i = N_i / D_i.
 * Causal problems use the recursion on halves: rows [0, h) recursively, rows [h, n) recursively
 * plus the non-causal estimate of Q[h, n) against K[0, h), merged in log space; a sub-problem of
 * at most `causal_base` positions is exact causal attention.
 */
#ifndef ATTN_LSH_H
#define ATTN_LSH_H

#include <stdint.h>

#include "attn_impl.h"

/* Sort orders of the buckets (the lsh_order parameter). */
enum lsh_order {
    LSH_ORDER_REFERENCE = 0, /* sort key Gray(b) = b ^ (b >> 1): the published code's order */
    LSH_ORDER_GRAY = 1       /* sort key Gray^-1(b): adjacent buckets differ in one bit */
};
extern const char *const lsh_order_choices[]; /* { "reference", "gray", NULL } */

/* Residual sampling distributions. */
enum lsh_sampling {
    LSH_SAMPLE_UNIFORM = 0,  /* p_j = 1 / n_k (hyperattention) */
    LSH_SAMPLE_VNORM = 1     /* p_j ~ ||[v_j, 1]|| / lambda + 1 / n_k (kdeformer) */
};

typedef struct lsh_config {
    const char *id;          /* method id, for messages */
    size_t bits;             /* r, hyperplanes (1..30) */
    size_t block;            /* b, keys per block (>= 1) */
    size_t samples;          /* S, residual draws (>= 1) */
    int order;               /* enum lsh_order */
    int sampling;            /* enum lsh_sampling */
    size_t power_iters;      /* power iterations for lambda (LSH_SAMPLE_VNORM) */
    size_t exact_below;      /* a non-causal sub-problem with n_q < exact_below is exact */
    size_t causal_base;      /* a causal sub-problem of at most this many positions is exact */
    int exclude_block;       /* 1: draws in the query's own block are dropped */
    int pad_zero_key;        /* 1: a ragged last block's normaliser gets T b - n_k terms e^0 */
    unsigned long seed;      /* of the plan's gsl_rng_mt19937, re-seeded at every apply */
} lsh_config;

/* The sort key of bucket b (b < 2^30) under order: Gray(b) or Gray^-1(b).  Both are bijections
 * of [0, 2^r) for every r, so sorting by them orders the buckets. */
uint32_t lsh_sort_key(uint32_t bucket, int order);

/* Build plan->state for cfg: all scratch for the largest sub-problem (n, m of plan->problem),
 * never n x m.  ATTN_ENOMEM on failure (the caller's fini, lsh_plan_fini, frees what was taken). */
int lsh_plan_init(attn_plan *plan, const lsh_config *cfg);
void lsh_plan_fini(attn_plan *plan);
/* O = the estimate (method apply).  Allocates nothing. */
int lsh_plan_apply(attn_plan *plan, const double *Q, const double *K, const double *V, double *O);
/* A = the n x m matrix the estimate applies for this plan's draws on this V:
 * A_ij = e^{s_ij} (1[j in B(i)] + c_ij / (S p_j)) / D_i, with c_ij the draws of key j that row i
 * keeps, summed over the recursion's pieces; A V = apply.  Rows sum to one except, with
 * pad_zero_key = 1, in rows whose normaliser holds padded keys (they have no column). */
int lsh_plan_materialize(attn_plan *plan, const double *Q, const double *K, const double *V,
                         double *A);
/* Analytic cost of one apply (hash, block part, residual, recursion levels, exact pieces). */
void lsh_plan_cost(const attn_plan *plan, attn_cost *cost);

/* For tests: the unnormalised estimates of one apply, rescaled per row by e^{-shift_i}:
 * num (n x dv) = e^{-shift_i} (sum of e^{logit} v_j over the block part and the weighted draws),
 * den (n) = e^{-shift_i} (the same sum of weights) — the numerator and normaliser before the
 * division, with the accumulator's maximum subtraction undone.  shift NULL means 0.  With
 * shift_i = the exact log row sum, E[den_i] = 1 and E[num_i] = the exact output row. */
int lsh_plan_sums(attn_plan *plan, const double *Q, const double *K, const double *V,
                  const double *shift, double *num, double *den);

#endif /* ATTN_LSH_H */
