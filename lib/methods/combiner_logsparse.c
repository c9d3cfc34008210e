/* combiner_logsparse.c — Combiner-Logsparse: full attention at O(n log n) via dyadic summaries.
 *
 * What it computes.  Query i (causal) splits its prefix at e = max(0, i - local): the keys [e, i]
 * are seen directly and [0, e) is tiled by the aligned dyadic blocks of the binary expansion of e
 * (the Fenwick decomposition),
 *
 *     G_l = [a, a + 2^l),  a = floor(e / 2^(l+1)) 2^(l+1),  for every bit l of e that is set,
 *
 * which are disjoint and cover [0, e) exactly (each set bit peels the next 2^l positions off the
 * front of what is left).  The level-0 block {e - 1} (e odd) is folded into the direct set, as the
 * paper does, so the direct set is the window [e - (e mod 2), i] and the groups are the blocks of
 * levels l >= 1.  With local = 0 (the default) this is METHODS.md 1.2 verbatim: direct
 * {i} u {i - 1 if i odd}, groups G_l(i) for the bits l >= 1 of i.  Each group contributes one term:
 * the logit s q_i . k~_G (+ log |G| for pool = mean_log) with the block's local expectation
 * v~_G = sum_{j in G} softmax_j(s q~_G . k_j) v_j, k~ and q~ the pooled keys and queries
 * (combiner.h).  Direct and group logits share one softmax, so each row is a full distribution,
 * strictly positive on every allowed key.
 * Bidirectional: the mirror image.  With r = n - 1 - i (the query's index in the reversed
 * sequence) and e_r = max(0, r - local), the keys right of i are [i, n - 1 - e_r + (e_r mod 2)]
 * directly and the reversed Fenwick blocks of [0, e_r), i.e. the positions
 * [n - a - 2^l, n - a) for the bits l >= 1 of e_r; the direct set is the union of both windows
 * (with local = 0: {i} plus the size-1 neighbour on each side when that side's level-0 bit is set).
 * Rows cover every key exactly once in both forms (tests/test_combiner_logsparse.c checks it).
 *
 * Why the summaries are cheap.  Every block a query ever sees is a "left child" block
 * [u 2^(l+1), u 2^(l+1) + 2^l) ending at or before n - 1, whatever i and local are (the Fenwick
 * blocks of any prefix are of that form), so there are ((n - 1) / 2^l + 1) / 2 blocks per level
 * and direction, <= n / 2 positions per level: all summaries cost O(n log n (d + dv)) and take
 * O(n (d + dv)) memory, computed once per apply and shared by every query.  Per query: <= log2 n
 * group terms per side (a dot product and one accumulator update each) and a direct window of
 * <= local + 2 keys per side, formed by dgemm over query tiles.
 * Cost O(n (log n + local)(d + dv)) time, scratch O(n (d + dv) + tile ATTN_TILE_K); never n x n.
 *
 * Budget: `local`, the number of past (bidirectional: past and future) positions seen directly
 * besides i.  The paper has no block size to trade; a direct window is the natural knob, and the
 * groups shrink to the Fenwick blocks of what the window leaves.  Not monotone in general.
 *
 * When exact: local >= n - 1 (everything direct; exact_limit), n <= 2 with levels = paper (no
 * groups), and oracle = full always.  pool = mean_log is exact when the keys are constant on every
 * block used as a group: the group logit s q_i . k + log |G| is then the exact log-mass
 * log sum_{j in G} exp(s q_i . k_j), and the local distribution is uniform, as the exact
 * within-group one is.  That works because a summary depends on its block alone, never on the
 * query.  oracle = mass is exact whenever the local distribution is: keys constant on every used
 * block (any pool), or all queries equal (the pooled query is then every query).  Unlike Fixed,
 * "every group has one position" never happens beyond n = 2: groups start at level 1.
 *
 * Reference: Ren, Dai, Dai, Yang, Leskovec, Schuurmans, Dai, "Combiner: Full Attention Transformer
 * with Sparse Computation Cost", NeurIPS 2021, section 4.2; code: google-research
 * combiner/jax/model/layer.py, _SelfAttLogn.
 * Departures.
 *  - Level count.  The published code uses ceil(log2(n - 1)) levels, one too few when n - 1 is a
 *    power of two (n = 3, 5, 9, 17, 33, ..., 1025): the top block [0, 2^k) of the last query
 *    i = n - 1 = 2^k is then never formed, and that row attends to itself only — the keys
 *    [0, n - 1) are unreachable from it (at n = 2 the code has no level at all; we keep the self
 *    term).  The default `levels = paper` uses bit_length(n - 1) levels and covers every key;
 *    `levels = code` reproduces the code's count.  Its rows still sum to one (the plan stays
 *    row-stochastic), but the row of query n - 1 (bidirectional: also the mirrored row 0) is not
 *    a distribution over all allowed keys.  With local >= 1 the two counts give the same plan.
 *  - The code keeps the level-0 neighbour as a "group" whose summary is k_{i-1}, v_{i-1}; we fold
 *    it into the direct set, as the paper does (numerically the same term).
 *  - Bidirectional form: the paper's appendix B was not available; this is attnlab's mirror
 *    construction (METHODS.md 1.2 [X]).  The code has no bidirectional Logsparse.
 *  - `local` is an attnlab addition (0 = the paper).  The abstractions are parameter-free (max
 *    pooling by default; mean and mean_log as options) since nothing is trained here.
 */
