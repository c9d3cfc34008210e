/* fmm_multilevel.c — Fast Multipole Attention: a multilevel hierarchy of averaged keys and values.
 *
 * Definition, as computed.  s is the problem's scale, m the finest group size (`block`, clipped
 * to n), L = levels - 1 the number of coarse levels.
 *   Level 0 (near field): blocks of m positions; query i in block b = floor(i / m) sees the keys of
 *     blocks b - 1, b, b + 1 directly (causal: blocks b - 1 and b, keys j <= i only), with logit
 *     s q_i . k_j.
 *   Coarse level l = 1 .. L: cells of width w_l = m 2^(l-1) (the last one ragged), each split into
 *     p_l = min(p, w_l) sub-blocks; sub-block t of cell C covers the positions
 *     [C w_l + floor(t w_l / p_l), C w_l + floor((t + 1) w_l / p_l)) that are < n (never refused
 *     when p does not divide w_l; empty sub-blocks are skipped).  Its coarse token has the mean
 *     k~ of those keys, the mean v~ of their values and their count c (ragged cells use their real
 *     counts).  p_l = min(p, w_l) changes nothing: with p >= w_l the nonempty sub-blocks are the
 *     single positions either way; it keeps the token count O(n) for any p.
 *   Interaction lists: for query i at level l let c = floor(i / w_l), P = floor(c / 2).  For
 *     l < L the list is the cells {2P - 2, ..., 2P + 3} minus {c - 1, c, c + 1} (the standard 1D
 *     FMM list: the children of the parent's neighbours that are not the query cell's own
 *     neighbours); causal: only its cells < c - 1.  The coarsest level L takes every cell outside
 *     {c - 1, c, c + 1} (causal: every cell < c - 1), not just its list, so that with levels >= 2
 *     the near field and the lists tile the allowed keys ([0, n), causal [0, i]) exactly, without
 *     overlap: every key reaches every query at exactly one level.  levels = 1 is the near field
 *     alone (block-local attention).  Cells outside [0, ceil(n / w_l)) do not exist.
 *   One softmax over all levels: the token of sub-block (l, C, t) in query i's lists has the logit
 *     s q_i . k~ + log c (scale_attn = 1: the token stands for its c keys, the monopole estimate
 *     sum_j exp(s q_i . k_j) v_j ~ c exp(s q_i . k~) v~; scale_attn = 0: + 0), and
 *         o_i = [ sum_{near} exp(s q_i . k_j) v_j + sum_{tokens} exp(logit) v~ ] / Z_i
 *     with Z_i the sum of the same weights: one maximum, one denominator, every term through the
 *     shared streaming accumulator.  As a matrix, a key j of a token gets A_ij = exp(s q_i . k~) / Z_i
 *     (scale_attn = 0: that divided by c).
 *   downsample_queries = 1 (bidirectional only): the coarse terms of query i at level l use, in
 *     place of q_i, the mean q~ of the queries of i's own level-l sub-block.  Each coarse query row
 *     keeps its own partial softmax (maximum, sum, output) over its cell's list; the rows are
 *     folded down the hierarchy (level l+1's sub-blocks are unions of level l's: the boundaries
 *     floor(t 2w / p) are the even boundaries of the two children, since floor(x + w) = w +
 *     floor(x)), so each level-1 row carries all coarse levels of its positions, and each fine
 *     query merges its level-1 row into its own after its near field — a log-sum-exp merge.
 *     Causal problems refuse it: averaging a cell's queries lets query i see later queries.
 *
 * Apply.  Coarse keys, values (and queries) are pooled once per apply: level 1 from the fine rows,
 * each higher level as sums of its children, then divided by the counts (O(n (d + dv)) in all).
 * The queries of one fine block share every level's list, and a list is at most two contiguous
 * runs of token indices per level, so per block the tokens of all levels are copied into one
 * contiguous K~, v~, bias buffer and enter with one dgemm of logits and one accumulator update
 * (tiles of ATTN_TILE_Q queries and ATTN_TILE_K keys throughout, so no n x n buffer ever exists,
 * not even at block = n).  Causal: only the query's own block is masked; the cells of a causal
 * list end before the cell preceding the query's own, and tiles are placed by position, so row i
 * depends on rows <= i only, bit for bit.  Init allocates all scratch; apply allocates nothing.
 * materialize is the generic one (linear in V, weights independent of V).  Rows are
 * distributions (ATTN_ROW_STOCHASTIC).  Not ATTN_BUDGET_MONOTONE: the error usually falls as the
 * block grows (and is 0 once two blocks cover n), but nothing proves each step; with levels =
 * auto a block m <= p even gives the same weights as 2 m (its level-1 tokens are single keys).
 *
 * Cost.  Keys per query: at most 3m fine (causal 2m) plus 3 p per level (causal 2 p), and the
 * coarsest level's cells: time O(n (m + p log2(n / m)) (d + dv)) with levels = auto; pooling
 * O(n (d + dv)).  downsample_queries = 1: near field O(n m (d + dv)) plus
 * sum_l (p n / w_l) 3 p (d + dv) = O(n p^2 (d + dv) / m) for the coarse rows and one merge per
 * query and per token: O(n).  Scratch: the tokens, sum_l ceil(n / w_l) p_l <= 2 n p / m + L p of
 * them, times d + dv (and their queries and accumulator rows, d + dv + 2, when downsampling), one
 * block's gathered tokens, and ATTN_TILE_Q x ATTN_TILE_K logits.
 * Exact when levels = 1 and block >= n (exact_limit: block = n, levels = 1); with scale_attn = 1
 * also whenever the keys and values are each constant on every coarse sub-block used (the
 * monopole estimate is then the exact sum); with downsampling, when the queries are too.
 *
 * Parameters.  block = m (budget; default 32); p (default 2); levels (default auto: the smallest
 * count whose top cells are about n / 4 wide: L = ceil(log2 ceil(n / m)) - 1 coarse levels,
 * none when the near field already covers everything (ceil(n / m) <= 2); the paper's
 * L = log2(n / m) - 1 for powers of two); downsample_queries (0); scale_attn (1).  Refused: block,
 * p or levels below 1 (the spec parser), levels whose coarsest cells m 2^(levels - 2) would be
 * wider than n, and downsample_queries = 1 on a causal problem.  p > block is accepted: the
 * level-1 tokens are then single keys (see p_l above); refusing it would forbid block = 1 at the
 * default p.
 *
 * Reference: Kang, Tran, De Sterck, "Fast Multipole Attention", arXiv:2310.11960 (METHODS.md
 * section 3).
 * Departures from the paper and its released code:
 *   - The code is causal only; the bidirectional lists (METHODS.md 3.2) are the standard 1D FMM
 *     construction, with the coarsest level widened to everything outside the neighbours.  The
 *     causal lists are the code's (cell 2P - 2, and 2P - 1 for a right child).
 *   - Coarsening: the code learns it (conv / groupedconv downsampling); nothing is trained here,
 *     so keys and values are averaged per sub-block, the code's parameter-free 'avgpool' option
 *     (METHODS.md 3.7).  scale_attn adds log of the real count of each token (the code's w_l / p
 *     when p divides w_l and the cell is whole).
 *   - The code pads keys and values with zeros in front and masks only j > i, so queries of the
 *     first block (and of the first parent cell) give the padded zero keys logit 0 and weight in
 *     the denominator.  Here cells outside [0, n) do not exist: no such leak.
 *   - Query downsampling (the paper's O(n) variant) is not in the released code; this is
 *     attnlab's construction (per-level partial softmax of the mean query, merged by log-sum-exp).
 *   - Levels count every level including the finest, and need not fill the sequence: n and n / m
 *     need not be powers of two, and any levels with coarsest cells at most n wide is allowed.
 *     No dropout.
 */
