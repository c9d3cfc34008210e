/* band.c — sliding-window attention, the sparse baseline.
 *
 * Query i attends to keys j with |i - j| <= w (causal: i - w <= j <= i); the softmax is
 * renormalized over that window and every other entry of the row is zero.  It needs m == n: a
 * window in index space would leave rows of a rectangular problem empty.  Apply streams tiles of up to ATTN_TILE_Q
 * queries (fewer for small w, so little work is wasted) over the union of their windows with the
 * shared accumulator, masking at the window's edges.  The row TV distance to exact is the mass
 * exact attention puts outside the window, so it never rises with w (ATTN_BUDGET_MONOTONE).  Cost O(n (w + tile) (d + dv)), scratch
 * O(tile (ATTN_TILE_K + dv)).  Exact when w >= max(n, m) - 1.
 * Reference: Beltagy, Peters, Cohan, "Longformer: The Long-Document Transformer",
 * arXiv:2004.05150.
 * Departures: no dilation and no global tokens; this is the plain local window.  Longformer's
 * attention_window W corresponds to w = W / 2.
 */
#include "config.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "attn_impl.h"

typedef struct band_state {
    size_t w;      /* half-width of the window */
    size_t tile;   /* queries per tile */
    attn_acc acc;
    double *S;     /* tile x ATTN_TILE_K logits */
    double *buf;   /* storage of acc */
} band_state;

static const attn_param band_params[] = {
    { .name = "w", .value = 64, .lo = 0, .hi = INFINITY, .integer = 1,
      .doc = "window half-width: keys j with |i - j| <= w (causal: i - w <= j <= i)" },
    { 0 },
};

static void band_fini(attn_plan *plan)
{
    band_state *st = plan->state;
    if (st != NULL) {
        free(st->S);
        free(st->buf);
        free(st);
    }
}

static int band_init(attn_plan *plan)
{
    const attn_problem *pb = &plan->problem;
    double w = attn_plan_value(plan, "w");
    band_state *st = attn_plan_calloc(plan, 1, sizeof *st);
    if (st == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "band: plan state");
    plan->state = st;
    /* A window wider than the problem changes nothing: clip it so index arithmetic stays small. */
    size_t span = pb->n > pb->m ? pb->n : pb->m;
    st->w = w >= (double) span ? span : (size_t) w;
    st->tile = st->w + 1 < ATTN_TILE_Q ? (st->w + 1 < 8 ? 8 : st->w + 1) : ATTN_TILE_Q;
    st->S = attn_plan_calloc(plan, st->tile * ATTN_TILE_K, sizeof *st->S);
    st->buf = attn_plan_calloc(plan, attn_acc_doubles(st->tile, pb->dv), sizeof *st->buf);
    if (st->S == NULL || st->buf == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "band: %zu x %d tile scratch", st->tile, ATTN_TILE_K);
    attn_acc_init(&st->acc, st->tile, pb->dv, st->buf);
    return ATTN_OK;
}

/* Keys [lo, hi) that some query of the tile [q0, q0 + nr) may see. */
static void tile_keys(const band_state *st, const attn_problem *pb, size_t q0, size_t nr,
                      size_t *lo, size_t *hi)
{
    size_t last = q0 + nr - 1;
    *lo = q0 > st->w ? q0 - st->w : 0;
    *hi = pb->causal ? last + 1 : last + st->w + 1;
    if (*hi > pb->m)
        *hi = pb->m;
    if (*lo > *hi)
        *lo = *hi;
}

static int band_apply(attn_plan *plan, const double *Q, const double *K, const double *V,
                      double *O)
{
    band_state *st = plan->state;
    const attn_problem *pb = &plan->problem;
    for (size_t q0 = 0; q0 < pb->n; q0 += st->tile) {
        size_t nr = pb->n - q0 < st->tile ? pb->n - q0 : st->tile;
        size_t lo, hi;
        tile_keys(st, pb, q0, nr, &lo, &hi);
        st->acc.rows = nr;
        attn_stream_rows(pb, Q, K, V, q0, nr, lo, hi, st->w, pb->causal ? 0 : st->w, &st->acc,
                         st->S, O);
    }
    return ATTN_OK;
}

static void band_cost(const attn_plan *plan, attn_cost *cost)
{
    const band_state *st = plan->state;
    const attn_problem *pb = &plan->problem;
    double pairs = 0.0;
    for (size_t q0 = 0; q0 < pb->n; q0 += st->tile) {
        size_t nr = pb->n - q0 < st->tile ? pb->n - q0 : st->tile;
        size_t lo, hi;
        tile_keys(st, pb, q0, nr, &lo, &hi);
        pairs += (double) nr * (double) (hi - lo);
    }
    cost->flops = 2.0 * pairs * (double) (pb->d + pb->dv);
    cost->exps = pairs;
}

static int band_exact_limit(const attn_problem *problem, double *values)
{
    size_t span = problem->n > problem->m ? problem->n : problem->m;
    values[0] = (double) (span - 1);
    return ATTN_OK;
}

const attn_method attn_method_band = {
    .id = "band",
    .summary = "sliding-window attention: softmax over keys within w positions of the query",
    .reference = "Beltagy, Peters, Cohan, Longformer, arXiv:2004.05150 (2020)",
    .caps = ATTN_CAN_CAUSAL | ATTN_CAN_BIDIR | ATTN_ROW_STOCHASTIC | ATTN_BUDGET_MONOTONE,
    .params = band_params,
    .budget = "w",
    .init = band_init,
    .fini = band_fini,
    .apply = band_apply,
    .materialize = NULL,
    .cost = band_cost,
    .exact_limit = band_exact_limit,
};
