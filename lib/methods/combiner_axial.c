/* combiner_axial.c — Combiner-Axial: full attention at O(n sqrt n) on a 2-D reshaping of the
 * sequence, in the three axial factorizations of the paper and the two forms of its mixture.
 *
 * Positions are laid out row-major in rows of length m = `block` (the last row is ragged when m
 * does not divide n: it has L = n - (nr - 1) m positions, nr = ceil(n / m) rows).  (t, u) is
 * position t m + u; the query is i = (r, c); L_t is the length of row t.  Every query attends
 * directly to its direct set and, for every group, to the group's abstraction: the group logit
 * s q_i . k~ (+ log |group| with pool = mean_log) and the local expectation v~ = sum_{j in group}
 * p(j | group) v_j.  Direct and group logits share one softmax (combiner.h), so every row is a
 * full distribution over the allowed keys, strictly positive on each of them.  Pooled keys and
 * queries (`pool`: max, the paper's, or mean) of the prefix/suffix groups come from running scans
 * (cummax / running mean) and their local distributions p(j | group) = softmax_j(s q~ . k_j)
 * from one masked dgemm per row or column, so a group costs O(1) amortized to summarize.
 *
 * variant = row (the paper's row-major factorization; the default)
 *   causal:        direct = own row prefix {(r, u): u <= c}; groups = whole rows R_t, t < r.
 *   bidirectional: direct = own row R_r; groups = R_t for every t != r.
 *   The abstraction of R_t depends on (t, c): p(u | R_t) = softmax_u(s q_(t,c') . k_(t,u)) with
 *   the UN-pooled query at c' = c (bidirectional, for the ragged last row when c >= L_t: its last
 *   position c' = L_t - 1), and the group key is `row_summary` = wsum: sum_u p(u | R_t) k_(t,u)
 *   (parameter-free, the same weights), or none: k_(t,c').  Nothing is pooled, so pool = mean
 *   would equal pool = max and is refused; mean_log adds log L_t.
 * variant = col (the paper's vertical factorization)
 *   causal:        direct = own column above {(t, c): t < r} and own row prefix {(r, u): u <= c};
 *                  groups = C_u = {(t, u): t < r} for every column u != c (prefix-pooled down
 *                  each column).
 *   bidirectional [attnlab's mirror; the paper's appendix was not read]: direct = the whole own
 *                  column and the whole own row; groups = for every column u != c, the part above
 *                  {(t, u): t < r} (prefix-pooled) and the part below {(t, u): t > r}
 *                  (suffix-pooled), each when not empty.
 * variant = mixed (the paper's horizontal factorization; "mixed" is the name for it)
 *   causal:        direct = as col; groups = for every row t < r, its left segment
 *                  {(t, u): u < c} and right segment {(t, u): u > c} (prefix- and suffix-pooled
 *                  along the row), each when not empty.
 *   bidirectional [attnlab's mirror]: direct = as col bidirectional; groups = the left segment
 *                  {(t, u): u < min(c, L_t)} and the right segment {(t, u): c < u < L_t} of every
 *                  row t != r, each when not empty (for the ragged last row and c >= L_t the left
 *                  segment is the whole row).
 * Each of these is a partition of the allowed keys (causal: [0, i]; bidirectional: all n) into the
 * direct set and disjoint, non-empty groups; tests/test_combiner_axial.c checks it for many
 * (n, m), ragged last rows included.
 *
 * mixture = none | average | union combines the col and mixed plans (vertical + horizontal, the
 * paper's M = 2); `variant` must then stay at its default and row_summary at wsum (both would have
 * no effect, and one computation should have one spec).
 *   average: the paper's (1/2)(o_col + o_mixed) with the definitions above: two full softmaxes,
 *            averaged, so rows still sum to one.  Exact wherever both plans are.
 *   union:   the published code's single softmax over the union of both plans' terms.
 *     causal (JAX _AxialMixtureAtt, TF axial_mixture_unidir): logits = [own column above, own row
 *            prefix, C_u for u != c, left and right segments of every row t < r]: every position
 *            of an earlier row outside column c is reached through two groups.
 *     bidirectional (TF axial_mixture_bidir): direct = the whole own row and the whole own column,
 *            so the query's own key appears twice (the code's TODO: no self mask); groups = above
 *            and below parts of EVERY column (own column included) and left and right segments of
 *            EVERY row (own row included): every key is reached through exactly two terms.
 *     The union is row-stochastic but its overlaps double count, so it is not exact at block >= n,
 *     nor causal with oracle = full; bidirectional with oracle = full it is exact, since there
 *     every key (self included) has exactly two terms and the uniform factor 2 cancels.
 *
 * oracle (quadratic; for error attribution only, combiner.h): mass = exact group mass, full = exact
 * mass and exact within-group distribution, which makes every variant and the average (and the
 * bidirectional union, above) equal to exact attention to rounding.
 *
 * Apply: the summaries of rows (row-major and horizontal, per row, stored column-major), then one
 * pass per column (its queries gathered: own column, row-major and horizontal groups, and the
 * column's vertical summaries from the same gather), then one pass per row (own row and vertical
 * groups); partial softmaxes merge through the shared accumulator.  Queries sharing a candidate
 * set (a row, a column) meet it in one masked dgemm.
 * Cost O(n (nr + m)(d + dv)): O(n^1.5 (d + dv)) at the default m = 2^ceil(log2 sqrt n).  Scratch
 * O(n (d + dv)): the summaries (nr m < n + m slots per kind), the n-row accumulator (two for
 * average) and O((nr + m)(d + dv) + tile) of gathers; apply never allocates, nothing is n x n.
 * Needs m == n (queries and keys share the 2-D layout).
 * Exact when block >= n (one row: the direct set is the whole prefix / everything; not for union);
 * when every group has one position: block = 1 for every variant, the average and the causal union
 * (the bidirectional union counts self twice), col with nr <= 2 rows, mixed with m <= 2; when the
 * keys inside every group are identical and pool = mean_log (col: identical down each column;
 * mixed and row: along each row); always with oracle = full (not for the causal union).
 * Reference: Ren, Dai, Dai, Yang, Leskovec, Schuurmans, Dai, "Combiner: Full Attention
 * Transformer with Sparse Computation Cost", NeurIPS 2021, section 4.3, Fig. 2 (Combiner-Axial)
 * and section 3.3 (mixture); published code: google-research/google-research, combiner/ (JAX
 * layer.py _SelfAttAxialRowmajor, _AxialMixtureAtt; TF approx_attention.py axial_rowmajor,
 * axial_mixture_unidir, axial_mixture_bidir).
 * Departures from the paper: abstractions are parameter-free since nothing is trained here (max
 * pooling by default, mean and mean_log as options; row-major key wsum/none); the bidirectional
 * col, mixed and row forms are attnlab's (the paper's appendix was not read); the reshaping allows
 * a ragged last row (the code asserts m divides n).
 * Departures from the published code: the row-major group key 'proj' (dense + LayerNorm, learned)
 * is not available, wsum is the default; the TF mixtures pool by cumulative SUM (its approx_cummax)
 * where JAX and the paper use max: here `pool` decides (max by default); union keeps the code's
 * overlaps and double self, and average is the paper's form the code does not have.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "combiner.h"

enum axial_variant { AXIAL_ROW, AXIAL_COL, AXIAL_MIXED };
enum axial_mixture { MIXTURE_NONE, MIXTURE_AVERAGE, MIXTURE_UNION };
enum axial_row_summary { ROW_SUMMARY_WSUM, ROW_SUMMARY_NONE };

static const char *const variant_choices[] = { "row", "col", "mixed", NULL };
static const char *const mixture_choices[] = { "none", "average", "union", NULL };
static const char *const row_summary_choices[] = { "wsum", "none", NULL };

/* Which (query index a, key index b) pairs of a gathered block are allowed. */
enum relation { REL_ALL, REL_LT, REL_LE, REL_GE, REL_GT, REL_NE };