#include "config.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attn_impl.h"

/* levels is refused once m 2^(levels - 2) > n, so with n < 2^64 at most 64 coarse levels exist. */
#define MAX_COARSE 66

typedef struct fml_level {
    size_t w;       /* cell width w_l */
    size_t ncells;  /* ceil(n / w_l) */
    size_t p;       /* sub-blocks per cell, min(p, w_l) */
    size_t off;     /* index of the level's first token */
} fml_level;

/* A run of token indices [lo, hi). */
typedef struct fml_run {
    size_t lo, hi;
} fml_run;

typedef struct fml_state {
    size_t m;              /* block, clipped to n */
    size_t nb;             /* fine blocks, ceil(n / m) */
    size_t L;              /* coarse levels */
    size_t tile;           /* query rows per tile, min(m, ATTN_TILE_Q) */
    int causal;
    int downsample;        /* downsample_queries */
    fml_level lev[MAX_COARSE + 1]; /* lev[1..L] */
    size_t ntok;           /* tokens of all levels, sum of ncells_l p_l */
    size_t tmax;           /* most tokens one block (downsampling: one cell) gathers */
    size_t *start;         /* [ntok] first position of each token's sub-block */
    size_t *count;         /* [ntok] its positions (0: empty) */
    size_t *parent;        /* [ntok] the level l+1 token holding it (levels < L, nonempty) */
    double *bias;          /* [ntok] log count (scale_attn = 0: 0; empty: -inf) */
    double *Kt;            /* [ntok][d] coarse keys */
    double *Vt;            /* [ntok][dv] coarse values */
    double *Qt;            /* [ntok][d] coarse queries (downsampling only) */
    double *Kg;            /* [tmax][d] gathered coarse keys of one block or cell */
    double *Vg;            /* [tmax][dv] their values */
    double *bg;            /* [tmax] their biases */
    double *S;             /* ATTN_TILE_Q x ATTN_TILE_K logits */
    double *accbuf;        /* storage of acc */
    double *caccbuf;       /* storage of cacc */
    attn_acc acc;          /* tile rows: the fine queries */
    attn_acc cacc;         /* ntok rows: the coarse queries (downsampling only) */
} fml_state;

