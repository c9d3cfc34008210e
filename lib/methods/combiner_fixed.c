/* combiner_fixed.c — Combiner-Fixed: full attention at O(n sqrt n) through block summaries.
 *
 * Positions are cut into blocks B_t = [t b, (t + 1) b) (the last one ragged when b does not divide
 * n).  Query i in block t attends directly to its own block (causal: B_t intersected with [0, i])
 * and, for every other block r (causal: every r < t), to the block's abstraction: the group logit
 * s q_i . k~_r (+ log |B_r| for pool = mean_log) and the local expectation
 * v~_r = sum_{j in B_r} softmax_j(s q~_r . k_j) v_j, with k~_r, q~_r the pooled keys and queries of
 * the block (combiner.h).  Direct and group logits share one softmax, so every row is a full
 * distribution over all allowed keys, strictly positive on each of them.
 * Cost O(n (b + n / b)(d + dv)) (O(n^1.5) at b ~ sqrt n), scratch O((n / b)(d + dv) + tile b).
 * Exact when b >= n (one block), when every block has one position (b = 1), when the keys inside
 * every block are identical and pool = mean_log (then the group logit plus log |B_r| is the exact
 * group mass and the local distribution is uniform, as exact), and always with oracle = full.
 * Reference: Ren, Dai, Dai, Yang, Leskovec, Schuurmans, Dai, "Combiner: Full Attention
 * Transformer with Sparse Computation Cost", NeurIPS 2021, section 4.1, eq. 7-10.
 * Departures: the abstractions are parameter-free (the paper's max pooling by default; mean and
 * mean_log as options) since nothing is trained here; the published code asserts b divides n, we
 * allow a ragged last block; the published TF code's bidirectional form also counts the query's own
 * block as a group, which the paper (and this file) excludes.
 */
#include "config.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "combiner.h"

typedef struct fixed_state {
    size_t b;               /* block size */
    size_t nb;              /* number of blocks */
    size_t tile;            /* queries per tile (divides into blocks) */
    combiner_groups sums;   /* nb block summaries, tile scratch */
} fixed_state;

static const attn_param fixed_params[] = {
    { .name = "block", .value = 0, .lo = 1, .hi = INFINITY, .integer = 1,
      .doc = "block size b (default: 2^ceil(log2 sqrt n)); b >= n is exact attention" },
    COMBINER_POOL_PARAM,
    COMBINER_ORACLE_PARAM,
    { 0 },
};

static void fixed_fini(attn_plan *plan)
{
    fixed_state *st = plan->state;
    if (st == NULL)
        return;
    combiner_groups_free(&st->sums);
    free(st);
}

static int fixed_init(attn_plan *plan)
{
    const attn_problem *pb = &plan->problem;
    size_t n = pb->n;
    size_t b = combiner_block(plan);
    fixed_state *st = attn_plan_calloc(plan, 1, sizeof *st);
    if (st == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "combiner_fixed: plan state");
    plan->state = st;
    st->b = b;
    st->nb = (n + st->b - 1) / st->b;
    st->tile = st->b < ATTN_TILE_Q ? st->b : ATTN_TILE_Q;
    size_t width = st->b > ATTN_TILE_K ? st->b : ATTN_TILE_K;
    if (combiner_groups_alloc(plan, &st->sums, st->nb, st->b, st->tile, width, st->tile) != 0)
        return ATTN_ERR(ATTN_ENOMEM, "combiner_fixed: scratch for %zu blocks of %zu", st->nb,
                        st->b);
    return ATTN_OK;
}

static size_t block_len(const fixed_state *st, size_t n, size_t t)
{
    return t + 1 < st->nb ? st->b : n - t * st->b;
}

static void fill_block(fixed_state *st, size_t t, size_t len)
{
    for (size_t u = 0; u < len; u++)
        st->sums.idx[u] = t * st->b + u;
}

