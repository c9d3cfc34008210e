/* hyperattention.c — HyperAttention: sortLSH block-diagonal attention plus a uniformly sampled
 * residual, merged in log space, with the recursion on halves for causal attention.
 *
 * Definition, as computed (the shared code is lsh_common.c, notation in lsh.h).
 * Non-causal piece (queries Q_I, n_q of them; keys K_J and values V_J, n_k of them):
 *   - exact attention when n_q < n_min (`min_seq_len`) or n_k <= b (one block holds every key);
 *   - otherwise SimHash with r = `bits` directions (one set per apply, from the plan's rng), keys
 *     stably sorted by the sort key g(bucket) (`lsh_order`) and cut into T = ceil(n_k / b) blocks
 *     of b = `block` sorted keys (the last ragged); queries stably sorted by g and cut into T
 *     blocks in proportion (query block t = sorted ranks [floor(t b n_q / n_k), floor((t + 1) b
 *     n_q / n_k)), the last ending at n_q), paired with key block t = B(i);
 *       block part:  exact softmax pieces over B(i), giving (o_blk, lse_blk);
 *       residual:    S = `samples` keys j_1..j_S drawn uniformly with replacement; query i sees
 *                    the draws outside B(i) (exclude_block = 1) with logit s_ij + log(n_k / S);
 *       merge:       o_i = (e^{lse_blk} o_blk + e^{lse_res} o_res) / (e^{lse_blk} + e^{lse_res}),
 *                    the shared accumulator's log-sum-exp merge.
 *     This is the self-normalised estimator D_i = sum_{B(i)} e^{s_ij} + (n_k / S) sum_t
 *     1[j_t not in B(i)] e^{s_{i j_t}} (numerator likewise, with v_j), both unbiased.
 * Bidirectional problems are one piece (n_q = n, n_k = m).
 * Causal (n_k = n_q = n): a piece of n <= n_min positions is exact causal attention; otherwise
 * h = ceil(n / 2), rows [0, h) are the causal recursion on [0, h), rows [h, n) merge the causal
 * recursion on [h, n) with the non-causal piece Q[h, n) x K[0, h) (log-space merge of partial
 * results over disjoint keys).  In those off-diagonal pieces each query is paired with the key
 * block holding the middle of its bucket among the sorted keys (its insertion point when the
 * bucket has no key), not with a block of the sorted queries, which would let later queries
 * change earlier rows; rows <= i then depend on inputs <= i only, bit for bit.
 * As a matrix (materialize): P_ij = e^{s_ij} (1[j in B(i)] + c_ij n_k / S) / D_i summed over the
 * pieces, c_ij the draws of j that row i keeps; the draws do not depend on V, so the method is
 * linear in V.  Rows sum to one (with pad_zero_key = 1, rows whose normaliser holds padded keys
 * sum to less: the padded keys have no column).
 *
 * Parameters: bits r (7), block b (256, the published default; the budget), samples S (256),
 * lsh_order (reference), min_seq_len n_min (auto = block, so that sweeps are not silently exact;
 * the published default 4096 is reproduced by setting it), exclude_block (1), pad_zero_key (0),
 * seed (0; the plan's gsl_rng_mt19937 is re-seeded at every apply: one plan gives the same bits on
 * every apply, and materialize sees the same draws).
 * Cost of a non-causal piece: hashing 2 (n_q + n_k) d r, radix sorts, block part
 * 2 n_q (n_k / T)(d + dv), residual 2 n_q S (d + dv); n_q (n_k / T + S) exps.  Causal:
 * T(n) = 2 T(n / 2) + C(n / 2, n / 2), i.e. O(n (b + S)(d + dv) log2(n / n_min)) plus the exact
 * diagonal pieces O(n n_min (d + dv)).  Scratch O((n + m)(d + dv) + S (d + dv) + ATTN_TILE_Q
 * ATTN_TILE_K), never n x m.
 * Exact when block >= max(n, m), or n < min_seq_len (bidirectional), or n <= min_seq_len
 * (causal); exact_limit sets block = max(n, m) (min_seq_len follows it).
 * Reference: Han, Jayaram, Karbasi, Mirrokni, Woodruff, Zandieh, "HyperAttention: Long-context
 * Attention in Near-Linear Time", ICLR 2024, arXiv:2310.05869, and its released code.
 * Departures and the released code's quirks:
 *  - Residual block exclusion: the released code's float32/float64 path ignores the mask, so the
 *    residual counts the query's own-block keys a second time (the normaliser is biased upward
 *    by the block sum).  Fixed by default; exclude_block = 0 reproduces it.
 *  - Padding: the released code pads the sorted keys with zero rows to a multiple of b, and a
 *    zero key has logit 0 and value 0, so when b does not divide n_k the last block's normaliser
 *    gains T b - n_k terms e^0 (its rows shrink toward zero).  Fixed by default; pad_zero_key = 1
 *    reproduces it (rows paired with the last block then sum to less than one).
 *  - Sort order: the released code sorts by Gray(b), visiting buckets in the inverted Gray
 *    sequence 0, 1, 3, 2, 7, 6, 4, 5, 15, 14, ...; reproduced by lsh_order = reference (default),
 *    while gray sorts by Gray^-1(b) so that neighbouring buckets differ in one bit.
 *  - min_seq_len: published default 4096 (every n <= 4096 exact); here auto = block.
 *  - Ragged blocks and any n_q, n_k work (the released code needs the padded query count to be a
 *    multiple of T, which fails for some n_q != n_k); query blocks are in proportion.
 *  - Causal pieces pair queries by their own bucket (above); the released code cuts the sorted
 *    queries of Q[h, n) into blocks.  It pads odd n with a zero row; here h = ceil(n / 2), which
 *    gives the same pieces without the row.
 *  - The paper's ApproxD floor and its V-norm sampling of the output are not in the released code
 *    and not here; the normaliser and numerator share the uniform draws.
 *  - The released code skips the residual when n_k <= b; here such a piece is exact (the same).
 */