static const attn_param fml_params[] = {
    { .name = "block", .value = 32, .lo = 1, .hi = INFINITY, .integer = 1,
      .doc = "m, finest group size: query i sees the keys of its own and the adjacent blocks of m "
             "positions directly (causal: the previous block and its own up to i)" },
    { .name = "p", .value = 2, .lo = 1, .hi = INFINITY, .integer = 1,
      .doc = "coarse tokens per cell: a cell's keys and values are averaged over p sub-blocks "
             "(at most one per key: p > cell width gives single-key tokens)" },
    { .name = "levels", .value = 0, .lo = 1, .hi = INFINITY, .integer = 1,
      .doc = "levels including the finest (1: block-local only); auto: ceil(log2 ceil(n / "
             "block)) - 1 coarse levels, top cells about n / 4 wide (none when 2 blocks cover n)" },
    { .name = "downsample_queries", .value = 0, .lo = 0, .hi = 1, .integer = 1,
      .doc = "1: coarse logits use the mean query of each sub-block (O(n); bidirectional "
             "only); 0: every query its own (O(n log n))" },
    { .name = "scale_attn", .value = 1, .lo = 0, .hi = 1, .integer = 1,
      .doc = "1: a coarse token's weight counts its keys (+ log count on its logit, the monopole "
             "estimate); 0: one key's weight, as the published option off" },
    { 0 },
};

static void fml_fini(attn_plan *plan)
{
    fml_state *st = plan->state;
    if (st == NULL)
        return;
    free(st->start);
    free(st->count);
    free(st->parent);
    free(st->bias);
    free(st->Kt);
    free(st->Vt);
    free(st->Qt);
    free(st->Kg);
    free(st->Vg);
    free(st->bg);
    free(st->S);
    free(st->accbuf);
    free(st->caccbuf);
    free(st);
}

/* The runs of tokens in the list of cell c at coarse level l (at most two: left and right of the
 * cell's neighbours).  Returns how many. */
