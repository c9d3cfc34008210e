/* sparse.c — the fixed-pattern sparse baselines Combiner is compared against at equal cost:
 * sparse_fixed, sparse_logsparse and sparse_axial.
 *
 * Each method gives query i a support S_i of keys fixed by positions alone and computes the softmax
 * renormalized over S_i: A_ij = exp(s q_i . k_j) / sum_{j' in S_i} exp(s q_i . k_j') for j in S_i,
 * A_ij = 0 elsewhere.  Each is the twin of a Combiner variant: the same direct set, with single
 * keys (or nothing) where Combiner places a group abstraction, so the two can be compared at the
 * same block.  Contiguous parts of a support (own block, own row, a local window, a gathered
 * column) go through dgemm tiles; scattered keys through per-query dot products.  Every partial
 * result is merged with the shared streaming accumulator.  Positions are 0-indexed; all three
 * need m == n (a pattern in index space would leave rows of a rectangular problem empty).
 *
 * sparse_fixed — the Sparse Transformer "fixed" pattern.  Blocks B_t = [t b, (t + 1) b), the last
 *   one ragged when b does not divide n.  Query i in block t attends to its own block (causal: B_t
 *   intersected with [0, i]) and to the summary columns of every other block (causal: every block
 *   before t): the last c positions of the block (the ragged last block: its last min(c, |B|)).
 *   Cost O(n (b + c n / b)(d + dv)), O(n^1.5) at b ~ sqrt n; scratch O(c (n / b)(d + dv) + tile
 *   ATTN_TILE_K).  Exact when b >= n (one block), when c = b (every position is a summary column),
 *   hence also at b = c = 1.
 *   Reference: Child, Gray, Radford, Sutskever, "Generating Long Sequences with Sparse
 *   Transformers", arXiv:1904.10509 (2019): A(1) = same block, A(2) = {j : j mod b in [b - c, b)}.
 *   Departures: one head attends to the union A(1) u A(2) in a single softmax (the paper's
 *   "merged" head; it also splits the two over heads or layers, and varies the summary offset
 *   across heads, neither of which applies to one head of fixed Q, K, V); a ragged last block is
 *   allowed, its summary columns being its own last c positions.
 *
 * sparse_logsparse — LogSparse attention.  Causal: query i attends to itself and to i - 2^k for
 *   k = 0, 1, ... while i - 2^k >= 0; bidirectional: also to i + 2^k < n.  The `local` window L
 *   adds the L positions before i (bidirectional: and after), so the support is {i - L, ..., i} u
 *   {i - 2^k} (bidirectional: mirrored).  Cost O(n (log n + L)(d + dv)); scratch
 *   O(log n + L + tile (ATTN_TILE_K + dv)).  Exact when L >= n - 1, and at any L when n <= 3.  The
 *   supports grow by nesting as L grows, so the row TV distance to exact (the mass exact attention
 *   puts outside the support) never rises with L (ATTN_BUDGET_MONOTONE); L is the budget.
 *   Reference: Li, Jin, Xuan, Zhou, Chen, Wang, Yan, "Enhancing the Locality and Breaking the
 *   Memory Bottleneck of Transformer on Time Series Forecasting", NeurIPS 2019 (arXiv:1907.00235).
 *   Departures: the paper's "local attention" variant resumes the exponential steps beyond the
 *   window; here the steps are always measured from i (attnlab's choice: it keeps the supports
 *   nested in L and makes L = 0 the plain pattern).  The bidirectional mirror is attnlab's; the
 *   paper is causal.  The paper's convolutional queries and keys are an input transform, not part
 *   of attention, and are not applied.
 *
 * sparse_axial — row and column attention on the reshaping n = rows x cols, cols = b (the last
 *   row ragged when b does not divide n); position i is (r, c) = (i / b, i mod b).  Causal: own row
 *   prefix {(r, u) : u <= c} and own column above {(t, c) : t < r}; bidirectional: the full own
 *   row and the full own column.  Cost O(n (b + n / b)(d + dv)), O(n^1.5) at b ~ sqrt n; scratch
 *   O(n dv) (a partial softmax per position for the column pass, merged into the row pass).  Exact
 *   when b >= n (one row) and when b = 1 (one column).
 *   Reference: Ho, Kalchbrenner, Weissenborn, Salimans, "Axial Attention in Multidimensional
 *   Transformers", arXiv:1912.12180 (2019); the causal support is the direct set of Combiner-Axial
 *   (Ren et al., NeurIPS 2021, section 4.3).  Departures: the row and the column share one softmax
 *   over their union (Ho et al. apply row and column attention in separate layers); a ragged last
 *   row is allowed.
 *
 * Parameters that default to 0 ("block") are chosen from the problem at plan time: b =
 * 2^ceil(log2 sqrt n), combiner_fixed's default (combiner_default_block in combiner.h, whose block
 * kernel combiner_add_block these methods share too), so that a twin and its Combiner share a
 * block by default.  The budget of sparse_fixed and sparse_axial is that block, the parameter the
 * sweeps share with their Combiner twins; neither declares ATTN_BUDGET_MONOTONE, since the supports
 * are not nested in b (their size b + c n / b or b + n / b is smallest near sqrt n, and b = 1 is
 * exact), so the error can rise and fall as b grows.
 */