/* The kinds of terms a pass adds. */
#define TERMS_DIRECT 1u   /* own row (row pass) and, for col/mixed/mixtures, own column */
#define TERMS_ROW 2u      /* row-major groups R_t (column pass) */
#define TERMS_COL 4u      /* vertical groups, above and below (row pass) */
#define TERMS_MIXED 8u    /* horizontal groups, left and right segments (column pass) */

typedef struct axial_state {
    size_t n, m, nr, last;   /* positions, row length, rows, length of the last row */
    int causal, variant, mixture, pool, oracle, row_summary;
    int plan_row, plan_col, plan_mixed; /* the plans whose groups are used */
    int bidir_union;         /* the code's bidirectional union: no u != c / t != r exclusions */
    size_t g;                /* gather rows: max(nr, m) */
    size_t wrow;             /* width of a row attention output: d + dv (wsum) or dv (none) */
    /* Summaries (keys d, values dv per slot).  The vertical ones are produced per column and read
     * per row: position order, slot t m + u.  The row-major and horizontal ones are produced per
     * row and read per column: column-major slots u nr + t (nr m >= n of them), so that a column
     * pass reads the slice of its column without gathering. */
    double *Kc, *Vc;         /* col: prefix down column u through row t (position order) */
    double *Kcs, *Vcs;       /* col, bidirectional: suffix down column u from row t */
    double *Kl, *Vl;         /* mixed: slot (u, t) = prefix of row t through min(u, L_t - 1) */
    double *Kr, *Vr;         /* mixed: slot (u, t) = suffix of row t from u (u < L_t) */
    double *Kw, *Vw;         /* row: slot (u, t) = abstraction of R_t for partner
                                (t, min(u, L_t - 1)) */
    /* Accumulators: all queries (two for average), one column of queries, one summary scan. */
    double *accbuf, *accbuf2, *colbuf, *sumbuf;
    attn_acc acc, acc2, cacc, sacc;
    /* Gathers (g rows) and tiles. */
    double *Qg, *Kg, *Vg, *Pq, *bias, *S, *ofin, *wout;
    size_t *idx;
    double *oracle_scratch;
} axial_state;