static size_t cell_runs(const fml_state *st, size_t l, size_t c, fml_run run[2])
{
    const fml_level *lv = &st->lev[l];
    size_t nrun = 0, P = c / 2;
    size_t left_lo = l == st->L ? 0 : (P >= 1 ? 2 * P - 2 : 0);
    size_t left_hi = c >= 1 ? c - 1 : 0;
    if (left_lo < left_hi)
        run[nrun++] = (fml_run){ lv->off + left_lo * lv->p, lv->off + left_hi * lv->p };
    if (!st->causal) {
        size_t right_lo = c + 2;
        size_t right_hi = l == st->L ? lv->ncells : (2 * P + 4 < lv->ncells ? 2 * P + 4
                                                                           : lv->ncells);
        if (right_lo < right_hi)
            run[nrun++] = (fml_run){ lv->off + right_lo * lv->p, lv->off + right_hi * lv->p };
    }
    return nrun;
}

static size_t runs_total(const fml_run *run, size_t nrun)
{
    size_t total = 0;
    for (size_t r = 0; r < nrun; r++)
        total += run[r].hi - run[r].lo;
    return total;
}

/* The runs of every level's list of fine block b (its cell at level l is b >> (l - 1)) into run
 * (2 L entries); returns how many, and *total gets their tokens. */
static size_t block_runs(const fml_state *st, size_t b, fml_run *run, size_t *total)
{
    size_t nrun = 0;
    for (size_t l = 1; l <= st->L; l++)
        nrun += cell_runs(st, l, b >> (l - 1), run + nrun);
    *total = runs_total(run, nrun);
    return nrun;
}

/* Resolve and check levels; fills st->L.  The coarsest cells must fit in the sequence. */
static int resolve_levels(attn_plan *plan, fml_state *st, double block)
{
    size_t n = plan->problem.n;
    long il = attn_param_index(plan->method, "levels");
    double levels = plan->values[il];
    if (levels == 0) {
        /* auto: k = ceil(log2 nb) and k - 1 coarse levels make the top cells m 2^(k-2), about
         * n / 4 wide; none when the near field (nb <= 2 blocks) reaches every key. */
        size_t k = 0;
        while (k < 64 && ((size_t) 1 << k) < st->nb)
            k++;
        plan->values[il] = k >= 1 ? (double) k : 1.0;
        levels = plan->values[il];
    }
    if (levels >= 2) {
        double width = levels - 2 > 1100 ? INFINITY : block * ldexp(1.0, (int) (levels - 2));
        if (width > (double) n) {
            /* The deepest allowed: block 2^(levels - 2) <= n. */
            size_t most = 1;
            if (block <= (double) n)
                for (most = 2; block * ldexp(1.0, (int) most - 1) <= (double) n; most++)
                    ;
            return ATTN_ERR(ATTN_EPARAM,
                            "fmm_multilevel: levels = %.0f: the coarsest cells would hold "
                            "block*2^%.0f = %.17g keys > n = %zu (at most levels = %zu for "
                            "block = %.0f)",
                            levels, levels - 2, width, n, most, block);
        }
    }
    st->L = (size_t) levels - 1;
    return ATTN_OK;
}

/* Index of the sub-block of a cell of width w in p_l parts that holds offset r (0 <= r < w):
 * the t with floor(t w / p) <= r < floor((t + 1) w / p). */
static size_t sub_block(size_t r, size_t w, size_t p)
{
    return ((r + 1) * p - 1) / w;
}

/* Lay out the tokens of every level: positions, counts, parents and biases. */
static void build_tokens(fml_state *st, size_t n, int scale_attn)
{
    for (size_t l = 1; l <= st->L; l++) {
        const fml_level *lv = &st->lev[l];
        for (size_t C = 0; C < lv->ncells; C++)
            for (size_t t = 0; t < lv->p; t++) {
                size_t tok = lv->off + C * lv->p + t;
                size_t a = C * lv->w + t * lv->w / lv->p;
                size_t e = C * lv->w + (t + 1) * lv->w / lv->p;
                a = a < n ? a : n;
                e = e < n ? e : n;
                st->start[tok] = a;
                st->count[tok] = e - a;
                st->bias[tok] = e == a ? -INFINITY : (scale_attn ? log((double) (e - a)) : 0.0);
            }
    }
    for (size_t l = 1; l < st->L; l++) {
        const fml_level *lv = &st->lev[l], *up = &st->lev[l + 1];
        for (size_t tok = lv->off; tok < lv->off + lv->ncells * lv->p; tok++) {
            size_t a = st->start[tok], C = a / up->w;
            st->parent[tok] = st->count[tok] == 0
                                  ? 0
                                  : up->off + C * up->p + sub_block(a - C * up->w, up->w, up->p);
        }
    }
}