#include "config.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "combiner.h"

enum logsparse_levels { LEVELS_PAPER, LEVELS_CODE };
static const char *const levels_choices[] = { "paper", "code", NULL };

/* A row has at most one group per level and side; size_t has at most 64 levels. */
#define MAX_LEVELS 64
#define MAX_GROUPS (2 * MAX_LEVELS)

typedef struct group_ref {
    size_t g;       /* index of the block's summary in sums.Kt, sums.Vt, sums.bias */
    size_t start;   /* first position of the block */
    size_t len;     /* its positions, 2^l */
} group_ref;

typedef struct logsparse_state {
    size_t local;            /* direct window beyond i (clipped to n - 1) */
    size_t levels;           /* blocks of 2^l positions for l < levels are formed */
    size_t off[MAX_LEVELS + 1]; /* off[l]: first summary of level l (l >= 1) per direction */
    size_t nsum;             /* summaries per direction */
    size_t maxlen;           /* largest block */
    size_t tile;             /* queries per tile */
    int bidir;
    combiner_groups sums;    /* (1 + bidir) nsum summaries: forward, then mirrored; tile scratch */
} logsparse_state;

static const attn_param logsparse_params[] = {
    { .name = "local", .value = 0, .lo = 0, .hi = INFINITY, .integer = 1,
      .doc = "positions before (bidirectional: and after) i seen directly besides the paper's "
             "direct set; the dyadic groups tile the rest; local >= n - 1 is exact attention" },
    COMBINER_POOL_PARAM,
    COMBINER_ORACLE_PARAM,
    { .name = "levels", .value = LEVELS_PAPER, .choices = levels_choices,
      .doc = "dyadic level count: paper = bit_length(n - 1) (covers every key); code = the "
             "published code's ceil(log2(n - 1)), which leaves the last row (n - 1 a power of "
             "two) attending to itself only" },
    { 0 },
};

static void logsparse_fini(attn_plan *plan)
{
    logsparse_state *st = plan->state;
    if (st == NULL)
        return;
    combiner_groups_free(&st->sums);
    free(st);
}

/* Number of binary digits of x (0 for x = 0). */
static size_t bit_length(size_t x)
{
    size_t b = 0;
    while (x != 0) {
        b++;
        x >>= 1;
    }
    return b;
}