static const attn_param axial_params[] = {
    { .name = "block", .value = 0, .lo = 1, .hi = INFINITY, .integer = 1,
      .doc = "row length m of the reshaping (default: 2^ceil(log2 sqrt n)); m >= n is exact" },
    { .name = "variant", .value = AXIAL_ROW, .choices = variant_choices,
      .doc = "axial factorization: row (row-major), col (vertical), mixed (horizontal)" },
    { .name = "mixture", .value = MIXTURE_NONE, .choices = mixture_choices,
      .doc = "mixture of the col and mixed plans: none; average (the paper's); union (the "
             "published code's single softmax)" },
    { .name = "row_summary", .value = ROW_SUMMARY_WSUM, .choices = row_summary_choices,
      .doc = "row-major group key: wsum (row-weighted sum of keys) or none (the partner's key)" },
    COMBINER_POOL_PARAM,
    COMBINER_ORACLE_PARAM,
    { 0 },
};

static void axial_fini(attn_plan *plan)
{
    axial_state *st = plan->state;
    if (st == NULL)
        return;
    double *owned[] = { st->Kc,     st->Vc,      st->Kcs,    st->Vcs,    st->Kl,
                        st->Vl,     st->Kr,      st->Vr,     st->Kw,     st->Vw,
                        st->accbuf, st->accbuf2, st->colbuf, st->sumbuf, st->Qg,
                        st->Kg,     st->Vg,      st->Pq,     st->bias,   st->S,
                        st->ofin,   st->wout,    st->oracle_scratch };
    for (size_t t = 0; t < sizeof owned / sizeof owned[0]; t++)
        free(owned[t]);
    free(st->idx);
    free(st);
}

static size_t row_len(const axial_state *st, size_t t)
{
    return t + 1 < st->nr ? st->m : st->last;
}

static size_t col_len(const axial_state *st, size_t u)
{
    return u < st->last ? st->nr : st->nr - 1;
}

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

/* Refuse parameters that would have no effect: every accepted spec computes something its own. */
static int check_params(int variant, int mixture, int pool, int rowsum)
{
    if (mixture != MIXTURE_NONE && variant != AXIAL_ROW)
        return ATTN_ERR(ATTN_EPARAM,
                        "combiner_axial: variant = %s with mixture = %s: a mixture always "
                        "combines the col and mixed plans, so leave variant at its default (row) "
                        "or set mixture = none",
                        variant_choices[variant], mixture_choices[mixture]);
    int row_plan = mixture == MIXTURE_NONE && variant == AXIAL_ROW;
    if (!row_plan && rowsum != ROW_SUMMARY_WSUM)
        return ATTN_ERR(ATTN_EPARAM,
                        "combiner_axial: row_summary = %s applies only to variant = row with "
                        "mixture = none (got variant = %s, mixture = %s)",
                        row_summary_choices[rowsum], variant_choices[variant],
                        mixture_choices[mixture]);
    if (row_plan && pool == COMBINER_POOL_MEAN)
        return ATTN_ERR(ATTN_EPARAM,
                        "combiner_axial: pool = mean with variant = row: the row-major "
                        "abstraction pools nothing, so mean would equal max; use pool = max or "
                        "mean_log (which adds log|row|)");
    return ATTN_OK;
}

static double *scratch(attn_plan *plan, size_t count, int *failed)
{
    double *p = attn_plan_calloc(plan, count ? count : 1, sizeof *p);
    if (p == NULL)
        *failed = 1;
    return p;
}