static int fml_init(attn_plan *plan)
{
    const attn_problem *pb = &plan->problem;
    size_t n = pb->n, d = pb->d, dv = pb->dv;
    double block = attn_plan_value(plan, "block"), p = attn_plan_value(plan, "p");
    int downsample = attn_plan_value(plan, "downsample_queries") != 0;
    int scale_attn = attn_plan_value(plan, "scale_attn") != 0;
    if (pb->causal && downsample)
        return ATTN_ERR(ATTN_EUNSUP,
                        "fmm_multilevel: downsample_queries = 1 needs a bidirectional problem "
                        "(causal = 1 given): averaging a cell's queries would let query i see "
                        "later queries");
    fml_state *st = attn_plan_calloc(plan, 1, sizeof *st);
    if (st == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "fmm_multilevel: plan state");
    plan->state = st;
    st->causal = pb->causal;
    st->downsample = downsample;
    /* A block wider than the sequence changes nothing: clip it so index arithmetic stays small. */
    st->m = block >= (double) n ? n : (size_t) block;
    st->nb = (n + st->m - 1) / st->m;
    st->tile = st->m < ATTN_TILE_Q ? st->m : ATTN_TILE_Q;
    int status = resolve_levels(plan, st, block);
    if (status != ATTN_OK)
        return status;

    for (size_t l = 1; l <= st->L; l++) {
        fml_level *lv = &st->lev[l];
        lv->w = st->m << (l - 1);
        lv->ncells = (n + lv->w - 1) / lv->w;
        lv->p = p >= (double) lv->w ? lv->w : (size_t) p;
        lv->off = st->ntok;
        st->ntok += lv->ncells * lv->p;
    }
    /* The largest gather: over blocks (fine queries) or over cells (coarse queries). */
    fml_run run[2 * MAX_COARSE];
    if (!downsample) {
        for (size_t b = 0; b < st->nb; b++) {
            size_t total;
            block_runs(st, b, run, &total);
            st->tmax = total > st->tmax ? total : st->tmax;
        }
    } else {
        for (size_t l = 1; l <= st->L; l++)
            for (size_t C = 0; C < st->lev[l].ncells; C++) {
                size_t total = runs_total(run, cell_runs(st, l, C, run));
                st->tmax = total > st->tmax ? total : st->tmax;
            }
    }

    size_t ntok = st->ntok ? st->ntok : 1, tmax = st->tmax ? st->tmax : 1;
    st->start = attn_plan_calloc(plan, ntok, sizeof *st->start);
    st->count = attn_plan_calloc(plan, ntok, sizeof *st->count);
    st->parent = attn_plan_calloc(plan, ntok, sizeof *st->parent);
    st->bias = attn_plan_calloc(plan, ntok, sizeof *st->bias);
    st->Kt = attn_plan_calloc(plan, ntok * d, sizeof *st->Kt);
    st->Vt = attn_plan_calloc(plan, ntok * dv, sizeof *st->Vt);
    st->S = attn_plan_calloc(plan, (size_t) ATTN_TILE_Q * ATTN_TILE_K, sizeof *st->S);
    st->accbuf = attn_plan_calloc(plan, attn_acc_doubles(st->tile, dv), sizeof *st->accbuf);
    int failed = st->start == NULL || st->count == NULL || st->parent == NULL ||
                 st->bias == NULL || st->Kt == NULL || st->Vt == NULL || st->S == NULL ||
                 st->accbuf == NULL;
    st->Kg = attn_plan_calloc(plan, tmax * d, sizeof *st->Kg);
    st->Vg = attn_plan_calloc(plan, tmax * dv, sizeof *st->Vg);
    st->bg = attn_plan_calloc(plan, tmax, sizeof *st->bg);
    failed = failed || st->Kg == NULL || st->Vg == NULL || st->bg == NULL;
    if (downsample) {
        st->Qt = attn_plan_calloc(plan, ntok * d, sizeof *st->Qt);
        st->caccbuf = attn_plan_calloc(plan, attn_acc_doubles(ntok, dv), sizeof *st->caccbuf);
        failed = failed || st->Qt == NULL || st->caccbuf == NULL;
    }
    if (failed)
        return ATTN_ERR(ATTN_ENOMEM, "fmm_multilevel: %zu coarse tokens, %zu gathered, d = %zu, "
                        "dv = %zu", st->ntok, st->tmax, d, dv);
    attn_acc_init(&st->acc, st->tile, dv, st->accbuf);
    if (downsample)
        attn_acc_init(&st->cacc, ntok, dv, st->caccbuf);
    build_tokens(st, n, scale_attn);
    return ATTN_OK;
}

