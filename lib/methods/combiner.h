/* combiner.h — pieces shared by the Combiner family (lib/methods/combiner_*.c) and its sparse
 * twins (lib/methods/sparse.c, which uses the block parameter, the exact limit and the block
 * kernel).
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

/* The default block of the block-structured methods (combiner_fixed, combiner_axial and their
 * twins sparse_fixed, sparse_axial): the power of two at or above sqrt n, so that a twin and its
 * Combiner share a block by default and the cost n (b + n / b) is near its minimum. */
size_t combiner_default_block(size_t n);

/* Resolve the parameter `block` of plan: 0 (auto) becomes combiner_default_block(n), written back
 * to plan->values so that the canonical spec records it.  Returns the block clipped to n: a block
 * wider than the problem changes nothing, and clipping keeps the index arithmetic small. */
size_t combiner_block(attn_plan *plan);

/* exact_limit of those methods, whose first parameter is the block: block = n makes one block (one
 * row) holding every position, so the direct set is everything allowed. */
int combiner_block_exact_limit(const attn_problem *problem, double *values);

/* Add a block of contiguous keys to rows r0..r0+nr-1 of acc.  The queries are Qb (nr x d) with
 * indices q0..q0+nr-1, the keys Kb (nc x d) and values Vb (nc x dv) with indices k0..k0+nc-1 in
 * the same index space (positions, row numbers inside one column, or member numbers inside one
 * cluster).  Query i keeps keys j with i - before <= j <= i + after (SIZE_MAX: no limit), and not
 * j == i when no_self is set.  Keys go in chunks of ATTN_TILE_K through dgemm; only chunks that a
 * limit cuts are masked.  S is scratch of nr x ATTN_TILE_K doubles.  O(nr nc (d + dv)). */
void combiner_add_block(attn_acc *acc, size_t r0, const double *Qb, size_t q0, size_t nr,
                        const double *Kb, const double *Vb, size_t k0, size_t nc, size_t before,
                        size_t after, int no_self, const attn_problem *pb, double *S);

/* The summaries of groups fixed by positions alone, and the scratch to add them to tiles of
 * queries: the state Combiner-Fixed (blocks) and Combiner-Logsparse (dyadic blocks) share. */
typedef struct combiner_groups {
    int pool;                /* enum combiner_pool */
    int oracle;              /* enum combiner_oracle */
    double *Kt;              /* count x d pooled keys */
    double *Vt;              /* count x dv local expectations */
    double *bias;            /* count group-logit biases */
    size_t *idx;             /* maxlen positions of one group */
    double *work;            /* combiner_summarize scratch, d + maxlen */
    double *S;               /* tile x width logits (leading dimension ATTN_TILE_K) */
    double *accbuf;          /* storage of acc */
    double *oracle_scratch;  /* combiner_oracle_doubles(oracle_rows, maxlen, dv, d); oracle only */
    attn_acc acc;            /* tile rows */
} combiner_groups;

/* Read pool and oracle from the plan and allocate g for `count` groups (at least one slot) of at
 * most maxlen positions, query tiles of `tile` rows, logits S of tile x width (width >=
 * ATTN_TILE_K) and, with an oracle, combiner_add_oracle scratch for oracle_rows queries at a time.
 * Every byte is counted in plan->bytes.  Returns 0, or -1 when an allocation failed (the caller
 * raises ATTN_ENOMEM naming its sizes; combiner_groups_free releases what was taken). */
int combiner_groups_alloc(attn_plan *plan, combiner_groups *g, size_t count, size_t maxlen,
                          size_t tile, size_t width, size_t oracle_rows);
/* Free what combiner_groups_alloc took (a zeroed or half-built g is fine). */
void combiner_groups_free(combiner_groups *g);

/* Summary of the group Omega = {idx[0..count)}: the pooled key kt (d), the local expectation vt
 * (dv) under the pooled query, and the returned logit bias.  scratch holds d + count doubles.
 * O(count (d + dv)). */
double combiner_summarize(const attn_problem *pb, int pool, const double *Q, const double *K,
                          const double *V, const size_t *idx, size_t count, double *kt,
                          double *vt, double *scratch);

/* Coordinate-wise max or mean (pool) of rows idx[0..count) of X (d columns) into out. */
void combiner_pool_rows(const double *X, size_t d, const size_t *idx, size_t count, int pool,
                        double *out);

/* P[t] (row stride ldp) = pool of the rows X[0..t] (backward: X[t..count)) of X (count x d,
 * contiguous): the running max (pool = max, the code's cummax) or the running mean (mean,
 * mean_log), the pooled keys or queries of every prefix (suffix) of a sequence at once: the mean
 * of t rows is their running sum times 1 / t.  The rows of P must not overlap X.  O(count d). */
void combiner_scan_pool(const double *X, size_t count, size_t d, int pool, int backward,
                        double *P, size_t ldp);

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