static int axial_init(attn_plan *plan)
{
    const attn_problem *pb = &plan->problem;
    size_t n = pb->n, d = pb->d, dv = pb->dv;
    size_t m = combiner_block(plan);
    int variant = (int) attn_plan_value(plan, "variant");
    int mixture = (int) attn_plan_value(plan, "mixture");
    int pool = (int) attn_plan_value(plan, "pool");
    int rowsum = (int) attn_plan_value(plan, "row_summary");
    int status = check_params(variant, mixture, pool, rowsum);
    if (status != ATTN_OK)
        return status;

    axial_state *st = attn_plan_calloc(plan, 1, sizeof *st);
    if (st == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "combiner_axial: plan state");
    plan->state = st;
    st->n = n;
    st->m = m;
    st->nr = (n + st->m - 1) / st->m;
    st->last = n - (st->nr - 1) * st->m;
    st->causal = pb->causal;
    st->variant = variant;
    st->mixture = mixture;
    st->pool = pool;
    st->row_summary = rowsum;
    st->oracle = (int) attn_plan_value(plan, "oracle");
    st->plan_row = mixture == MIXTURE_NONE && variant == AXIAL_ROW;
    st->plan_col = mixture != MIXTURE_NONE || variant == AXIAL_COL;
    st->plan_mixed = mixture != MIXTURE_NONE || variant == AXIAL_MIXED;
    st->bidir_union = mixture == MIXTURE_UNION && !pb->causal;
    st->g = st->nr > st->m ? st->nr : st->m;
    st->wrow = st->plan_row && rowsum == ROW_SUMMARY_WSUM ? d + dv : dv;

    int failed = 0;
    size_t g = st->g, slots = st->nr * st->m;
    if (st->plan_row) {
        st->Kw = scratch(plan, slots * d, &failed);
        st->Vw = scratch(plan, slots * dv, &failed);
        st->wout = scratch(plan, st->wrow, &failed);
    }
    if (st->plan_col) {
        st->Kc = scratch(plan, n * d, &failed);
        st->Vc = scratch(plan, n * dv, &failed);
        if (!pb->causal) {
            st->Kcs = scratch(plan, n * d, &failed);
            st->Vcs = scratch(plan, n * dv, &failed);
        }
    }
    if (st->plan_mixed) {
        st->Kl = scratch(plan, slots * d, &failed);
        st->Vl = scratch(plan, slots * dv, &failed);
        st->Kr = scratch(plan, slots * d, &failed);
        st->Vr = scratch(plan, slots * dv, &failed);
    }
    st->accbuf = scratch(plan, attn_acc_doubles(n, dv), &failed);
    if (mixture == MIXTURE_AVERAGE) {
        st->accbuf2 = scratch(plan, attn_acc_doubles(n, dv), &failed);
        st->ofin = scratch(plan, dv, &failed);
    }
    st->colbuf = scratch(plan, attn_acc_doubles(st->nr, dv), &failed);
    st->sumbuf = scratch(plan, attn_acc_doubles(g, st->wrow), &failed);
    st->Qg = scratch(plan, g * d, &failed);
    st->Kg = scratch(plan, g * d, &failed);
    st->Vg = scratch(plan, g * (d + dv), &failed);
    st->Pq = scratch(plan, g * d, &failed);
    st->bias = scratch(plan, g, &failed);
    st->S = scratch(plan, (size_t) ATTN_TILE_Q * ATTN_TILE_K, &failed);
    if (st->oracle != COMBINER_ORACLE_NONE) {
        st->idx = attn_plan_calloc(plan, g, sizeof *st->idx);
        failed |= st->idx == NULL;
        st->oracle_scratch = scratch(plan, combiner_oracle_doubles(1, g, dv, d), &failed);
    }
    if (failed)
        return ATTN_ERR(ATTN_ENOMEM, "combiner_axial: scratch for %zu positions in %zu rows of %zu",
                        n, st->nr, st->m);
    attn_acc_init(&st->acc, n, dv, st->accbuf);
    if (st->accbuf2 != NULL)
        attn_acc_init(&st->acc2, n, dv, st->accbuf2);
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Kernels on gathered (contiguous) rows.
 */
/* Query tile rows for a triangular relation: small, so that the keys a tile computes beyond its
 * diagonal (about half a tile per row) stay few. */
#define TRI_TILE_Q 32

/* Mask row a of a logit tile (query index i, keys k0 .. k0 + nc - 1) to the relation. */
static void mask_row(double *row, size_t i, size_t k0, size_t nc, int rel)
{
    /* Allowed keys b of the row form [lo, hi) in tile coordinates, except for REL_NE. */
    size_t lo = 0, hi = nc;
    switch (rel) {
    case REL_NE:
        if (i >= k0 && i < k0 + nc)
            row[i - k0] = -INFINITY;
        return;
    case REL_LT:
        hi = i > k0 ? min_size(i - k0, nc) : 0;
        break;
    case REL_LE:
        hi = i >= k0 ? min_size(i - k0 + 1, nc) : 0;
        break;
    case REL_GE:
        lo = i > k0 ? min_size(i - k0, nc) : 0;
        break;
    case REL_GT:
        lo = i >= k0 ? min_size(i - k0 + 1, nc) : 0;
        break;
    default:
        return;
    }
    for (size_t b = 0; b < lo; b++)
        row[b] = -INFINITY;
    for (size_t b = hi; b < nc; b++)
        row[b] = -INFINITY;
}

/* Rows r0 .. r0 + nq - 1 of acc see the keys Kg (nk x d) with values Vg (nk rows, leading
 * dimension ldv, acc->dv columns used) and logit biases bias (NULL: none; -INFINITY removes a
 * key), restricted to the pairs (query a, key b) with rel(a, b).  Tiles of logits by dgemm; each
 * query tile visits only the keys its relation can allow, and only tiles that the relation cuts
 * are masked. */
static void add_keys(attn_acc *acc, size_t r0, const double *Qg, size_t nq, const double *Kg,
                     const double *Vg, size_t ldv, const double *bias, size_t nk, int rel,
                     size_t d, double scale, double *S)
{
    int tri = rel == REL_LT || rel == REL_LE || rel == REL_GE || rel == REL_GT;
    size_t tile = tri ? TRI_TILE_Q : ATTN_TILE_Q;
    for (size_t q0 = 0; q0 < nq; q0 += tile) {
        size_t nr = min_size(nq - q0, tile), qb = q0 + nr - 1;
        /* Keys any query of the tile may see: [k_lo, k_hi). */
        size_t k_lo = 0, k_hi = nk;
        if (rel == REL_LT)
            k_hi = min_size(nk, qb);
        else if (rel == REL_LE)
            k_hi = min_size(nk, qb + 1);
        else if (rel == REL_GE)
            k_lo = q0;
        else if (rel == REL_GT)
            k_lo = q0 + 1;
        for (size_t k0 = k_lo; k0 < k_hi; k0 += ATTN_TILE_K) {
            size_t nc = min_size(k_hi - k0, ATTN_TILE_K), kb = k0 + nc - 1;
            int whole = 1;
            switch (rel) {
            case REL_LT:
                whole = kb < q0;
                break;
            case REL_LE:
                whole = kb <= q0;
                break;
            case REL_GE:
                whole = k0 >= qb;
                break;
            case REL_GT:
                whole = k0 > qb;
                break;
            case REL_NE:
                whole = kb < q0 || k0 > qb;
                break;
            default:
                break;
            }
            attn_logits(Qg + q0 * d, nr, Kg + k0 * d, nc, d, scale, S, ATTN_TILE_K);
            if (bias != NULL)
                for (size_t a = 0; a < nr; a++)
                    for (size_t b = 0; b < nc; b++)
                        S[a * ATTN_TILE_K + b] += bias[k0 + b];
            if (!whole)
                for (size_t a = 0; a < nr; a++)
                    mask_row(S + a * ATTN_TILE_K, q0 + a, k0, nc, rel);
            attn_acc_add(acc, r0 + q0, nr, S, ATTN_TILE_K, Vg + k0 * ldv, ldv, nc);
        }
    }
}

/* Summaries of the prefixes (backward: suffixes) of `count` gathered rows Qg, Kg, Vg (contiguous)
 * of one column or row: pooled keys into Kout (row stride ldk), local expectations into Vout (row
 * stride ldvo).  The local distribution of prefix t is the masked softmax of the pooled query
 * q~_t over keys 0..t: one causal (or anti-causal) block of dgemm. */
static void scan_summaries(axial_state *st, const attn_problem *pb, const double *Qg,
                           const double *Kg, const double *Vg, size_t count, int backward,
                           double *Kout, size_t ldk, double *Vout, size_t ldvo)
{
    size_t d = pb->d, dv = pb->dv;
    if (count == 0)
        return;
    combiner_scan_pool(Qg, count, d, st->pool, backward, st->Pq, d);
    combiner_scan_pool(Kg, count, d, st->pool, backward, Kout, ldk);
    attn_acc_init(&st->sacc, count, dv, st->sumbuf);
    add_keys(&st->sacc, 0, st->Pq, count, Kg, Vg, dv, NULL, count, backward ? REL_GE : REL_LE, d,
             pb->scale, st->S);
    attn_acc_finish(&st->sacc, 0, count, Vout, ldvo, NULL);
}

static void gather_column(const axial_state *st, const double *X, size_t width, size_t c,
                          size_t count, double *out)
{
    for (size_t t = 0; t < count; t++)
        memcpy(out + t * width, X + (t * st->m + c) * width, width * sizeof *out);
}

/* ---------------------------------------------------------------------------------------------
 * Summaries of rows (per apply: they depend on the data).  The vertical summaries are formed in
 * the column passes, where each column is gathered anyway.
 */
static void copy_slot(double *X, size_t width, size_t nr, size_t from, size_t to, size_t t)
{
    memcpy(X + (to * nr + t) * width, X + (from * nr + t) * width, width * sizeof *X);
}

static void row_summaries(axial_state *st, const attn_problem *pb, const double *Q,
                          const double *K, const double *V)
{
    size_t d = pb->d, dv = pb->dv, m = st->m, nr = st->nr;
    /* Causal: the last row is never a group of a later query. */
    size_t rows = st->causal ? nr - 1 : nr;
    if (st->plan_row) {
        size_t w = st->wrow;
        int wsum = st->row_summary == ROW_SUMMARY_WSUM;
        for (size_t t = 0; t < rows; t++) {
            size_t len = row_len(st, t), p0 = t * m;
            const double *vals = V + p0 * dv;
            size_t ldv = dv;
            if (wsum) {
                /* Values [k | v]: one softmax gives both the weighted key and the expectation. */
                for (size_t u = 0; u < len; u++) {
                    memcpy(st->Vg + u * (d + dv), K + (p0 + u) * d, d * sizeof *st->Vg);
                    memcpy(st->Vg + u * (d + dv) + d, V + (p0 + u) * dv, dv * sizeof *st->Vg);
                }
                vals = st->Vg;
                ldv = d + dv;
            }
            /* Row attention with the row's un-pooled queries: the abstraction for partner u. */
            attn_acc_init(&st->sacc, len, w, st->sumbuf);
            add_keys(&st->sacc, 0, Q + p0 * d, len, K + p0 * d, vals, ldv, NULL, len, REL_ALL, d,
                     pb->scale, st->S);
            for (size_t u = 0; u < len; u++) {
                attn_acc_finish(&st->sacc, u, 1, st->wout, w, NULL);
                memcpy(st->Kw + (u * nr + t) * d, wsum ? st->wout : K + (p0 + u) * d,
                       d * sizeof *st->Kw);
                memcpy(st->Vw + (u * nr + t) * dv, st->wout + (wsum ? d : 0),
                       dv * sizeof *st->Vw);
            }
            /* Ragged last row: columns it lacks use its last position as the partner. */
            for (size_t u = len; u < m; u++) {
                copy_slot(st->Kw, d, nr, len - 1, u, t);
                copy_slot(st->Vw, dv, nr, len - 1, u, t);
            }
        }
    }
    if (st->plan_mixed)
        for (size_t t = 0; t < rows; t++) {
            size_t len = row_len(st, t), p0 = t * m;
            scan_summaries(st, pb, Q + p0 * d, K + p0 * d, V + p0 * dv, len, 0, st->Kl + t * d,
                           nr * d, st->Vl + t * dv, nr * dv);
            scan_summaries(st, pb, Q + p0 * d, K + p0 * d, V + p0 * dv, len, 1, st->Kr + t * d,
                           nr * d, st->Vr + t * dv, nr * dv);
            /* Ragged last row: the left segment "u < c" of a missing column c is the whole row;
             * right segments there are empty (never read: their bias is -INFINITY). */
            for (size_t u = len; u < m; u++) {
                copy_slot(st->Kl, d, nr, len - 1, u, t);
                copy_slot(st->Vl, dv, nr, len - 1, u, t);
            }
        }
}

/* ---------------------------------------------------------------------------------------------
 * Passes: a row pass serves the queries of one row (contiguous: they go straight into acc), a
 * column pass the queries of one column (gathered: a column accumulator, merged into acc).
 */
static void row_pass(axial_state *st, const attn_problem *pb, const double *Q, const double *K,
                     const double *V, size_t r, attn_acc *acc, unsigned terms)
{
    size_t d = pb->d, dv = pb->dv, m = st->m;
    size_t len = row_len(st, r), p0 = r * m;
    const double *Qr = Q + p0 * d;
    if (terms & TERMS_DIRECT)
        add_keys(acc, p0, Qr, len, K + p0 * d, V + p0 * dv, dv, NULL, len,
                 st->causal ? REL_LE : REL_ALL, d, pb->scale, st->S);
    if (!(terms & TERMS_COL))
        return;
    /* Vertical groups: query column c against the summaries of every column u (u != c except in
     * the code's bidirectional union). */
    int rel = st->bidir_union ? REL_ALL : REL_NE;
    int mean_log = st->pool == COMBINER_POOL_MEAN_LOG;
    if (r >= 1) {
        /* Above: the prefix through row r - 1 of every column (r positions each). */
        for (size_t u = 0; u < m; u++)
            st->bias[u] = log((double) r);
        add_keys(acc, p0, Qr, len, st->Kc + (p0 - m) * d, st->Vc + (p0 - m) * dv, dv,
                 mean_log ? st->bias : NULL, m, rel, d, pb->scale, st->S);
    }
    if (!st->causal && r + 1 < st->nr) {
        /* Below: the suffix from row r + 1 of every column that reaches it. */
        size_t nk = row_len(st, r + 1);
        for (size_t u = 0; u < nk; u++)
            st->bias[u] = log((double) (col_len(st, u) - r - 1));
        add_keys(acc, p0, Qr, len, st->Kcs + (p0 + m) * d, st->Vcs + (p0 + m) * dv, dv,
                 mean_log ? st->bias : NULL, nk, rel, d, pb->scale, st->S);
    }
}

/* Vertical summaries of column u from its gathered rows Qg, Kg, Vg (len of them). */
static void column_summaries(axial_state *st, const attn_problem *pb, size_t u, size_t len)
{
    size_t d = pb->d, dv = pb->dv, m = st->m;
    if (st->nr < 2)
        return;
    /* Prefixes through rows 0 .. nr - 2 (the prefix through the last row is no group). */
    size_t np = min_size(len, st->nr - 1);
    scan_summaries(st, pb, st->Qg, st->Kg, st->Vg, np, 0, st->Kc + u * d, m * d,
                   st->Vc + u * dv, m * dv);
    /* Suffixes from rows 1 .. len - 1 (the suffix from row 0 is no group). */
    if (!st->causal)
        scan_summaries(st, pb, st->Qg + d, st->Kg + d, st->Vg + dv, len - 1, 1,
                       st->Kcs + (m + u) * d, m * d, st->Vcs + (m + u) * dv, m * dv);
}

/* A column pass: the queries of column c (gathered) see their own column (TERMS_DIRECT, which also
 * forms the column's vertical summaries from the same gather), the row-major groups and the
 * horizontal segments, all through the column-major summary slices of column c. */
static void column_pass(axial_state *st, const attn_problem *pb, const double *Q, const double *K,
                        const double *V, size_t c, attn_acc *acc, unsigned terms)
{
    size_t d = pb->d, dv = pb->dv, m = st->m, nr = st->nr;
    size_t nq = col_len(st, c);
    /* Causal: keys of rows t < r only, so the last row's summaries are never needed. */
    size_t nk = st->causal ? nr - 1 : nr;
    int mean_log = st->pool == COMBINER_POOL_MEAN_LOG;
    gather_column(st, Q, d, c, nq, st->Qg);
    attn_acc_init(&st->cacc, nq, dv, st->colbuf);
    if (terms & TERMS_DIRECT) {
        gather_column(st, K, d, c, nq, st->Kg);
        gather_column(st, V, dv, c, nq, st->Vg);
        if (st->plan_col)
            column_summaries(st, pb, c, nq);
        int rel = st->causal ? REL_LT : (st->bidir_union ? REL_ALL : REL_NE);
        add_keys(&st->cacc, 0, st->Qg, nq, st->Kg, st->Vg, dv, NULL, nq, rel, d, pb->scale,
                 st->S);
    }
    if (terms & TERMS_ROW) {
        /* Row-major groups: query (r, c) sees R_t through its partner (t, min(c, L_t - 1)). */
        for (size_t t = 0; t < nk; t++)
            st->bias[t] = log((double) row_len(st, t));
        add_keys(&st->cacc, 0, st->Qg, nq, st->Kw + c * nr * d, st->Vw + c * nr * dv, dv,
                 mean_log ? st->bias : NULL, nk, st->causal ? REL_LT : REL_NE, d, pb->scale,
                 st->S);
    }
    if (terms & TERMS_MIXED) {
        int rel = st->causal ? REL_LT : (st->bidir_union ? REL_ALL : REL_NE);
        /* Left segments {u < min(c, L_t)}: slot c - 1 of every row (none when c = 0). */
        if (c >= 1) {
            for (size_t t = 0; t < nk; t++)
                st->bias[t] = log((double) min_size(c, row_len(st, t)));
            add_keys(&st->cacc, 0, st->Qg, nq, st->Kl + (c - 1) * nr * d,
                     st->Vl + (c - 1) * nr * dv, dv, mean_log ? st->bias : NULL, nk, rel, d,
                     pb->scale, st->S);
        }
        /* Right segments {c < u < L_t}: slot c + 1 of every row that has it. */
        if (c + 1 < m) {
            int ragged = 0;
            for (size_t t = 0; t < nk; t++) {
                size_t len = row_len(st, t);
                st->bias[t] = c + 1 >= len ? -INFINITY
                                           : (mean_log ? log((double) (len - c - 1)) : 0.0);
                ragged |= c + 1 >= len;
            }
            add_keys(&st->cacc, 0, st->Qg, nq, st->Kr + (c + 1) * nr * d,
                     st->Vr + (c + 1) * nr * dv, dv, mean_log || ragged ? st->bias : NULL, nk,
                     rel, d, pb->scale, st->S);
        }
    }
    for (size_t t = 0; t < nq; t++)
        attn_acc_merge_row(acc, t * m + c, &st->cacc, t);
}

/* ---------------------------------------------------------------------------------------------
 * Oracles: the same groups, enumerated query by query (quadratic; diagnostics only).
 */
static void oracle_group(axial_state *st, const attn_problem *pb, const double *Q,
                         const double *K, const double *V, attn_acc *acc, size_t i, size_t count,
                         const double *vt)
{
    combiner_add_oracle(acc, i, 1, Q + i * pb->d, K, V, st->idx, count, vt, st->oracle,
                        pb->scale, pb->d, st->oracle_scratch);
}

static void oracle_groups(axial_state *st, const attn_problem *pb, const double *Q,
                          const double *K, const double *V, attn_acc *acc, unsigned terms)
{
    size_t m = st->m, nr = st->nr, dv = pb->dv;
    for (size_t i = 0; i < st->n; i++) {
        size_t r = i / m, c = i % m;
        if (terms & TERMS_ROW)
            for (size_t t = 0; t < (st->causal ? r : nr); t++) {
                if (t == r)
                    continue;
                size_t len = row_len(st, t);
                for (size_t u = 0; u < len; u++)
                    st->idx[u] = t * m + u;
                oracle_group(st, pb, Q, K, V, acc, i, len, st->Vw + (c * nr + t) * dv);
            }
        if (terms & TERMS_COL)
            for (size_t u = 0; u < m; u++) {
                if (u == c && !st->bidir_union)
                    continue;
                if (r >= 1) {
                    for (size_t t = 0; t < r; t++)
                        st->idx[t] = t * m + u;
                    oracle_group(st, pb, Q, K, V, acc, i, r, st->Vc + ((r - 1) * m + u) * dv);
                }
                if (!st->causal && r + 1 < col_len(st, u)) {
                    size_t count = 0;
                    for (size_t t = r + 1; t < col_len(st, u); t++)
                        st->idx[count++] = t * m + u;
                    oracle_group(st, pb, Q, K, V, acc, i, count,
                                 st->Vcs + ((r + 1) * m + u) * dv);
                }
            }
        if (terms & TERMS_MIXED)
            for (size_t t = 0; t < (st->causal ? r : nr); t++) {
                if (t == r && !st->bidir_union)
                    continue;
                size_t len = row_len(st, t), left = min_size(c, len);
                if (left > 0) {
                    for (size_t u = 0; u < left; u++)
                        st->idx[u] = t * m + u;
                    oracle_group(st, pb, Q, K, V, acc, i, left, st->Vl + ((c - 1) * nr + t) * dv);
                }
                if (c + 1 < len) {
                    for (size_t u = c + 1; u < len; u++)
                        st->idx[u - c - 1] = t * m + u;
                    oracle_group(st, pb, Q, K, V, acc, i, len - c - 1,
                                 st->Vr + ((c + 1) * nr + t) * dv);
                }
            }
    }
}

/* Add the terms of one softmax to acc: the direct set and the groups of the plans in `terms`. */
static void add_terms(axial_state *st, const attn_problem *pb, const double *Q, const double *K,
                      const double *V, attn_acc *acc, unsigned terms)
{
    unsigned fast = st->oracle == COMBINER_ORACLE_NONE ? terms : terms & TERMS_DIRECT;
    unsigned by_row = fast & (TERMS_DIRECT | TERMS_COL);
    unsigned by_col = fast & (TERMS_ROW | TERMS_MIXED);
    /* Every plan but row-major has the own column in its direct set. */
    if ((fast & TERMS_DIRECT) && !st->plan_row)
        by_col |= TERMS_DIRECT;
    /* Column passes first: the one with the direct terms forms the vertical summaries that the
     * row passes' groups read. */
    if (by_col)
        for (size_t c = 0; c < st->m; c++)
            column_pass(st, pb, Q, K, V, c, acc, by_col);
    if (by_row)
        for (size_t r = 0; r < st->nr; r++)
            row_pass(st, pb, Q, K, V, r, acc, by_row);
    if (st->oracle != COMBINER_ORACLE_NONE && (terms & ~TERMS_DIRECT))
        oracle_groups(st, pb, Q, K, V, acc, terms & ~TERMS_DIRECT);
}

static int axial_apply(attn_plan *plan, const double *Q, const double *K, const double *V,
                       double *O)
{
    axial_state *st = plan->state;
    const attn_problem *pb = &plan->problem;
    size_t n = pb->n, dv = pb->dv;
    row_summaries(st, pb, Q, K, V);
    attn_acc_reset(&st->acc);
    if (st->mixture == MIXTURE_AVERAGE) {
        /* Two softmaxes, one direct set: build it once, copy it, add each plan's groups. */
        add_terms(st, pb, Q, K, V, &st->acc, TERMS_DIRECT);
        memcpy(st->accbuf2, st->accbuf, attn_acc_doubles(n, dv) * sizeof *st->accbuf2);
        add_terms(st, pb, Q, K, V, &st->acc, TERMS_COL);
        add_terms(st, pb, Q, K, V, &st->acc2, TERMS_MIXED);
        attn_acc_finish(&st->acc, 0, n, O, dv, NULL);
        for (size_t i = 0; i < n; i++) {
            attn_acc_finish(&st->acc2, i, 1, st->ofin, dv, NULL);
            for (size_t c = 0; c < dv; c++)
                O[i * dv + c] = 0.5 * (O[i * dv + c] + st->ofin[c]);
        }
        return ATTN_OK;
    }
    unsigned terms = TERMS_DIRECT | (st->plan_row ? TERMS_ROW : 0u) |
                     (st->plan_col ? TERMS_COL : 0u) | (st->plan_mixed ? TERMS_MIXED : 0u);
    add_terms(st, pb, Q, K, V, &st->acc, terms);
    attn_acc_finish(&st->acc, 0, n, O, dv, NULL);
    return ATTN_OK;
}

/* Counted in pairs (query, key or summary): a pair costs a logit (2 d flops), an exp and a weighted
 * value (2 dv flops).  Causal forms see about half of their own row and column. */
static void axial_cost(const attn_plan *plan, attn_cost *cost)
{
    const axial_state *st = plan->state;
    const attn_problem *pb = &plan->problem;
    double n = (double) pb->n, d = (double) pb->d, dv = (double) pb->dv;
    double m = (double) st->m, nr = (double) st->nr, h = pb->causal ? 0.5 : 1.0;
    double sides = pb->causal ? 1.0 : 2.0;
    double pairs = n * m * h + (st->plan_row ? 0.0 : n * nr * h); /* direct */
    double groups = 0.0, extra = 0.0;
    if (st->plan_row) {
        groups += n * nr * h;
        /* Row attention of every position over its row; wsum also weights the keys. */
        pairs += n * m;
        extra += 2.0 * n * m * (double) (st->wrow - pb->dv);
    }
    if (st->plan_col) {
        groups += sides * n * m;
        pairs += sides * 0.5 * n * nr;   /* prefix (and suffix) local distributions */
        extra += sides * 2.0 * n * d;    /* running pools of keys and queries */
    }
    if (st->plan_mixed) {
        groups += 2.0 * n * nr * h;
        pairs += n * m;                  /* left prefixes and right suffixes of every row */
        extra += 4.0 * n * d;
    }
    if (st->oracle != COMBINER_ORACLE_NONE)
        groups = n * n * h;
    if (st->mixture == MIXTURE_AVERAGE)
        extra += 2.0 * n * dv;
    pairs += groups;
    cost->flops = 2.0 * pairs * (d + dv) + extra;
    cost->exps = pairs;
}

const attn_method attn_method_combiner_axial = {
    .id = "combiner_axial",
    .summary = "Combiner-Axial: rows x columns reshaping; own row (and column) direct, the "
               "row-major, vertical or horizontal groups through summaries (O(n sqrt n))",
    .reference = "Ren et al., Combiner: Full Attention Transformer with Sparse Computation Cost, "
                 "NeurIPS 2021, section 4.3",
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