/* The coarse rows T (ntok x cols) of X (n x cols): sums per sub-block, level 1 from the rows of X
 * and every higher level from its children, then each divided by its count (the division keeps a
 * mean of equal entries exact).  Empty tokens stay zero. */
static void pool(const fml_state *st, const double *X, size_t cols, double *T)
{
    if (st->L == 0)
        return;
    const fml_level *lv1 = &st->lev[1];
    for (size_t tok = lv1->off; tok < lv1->off + lv1->ncells * lv1->p; tok++) {
        double *restrict out = T + tok * cols;
        size_t a = st->start[tok], c = st->count[tok];
        if (c == 0) {
            memset(out, 0, cols * sizeof *out);
            continue;
        }
        memcpy(out, X + a * cols, cols * sizeof *out);
        for (size_t j = a + 1; j < a + c; j++) {
            const double *restrict x = X + j * cols;
            for (size_t k = 0; k < cols; k++)
                out[k] += x[k];
        }
    }
    for (size_t l = 1; l <= st->L; l++) {
        const fml_level *lv = &st->lev[l];
        size_t end = lv->off + lv->ncells * lv->p;
        if (l < st->L) {
            const fml_level *up = &st->lev[l + 1];
            memset(T + up->off * cols, 0, up->ncells * up->p * cols * sizeof *T);
            for (size_t tok = lv->off; tok < end; tok++) {
                if (st->count[tok] == 0)
                    continue;
                double *restrict out = T + st->parent[tok] * cols;
                const double *restrict x = T + tok * cols;
                for (size_t k = 0; k < cols; k++)
                    out[k] += x[k];
            }
        }
        /* The sums of level l are no longer needed: make them means. */
        for (size_t tok = lv->off; tok < end; tok++) {
            if (st->count[tok] <= 1)
                continue;
            double c = (double) st->count[tok];
            double *x = T + tok * cols;
            for (size_t k = 0; k < cols; k++)
                x[k] /= c;
        }
    }
}

/* Copy the coarse keys, values and biases of the runs into Kg, Vg, bg; returns the tokens. */
static size_t gather(fml_state *st, const fml_run *run, size_t nrun, size_t d, size_t dv)
{
    size_t T = 0;
    for (size_t r = 0; r < nrun; r++) {
        size_t lo = run[r].lo, k = run[r].hi - lo;
        memcpy(st->Kg + T * d, st->Kt + lo * d, k * d * sizeof *st->Kg);
        memcpy(st->Vg + T * dv, st->Vt + lo * dv, k * dv * sizeof *st->Vg);
        memcpy(st->bg + T, st->bias + lo, k * sizeof *st->bg);
        T += k;
    }
    return T;
}