static int logsparse_init(attn_plan *plan)
{
    const attn_problem *pb = &plan->problem;
    size_t n = pb->n;
    logsparse_state *st = attn_plan_calloc(plan, 1, sizeof *st);
    if (st == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "combiner_logsparse: plan state");
    plan->state = st;
    double local = attn_plan_value(plan, "local");
    /* A window reaching past the sequence changes nothing: clip it so index arithmetic stays
     * small. */
    st->local = local >= (double) (n - 1) ? n - 1 : (size_t) local;
    st->bidir = !pb->causal;
    /* Paper: every bit of every index up to n - 1.  Code: ceil(log2(n - 1)) = bit_length(n - 2)
     * for n >= 2. */
    if ((int) attn_plan_value(plan, "levels") == LEVELS_CODE)
        st->levels = n >= 2 ? bit_length(n - 2) : 0;
    else
        st->levels = bit_length(n - 1);
    /* Level l has ((n - 1) / 2^l + 1) / 2 left-child blocks that end at or before n - 1. */
    st->nsum = 0;
    st->maxlen = 1;
    for (size_t l = 1; l <= MAX_LEVELS; l++) {
        st->off[l] = st->nsum;
        if (l < st->levels) {
            size_t blocks = (((n - 1) >> l) + 1) / 2;
            st->nsum += blocks;
            if (blocks > 0)
                st->maxlen = (size_t) 1 << l;
        }
    }
    size_t dirs = st->bidir ? 2 : 1, total = dirs * st->nsum;
    /* The direct window of a row spans <= local + 2 keys per side, so tiles a little wider than
     * that waste little of the dgemm (and never fewer than 8 rows, so the dgemm stays a
     * matrix product). */
    size_t width = st->local + 2;
    st->tile = width < 8 ? 8 : (width < ATTN_TILE_Q ? width : ATTN_TILE_Q);
    /* Oracle groups are added one query at a time. */
    if (combiner_groups_alloc(plan, &st->sums, total, st->maxlen, st->tile, ATTN_TILE_K, 1) != 0)
        return ATTN_ERR(ATTN_ENOMEM, "combiner_logsparse: scratch for %zu summaries (n = %zu)",
                        total, n);
    return ATTN_OK;
}

/* Where the dyadic part of each side starts: e = max(0, i - local) on the left, the same of the
 * reversed index r = n - 1 - i on the right. */
static size_t cut(const logsparse_state *st, size_t x)
{
    return x > st->local ? x - st->local : 0;
}

/* The level-0 block {e - 1} exists when e is odd and level 0 is formed; it joins the direct set. */
static size_t fold(const logsparse_state *st, size_t e)
{
    return (e & 1) && st->levels >= 1;
}

/* The direct window [lo, hi] of row i. */
static void direct_window(const logsparse_state *st, size_t n, size_t i, size_t *lo, size_t *hi)
{
    size_t e = cut(st, i);
    *lo = e - fold(st, e);
    if (st->bidir) {
        size_t er = cut(st, n - 1 - i);
        *hi = n - 1 - er + fold(st, er);
    } else {
        *hi = i;
    }
}

/* The groups of row i (at most MAX_GROUPS): the Fenwick blocks of [0, e) at levels 1..levels-1
 * and, bidirectional, their mirror images for e_r. */
static size_t row_groups(const logsparse_state *st, size_t n, size_t i, group_ref *out)
{
    size_t count = 0;
    size_t e = cut(st, i);
    for (size_t l = 1; l < st->levels && (e >> l) != 0; l++)
        if ((e >> l) & 1) {
            size_t u = e >> (l + 1);
            out[count++] = (group_ref){ .g = st->off[l] + u, .start = u << (l + 1),
                                        .len = (size_t) 1 << l };
        }
    if (!st->bidir)
        return count;
    size_t er = cut(st, n - 1 - i);
    for (size_t l = 1; l < st->levels && (er >> l) != 0; l++)
        if ((er >> l) & 1) {
            size_t u = er >> (l + 1);
            size_t len = (size_t) 1 << l;
            out[count++] = (group_ref){ .g = st->nsum + st->off[l] + u,
                                        .start = n - (u << (l + 1)) - len, .len = len };
        }
    return count;
}