#include "config.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "lsh.h"

static const attn_param hyper_params[] = {
    { .name = "bits", .value = 7, .lo = 1, .hi = 30, .integer = 1,
      .doc = "r, SimHash hyperplanes (2^r buckets, one table)" },
    { .name = "block", .value = 256, .lo = 1, .hi = INFINITY, .integer = 1,
      .doc = "b, sorted keys per block (the budget); block >= max(n, m) is exact" },
    { .name = "samples", .value = 256, .lo = 1, .hi = INFINITY, .integer = 1,
      .doc = "S, residual keys drawn uniformly with replacement" },
    { .name = "lsh_order", .value = LSH_ORDER_REFERENCE, .choices = lsh_order_choices,
      .doc = "bucket sort key: reference (Gray(b), the released inverted order) or gray "
             "(Gray^-1(b): neighbours differ in one bit)" },
    { .name = "min_seq_len", .value = 0, .lo = 1, .hi = INFINITY, .integer = 1,
      .doc = "n_min: exact below it (bidirectional n < n_min, causal pieces n <= n_min); "
             "auto = block; the published default is 4096" },
    { .name = "exclude_block", .value = 1, .lo = 0, .hi = 1, .integer = 1,
      .doc = "1: residual draws in the query's own block are dropped; 0: the released "
             "float32/float64 path, which counts them twice" },
    { .name = "pad_zero_key", .value = 0, .lo = 0, .hi = 1, .integer = 1,
      .doc = "1: the released padding, zero keys (logit 0) in a ragged last block's normaliser" },
    { .name = "seed", .value = 0, .lo = 0, .hi = 4294967295.0, .integer = 1,
      .doc = "seed of the gsl_rng_mt19937 drawing the directions and the samples" },
    { 0 },
};

static int hyper_init(attn_plan *plan)
{
    long t = attn_param_index(plan->method, "min_seq_len");
    if (!(plan->values[t] >= 1.0))
        plan->values[t] = attn_plan_value(plan, "block");
    double n_min = plan->values[t];
    size_t span = plan->problem.n > plan->problem.m ? plan->problem.n : plan->problem.m;
    lsh_config cfg = {
        .id = "hyperattention",
        .bits = (size_t) attn_plan_value(plan, "bits"),
        .block = (size_t) attn_plan_value(plan, "block"),
        .samples = (size_t) attn_plan_value(plan, "samples"),
        .order = (int) attn_plan_value(plan, "lsh_order"),
        .sampling = LSH_SAMPLE_UNIFORM,
        .power_iters = 0,
        /* Thresholds past the problem change nothing: clip them to span + 1. */
        .exact_below = n_min > (double) span ? span + 1 : (size_t) n_min,
        .causal_base = n_min > (double) span ? span + 1 : (size_t) n_min,
        .exclude_block = (int) attn_plan_value(plan, "exclude_block"),
        .pad_zero_key = (int) attn_plan_value(plan, "pad_zero_key"),
        .seed = (unsigned long) attn_plan_value(plan, "seed"),
    };
    /* A block wider than the problem changes nothing either: one block holds every key.  (With
     * pad_zero_key the released code would pad such a block; a single block is exact here.) */
    if (cfg.block > span)
        cfg.block = span;
    return lsh_plan_init(plan, &cfg);
}

static int hyper_exact_limit(const attn_problem *problem, double *values)
{
    values[1] = (double) (problem->n > problem->m ? problem->n : problem->m);
    return ATTN_OK;
}

const attn_method attn_method_hyperattention = {
    .id = "hyperattention",
    .summary = "HyperAttention: sortLSH block-diagonal attention plus a uniformly sampled "
               "residual, log-space merge, causal recursion on halves",
    .reference = "Han, Jayaram, Karbasi, Mirrokni, Woodruff, Zandieh, HyperAttention: "
                 "Long-context Attention in Near-Linear Time, ICLR 2024, arXiv:2310.05869",
    .caps = ATTN_CAN_CAUSAL | ATTN_CAN_BIDIR | ATTN_CAN_RECT | ATTN_ROW_STOCHASTIC | ATTN_RANDOM,
    .params = hyper_params,
    .budget = "block",
    .init = hyper_init,
    .fini = lsh_plan_fini,
    .apply = lsh_plan_apply,
    .materialize = lsh_plan_materialize,
    .cost = lsh_plan_cost,
    .exact_limit = hyper_exact_limit,
};