/* Add the T gathered tokens to rows r0..r0+nr-1 of acc, whose queries are Qrows (nr x d). */
static void add_tokens(fml_state *st, attn_acc *acc, size_t r0, size_t nr, const double *Qrows,
                       size_t T, const attn_problem *pb)
{
    size_t d = pb->d, dv = pb->dv;
    for (size_t g0 = 0; g0 < T; g0 += ATTN_TILE_K) {
        size_t nc = T - g0 < ATTN_TILE_K ? T - g0 : ATTN_TILE_K;
        attn_logits(Qrows, nr, st->Kg + g0 * d, nc, d, pb->scale, st->S, nc);
        const double *bias = st->bg + g0;
        for (size_t a = 0; a < nr; a++) {
            double *row = st->S + a * nc;
            for (size_t b = 0; b < nc; b++)
                row[b] += bias[b];
        }
        attn_acc_add(acc, r0, nr, st->S, nc, st->Vg + g0 * dv, dv, nc);
    }
}

/* Partial softmax of every coarse query row over its cell's list, then each level's rows folded
 * into their children so that a level-1 row carries all coarse levels above its positions. */
static void coarse_queries(fml_state *st, const attn_problem *pb)
{
    fml_run run[2];
    attn_acc_reset(&st->cacc);
    for (size_t l = 1; l <= st->L; l++) {
        const fml_level *lv = &st->lev[l];
        for (size_t C = 0; C < lv->ncells; C++) {
            size_t T = gather(st, run, cell_runs(st, l, C, run), pb->d, pb->dv);
            if (T == 0)
                continue;
            size_t t0 = lv->off + C * lv->p;
            for (size_t r0 = 0; r0 < lv->p; r0 += ATTN_TILE_Q) {
                size_t nr = lv->p - r0 < ATTN_TILE_Q ? lv->p - r0 : ATTN_TILE_Q;
                add_tokens(st, &st->cacc, t0 + r0, nr, st->Qt + (t0 + r0) * pb->d, T, pb);
            }
        }
    }
    for (size_t l = st->L - 1; l >= 1; l--) {
        const fml_level *lv = &st->lev[l];
        for (size_t tok = lv->off; tok < lv->off + lv->ncells * lv->p; tok++)
            if (st->count[tok] != 0)
                attn_acc_merge_row(&st->cacc, tok, &st->cacc, st->parent[tok]);
    }
}

static int fml_apply(attn_plan *plan, const double *Q, const double *K, const double *V,
                     double *O)
{
    fml_state *st = plan->state;
    const attn_problem *pb = &plan->problem;
    size_t n = pb->n, d = pb->d, dv = pb->dv, m = st->m;
    fml_run run[2 * MAX_COARSE];
    pool(st, K, d, st->Kt);
    pool(st, V, dv, st->Vt);
    if (st->downsample && st->L >= 1) {
        pool(st, Q, d, st->Qt);
        coarse_queries(st, pb);
    }
    for (size_t b = 0; b < st->nb; b++) {
        size_t bq0 = b * m, bq1 = bq0 + m < n ? bq0 + m : n;
        size_t T = 0;
        if (!st->downsample && st->L >= 1) {
            size_t total;
            size_t nrun = block_runs(st, b, run, &total);
            T = gather(st, run, nrun, d, dv);
        }
        for (size_t q0 = bq0; q0 < bq1; q0 += st->tile) {
            size_t nr = bq1 - q0 < st->tile ? bq1 - q0 : st->tile;
            /* Near field: blocks b - 1 .. b + 1 (causal: up to this tile's last query). */
            size_t k_lo = b >= 1 ? bq0 - m : 0;
            size_t k_hi = st->causal ? q0 + nr : (bq1 + m < n ? bq1 + m : n);
            attn_acc_reset(&st->acc);
            for (size_t k0 = k_lo; k0 < k_hi; k0 += ATTN_TILE_K) {
                size_t nc = k_hi - k0 < ATTN_TILE_K ? k_hi - k0 : ATTN_TILE_K;
                attn_logits(Q + q0 * d, nr, K + k0 * d, nc, d, pb->scale, st->S, nc);
                if (st->causal && k0 + nc - 1 > q0)
                    attn_mask_window(st->S, nc, q0, nr, k0, nc, SIZE_MAX, 0);
                attn_acc_add(&st->acc, 0, nr, st->S, nc, V + k0 * dv, dv, nc);
            }
            if (T > 0)
                add_tokens(st, &st->acc, 0, nr, Q + q0 * d, T, pb);
            if (st->downsample && st->L >= 1) {
                const fml_level *lv1 = &st->lev[1];
                for (size_t a = 0; a < nr; a++) {
                    size_t i = q0 + a;
                    size_t tok = lv1->off + b * lv1->p + sub_block(i - bq0, lv1->w, lv1->p);
                    attn_acc_merge_row(&st->acc, a, &st->cacc, tok);
                }
            }
            attn_acc_finish(&st->acc, 0, nr, O + q0 * dv, dv, NULL);
        }
    }
    return ATTN_OK;
}

