/* combiner.h — pieces shared by the Combiner family (lib/methods/combiner_*.c).
 *
 * Combiner (Ren et al., NeurIPS 2021) writes attention as a conditional expectation: for query i
 * the allowed keys are split into a direct set Omega_i^0 and groups Omega_i^r, and
 *
 *     o_i = sum_{j in Omega^0} exp(l_ij) v_j / Z_i + sum_r exp(s q_i . k~_r + b_r) v~_r / Z_i,
 *     Z_i = sum_{j in Omega^0} exp(l_ij) + sum_r exp(s q_i . k~_r + b_r),
 *
 * one softmax over the direct logits and the group logits.  k~_r is the pooled key of group r,
 * v~_r = sum_{j in Omega_r} softmax_j(s q~_r . k_j) v_j its local expectation (q~_r the pooled
 * query: computed once per group and shared by every query that sees the group), and b_r the group
 * logit's bias (log |Omega_r| for pool = mean_log, else 0).  Every term goes through the shared
 * streaming accumulator.
 *
 * Oracles (quadratic; for attributing error, never for speed): `mass` replaces the group logit by
 * the exact log sum_{j in Omega_r} exp(l_ij); `full` also replaces v~_r by the exact within-group
 * expectation for query i, which makes the result exact attention to rounding.
 */
#ifndef ATTN_COMBINER_H
#define ATTN_COMBINER_H

#include "attn_impl.h"

enum combiner_pool { COMBINER_POOL_MAX, COMBINER_POOL_MEAN, COMBINER_POOL_MEAN_LOG };
enum combiner_oracle { COMBINER_ORACLE_NONE, COMBINER_ORACLE_MASS, COMBINER_ORACLE_FULL };

/* Names of the choice parameters `pool` and `oracle` (indices = the enums above). */
extern const char *const combiner_pool_choices[];
extern const char *const combiner_oracle_choices[];

/* The parameter-table entries every Combiner variant shares. */
#define COMBINER_POOL_PARAM                                                                        \
    { .name = "pool", .value = COMBINER_POOL_MAX, .choices = combiner_pool_choices,               \
      .doc = "pooling of a group's keys and queries: max (the paper's), mean, mean_log (mean, "    \
             "plus log|group| on the group logit)" }
#define COMBINER_ORACLE_PARAM                                                                      \
    { .name = "oracle", .value = COMBINER_ORACLE_NONE, .choices = combiner_oracle_choices,        \
      .doc = "diagnostic (quadratic): none; mass = exact group mass; full = exact mass and "       \
             "within-group distribution (equals exact attention)" }

/* Summary of the group Omega = {idx[0..count)}: the pooled key kt (d), the local expectation vt
 * (dv) under the pooled query, and the returned logit bias.  scratch holds d + count doubles.
 * O(count (d + dv)). */
double combiner_summarize(const attn_problem *pb, int pool, const double *Q, const double *K,
                          const double *V, const size_t *idx, size_t count, double *kt,
                          double *vt, double *scratch);

/* Coordinate-wise max or mean (pool) of rows idx[0..count) of X (d columns) into out. */
void combiner_pool_rows(const double *X, size_t d, const size_t *idx, size_t count, int pool,
                        double *out);

/* Add the group terms of `count` summaries (keys Kt, count x d; values Vt, count x dv; biases,
 * may be NULL) to rows r0..r0+nr-1 of acc, whose queries are Qrows (nr x d, contiguous).  Every
 * query of the block sees every summary.  S is scratch of nr x ATTN_TILE_K doubles. */
void combiner_add_summaries(attn_acc *acc, size_t r0, size_t nr, const double *Qrows,
                            const double *Kt, const double *Vt, const double *bias, size_t count,
                            size_t d, double scale, double *S);

/* Add one group with an oracle (COMBINER_ORACLE_MASS or _FULL) to rows r0..r0+nr-1 of acc, whose
 * queries are Qrows (nr x d): the exact partial softmax of the queries over the group's keys
 * idx[0..count) is formed, then merged whole (full) or as its exact mass times vt (mass).
 * scratch holds combiner_oracle_doubles(nr, count, dv, d) doubles. */
void combiner_add_oracle(attn_acc *acc, size_t r0, size_t nr, const double *Qrows,
                         const double *K, const double *V, const size_t *idx, size_t count,
                         const double *vt, int oracle, double scale, size_t d, double *scratch);
size_t combiner_oracle_doubles(size_t nr, size_t count, size_t dv, size_t d);

/* s q . k over d coordinates. */
double combiner_logit(const double *q, const double *k, size_t d, double scale);

#endif