#include "config.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "combiner.h"

/* ---------------------------------------------------------------------------------------------
 * sparse_fixed
 */
typedef struct fixed_state {
    size_t b;        /* block size (clipped to n) */
    size_t c;        /* summary columns per block (clipped to b) */
    size_t nb;       /* number of blocks */
    size_t ns;       /* summary columns in all: block t's are rows [t c, t c + min(c, |B_t|)) */
    size_t tile;     /* queries per tile (tiles never cross a block) */
    double *Ks;      /* ns x d gathered summary keys */
    double *Vs;      /* ns x dv gathered summary values */
    double *S;       /* tile x ATTN_TILE_K logits */
    double *accbuf;  /* storage of acc */
    attn_acc acc;
} fixed_state;

static const attn_param fixed_params[] = {
    { .name = "block", .value = 0, .lo = 1, .hi = INFINITY, .integer = 1,
      .doc = "block size b (default: 2^ceil(log2 sqrt n), as combiner_fixed); b >= n is exact" },
    { .name = "summary", .value = 1, .lo = 1, .hi = INFINITY, .integer = 1,
      .doc = "c, summary columns per block: its last c positions (c <= b; c = b is exact)" },
    { 0 },
};

static void fixed_fini(attn_plan *plan)
{
    fixed_state *st = plan->state;
    if (st == NULL)
        return;
    free(st->Ks);
    free(st->Vs);
    free(st->S);
    free(st->accbuf);
    free(st);
}

static size_t fixed_block_len(const fixed_state *st, size_t n, size_t t)
{
    return t + 1 < st->nb ? st->b : n - t * st->b;
}

static int fixed_init(attn_plan *plan)
{
    const attn_problem *pb = &plan->problem;
    size_t n = pb->n, d = pb->d, dv = pb->dv;
    long ib = attn_param_index(plan->method, "block");
    int chosen = plan->values[ib] == 0;
    if (chosen)
        plan->values[ib] = (double) combiner_default_block(n);
    double b = plan->values[ib], c = attn_plan_value(plan, "summary");
    if (c > b) {
        if (chosen)
            return ATTN_ERR(ATTN_EPARAM,
                            "sparse_fixed: summary = %.0f exceeds block = %.0f (chosen from "
                            "n = %zu): the summary columns are the last c positions of a block, "
                            "so summary <= block",
                            c, b, n);
        return ATTN_ERR(ATTN_EPARAM,
                        "sparse_fixed: summary = %.0f exceeds block = %.0f: the summary columns "
                        "are the last c positions of a block, so summary <= block",
                        c, b);
    }
    fixed_state *st = attn_plan_calloc(plan, 1, sizeof *st);
    if (st == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "sparse_fixed: plan state");
    plan->state = st;
    /* A block wider than the problem changes nothing: clip it so index arithmetic stays small. */
    st->b = b >= (double) n ? n : (size_t) b;
    st->c = c >= (double) st->b ? st->b : (size_t) c;
    st->nb = (n + st->b - 1) / st->b;
    size_t last = fixed_block_len(st, n, st->nb - 1);
    st->ns = (st->nb - 1) * st->c + (st->c < last ? st->c : last);
    st->tile = st->b < ATTN_TILE_Q ? st->b : ATTN_TILE_Q;
    st->Ks = attn_plan_calloc(plan, st->ns * d, sizeof *st->Ks);
    st->Vs = attn_plan_calloc(plan, st->ns * dv, sizeof *st->Vs);
    st->S = attn_plan_calloc(plan, st->tile * ATTN_TILE_K, sizeof *st->S);
    st->accbuf = attn_plan_calloc(plan, attn_acc_doubles(st->tile, dv), sizeof *st->accbuf);
    if (st->Ks == NULL || st->Vs == NULL || st->S == NULL || st->accbuf == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "sparse_fixed: scratch for %zu summary columns", st->ns);
    attn_acc_init(&st->acc, st->tile, dv, st->accbuf);
    return ATTN_OK;
}

