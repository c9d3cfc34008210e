/* exact.c — exact softmax attention, streaming.
 *
 * O = softmax(s Q K^T [+ causal mask]) V computed over tiles of EXACT_TILE_Q queries and
 * ATTN_TILE_K keys: logits with dgemm, the shared streaming accumulator for the running max, sum
 * and output, and a second dgemm for the output update (the FlashAttention formulation of Dao et
 * al., arXiv:2205.14135, on a CPU).  Causal: tiles entirely above the diagonal are skipped and only
 * tiles crossing it are masked.  Cost 2 n m (d + dv) flops and n m exps (about half when causal);
 * memory O((n + m)(d + dv)) for the operands plus EXACT_TILE_Q (ATTN_TILE_K + dv + 2) doubles of
 * scratch — never an n x m matrix.  Materialize forms the n x m matrix directly.
 * Reference: Vaswani et al., "Attention Is All You Need", NeurIPS 2017.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>

#include "attn_impl.h"

/* Query rows per tile.  128 rather than the shared ATTN_TILE_Q (64): measured in `make bench`
 * 5% faster at n = 4096 and 10% at n = 16384 (each K and V tile is reused by twice as many
 * queries), never slower; the logits of a tile (128 x 256 doubles) still fit in L2. */
#define EXACT_TILE_Q 128

typedef struct exact_state {
    attn_acc acc;  /* EXACT_TILE_Q rows */
    double *S;     /* EXACT_TILE_Q x ATTN_TILE_K logits */
    double *buf;   /* storage of acc */
} exact_state;

static const attn_param exact_params[] = { { 0 } };

static void exact_fini(attn_plan *plan)
{
    exact_state *st = plan->state;
    if (st != NULL) {
        free(st->S);
        free(st->buf);
        free(st);
    }
}

static int exact_init(attn_plan *plan)
{
    size_t dv = plan->problem.dv;
    exact_state *st = attn_plan_calloc(plan, 1, sizeof *st);
    if (st == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "exact: plan state");
    plan->state = st;
    st->S = attn_plan_calloc(plan, (size_t) EXACT_TILE_Q * ATTN_TILE_K, sizeof *st->S);
    st->buf = attn_plan_calloc(plan, attn_acc_doubles(EXACT_TILE_Q, dv), sizeof *st->buf);
    if (st->S == NULL || st->buf == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "exact: %d x %d tile scratch", EXACT_TILE_Q, ATTN_TILE_K);
    attn_acc_init(&st->acc, EXACT_TILE_Q, dv, st->buf);
    return ATTN_OK;
}

static int exact_apply(attn_plan *plan, const double *Q, const double *K, const double *V,
                       double *O)
{
    exact_state *st = plan->state;
    const attn_problem *pb = &plan->problem;
    for (size_t q0 = 0; q0 < pb->n; q0 += EXACT_TILE_Q) {
        size_t nr = pb->n - q0 < EXACT_TILE_Q ? pb->n - q0 : EXACT_TILE_Q;
        size_t k_hi = pb->causal ? q0 + nr : pb->m;
        st->acc.rows = nr;
        attn_stream_rows(pb, Q, K, V, q0, nr, 0, k_hi, SIZE_MAX, pb->causal ? 0 : SIZE_MAX,
                         &st->acc, st->S, O);
    }
    return ATTN_OK;
}

static int exact_materialize(attn_plan *plan, const double *Q, const double *K, const double *V,
                             double *A)
{
    return attn_exact_matrix(&plan->problem, Q, K, A);
}

static void exact_cost(const attn_plan *plan, attn_cost *cost)
{
    const attn_problem *pb = &plan->problem;
    /* Causal: the key tiles up to each query tile's last row are computed. */
    double pairs = 0.0;
    for (size_t q0 = 0; q0 < pb->n; q0 += EXACT_TILE_Q) {
        size_t nr = pb->n - q0 < EXACT_TILE_Q ? pb->n - q0 : EXACT_TILE_Q;
        pairs += (double) nr * (double) (pb->causal ? q0 + nr : pb->m);
    }
    cost->flops = 2.0 * pairs * (double) (pb->d + pb->dv);
    cost->exps = pairs;
}

static int exact_exact_limit(const attn_problem *problem, double *values)
{
    return ATTN_OK;
}

const attn_method attn_method_exact = {
    .id = "exact",
    .summary = "exact softmax attention, streamed over key tiles (O(n m) time, O(n + m) memory)",
    .reference = "Vaswani et al., Attention Is All You Need, NeurIPS 2017",
    .caps = ATTN_CAN_CAUSAL | ATTN_CAN_BIDIR | ATTN_CAN_RECT | ATTN_ROW_STOCHASTIC,
    .params = exact_params,
    .budget = NULL,
    .init = exact_init,
    .fini = exact_fini,
    .apply = exact_apply,
    .materialize = exact_materialize,
    .cost = exact_cost,
    .exact_limit = exact_exact_limit,
};