/* Groups r in [g0, g1) for the query rows [q0, q0 + nr) (tile-local accumulator rows 0..nr-1). */
static void add_groups(fixed_state *st, const attn_problem *pb, const double *Q, const double *K,
                       const double *V, size_t q0, size_t nr, size_t g0, size_t g1)
{
    size_t d = pb->d, dv = pb->dv;
    combiner_groups *sums = &st->sums;
    if (g1 <= g0)
        return;
    if (sums->oracle == COMBINER_ORACLE_NONE) {
        combiner_add_summaries(&sums->acc, 0, nr, Q + q0 * d, sums->Kt + g0 * d,
                               sums->Vt + g0 * dv, sums->bias + g0, g1 - g0, d, pb->scale,
                               sums->S);
        return;
    }
    for (size_t r = g0; r < g1; r++) {
        size_t len = block_len(st, pb->n, r);
        fill_block(st, r, len);
        combiner_add_oracle(&sums->acc, 0, nr, Q + q0 * d, K, V, sums->idx, len,
                            sums->Vt + r * dv, sums->oracle, pb->scale, d, sums->oracle_scratch);
    }
}

static int fixed_apply(attn_plan *plan, const double *Q, const double *K, const double *V,
                       double *O)
{
    fixed_state *st = plan->state;
    combiner_groups *sums = &st->sums;
    const attn_problem *pb = &plan->problem;
    size_t n = pb->n, d = pb->d, dv = pb->dv;
    /* Block summaries: computed once, shared by every query that sees the block. */
    for (size_t t = 0; t < st->nb; t++) {
        size_t len = block_len(st, n, t);
        fill_block(st, t, len);
        sums->bias[t] = combiner_summarize(pb, sums->pool, Q, K, V, sums->idx, len,
                                           sums->Kt + t * d, sums->Vt + t * dv, sums->work);
    }
    for (size_t t = 0; t < st->nb; t++) {
        size_t start = t * st->b, len = block_len(st, n, t);
        for (size_t q0 = start; q0 < start + len; q0 += st->tile) {
            size_t nr = start + len - q0 < st->tile ? start + len - q0 : st->tile;
            sums->acc.rows = nr;
            attn_acc_reset(&sums->acc);
            /* Direct: the own block (causal: up to the query). */
            size_t nc = pb->causal ? q0 + nr - start : len;
            combiner_add_block(&sums->acc, 0, Q + q0 * d, q0, nr, K + start * d, V + start * dv,
                               start, nc, SIZE_MAX, pb->causal ? 0 : SIZE_MAX, 0, pb, sums->S);
            /* Groups: every earlier block, and (bidirectional) every later one. */
            add_groups(st, pb, Q, K, V, q0, nr, 0, t);
            if (!pb->causal)
                add_groups(st, pb, Q, K, V, q0, nr, t + 1, st->nb);
            attn_acc_finish(&sums->acc, 0, nr, O + q0 * dv, dv, NULL);
        }
    }
    return ATTN_OK;
}

static void fixed_cost(const attn_plan *plan, attn_cost *cost)
{
    const fixed_state *st = plan->state;
    const attn_problem *pb = &plan->problem;
    double n = (double) pb->n, d = (double) pb->d, dv = (double) pb->dv, b = (double) st->b;
    double nb = (double) st->nb;
    /* Summaries: local logits and expectations over every position. */
    double pairs = n * b * (pb->causal ? 0.5 : 1.0) + n * nb * (pb->causal ? 0.5 : 1.0);
    if (st->sums.oracle != COMBINER_ORACLE_NONE)
        pairs = n * n * (pb->causal ? 0.5 : 1.0);
    cost->flops = 2.0 * n * (d + dv) + 2.0 * pairs * (d + dv);
    cost->exps = n + pairs;
}

const attn_method attn_method_combiner_fixed = {
    .id = "combiner_fixed",
    .summary = "Combiner-Fixed: own block direct, every other block through its pooled "
               "summary, one softmax (O(n sqrt n))",
    .reference = "Ren et al., Combiner: Full Attention Transformer with Sparse Computation Cost, "
                 "NeurIPS 2021",
    .caps = ATTN_CAN_CAUSAL | ATTN_CAN_BIDIR | ATTN_ROW_STOCHASTIC,
    .params = fixed_params,
    .budget = "block",
    .init = fixed_init,
    .fini = fixed_fini,
    .apply = fixed_apply,
    .materialize = NULL,
    .cost = fixed_cost,
    .exact_limit = combiner_block_exact_limit,
};
