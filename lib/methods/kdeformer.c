/* kdeformer.c — KDEformer: LSH block-diagonal attention plus a residual sampled in proportion to
 * the value row norms (the practical algorithm the authors released).
 *
 * Definition, as computed (bidirectional; the shared code is lsh_common.c, notation in lsh.h).
 * s_ij = scale q_i . k_j.  With one set of r = `bits` Gaussian directions w_t drawn from the plan's
 * rng, every query and key gets the bucket sum_t [x . w_t > 0] 2^t and the sort key g(bucket)
 * (`lsh_order`).  Keys are stably sorted by g and cut into T = ceil(m / b) blocks of b = `block`
 * sorted keys (the last one ragged); queries are stably sorted by g and cut into T blocks in
 * proportion, query block t = sorted ranks [floor(t b n / m), floor((t + 1) b n / m)) (the last
 * ends at n), paired with key block t; B(i) is the key block of query i.  Then
 *     lambda = the top eigenvalue of Vbar^T Vbar, Vbar = [V, 1] (m x (dv + 1)), by `power_iters`
 *              power iterations from a Gaussian start;
 *     u_j = ||[v_j, 1]||_2 / lambda + 1 / m,  p_j = u_j / sum_l u_l;
 *     j_1 .. j_S drawn i.i.d. from p (S = `samples`, with replacement);
 *     N_i = sum_{j in B(i)} e^{s_ij} [v_j, 1] + (1 / S) sum_t 1[j_t not in B(i)] e^{s_{i j_t}}
 *           [v_{j_t}, 1] / p_{j_t};
 *     o_i = N_i[0 .. dv) / D_i with D_i = N_i[dv] (the ones column: numerator and normaliser
 *     share the draws).
 * Both N_i and D_i are unbiased; o_i is their (self-normalised, consistent) ratio.  D_i > 0
 * always.  Every term goes through the shared accumulator, so each row subtracts the maximum of
 * the logits it uses (plus log 1 / (S p_j) for the draws); the estimate is unchanged by it.
 * As a matrix (materialize): P_ij = e^{s_ij} (1[j in B(i)] + 1[j not in B(i)] c_j / (S p_j)) / D_i,
 * c_j the number of draws of j: entries >= 0, rows sum to one, P V = apply.  The draws depend on
 * V (through p), so materialize needs the same V, and the method is not linear in V: apply on
 * a V1 + b V2 draws from another p than on V1 and V2.
 *
 * Causal (the paper and the released code have none): the HyperAttention recursion on halves
 * (hyperattention.c), with this estimator for each off-diagonal piece Q[h, n) x K[0, h) (p from
 * V[0, h)) and exact causal attention for pieces of at most `block` positions (where the
 * estimator would be exact anyway).  In those pieces each query is paired with the key block
 * holding the middle of its bucket among the sorted keys (its insertion point when the bucket has
 * no key), not with a block of the sorted queries: that would let later queries change earlier
 * rows.  Rows <= i then depend on inputs <= i only, bit for bit.
 *
 * Parameters: bits r (7), block b (64; the budget), samples S (256), lsh_order (reference),
 * power_iters (20), seed (0; the plan's gsl_rng_mt19937 is re-seeded at every apply, so one plan
 * gives the same bits on every apply and materialize sees the same draws).
 * Cost, bidirectional: hashing 2 (n + m) d r, radix sort O((n + m) r / 8), block part
 * 2 n (m / T) (d + dv), residual 2 n S (d + dv), lambda 2 m dv^2 + 2 power_iters (dv + 1)^2;
 * n (m / T + S) exps.  Causal: that for every off-diagonal piece of the recursion, n / 2 query rows
 * per level over log2(n / b) levels, plus the exact diagonal pieces, O(n b (d + dv)).
 * Scratch O((n + m)(d + dv) + S (d + dv) + ATTN_TILE_Q ATTN_TILE_K), never n x m.
 * Exact when block >= max(n, m) (one block holds every key; causal: the whole problem is one base
 * piece); exact_limit sets block = max(n, m).
 * Reference: Zandieh, Han, Daliri, Karbasi, "KDEformer: Accelerating Transformers via Kernel
 * Density Estimation", ICML 2023, arXiv:2302.02451, and its released code.
 * Departures and the released code's quirks:
 *  - The paper's theory estimates D with a Gaussian-KDE data structure and samples by column norms
 *    of D^-1 A; the released code (reproduced here) uses the exact block sum plus the sampled
 *    residual and the value-norm distribution above.
 *  - Sort order: the released code sorts by Gray(b), which visits the buckets in the inverted
 *    Gray sequence 0, 1, 3, 2, 7, 6, 4, 5, 15, 14, ... (for r = 7, 31 of 127 neighbours differ in
 *    more than one bit).  Reproduced by lsh_order = reference (default); lsh_order = gray sorts by
 *    Gray^-1(b), so that neighbouring buckets differ in exactly one bit, the stated intent.
 *  - The released code takes exp of the raw logits (overflow past 709 in double); here every row
 *    subtracts its maximum (the estimate is the same).
 *  - The released code needs b | m and T | n (a reshape); here the last blocks may be ragged and
 *    any n, m work (query blocks in proportion, as above).
 *  - The released code sorts with an unstable sort; here both sorts are stable (ties keep their
 *    position order).
 *  - Directions: one set per apply, shared by queries and keys and by every piece of the causal
 *    recursion, drawn from `seed` (the root code draws per call and head, the ViT copy once).
 *  - A residual mask that the released code allocates once and zeroes in place (stale zeros on a
 *    second call of one module) does not exist here: the mask is recomputed per query.
 *  - Power iteration runs on [V, 1]^T [V, 1] ((dv + 1)^2, formed with one dgemm) rather than on
 *    the n x (dv + 1) matrix; the iterates are the same.
 *  - Causal attention is an attnlab addition (above).
 */