/* Pairs of logits apply forms (masked ones included), and the merges of coarse query rows. */
static void fml_cost(const attn_plan *plan, attn_cost *cost)
{
    const fml_state *st = plan->state;
    const attn_problem *pb = &plan->problem;
    size_t n = pb->n, m = st->m;
    double d = (double) pb->d, dv = (double) pb->dv;
    fml_run run[2 * MAX_COARSE];
    double pairs = 0.0, coarse = 0.0, merges = 0.0, pooled = 0.0;
    for (size_t b = 0; b < st->nb; b++) {
        size_t bq0 = b * m, bq1 = bq0 + m < n ? bq0 + m : n;
        size_t T = 0;
        if (!st->downsample)
            block_runs(st, b, run, &T);
        for (size_t q0 = bq0; q0 < bq1; q0 += st->tile) {
            size_t nr = bq1 - q0 < st->tile ? bq1 - q0 : st->tile;
            size_t k_lo = b >= 1 ? bq0 - m : 0;
            size_t k_hi = st->causal ? q0 + nr : (bq1 + m < n ? bq1 + m : n);
            pairs += (double) nr * (double) (k_hi - k_lo);
            coarse += (double) nr * (double) T;
        }
    }
    for (size_t l = 1; l <= st->L; l++) {
        const fml_level *lv = &st->lev[l];
        for (size_t C = 0; C < lv->ncells; C++) {
            if (st->downsample)
                coarse += (double) lv->p * (double) runs_total(run, cell_runs(st, l, C, run));
            for (size_t t = 0; t < lv->p; t++)
                if (st->count[lv->off + C * lv->p + t] != 0) {
                    pooled += 1.0;
                    merges += st->downsample && l < st->L;
                }
        }
    }
    if (st->downsample && st->L >= 1)
        merges += (double) n;
    pairs += coarse;
    /* Pooling: every row of K and V (and Q) once into level 1, every nonempty token once into
     * its parent, and one division per entry of each token. */
    double cols = d + dv + (st->downsample ? d : 0.0);
    double pool_flops = st->L >= 1 ? ((double) n + 2.0 * pooled) * cols : 0.0;
    cost->flops = 2.0 * pairs * (d + dv) + coarse + pool_flops + 3.0 * merges * dv;
    cost->exps = pairs + 2.0 * merges;
}

static int fml_exact_limit(const attn_problem *problem, double *values)
{
    values[0] = (double) problem->n; /* block: one block holds the sequence */
    values[2] = 1.0;                 /* levels: the near field alone */
    return ATTN_OK;
}

const attn_method attn_method_fmm_multilevel = {
    .id = "fmm_multilevel",
    .summary = "Fast Multipole Attention: near-field blocks plus dyadic levels of averaged keys "
               "and values in one softmax",
    .reference = "Kang, Tran, De Sterck, Fast Multipole Attention, arXiv:2310.11960 (2023)",
    .caps = ATTN_CAN_CAUSAL | ATTN_CAN_BIDIR | ATTN_ROW_STOCHASTIC,
    .params = fml_params,
    .budget = "block",
    .init = fml_init,
    .fini = fml_fini,
    .apply = fml_apply,
    .materialize = NULL,
    .cost = fml_cost,
    .exact_limit = fml_exact_limit,
};