static int fixed_apply(attn_plan *plan, const double *Q, const double *K, const double *V,
                       double *O)
{
    fixed_state *st = plan->state;
    const attn_problem *pb = &plan->problem;
    size_t n = pb->n, d = pb->d, dv = pb->dv, c = st->c;
    /* Gather the summary columns once, so that every block sees them as two contiguous ranges
     * (the blocks before it, and the blocks after it) and they go through dgemm. */
    for (size_t t = 0; t < st->nb; t++) {
        size_t len = fixed_block_len(st, n, t);
        size_t cnt = c < len ? c : len, src = t * st->b + len - cnt;
        memcpy(st->Ks + t * c * d, K + src * d, cnt * d * sizeof *K);
        memcpy(st->Vs + t * c * dv, V + src * dv, cnt * dv * sizeof *V);
    }
    for (size_t t = 0; t < st->nb; t++) {
        size_t start = t * st->b, len = fixed_block_len(st, n, t);
        for (size_t q0 = start; q0 < start + len; q0 += st->tile) {
            size_t nr = start + len - q0 < st->tile ? start + len - q0 : st->tile;
            st->acc.rows = nr;
            attn_acc_reset(&st->acc);
            /* Own block; causal: up to the query. */
            size_t nc = pb->causal ? q0 + nr - start : len;
            combiner_add_block(&st->acc, 0, Q + q0 * d, q0, nr, K + start * d, V + start * dv,
                               start, nc, SIZE_MAX, pb->causal ? 0 : SIZE_MAX, 0, pb, st->S);
            /* Summary columns of the blocks before t; bidirectional: and after t. */
            combiner_add_block(&st->acc, 0, Q + q0 * d, 0, nr, st->Ks, st->Vs, 0, t * c,
                               SIZE_MAX, SIZE_MAX, 0, pb, st->S);
            if (!pb->causal && t + 1 < st->nb)
                combiner_add_block(&st->acc, 0, Q + q0 * d, 0, nr, st->Ks + (t + 1) * c * d,
                                   st->Vs + (t + 1) * c * dv, 0, st->ns - (t + 1) * c,
                                   SIZE_MAX, SIZE_MAX, 0, pb, st->S);
            attn_acc_finish(&st->acc, 0, nr, O + q0 * dv, dv, NULL);
        }
    }
    return ATTN_OK;
}

/* The (query, key) pairs apply forms logits for, masked ones included: the dgemm work. */
static void fixed_cost(const attn_plan *plan, attn_cost *cost)
{
    const fixed_state *st = plan->state;
    const attn_problem *pb = &plan->problem;
    size_t n = pb->n;
    double pairs = 0.0;
    for (size_t t = 0; t < st->nb; t++) {
        size_t start = t * st->b, len = fixed_block_len(st, n, t);
        /* Causal: the blocks before t; bidirectional: all but t's own (block t starts at t c). */
        size_t own_summary = t + 1 < st->nb ? st->c : st->ns - t * st->c;
        size_t summaries = pb->causal ? t * st->c : st->ns - own_summary;
        for (size_t q0 = start; q0 < start + len; q0 += st->tile) {
            size_t nr = start + len - q0 < st->tile ? start + len - q0 : st->tile;
            size_t own = pb->causal ? q0 + nr - start : len;
            pairs += (double) nr * (double) (own + summaries);
        }
    }
    cost->flops = 2.0 * pairs * (double) (pb->d + pb->dv);
    cost->exps = pairs;
}