#include "config.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "lsh.h"

static const attn_param kdeformer_params[] = {
    { .name = "bits", .value = 7, .lo = 1, .hi = 30, .integer = 1,
      .doc = "r, SimHash hyperplanes (2^r buckets, one table)" },
    { .name = "block", .value = 64, .lo = 1, .hi = INFINITY, .integer = 1,
      .doc = "b, sorted keys per block (the budget); block >= max(n, m) is exact" },
    { .name = "samples", .value = 256, .lo = 1, .hi = INFINITY, .integer = 1,
      .doc = "S, residual keys drawn with replacement, p ~ ||[v, 1]|| / lambda + 1 / m" },
    { .name = "lsh_order", .value = LSH_ORDER_REFERENCE, .choices = lsh_order_choices,
      .doc = "bucket sort key: reference (Gray(b), the released inverted order) or gray "
             "(Gray^-1(b): neighbours differ in one bit)" },
    { .name = "power_iters", .value = 20, .lo = 1, .hi = 100000, .integer = 1,
      .doc = "power iterations for lambda = ||[V, 1]||_2^2" },
    { .name = "seed", .value = 0, .lo = 0, .hi = 4294967295.0, .integer = 1,
      .doc = "seed of the gsl_rng_mt19937 drawing the directions and the samples" },
    { 0 },
};

static int kdeformer_init(attn_plan *plan)
{
    lsh_config cfg = {
        .id = "kdeformer",
        .bits = (size_t) attn_plan_value(plan, "bits"),
        .block = (size_t) attn_plan_value(plan, "block"),
        .samples = (size_t) attn_plan_value(plan, "samples"),
        .order = (int) attn_plan_value(plan, "lsh_order"),
        .sampling = LSH_SAMPLE_VNORM,
        .power_iters = (size_t) attn_plan_value(plan, "power_iters"),
        .exact_below = 0,
        .causal_base = 0,
        .exclude_block = 1,
        .pad_zero_key = 0,
        .seed = (unsigned long) attn_plan_value(plan, "seed"),
    };
    /* Clip a block wider than the problem (it changes nothing: one block holds every key). */
    size_t span = plan->problem.n > plan->problem.m ? plan->problem.n : plan->problem.m;
    if (cfg.block > span)
        cfg.block = span;
    cfg.causal_base = cfg.block;
    return lsh_plan_init(plan, &cfg);
}

static int kdeformer_exact_limit(const attn_problem *problem, double *values)
{
    values[1] = (double) (problem->n > problem->m ? problem->n : problem->m);
    return ATTN_OK;
}

const attn_method attn_method_kdeformer = {
    .id = "kdeformer",
    .summary = "KDEformer: SimHash-sorted block-diagonal attention plus a residual sampled by "
               "value norms (numerator and normaliser from the same draws)",
    .reference = "Zandieh, Han, Daliri, Karbasi, KDEformer: Accelerating Transformers via Kernel "
                 "Density Estimation, ICML 2023, arXiv:2302.02451",
    .caps = ATTN_CAN_CAUSAL | ATTN_CAN_BIDIR | ATTN_CAN_RECT | ATTN_ROW_STOCHASTIC | ATTN_RANDOM
            | ATTN_WEIGHTS_DEPEND_ON_V,
    .params = kdeformer_params,
    .budget = "block",
    .init = kdeformer_init,
    .fini = lsh_plan_fini,
    .apply = lsh_plan_apply,
    .materialize = lsh_plan_materialize,
    .cost = lsh_plan_cost,
    .exact_limit = kdeformer_exact_limit,
};