static void fill_block(size_t *idx, size_t start, size_t len)
{
    for (size_t u = 0; u < len; u++)
        idx[u] = start + u;
}

/* Number of trailing zero bits of x > 0. */
static size_t trailing_zeros(size_t x)
{
    size_t t = 0;
    while (!(x & 1)) {
        x >>= 1;
        t++;
    }
    return t;
}

/* Summaries of every block some query sees, forward and (bidirectional) mirrored.  A left-child
 * block [u 2^(l+1), u 2^(l+1) + 2^l) ends at E = (2u + 1) 2^l, which has exactly l trailing zero
 * bits, so every even E <= n - 1 ends exactly one block (level l = trailing zeros of E,
 * u = E >> (l + 1)).  Visiting the blocks by their end is a post-order walk of the dyadic tree:
 * a block's rows were just read by the smaller blocks inside it, so they are still in cache
 * (a level-by-level sweep rereads all of Q, K and V once per level). */
static void summarize_all(logsparse_state *st, const attn_problem *pb, const double *Q,
                          const double *K, const double *V)
{
    combiner_groups *sums = &st->sums;
    size_t n = pb->n, d = pb->d, dv = pb->dv;
    for (size_t dir = 0; dir < (st->bidir ? 2u : 1u); dir++)
        for (size_t E = 2; E + 1 <= n; E += 2) {
            size_t l = trailing_zeros(E), len = (size_t) 1 << l;
            if (l >= st->levels)
                continue;
            size_t t = dir * st->nsum + st->off[l] + (E >> (l + 1));
            size_t start = dir == 0 ? E - len : n - E; /* mirrored: reversed [E - len, E) */
            fill_block(sums->idx, start, len);
            sums->bias[t] = combiner_summarize(pb, sums->pool, Q, K, V, sums->idx, len,
                                               sums->Kt + t * d, sums->Vt + t * dv, sums->work);
        }
}

/* Direct terms of the tile [q0, q0 + nr): the union of the rows' windows in chunks of
 * ATTN_TILE_K keys, each entry outside its row's window masked. */
static void add_direct(logsparse_state *st, const attn_problem *pb, const double *Q,
                       const double *K, const double *V, size_t q0, size_t nr)
{
    combiner_groups *sums = &st->sums;
    size_t n = pb->n, d = pb->d, dv = pb->dv;
    size_t k_lo, k_hi, unused;
    direct_window(st, n, q0, &k_lo, &unused);
    direct_window(st, n, q0 + nr - 1, &unused, &k_hi); /* windows move right with i */
    for (size_t k0 = k_lo; k0 <= k_hi; k0 += ATTN_TILE_K) {
        size_t nc = k_hi + 1 - k0 < ATTN_TILE_K ? k_hi + 1 - k0 : ATTN_TILE_K;
        attn_logits(Q + q0 * d, nr, K + k0 * d, nc, d, pb->scale, sums->S, ATTN_TILE_K);
        for (size_t a = 0; a < nr; a++) {
            size_t lo, hi;
            direct_window(st, n, q0 + a, &lo, &hi);
            double *row = sums->S + a * ATTN_TILE_K;
            for (size_t b = 0; b < nc; b++)
                if (k0 + b < lo || k0 + b > hi)
                    row[b] = -INFINITY;
        }
        attn_acc_add(&sums->acc, 0, nr, sums->S, ATTN_TILE_K, V + k0 * dv, dv, nc);
    }
}