const attn_method attn_method_sparse_fixed = {
    .id = "sparse_fixed",
    .summary = "Sparse Transformer fixed pattern: own block plus the last c positions of every "
               "other block, softmax renormalized over them (O(n sqrt n))",
    .reference = "Child, Gray, Radford, Sutskever, Generating Long Sequences with Sparse "
                 "Transformers, arXiv:1904.10509 (2019)",
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

/* ---------------------------------------------------------------------------------------------
 * sparse_logsparse
 */

/* A window of at least this many keys per side goes through dgemm tiles (like band); a smaller
 * one is handled key by key with the exponential positions, since a tile of 8 queries against a
 * 1-key window would form 8 logits per useful one. */
#define LOGSPARSE_GEMM_WINDOW 8

/* Bits of a size_t: bounds the exponential positions on each side. */
#define SIZE_BITS (8 * sizeof(size_t))

typedef struct logsparse_state {
    size_t L;        /* local window (clipped to n - 1) */
    int gemm;        /* 1: the window goes through dgemm tiles */
    size_t tile;     /* queries per tile */
    size_t maxk;     /* most scattered keys of one query */
    size_t *idx;     /* maxk scattered key positions */
    double *S;       /* tile x ATTN_TILE_K logits */
    double *accbuf;  /* storage of acc */
    attn_acc acc;
} logsparse_state;

static const attn_param logsparse_params[] = {
    { .name = "local", .value = 0, .lo = 0, .hi = INFINITY, .integer = 1,
      .doc = "L, local window: also the L positions before i (bidirectional: and after); "
             "L >= n - 1 is exact" },
    { 0 },
};

static void logsparse_fini(attn_plan *plan)
{
    logsparse_state *st = plan->state;
    if (st == NULL)
        return;
    free(st->idx);
    free(st->S);
    free(st->accbuf);
    free(st);
}

static int logsparse_init(attn_plan *plan)
{
    const attn_problem *pb = &plan->problem;
    size_t n = pb->n, dv = pb->dv;
    double L = attn_plan_value(plan, "local");
    logsparse_state *st = attn_plan_calloc(plan, 1, sizeof *st);
    if (st == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "sparse_logsparse: plan state");
    plan->state = st;
    st->L = L >= (double) (n - 1) ? n - 1 : (size_t) L;
    st->gemm = st->L + 1 >= LOGSPARSE_GEMM_WINDOW;
    if (st->gemm)
        st->tile = st->L + 1 < ATTN_TILE_Q ? st->L + 1 : ATTN_TILE_Q;
    else
        st->tile = ATTN_TILE_Q;
    /* Per side: at most SIZE_BITS powers of two, and (window not in dgemm) L + 1 window keys. */
    st->maxk = 2 * SIZE_BITS + (st->gemm ? 0 : 2 * st->L + 1);
    st->idx = attn_plan_calloc(plan, st->maxk, sizeof *st->idx);
    st->S = attn_plan_calloc(plan, st->tile * ATTN_TILE_K, sizeof *st->S);
    st->accbuf = attn_plan_calloc(plan, attn_acc_doubles(st->tile, dv), sizeof *st->accbuf);
    if (st->idx == NULL || st->S == NULL || st->accbuf == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "sparse_logsparse: scratch for %zu scattered keys",
                        st->maxk);
    attn_acc_init(&st->acc, st->tile, dv, st->accbuf);
    return ATTN_OK;
}

/* The keys of query i that are not in the dgemm window, into idx; returns their count.  Each
 * appears once: the exponential distances 2^k are taken only beyond the window (2^k > L). */
static size_t logsparse_scattered(const logsparse_state *st, size_t n, int causal, size_t i,
                               size_t *idx)
{
    size_t count = 0, L = st->L;
    if (!st->gemm) {
        for (size_t t = 0; t <= L && t <= i; t++)
            idx[count++] = i - t;
        for (size_t t = 1; !causal && t <= L && t < n - i; t++)
            idx[count++] = i + t;
    }
    for (size_t k = 0; k < SIZE_BITS && ((size_t) 1 << k) <= i; k++)
        if (((size_t) 1 << k) > L)
            idx[count++] = i - ((size_t) 1 << k);
    for (size_t k = 0; !causal && k < SIZE_BITS && ((size_t) 1 << k) < n - i; k++)
        if (((size_t) 1 << k) > L)
            idx[count++] = i + ((size_t) 1 << k);
    return count;
}

/* Keys [lo, hi) that some query of the tile [q0, q0 + nr) sees through the window. */
static void logsparse_window(const logsparse_state *st, size_t n, int causal, size_t q0,
                             size_t nr, size_t *lo, size_t *hi)
{
    size_t last = q0 + nr - 1;
    *lo = q0 > st->L ? q0 - st->L : 0;
    *hi = causal ? last + 1 : last + st->L + 1;
    if (*hi > n)
        *hi = n;
}

static int logsparse_apply(attn_plan *plan, const double *Q, const double *K, const double *V,
                           double *O)
{
    logsparse_state *st = plan->state;
    const attn_problem *pb = &plan->problem;
    size_t n = pb->n, d = pb->d, dv = pb->dv;
    for (size_t q0 = 0; q0 < n; q0 += st->tile) {
        size_t nr = n - q0 < st->tile ? n - q0 : st->tile;
        st->acc.rows = nr;
        attn_acc_reset(&st->acc);
        if (st->gemm) {
            size_t lo, hi;
            logsparse_window(st, n, pb->causal, q0, nr, &lo, &hi);
            combiner_add_block(&st->acc, 0, Q + q0 * d, q0, nr, K + lo * d, V + lo * dv, lo,
                               hi - lo, st->L, pb->causal ? 0 : st->L, 0, pb, st->S);
        }
        for (size_t a = 0; a < nr; a++) {
            size_t i = q0 + a;
            size_t count = logsparse_scattered(st, n, pb->causal, i, st->idx);
            /* Each scattered key has its own value row: add_one reads it in place, so nothing
             * is copied, and one dot product per key is all the logit costs. */
            for (size_t t = 0; t < count; t++) {
                size_t j = st->idx[t];
                double logit = pb->scale * cblas_ddot((int) d, Q + i * d, 1, K + j * d, 1);
                attn_acc_add_one(&st->acc, a, logit, 1.0, V + j * dv);
            }
        }
        attn_acc_finish(&st->acc, 0, nr, O + q0 * dv, dv, NULL);
    }
    return ATTN_OK;
}

/* Pairs (i, i - p) with p = 2^k > L and p <= i, i < n: for each such p, n - p queries. */
static double powers_beyond(size_t n, size_t L)
{
    double pairs = 0.0;
    for (size_t k = 0; k < SIZE_BITS && ((size_t) 1 << k) < n; k++)
        if (((size_t) 1 << k) > L)
            pairs += (double) (n - ((size_t) 1 << k));
    return pairs;
}

static void logsparse_cost(const attn_plan *plan, attn_cost *cost)
{
    const logsparse_state *st = plan->state;
    const attn_problem *pb = &plan->problem;
    size_t n = pb->n, L = st->L;
    double sides = pb->causal ? 1.0 : 2.0;
    double pairs = sides * powers_beyond(n, L);
    if (st->gemm) {
        for (size_t q0 = 0; q0 < n; q0 += st->tile) {
            size_t nr = n - q0 < st->tile ? n - q0 : st->tile;
            size_t lo, hi;
            logsparse_window(st, n, pb->causal, q0, nr, &lo, &hi);
            pairs += (double) nr * (double) (hi - lo);
        }
    } else {
        /* Self, plus sum_i min(i, L) keys on each side: L (L + 1) / 2 + (n - 1 - L) L. */
        pairs += (double) n + sides * ((double) L * (double) (L + 1) / 2.0 +
                                       (double) (n - 1 - L) * (double) L);
    }
    cost->flops = 2.0 * pairs * (double) (pb->d + pb->dv);
    cost->exps = pairs;
}

static int logsparse_exact_limit(const attn_problem *problem, double *values)
{
    values[0] = (double) (problem->n - 1);
    return ATTN_OK;
}

const attn_method attn_method_sparse_logsparse = {
    .id = "sparse_logsparse",
    .summary = "LogSparse: the query, the positions 2^k away from it and an optional local "
               "window, softmax renormalized over them (O(n log n))",
    .reference = "Li et al., Enhancing the Locality and Breaking the Memory Bottleneck of "
                 "Transformer on Time Series Forecasting, NeurIPS 2019",
    .caps = ATTN_CAN_CAUSAL | ATTN_CAN_BIDIR | ATTN_ROW_STOCHASTIC | ATTN_BUDGET_MONOTONE,
    .params = logsparse_params,
    .budget = "local",
    .init = logsparse_init,
    .fini = logsparse_fini,
    .apply = logsparse_apply,
    .materialize = NULL,
    .cost = logsparse_cost,
    .exact_limit = logsparse_exact_limit,
};

/* ---------------------------------------------------------------------------------------------
 * sparse_axial
 */
typedef struct axial_state {
    size_t b;        /* row length (columns), clipped to n */
    size_t rows;     /* ceil(n / b) */
    size_t tile;     /* queries per row-pass tile (tiles never cross a row) */
    double *Qc;      /* rows x d: one column's queries */
    double *Kc;      /* rows x d: its keys */
    double *Vc;      /* rows x dv: its values */
    double *S;       /* ATTN_TILE_Q x ATTN_TILE_K logits */
    double *accbuf;  /* storage of acc */
    double *colbuf;  /* storage of col */
    attn_acc acc;    /* tile rows: the row pass */
    attn_acc col;    /* b x rows: the column pass, row c * rows + t for position (t, c) */
} axial_state;

static const attn_param axial_params[] = {
    { .name = "block", .value = 0, .lo = 1, .hi = INFINITY, .integer = 1,
      .doc = "row length (columns) b of the reshaping (default: 2^ceil(log2 sqrt n)); b >= n "
             "is exact" },
    { 0 },
};

static void axial_fini(attn_plan *plan)
{
    axial_state *st = plan->state;
    if (st == NULL)
        return;
    free(st->Qc);
    free(st->Kc);
    free(st->Vc);
    free(st->S);
    free(st->accbuf);
    free(st->colbuf);
    free(st);
}

static int axial_init(attn_plan *plan)
{
    const attn_problem *pb = &plan->problem;
    size_t n = pb->n, d = pb->d, dv = pb->dv;
    size_t b = combiner_block(plan);
    axial_state *st = attn_plan_calloc(plan, 1, sizeof *st);
    if (st == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "sparse_axial: plan state");
    plan->state = st;
    st->b = b;
    st->rows = (n + st->b - 1) / st->b;
    st->tile = st->b < ATTN_TILE_Q ? st->b : ATTN_TILE_Q;
    st->Qc = attn_plan_calloc(plan, st->rows * d, sizeof *st->Qc);
    st->Kc = attn_plan_calloc(plan, st->rows * d, sizeof *st->Kc);
    st->Vc = attn_plan_calloc(plan, st->rows * dv, sizeof *st->Vc);
    st->S = attn_plan_calloc(plan, ATTN_TILE_Q * ATTN_TILE_K, sizeof *st->S);
    st->accbuf = attn_plan_calloc(plan, attn_acc_doubles(st->tile, dv), sizeof *st->accbuf);
    st->colbuf = attn_plan_calloc(plan, attn_acc_doubles(st->b * st->rows, dv),
                                  sizeof *st->colbuf);
    if (st->Qc == NULL || st->Kc == NULL || st->Vc == NULL || st->S == NULL ||
        st->accbuf == NULL || st->colbuf == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "sparse_axial: scratch for %zu x %zu positions", st->rows,
                        st->b);
    attn_acc_init(&st->acc, st->tile, dv, st->accbuf);
    attn_acc_init(&st->col, st->b * st->rows, dv, st->colbuf);
    return ATTN_OK;
}

/* Positions in column c: rows 0 .. count-1 (the ragged last row may lack the column). */
static size_t axial_column_len(const axial_state *st, size_t n, size_t c)
{
    return (n - c + st->b - 1) / st->b;
}

static int axial_apply(attn_plan *plan, const double *Q, const double *K, const double *V,
                       double *O)
{
    axial_state *st = plan->state;
    const attn_problem *pb = &plan->problem;
    size_t n = pb->n, d = pb->d, dv = pb->dv, b = st->b;
    /* Column pass: gather each column so that it is contiguous, and keep each position's partial
     * softmax over its own column without itself (causal: the rows above). */
    attn_acc_reset(&st->col);
    for (size_t c = 0; c < b; c++) {
        size_t len = axial_column_len(st, n, c);
        for (size_t t = 0; t < len; t++) {
            memcpy(st->Qc + t * d, Q + (t * b + c) * d, d * sizeof *Q);
            memcpy(st->Kc + t * d, K + (t * b + c) * d, d * sizeof *K);
            memcpy(st->Vc + t * dv, V + (t * b + c) * dv, dv * sizeof *V);
        }
        for (size_t t0 = 0; t0 < len; t0 += ATTN_TILE_Q) {
            size_t nr = len - t0 < ATTN_TILE_Q ? len - t0 : ATTN_TILE_Q;
            size_t nc = pb->causal ? t0 + nr - 1 : len;
            combiner_add_block(&st->col, c * st->rows + t0, st->Qc + t0 * d, t0, nr, st->Kc,
                               st->Vc, 0, nc, SIZE_MAX, pb->causal ? 0 : SIZE_MAX, 1, pb, st->S);
        }
    }
    /* Row pass: each position's own row (causal: up to itself), merged with its column part. */
    for (size_t r = 0; r < st->rows; r++) {
        size_t start = r * b, len = n - start < b ? n - start : b;
        for (size_t q0 = start; q0 < start + len; q0 += st->tile) {
            size_t nr = start + len - q0 < st->tile ? start + len - q0 : st->tile;
            st->acc.rows = nr;
            attn_acc_reset(&st->acc);
            size_t nc = pb->causal ? q0 + nr - start : len;
            combiner_add_block(&st->acc, 0, Q + q0 * d, q0, nr, K + start * d, V + start * dv,
                               start, nc, SIZE_MAX, pb->causal ? 0 : SIZE_MAX, 0, pb, st->S);
            for (size_t a = 0; a < nr; a++) {
                size_t i = q0 + a;
                attn_acc_merge_row(&st->acc, a, &st->col, (i % b) * st->rows + r);
            }
            attn_acc_finish(&st->acc, 0, nr, O + q0 * dv, dv, NULL);
        }
    }
    return ATTN_OK;
}

/* The (query, key) pairs apply forms logits for, masked ones included. */
static void axial_cost(const attn_plan *plan, attn_cost *cost)
{
    const axial_state *st = plan->state;
    const attn_problem *pb = &plan->problem;
    size_t n = pb->n, b = st->b;
    double pairs = 0.0;
    for (size_t c = 0; c < b; c++) {
        size_t len = axial_column_len(st, n, c);
        for (size_t t0 = 0; t0 < len; t0 += ATTN_TILE_Q) {
            size_t nr = len - t0 < ATTN_TILE_Q ? len - t0 : ATTN_TILE_Q;
            pairs += (double) nr * (double) (pb->causal ? t0 + nr - 1 : len);
        }
    }
    for (size_t r = 0; r < st->rows; r++) {
        size_t start = r * b, len = n - start < b ? n - start : b;
        for (size_t q0 = start; q0 < start + len; q0 += st->tile) {
            size_t nr = start + len - q0 < st->tile ? start + len - q0 : st->tile;
            pairs += (double) nr * (double) (pb->causal ? q0 + nr - start : len);
        }
    }
    cost->flops = 2.0 * pairs * (double) (pb->d + pb->dv);
    cost->exps = pairs;
}

const attn_method attn_method_sparse_axial = {
    .id = "sparse_axial",
    .summary = "axial attention: own row and own column of the n = rows x b reshaping, softmax "
               "renormalized over them (O(n sqrt n))",
    .reference = "Ho, Kalchbrenner, Weissenborn, Salimans, Axial Attention in Multidimensional "
                 "Transformers, arXiv:1912.12180 (2019)",
    .caps = ATTN_CAN_CAUSAL | ATTN_CAN_BIDIR | ATTN_ROW_STOCHASTIC,
    .params = axial_params,
    .budget = "block",
    .init = axial_init,
    .fini = axial_fini,
    .apply = axial_apply,
    .materialize = NULL,
    .cost = axial_cost,
    .exact_limit = combiner_block_exact_limit,
};