static int logsparse_apply(attn_plan *plan, const double *Q, const double *K, const double *V,
                           double *O)
{
    logsparse_state *st = plan->state;
    const attn_problem *pb = &plan->problem;
    combiner_groups *sums = &st->sums;
    size_t n = pb->n, d = pb->d, dv = pb->dv;
    group_ref groups[MAX_GROUPS];
    summarize_all(st, pb, Q, K, V);
    for (size_t q0 = 0; q0 < n; q0 += st->tile) {
        size_t nr = n - q0 < st->tile ? n - q0 : st->tile;
        sums->acc.rows = nr;
        attn_acc_reset(&sums->acc);
        add_direct(st, pb, Q, K, V, q0, nr);
        for (size_t a = 0; a < nr; a++) {
            size_t i = q0 + a;
            const double *q = Q + i * d;
            size_t count = row_groups(st, n, i, groups);
            for (size_t t = 0; t < count; t++) {
                const group_ref *G = &groups[t];
                if (sums->oracle == COMBINER_ORACLE_NONE) {
                    double logit = combiner_logit(q, sums->Kt + G->g * d, d, pb->scale);
                    attn_acc_add_one(&sums->acc, a, logit + sums->bias[G->g], 1.0,
                                     sums->Vt + G->g * dv);
                } else {
                    fill_block(sums->idx, G->start, G->len);
                    combiner_add_oracle(&sums->acc, a, 1, q, K, V, sums->idx, G->len,
                                        sums->Vt + G->g * dv, sums->oracle, pb->scale, d,
                                        sums->oracle_scratch);
                }
            }
        }
        attn_acc_finish(&sums->acc, 0, nr, O + q0 * dv, dv, NULL);
    }
    return ATTN_OK;
}

static void logsparse_cost(const attn_plan *plan, attn_cost *cost)
{
    const logsparse_state *st = plan->state;
    const attn_problem *pb = &plan->problem;
    size_t n = pb->n;
    double d = (double) pb->d, dv = (double) pb->dv;
    group_ref groups[MAX_GROUPS];
    /* Summaries: pooling of keys and queries (d each), local logits and expectation, per
     * position of every block. */
    double pooled = 0.0;
    for (size_t l = 1; l < st->levels; l++)
        pooled += (double) (st->off[l + 1] - st->off[l]) * (double) ((size_t) 1 << l);
    pooled *= st->bidir ? 2.0 : 1.0;
    /* Direct: every logit of the tiles' key ranges is formed, masked or not. */
    double direct = 0.0, terms = 0.0, oracle_pairs = 0.0;
    for (size_t q0 = 0; q0 < n; q0 += st->tile) {
        size_t nr = n - q0 < st->tile ? n - q0 : st->tile, k_lo, k_hi, unused;
        direct_window(st, n, q0, &k_lo, &unused);
        direct_window(st, n, q0 + nr - 1, &unused, &k_hi);
        direct += (double) nr * (double) (k_hi + 1 - k_lo);
    }
    for (size_t i = 0; i < n; i++) {
        size_t count = row_groups(st, n, i, groups);
        terms += (double) count;
        for (size_t t = 0; t < count; t++)
            oracle_pairs += (double) groups[t].len;
    }
    double pairs = direct + (st->sums.oracle == COMBINER_ORACLE_NONE ? terms : oracle_pairs);
    cost->flops = pooled * (2.0 * d + 2.0 * d + 2.0 * dv) + 2.0 * pairs * (d + dv);
    cost->exps = pooled + pairs;
}

static int logsparse_exact_limit(const attn_problem *problem, double *values)
{
    values[0] = (double) (problem->n - 1);
    return ATTN_OK;
}

const attn_method attn_method_combiner_logsparse = {
    .id = "combiner_logsparse",
    .summary = "Combiner-Logsparse: self and neighbour direct, the dyadic (Fenwick) blocks of the "
               "rest through pooled summaries, one softmax (O(n log n))",
    .reference = "Ren et al., Combiner: Full Attention Transformer with Sparse Computation Cost, "
                 "NeurIPS 2021",
    .caps = ATTN_CAN_CAUSAL | ATTN_CAN_BIDIR | ATTN_ROW_STOCHASTIC,
    .params = logsparse_params,
    .budget = "local",
    .init = logsparse_init,
    .fini = logsparse_fini,
    .apply = logsparse_apply,
    .materialize = NULL,
    .cost = logsparse_cost,
    .exact_limit = logsparse_exact_limit,
};
