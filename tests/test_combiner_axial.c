/* test_combiner_axial.c — Combiner-Axial (lib/methods/combiner_axial.c): its direct sets and groups
 * against the definitions of its header comment, hand-derived 8-token examples, full support, the
 * exact cases, the oracles, the two mixtures and bad input.  The default spec also runs through
 * test_contract.c; the properties it checks there (row sums, A V = apply, causality) are checked
 * here for every variant and mixture.
 *
 * The reference below rebuilds every query's direct set and groups from the header's set-builder
 * definitions ("{j : col(j) = u, row(j) < r}"), by loops over all positions and without any of the
 * library's prefix/suffix index arithmetic, and evaluates Ren et al. eq. 8 on them in long double.
 */
#include "config.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "attn.h"
#include "attn_io.h"
#include "testutil.h"

/* ---------------------------------------------------------------------------------------------
 * The reference.
 */
enum { ROW, COL, MIXED };                 /* variant */
enum { NONE, AVERAGE, UNION };            /* mixture */
enum { POOL_MAX, POOL_MEAN, POOL_MEAN_LOG };

typedef struct config {
    int variant, mixture, pool;
    int wsum;                             /* row-major group key: 1 wsum, 0 none */
} config;

static const char *const variant_names[] = { "row", "col", "mixed" };
static const char *const mixture_names[] = { "none", "average", "union" };
static const char *const pool_names[] = { "max", "mean", "mean_log" };

/* Every accepted combination of the structural parameters. */
static const config configs[] = {
    { ROW, NONE, POOL_MAX, 1 },   { ROW, NONE, POOL_MAX, 0 },  { ROW, NONE, POOL_MEAN_LOG, 1 },
    { COL, NONE, POOL_MAX, 1 },   { COL, NONE, POOL_MEAN, 1 }, { COL, NONE, POOL_MEAN_LOG, 1 },
    { MIXED, NONE, POOL_MAX, 1 }, { MIXED, NONE, POOL_MEAN, 1 },
    { MIXED, NONE, POOL_MEAN_LOG, 1 }, { ROW, AVERAGE, POOL_MAX, 1 },
    { ROW, AVERAGE, POOL_MEAN_LOG, 1 }, { ROW, UNION, POOL_MAX, 1 },
    { ROW, UNION, POOL_MEAN, 1 },
};
#define NCONFIGS (sizeof configs / sizeof configs[0])

static void spec_of(const config *cf, size_t block, const char *extra, char *buf, size_t len)
{
    snprintf(buf, len, "combiner_axial:block=%zu,variant=%s,mixture=%s,row_summary=%s,pool=%s%s%s",
             block, variant_names[cf->variant], mixture_names[cf->mixture],
             cf->wsum ? "wsum" : "none", pool_names[cf->pool], extra ? "," : "",
             extra ? extra : "");
}

#define MAXN 64
#define MAXG (4 * MAXN)

/* One group: its positions and how its abstraction is formed. */
typedef struct group {
    size_t count;
    size_t pos[MAXN];
    int rowmajor;      /* 1: row-major abstraction from the partner position; 0: pooled */
    size_t partner;
} group;

/* The terms of one softmax of query i: direct keys (a key may appear twice: the bidirectional
 * union's self) and groups. */
typedef struct terms {
    size_t ndirect;
    size_t direct[2 * MAXN];
    size_t ngroups;
    group groups[MAXG];
} terms;

typedef struct shape {
    size_t n, m, nr;
} shape;

static size_t row_of(const shape *sh, size_t j) { return j / sh->m; }
static size_t col_of(const shape *sh, size_t j) { return j % sh->m; }

static size_t row_length(const shape *sh, size_t t)
{
    size_t len = 0;
    for (size_t j = 0; j < sh->n; j++)
        len += row_of(sh, j) == t;
    return len;
}

static void add_direct(terms *tm, size_t j)
{
    cr_assert(tm->ndirect < 2 * MAXN);
    tm->direct[tm->ndirect++] = j;
}

/* Predicates that select a group's members. */
enum sel { SEL_COL_ABOVE, SEL_COL_BELOW, SEL_ROW_LEFT, SEL_ROW_RIGHT, SEL_ROW_WHOLE };

static void add_group(terms *tm, const shape *sh, int sel, size_t t_or_u, size_t r, size_t c,
                      int rowmajor, size_t partner)
{
    group g = { 0 };
    for (size_t j = 0; j < sh->n; j++) {
        size_t tj = row_of(sh, j), uj = col_of(sh, j);
        int in = 0;
        switch (sel) {
        case SEL_COL_ABOVE: in = uj == t_or_u && tj < r; break;
        case SEL_COL_BELOW: in = uj == t_or_u && tj > r; break;
        case SEL_ROW_LEFT: in = tj == t_or_u && uj < c; break;
        case SEL_ROW_RIGHT: in = tj == t_or_u && uj > c; break;
        default: in = tj == t_or_u; break;
        }
        if (in)
            g.pos[g.count++] = j;
    }
    if (g.count == 0)
        return; /* empty groups do not exist */
    g.rowmajor = rowmajor;
    g.partner = partner;
    cr_assert(tm->ngroups < MAXG);
    tm->groups[tm->ngroups++] = g;
}

/* The terms of query i under one plan (ROW, COL or MIXED) and mixture, from the header. */
static void plan_terms(const shape *sh, int causal, int plan, int mixture, size_t i, terms *tm)
{
    size_t r = row_of(sh, i), c = col_of(sh, i);
    int bunion = mixture == UNION && !causal;
    memset(tm, 0, sizeof *tm);
    /* Direct set. */
    for (size_t j = 0; j < sh->n; j++) {
        size_t t = row_of(sh, j), u = col_of(sh, j);
        int own_row = t == r && (!causal || u <= c);
        int own_col = plan != ROW && u == c && (causal ? t < r : 1);
        if (bunion) {
            /* The code's bidirectional union: own row plus own column, self twice. */
            if (t == r)
                add_direct(tm, j);
            if (u == c)
                add_direct(tm, j);
        } else if (own_row || own_col) {
            add_direct(tm, j);
        }
    }
    /* Groups. */
    if (plan == ROW) {
        for (size_t t = 0; t < sh->nr; t++)
            if (causal ? t < r : t != r) {
                size_t len = row_length(sh, t);
                size_t partner = t * sh->m + (c < len ? c : len - 1);
                add_group(tm, sh, SEL_ROW_WHOLE, t, r, c, 1, partner);
            }
    }
    if (plan == COL || mixture == UNION) {
        for (size_t u = 0; u < sh->m; u++) {
            if (u == c && !bunion)
                continue;
            add_group(tm, sh, SEL_COL_ABOVE, u, r, c, 0, 0);
            if (!causal)
                add_group(tm, sh, SEL_COL_BELOW, u, r, c, 0, 0);
        }
    }
    if (plan == MIXED || mixture == UNION) {
        for (size_t t = 0; t < sh->nr; t++) {
            if (causal ? t >= r : (t == r && !bunion))
                continue;
            add_group(tm, sh, SEL_ROW_LEFT, t, r, c, 0, 0);
            add_group(tm, sh, SEL_ROW_RIGHT, t, r, c, 0, 0);
        }
    }
}

static long double dotl(const double *a, const double *b, size_t d)
{
    long double s = 0.0L;
    for (size_t c = 0; c < d; c++)
        s += (long double) a[c] * (long double) b[c];
    return s;
}

static void pool_rows(const double *X, size_t d, const group *g, int pool, long double *out)
{
    for (size_t c = 0; c < d; c++) {
        long double acc = X[g->pos[0] * d + c];
        for (size_t t = 1; t < g->count; t++) {
            long double x = X[g->pos[t] * d + c];
            acc = pool == POOL_MAX ? (x > acc ? x : acc) : acc + x;
        }
        out[c] = pool == POOL_MAX ? acc : acc / (long double) g->count;
    }
}

/* Row i of one softmax (eq. 8) into a (n entries, added with weight w). */
static void softmax_row(const terms *tm, const config *cf, const double *Q, const double *K,
                        size_t d, double s, size_t i, size_t n, double w, double *a)
{
    long double logit[2 * MAXN + MAXG], local[MAXG][MAXN];
    long double qt[32], kt[32];
    cr_assert(d <= 32);
    size_t nt = 0;
    for (size_t t = 0; t < tm->ndirect; t++)
        logit[nt++] = s * dotl(Q + i * d, K + tm->direct[t] * d, d);
    for (size_t gi = 0; gi < tm->ngroups; gi++) {
        const group *g = &tm->groups[gi];
        /* Local distribution: softmax over the group under the pooled (or partner's) query. */
        if (g->rowmajor) {
            for (size_t c = 0; c < d; c++)
                qt[c] = Q[g->partner * d + c];
        } else {
            pool_rows(Q, d, g, cf->pool, qt);
        }
        long double mx = -INFINITY, z = 0.0L;
        for (size_t t = 0; t < g->count; t++) {
            long double l = 0.0L;
            for (size_t c = 0; c < d; c++)
                l += qt[c] * (long double) K[g->pos[t] * d + c];
            local[gi][t] = s * l;
            mx = local[gi][t] > mx ? local[gi][t] : mx;
        }
        for (size_t t = 0; t < g->count; t++)
            z += local[gi][t] = expl(local[gi][t] - mx);
        for (size_t t = 0; t < g->count; t++)
            local[gi][t] /= z;
        /* Group key. */
        if (!g->rowmajor) {
            pool_rows(K, d, g, cf->pool, kt);
        } else if (cf->wsum) {
            for (size_t c = 0; c < d; c++) {
                kt[c] = 0.0L;
                for (size_t t = 0; t < g->count; t++)
                    kt[c] += local[gi][t] * (long double) K[g->pos[t] * d + c];
            }
        } else {
            for (size_t c = 0; c < d; c++)
                kt[c] = K[g->partner * d + c];
        }
        long double l = 0.0L;
        for (size_t c = 0; c < d; c++)
            l += (long double) Q[i * d + c] * kt[c];
        logit[nt++] = s * l + (cf->pool == POOL_MEAN_LOG ? logl((long double) g->count) : 0.0L);
    }
    long double mx = -INFINITY, z = 0.0L;
    for (size_t t = 0; t < nt; t++)
        mx = logit[t] > mx ? logit[t] : mx;
    for (size_t t = 0; t < nt; t++)
        z += logit[t] = expl(logit[t] - mx);
    for (size_t t = 0; t < tm->ndirect; t++)
        a[tm->direct[t]] += (double) (w * logit[t] / z);
    for (size_t gi = 0; gi < tm->ngroups; gi++) {
        const group *g = &tm->groups[gi];
        for (size_t t = 0; t < g->count; t++)
            a[g->pos[t]] += (double) (w * logit[tm->ndirect + gi] / z * local[gi][t]);
    }
    (void) n;
}

static shape make_shape(size_t n, size_t m)
{
    shape sh = { .n = n, .m = m < n ? m : n };
    sh.nr = (n + sh.m - 1) / sh.m;
    return sh;
}

/* The reference matrix A (n x n) of a configuration. */
static double *reference_matrix(const config *cf, size_t n, size_t m, int causal, const double *Q,
                                const double *K, size_t d, double s)
{
    shape sh = make_shape(n, m);
    double *A = tu_alloc(n * n);
    static terms tm;
    for (size_t i = 0; i < n; i++) {
        if (cf->mixture == AVERAGE) {
            plan_terms(&sh, causal, COL, NONE, i, &tm);
            softmax_row(&tm, cf, Q, K, d, s, i, n, 0.5, A + i * n);
            plan_terms(&sh, causal, MIXED, NONE, i, &tm);
            softmax_row(&tm, cf, Q, K, d, s, i, n, 0.5, A + i * n);
        } else {
            int plan = cf->mixture == UNION ? COL : cf->variant;
            plan_terms(&sh, causal, plan, cf->mixture, i, &tm);
            softmax_row(&tm, cf, Q, K, d, s, i, n, 1.0, A + i * n);
        }
    }
    return A;
}

/* (n, m): ragged last rows, m = 1, m >= n, one row, two rows, many rows. */
static const size_t shapes[][2] = {
    { 1, 1 },  { 2, 1 },  { 5, 2 },   { 7, 3 },   { 8, 3 },   { 8, 4 },   { 9, 3 },   { 10, 4 },
    { 11, 1 }, { 13, 5 }, { 16, 4 },  { 17, 4 },  { 23, 7 },  { 30, 6 },  { 31, 8 },  { 12, 20 },
    { 40, 40 }, { 29, 2 }, { 33, 11 }, { 37, 6 }, { 64, 8 },  { 61, 9 },
};
#define NSHAPES (sizeof shapes / sizeof shapes[0])

/* ---------------------------------------------------------------------------------------------
 * Structure.
 */

/* Direct set and groups partition the allowed keys: every allowed key is reached exactly once, no
 * other key at all, and no group is empty.  The code's union instead reaches keys twice: causal,
 * the earlier rows off the own column (column group and row segment); bidirectional, every key
 * (self through own row and own column, the rest through one column part and one row segment). */
Test(combiner_axial, direct_set_and_groups_partition_the_support)
{
    static terms tm;
    for (size_t s = 0; s < NSHAPES; s++) {
        shape sh = make_shape(shapes[s][0], shapes[s][1]);
        for (int causal = 0; causal <= 1; causal++)
            for (int plan = ROW; plan <= MIXED + 1; plan++) {
                int mixture = plan == MIXED + 1 ? UNION : NONE;
                for (size_t i = 0; i < sh.n; i++) {
                    size_t r = row_of(&sh, i), c = col_of(&sh, i);
                    plan_terms(&sh, causal, mixture == UNION ? COL : plan, mixture, i, &tm);
                    unsigned hits[MAXN] = { 0 };
                    for (size_t t = 0; t < tm.ndirect; t++)
                        hits[tm.direct[t]]++;
                    for (size_t g = 0; g < tm.ngroups; g++) {
                        cr_assert(tm.groups[g].count > 0);
                        for (size_t t = 0; t < tm.groups[g].count; t++)
                            hits[tm.groups[g].pos[t]]++;
                    }
                    for (size_t j = 0; j < sh.n; j++) {
                        unsigned want = causal && j > i ? 0 : 1;
                        if (mixture == UNION && want)
                            want = !causal ? 2
                                           : (row_of(&sh, j) < r && col_of(&sh, j) != c ? 2 : 1);
                        cr_assert_eq(hits[j], want,
                                     "n %zu m %zu causal %d plan %d mixture %d: query %zu "
                                     "reaches key %zu %u times, expected %u",
                                     sh.n, sh.m, causal, plan, mixture, i, j, hits[j], want);
                    }
                }
            }
    }
}

/* The library against the reference, entry by entry, and apply against A V: every configuration,
 * both masks, every shape.  Together with the partition test, this checks that the library's
 * direct sets and groups are those partitions. */
Test(combiner_axial, matrix_and_output_match_the_definition)
{
    size_t d = 5, dv = 3;
    for (size_t s = 0; s < NSHAPES; s++) {
        size_t n = shapes[s][0], m = shapes[s][1];
        double *Q, *K, *V;
        tu_random_qkv(n, n, d, dv, 100 + s, &Q, &K, &V);
        for (int causal = 0; causal <= 1; causal++)
            for (size_t k = 0; k < NCONFIGS; k++) {
                attn_problem pb = { .n = n, .m = n, .d = d, .dv = dv, .causal = causal };
                char spec[256];
                spec_of(&configs[k], m, NULL, spec, sizeof spec);
                double *R = reference_matrix(&configs[k], n, m, causal, Q, K, d,
                                             1.0 / sqrt((double) d));
                double *A = tu_materialize(spec, &pb, Q, K, V);
                double err = tu_max_abs_diff(A, R, n * n);
                cr_assert(err <= 1e-13, "%s, n = %zu, causal %d: max |A - A_ref| = %.3g", spec, n,
                          causal, err);
                double *O = tu_apply(spec, &pb, Q, K, V), *RV = tu_alloc(n * dv);
                tu_matmul(R, V, RV, n, n, dv);
                err = tu_rel_fro(O, RV, n * dv);
                cr_assert(err <= 1e-13, "%s, n = %zu, causal %d: |O - A_ref V| / |A_ref V| = %.3g",
                          spec, n, causal, err);
                free(R);
                free(A);
                free(O);
                free(RV);
            }
        free(Q);
        free(K);
        free(V);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Hand-derived 8-token examples.  d = 1, scale s = 1, q_j = 1 and k_j = ln w_j with w_j = j + 1,
 * so exp(s q.k_j) = w_j: a direct key weighs w_j; a max-pooled group Omega weighs max_Omega w (its
 * pooled key is ln max w and the query is 1) and spreads that weight as w_j / sum_Omega w (its
 * pooled query is 1 too).  V = I (dv = 8), so an output row is the attention row.
 * m = 3: rows {0 1 2} {3 4 5} {6 7} (ragged); m = 4: rows {0 1 2 3} {4 5 6 7}.
 */
static void check_row(const char *spec, int causal, const double *q, size_t i,
                       const double want[8])
{
    double Q[8], K[8], I[64] = { 0 };
    for (size_t j = 0; j < 8; j++) {
        Q[j] = q != NULL ? q[j] : 1.0;
        K[j] = log((double) (j + 1));
        I[j * 8 + j] = 1.0;
    }
    attn_problem pb = { .n = 8, .m = 8, .d = 1, .dv = 8, .causal = causal, .scale = 1.0 };
    double *O = tu_apply(spec, &pb, Q, K, I);
    double sum = 0.0;
    for (size_t j = 0; j < 8; j++) {
        cr_assert(fabs(O[i * 8 + j] - want[j]) <= 1e-15, "%s causal %d: A[%zu][%zu] = %.17g, "
                  "expected %.17g", spec, causal, i, j, O[i * 8 + j], want[j]);
        sum += want[j];
    }
    cr_assert(fabs(sum - 1.0) <= 1e-15, "the expected row itself sums to %.17g", sum);
    free(O);
}

#define ROW8(z, a0, a1, a2, a3, a4, a5, a6, a7)                                                    \
    (const double[8]) { (a0) / (z), (a1) / (z), (a2) / (z), (a3) / (z), (a4) / (z), (a5) / (z),  \
                        (a6) / (z), (a7) / (z) }

Test(combiner_axial, hand_derived_col)
{
    /* Causal, m = 3, query 7 = (2, 1).  Direct: own column above {1, 4} (w 2, 5) and own row
     * prefix {6, 7} (w 7, 8).  Groups: C_0 = {0, 3} (w 1, 4) weighs 4, split 1/5, 4/5 -> 0.8, 3.2;
     * C_2 = {2, 5} (w 3, 6) weighs 6, split 1/3, 2/3 -> 2, 4.  Z = 2 + 5 + 7 + 8 + 4 + 6 = 32. */
    check_row("combiner_axial:block=3,variant=col", 1, NULL, 7,
              ROW8(32.0, 0.8, 2, 2, 3.2, 5, 4, 7, 8));
    /* The same with q_3 = 2: C_0's pooled query is max(q_0, q_3) = 2, so its split is
     * w^2 / sum w^2 = 1/17, 16/17 -> 4/17, 64/17; query 7 itself still has q = 1. */
    const double q3[8] = { 1, 1, 1, 2, 1, 1, 1, 1 };
    check_row("combiner_axial:block=3,variant=col", 1, q3, 7,
              ROW8(32.0, 4.0 / 17, 2, 2, 64.0 / 17, 5, 4, 7, 8));
    /* pool = mean with q_3 = 2: C_0's pooled query 1.5 splits w^1.5 = 1, 8 -> 1/9, 8/9, its key
     * is mean(ln 1, ln 4) = ln 2, weight 2 -> 2/9, 16/9; C_2: query 1, key ln sqrt(18), weight
     * sqrt 18 split 1/3, 2/3.  Z = 22 + 2 + sqrt 18. */
    double r18 = sqrt(18.0);
    check_row("combiner_axial:block=3,variant=col,pool=mean", 1, q3, 7,
              ROW8(24.0 + r18, 2.0 / 9, 2, r18 / 3, 16.0 / 9, 5, 2 * r18 / 3, 7, 8));
    /* Bidirectional, m = 3, query 1 = (0, 1).  Direct: own column {1, 4, 7} and own row
     * {0, 1, 2}.  Groups (rows below 0): column 0 {3, 6} (w 4, 7) weighs 7, split 4/11, 7/11;
     * column 2 {5} weighs 6.  Z = 1 + 2 + 3 + 5 + 8 + 7 + 6 = 32. */
    check_row("combiner_axial:block=3,variant=col", 0, NULL, 1,
              ROW8(32.0, 1, 2, 3, 28.0 / 11, 5, 6, 49.0 / 11, 8));
}

Test(combiner_axial, hand_derived_mixed)
{
    /* Causal, m = 4, query 6 = (1, 2).  Direct: {2} and {4, 5, 6}.  Row 0 splits at column 2:
     * left {0, 1} (w 1, 2) weighs 2, split 1/3, 2/3; right {3} weighs 4.  Z = 3 + 5 + 6 + 7 + 2
     * + 4 = 27. */
    check_row("combiner_axial:block=4,variant=mixed", 1, NULL, 6,
              ROW8(27.0, 2.0 / 3, 4.0 / 3, 3, 4, 5, 6, 7, 0));
    /* Causal, m = 4, query 7 = (1, 3): direct {3} and {4, 5, 6, 7}; row 0 left {0, 1, 2} weighs 3
     * split 1/6, 2/6, 3/6, no right part.  Z = 4 + 5 + 6 + 7 + 8 + 3 = 33. */
    check_row("combiner_axial:block=4,variant=mixed", 1, NULL, 7,
              ROW8(33.0, 0.5, 1, 1.5, 4, 5, 6, 7, 8));
    /* Bidirectional, m = 3 (ragged), query 2 = (0, 2).  Direct: own column {2, 5} and own row
     * {0, 1, 2}.  Row 1: left {3, 4} weighs 5, split 4/9, 5/9; no right part.  Row 2 has no
     * column 2, so its left segment is the whole row {6, 7}: weighs 8, split 7/15, 8/15.
     * Z = 1 + 2 + 3 + 6 + 5 + 8 = 25. */
    check_row("combiner_axial:block=3,variant=mixed", 0, NULL, 2,
              ROW8(25.0, 1, 2, 3, 20.0 / 9, 25.0 / 9, 6, 56.0 / 15, 64.0 / 15));
}

Test(combiner_axial, hand_derived_row)
{
    /* Causal, m = 3, query 7 = (2, 1).  Direct: {6, 7}.  Groups R_0 and R_1 with partners (0, 1)
     * and (1, 1); their local distributions under q = 1 are w / sum w: 1/6, 2/6, 3/6 and
     * 4/15, 5/15, 6/15.  row_summary = none: group keys k_1 = ln 2 and k_4 = ln 5, weights 2 and
     * 5.  Z = 7 + 8 + 2 + 5 = 22. */
    check_row("combiner_axial:block=3,variant=row,row_summary=none", 1, NULL, 7,
              ROW8(22.0, 1.0 / 3, 2.0 / 3, 1, 4.0 / 3, 5.0 / 3, 2, 7, 8));
    /* row_summary = wsum: the key is sum p_u ln w_u, weight G = prod w_u^p_u:
     * G0 = 2^(1/3) 3^(1/2), G1 = 4^(4/15) 5^(1/3) 6^(2/5).  Z = 15 + G0 + G1. */
    double g0 = pow(2.0, 1.0 / 3) * sqrt(3.0);
    double g1 = pow(4.0, 4.0 / 15) * pow(5.0, 1.0 / 3) * pow(6.0, 2.0 / 5);
    check_row("combiner_axial:block=3,variant=row", 1, NULL, 7,
              ROW8(15.0 + g0 + g1, g0 / 6, 2 * g0 / 6, 3 * g0 / 6, 4 * g1 / 15, 5 * g1 / 15,
                   6 * g1 / 15, 7, 8));
    /* Bidirectional, m = 3, query 2 = (0, 2), none.  Direct {0, 1, 2}.  R_1 with partner (1, 2):
     * weight w_5 = 6, split 4/15, 5/15, 6/15.  R_2 has no column 2: partner (2, 1) = 7, weight
     * 8, split 7/15, 8/15.  Z = 1 + 2 + 3 + 6 + 8 = 20. */
    check_row("combiner_axial:block=3,variant=row,row_summary=none", 0, NULL, 2,
              ROW8(20.0, 1, 2, 3, 1.6, 2, 2.4, 56.0 / 15, 64.0 / 15));
}

Test(combiner_axial, hand_derived_mixtures)
{
    /* Causal union, m = 3, query 7 = (2, 1).  Direct {1, 4, 6, 7}; column groups C_0 (weighs 4:
     * 0.8, 3.2) and C_2 (weighs 6: 2, 4); row segments of rows 0 and 1: {0}, {2}, {3}, {5}
     * (weights 1, 3, 4, 6).  Z = 22 + 4 + 6 + 1 + 3 + 4 + 6 = 46; key 0 gets 0.8 + 1, key 2
     * 2 + 3, key 3 3.2 + 4, key 5 4 + 6. */
    check_row("combiner_axial:block=3,mixture=union", 1, NULL, 7,
              ROW8(46.0, 1.8, 2, 5, 7.2, 5, 10, 7, 8));
    /* Causal average: (1/2)(col row, 32 above; mixed row, whose groups are single positions, so
     * it is exact: w / 36). */
    check_row("combiner_axial:block=3,mixture=average", 1, NULL, 7,
              (const double[8]) { 0.5 * (0.8 / 32 + 1.0 / 36), 0.5 * (2.0 / 32 + 2.0 / 36),
                                  0.5 * (2.0 / 32 + 3.0 / 36), 0.5 * (3.2 / 32 + 4.0 / 36),
                                  0.5 * (5.0 / 32 + 5.0 / 36), 0.5 * (4.0 / 32 + 6.0 / 36),
                                  0.5 * (7.0 / 32 + 7.0 / 36), 0.5 * (8.0 / 32 + 8.0 / 36) });
    /* Bidirectional union, m = 3, query 1 = (0, 1).  Direct: own row {0, 1, 2} and own column
     * {1, 4, 7}, self twice: 1 + 2 + 3 + 2 + 5 + 8 = 21.  Column parts below row 0 for EVERY
     * column: {3, 6} weighs 7 (28/11, 49/11), {4, 7} weighs 8 (40/13, 64/13), {5} weighs 6.  Row
     * segments of EVERY row: row 0 {0}, {2} (1, 3); row 1 {3}, {5} (4, 6); row 2 {6} (7).
     * Z = 21 + 7 + 8 + 6 + 1 + 3 + 4 + 6 + 7 = 63. */
    check_row("combiner_axial:block=3,mixture=union", 0, NULL, 1,
              ROW8(63.0, 2, 4, 6, 28.0 / 11 + 4, 5 + 40.0 / 13, 12, 49.0 / 11 + 7,
                   8 + 64.0 / 13));
}

/* ---------------------------------------------------------------------------------------------
 * Full support, row sums, causality.
 */
Test(combiner_axial, full_support_and_row_sums_for_every_configuration)
{
    size_t n = 37, d = 5, dv = 3;
    double *Q, *K, *V;
    tu_random_qkv(n, n, d, dv, 3, &Q, &K, &V);
    const char *oracles[] = { NULL, "oracle=mass" };
    for (int causal = 0; causal <= 1; causal++)
        for (size_t k = 0; k < NCONFIGS; k++)
            for (size_t o = 0; o < 2; o++) {
                attn_problem pb = { .n = n, .m = n, .d = d, .dv = dv, .causal = causal };
                char spec[256];
                spec_of(&configs[k], 8, oracles[o], spec, sizeof spec);
                double *A = tu_materialize(spec, &pb, Q, K, V);
                for (size_t i = 0; i < n; i++) {
                    double sum = 0.0;
                    for (size_t j = 0; j < n; j++) {
                        if (causal && j > i)
                            cr_assert_eq(A[i * n + j], 0.0, "%s: A[%zu][%zu] above the diagonal",
                                         spec, i, j);
                        else
                            cr_assert(A[i * n + j] > 0.0, "%s causal %d: A[%zu][%zu] = %g", spec,
                                      causal, i, j, A[i * n + j]);
                        sum += A[i * n + j];
                    }
                    cr_assert(fabs(sum - 1.0) <= 4.0 * n * DBL_EPSILON, "%s: row %zu sums to %.17g",
                              spec, i, sum);
                }
                free(A);
            }
    free(Q);
    free(K);
    free(V);
}

Test(combiner_axial, causal_for_every_configuration)
{
    size_t n = 50, d = 6, dv = 4;
    double *Q, *K, *V;
    tu_random_qkv(n, n, d, dv, 17, &Q, &K, &V);
    attn_problem pb = { .n = n, .m = n, .d = d, .dv = dv, .causal = 1 };
    for (size_t k = 0; k < NCONFIGS; k++) {
        char spec[256];
        spec_of(&configs[k], 7, NULL, spec, sizeof spec);
        double *O = tu_apply(spec, &pb, Q, K, V);
        size_t cuts[] = { 0, 6, 7, 20, 48 };
        for (size_t t = 0; t < 5; t++) {
            size_t i = cuts[t];
            double *K2 = tu_alloc(n * d), *V2 = tu_alloc(n * dv);
            memcpy(K2, K, n * d * sizeof *K2);
            memcpy(V2, V, n * dv * sizeof *V2);
            tu_fill_gauss(K2 + (i + 1) * d, (n - i - 1) * d, 70 + i, 3.1);
            tu_fill_gauss(V2 + (i + 1) * dv, (n - i - 1) * dv, 80 + i, 5.3);
            double *O2 = tu_apply(spec, &pb, Q, K2, V2);
            cr_assert(memcmp(O, O2, (i + 1) * dv * sizeof *O) == 0,
                      "%s: rows <= %zu changed with the keys after %zu", spec, i, i);
            free(K2);
            free(V2);
            free(O2);
        }
        free(O);
    }
    free(Q);
    free(K);
    free(V);
}

/* ---------------------------------------------------------------------------------------------
 * Exact cases.
 */
static void expect_inexact(const char *spec, const attn_problem *pb, const double *Q,
                           const double *K, const double *V)
{
    double err = tu_error_vs_reference(spec, pb, Q, K, V);
    cr_assert(err > 1e-3, "%s, causal %d: error only %.3g: expected an approximation", spec,
              pb->causal, err);
}

/* Groups of one position: the pooled key and query are the position's own, the local expectation
 * is its value, so the group logit is the exact logit.  block = 1 makes every group a single
 * position for every variant; col with two rows (nr = 2) and mixed with rows of two (m = 2) do so
 * too.  block >= n is one row: the direct set is the whole support. */
Test(combiner_axial, exact_when_groups_are_single_positions_or_one_row)
{
    size_t n = 31, d = 6, dv = 4;
    double *Q, *K, *V;
    tu_random_qkv(n, n, d, dv, 5, &Q, &K, &V);
    const char *specs[] = {
        "combiner_axial:block=1",
        "combiner_axial:block=1,row_summary=none",
        "combiner_axial:block=1,variant=col",
        "combiner_axial:block=1,variant=mixed",
        "combiner_axial:block=1,mixture=average",
        "combiner_axial:block=31",
        "combiner_axial:block=100,row_summary=none",
        "combiner_axial:block=31,variant=col",
        "combiner_axial:block=31,variant=mixed,pool=mean",
        "combiner_axial:block=40,mixture=average",
        "combiner_axial:block=16,variant=col",          /* rows 16 + 15 */
        "combiner_axial:block=2,variant=mixed",         /* 16 rows of 2, the last ragged */
        "combiner_axial:block=2,variant=mixed,pool=mean",
    };
    for (int causal = 0; causal <= 1; causal++) {
        attn_problem pb = { .n = n, .m = n, .d = d, .dv = dv, .causal = causal };
        for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++)
            tu_expect_exact(specs[s], &pb, Q, K, V, 1e-13, NULL);
        /* The causal union at block = 1 is exact too (no column groups, no segments); the
         * bidirectional union counts self twice. */
        if (causal)
            tu_expect_exact("combiner_axial:block=1,mixture=union", &pb, Q, K, V, 1e-13, NULL);
        else
            expect_inexact("combiner_axial:block=1,mixture=union", &pb, Q, K, V);
        expect_inexact("combiner_axial:block=5,variant=col", &pb, Q, K, V);
        expect_inexact("combiner_axial:block=5,variant=mixed", &pb, Q, K, V);
        expect_inexact("combiner_axial:block=5", &pb, Q, K, V);
    }
    free(Q);
    free(K);
    free(V);
}

/* Identical keys inside every group: the local distribution is uniform (as exact), and the group
 * mass is |Omega| exp(s q.k) = exp(s q.k~ + log|Omega|): exact with pool = mean_log.  col: keys
 * identical down each column; mixed and row: identical along each row. */
Test(combiner_axial, exact_with_identical_keys_per_group_and_mean_log)
{
    size_t n = 30, d = 4, dv = 3, m = 7; /* rows 7, 7, 7, 7, 2 */
    double *Q, *K, *V;
    tu_random_qkv(n, n, d, dv, 9, &Q, &K, &V);
    double *Kcol = tu_alloc(n * d), *Krow = tu_alloc(n * d);
    for (size_t j = 0; j < n; j++) {
        memcpy(Kcol + j * d, K + (j % m) * d, d * sizeof *K);
        memcpy(Krow + j * d, K + (j / m) * d, d * sizeof *K);
    }
    for (int causal = 0; causal <= 1; causal++) {
        attn_problem pb = { .n = n, .m = n, .d = d, .dv = dv, .causal = causal };
        tu_expect_exact("combiner_axial:block=7,variant=col,pool=mean_log", &pb, Q, Kcol, V, 1e-13,
                        NULL);
        tu_expect_exact("combiner_axial:block=7,variant=mixed,pool=mean_log", &pb, Q, Krow, V,
                        1e-13, NULL);
        tu_expect_exact("combiner_axial:block=7,variant=row,pool=mean_log", &pb, Q, Krow, V, 1e-13,
                        NULL);
        tu_expect_exact("combiner_axial:block=7,variant=row,pool=mean_log,row_summary=none", &pb, Q,
                        Krow, V, 1e-13, NULL);
        /* Max pooling has no size prior: not exact. */
        expect_inexact("combiner_axial:block=7,variant=col", &pb, Q, Kcol, V);
        expect_inexact("combiner_axial:block=7,variant=mixed", &pb, Q, Krow, V);
    }
    free(Q);
    free(K);
    free(V);
    free(Kcol);
    free(Krow);
}

/* The full oracle replaces every group's logit and local distribution by the exact ones: exact
 * attention to rounding for every variant and the average, which also shows that each query's
 * direct set and groups (as the library enumerates them) cover every allowed key once.  The causal
 * union reaches some keys twice and others once, so even its full oracle is not exact; the
 * bidirectional union reaches every key exactly twice (self through own row and own column), so
 * its full oracle is exact: a check of the code's term structure. */
static void oracle_full_is_exact(const attn_problem *pb, const double *Q, const double *K,
                                 const double *V, const char *what)
{
    const char *specs[] = {
        "combiner_axial:oracle=full",
        "combiner_axial:block=7,oracle=full",
        "combiner_axial:block=5,row_summary=none,oracle=full",
        "combiner_axial:variant=col,oracle=full",
        "combiner_axial:block=7,variant=col,pool=mean,oracle=full",
        "combiner_axial:variant=mixed,oracle=full",
        "combiner_axial:block=7,variant=mixed,oracle=full",
        "combiner_axial:mixture=average,oracle=full",
        "combiner_axial:block=7,mixture=average,pool=mean_log,oracle=full",
    };
    for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++)
        tu_expect_exact(specs[s], pb, Q, K, V, 1e-12, what);
    const char *un[] = { "combiner_axial:block=7,mixture=union,oracle=full",
                         "combiner_axial:mixture=union,pool=mean,oracle=full" };
    for (size_t s = 0; s < 2; s++) {
        double err = tu_error_vs_reference(un[s], pb, Q, K, V);
        if (pb->causal)
            cr_assert(err > 1e-3, "%s on %s (causal): error only %.3g", un[s], what, err);
        else
            cr_assert(err <= 1e-12, "%s on %s (bidirectional): error %.3g", un[s], what, err);
    }
}

Test(combiner_axial, oracle_full_reproduces_exact_attention)
{
    size_t n = 300, d = 13, dv = 7;
    double *Q, *K, *V;
    tu_random_qkv(n, n, d, dv, 21, &Q, &K, &V);
    for (int causal = 0; causal <= 1; causal++) {
        attn_problem pb = { .n = n, .m = n, .d = d, .dv = dv, .causal = causal };
        oracle_full_is_exact(&pb, Q, K, V, "random data");
    }
    free(Q);
    free(K);
    free(V);
    const double *q, *k, *v;
    attn_inputs *in = tu_load_head("data/ppocrv4-svtr-attn.h5", 1, 3, &q, &k, &v);
    for (int causal = 0; causal <= 1; causal++) {
        attn_problem pb = tu_inputs_problem(in, causal);
        oracle_full_is_exact(&pb, q, k, v, "data/ppocrv4-svtr-attn.h5 layer 1 head 3");
    }
    attn_inputs_destroy(in);
}

/* The mass oracle fixes only the group logits: better than nothing on random data, and exactly
 * the full oracle where local distributions are exact (groups of one position). */
Test(combiner_axial, oracle_mass_is_exact_where_local_distributions_are)
{
    size_t n = 31, d = 6, dv = 4;
    double *Q, *K, *V;
    tu_random_qkv(n, n, d, dv, 13, &Q, &K, &V);
    for (int causal = 0; causal <= 1; causal++) {
        attn_problem pb = { .n = n, .m = n, .d = d, .dv = dv, .causal = causal };
        tu_expect_exact("combiner_axial:block=2,variant=mixed,oracle=mass", &pb, Q, K, V, 1e-13,
                        NULL);
        tu_expect_exact("combiner_axial:block=1,variant=col,oracle=mass", &pb, Q, K, V, 1e-13,
                        NULL);
        expect_inexact("combiner_axial:block=5,variant=col,oracle=mass", &pb, Q, K, V);
    }
    free(Q);
    free(K);
    free(V);
}

/* ---------------------------------------------------------------------------------------------
 * Mixtures.
 */
Test(combiner_axial, union_and_average_differ_and_are_both_distributions)
{
    size_t n = 45, d = 5, dv = 3;
    double *Q, *K, *V;
    tu_random_qkv(n, n, d, dv, 41, &Q, &K, &V);
    for (int causal = 0; causal <= 1; causal++) {
        attn_problem pb = { .n = n, .m = n, .d = d, .dv = dv, .causal = causal };
        double *Aa = tu_materialize("combiner_axial:block=6,mixture=average", &pb, Q, K, V);
        double *Au = tu_materialize("combiner_axial:block=6,mixture=union", &pb, Q, K, V);
        double *Ac = tu_materialize("combiner_axial:block=6,variant=col", &pb, Q, K, V);
        double *Am = tu_materialize("combiner_axial:block=6,variant=mixed", &pb, Q, K, V);
        for (size_t i = 0; i < n; i++) {
            double sa = 0.0, su = 0.0;
            for (size_t j = 0; j < n; j++) {
                sa += Aa[i * n + j];
                su += Au[i * n + j];
                /* The average is the mean of the two plans' matrices. */
                double mean = 0.5 * (Ac[i * n + j] + Am[i * n + j]);
                cr_assert(fabs(Aa[i * n + j] - mean) <= 1e-15, "average at (%zu, %zu)", i, j);
            }
            cr_assert(fabs(sa - 1.0) <= 4.0 * n * DBL_EPSILON, "average row %zu: %.17g", i, sa);
            cr_assert(fabs(su - 1.0) <= 4.0 * n * DBL_EPSILON, "union row %zu: %.17g", i, su);
        }
        cr_assert(tu_max_abs_diff(Aa, Au, n * n) > 1e-3, "causal %d: union equals average",
                  causal);
        free(Aa);
        free(Au);
        free(Ac);
        free(Am);
    }
    free(Q);
    free(K);
    free(V);
}

/* ---------------------------------------------------------------------------------------------
 * Plan: spec, memory, bad input.
 */
Test(combiner_axial, auto_block_is_resolved_in_the_spec)
{
    attn_problem pb = { .n = 1000, .m = 1000, .d = 8, .dv = 8 };
    attn_plan *plan = tu_plan("combiner_axial", &pb);
    /* sqrt(1000) = 31.6: the power of two at or above it is 32. */
    cr_assert_str_eq(attn_plan_spec(plan), "combiner_axial:block=32,variant=row,mixture=none,"
                                           "row_summary=wsum,pool=max,oracle=none");
    attn_plan_destroy(plan);
}

/* Scratch is O(n (d + dv)) at every block, including the extremes (one column of n rows, one row
 * of n columns): nothing is n x n. */
Test(combiner_axial, scratch_is_linear_in_n)
{
    size_t n = 4096, d = 16, dv = 16;
    const char *specs[] = { "combiner_axial", "combiner_axial:block=1",
                            "combiner_axial:block=4096", "combiner_axial:variant=col",
                            "combiner_axial:block=1,variant=mixed",
                            "combiner_axial:block=4096,mixture=union",
                            "combiner_axial:mixture=average,oracle=full" };
    for (int causal = 0; causal <= 1; causal++)
        for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++) {
            attn_problem pb = { .n = n, .m = n, .d = d, .dv = dv, .causal = causal };
            attn_plan *plan = tu_plan(specs[s], &pb);
            attn_cost cost;
            attn_plan_cost(plan, &cost);
            double bound = 8.0 * (12.0 * (double) n * (double) (d + dv + 2) + 65536.0);
            cr_assert(cost.bytes <= bound, "%s: %g bytes of scratch, over %g", specs[s],
                      cost.bytes, bound);
            cr_assert(cost.flops > 0);
            attn_plan_destroy(plan);
        }
}

Test(combiner_axial, bad_parameters_are_named)
{
    attn_problem pb = { .n = 64, .m = 64, .d = 8, .dv = 8 };
    attn_plan *plan = NULL;
    cr_assert_eq(attn_plan_create(&plan, "combiner_axial:block=0", &pb), ATTN_EPARAM);
    cr_assert(tu_error_has("combiner_axial: parameter block = 0 is out of range [1, inf]"));
    cr_assert_eq(attn_plan_create(&plan, "combiner_axial:variant=diagonal", &pb), ATTN_EPARAM);
    cr_assert(tu_error_has("parameter variant = 'diagonal' is not one of {row, col, mixed}"));
    cr_assert_eq(attn_plan_create(&plan, "combiner_axial:mixture=sum", &pb), ATTN_EPARAM);
    cr_assert(tu_error_has("parameter mixture = 'sum' is not one of {none, average, union}"));
    cr_assert_eq(attn_plan_create(&plan, "combiner_axial:row_summary=proj", &pb), ATTN_EPARAM);
    cr_assert(tu_error_has("parameter row_summary = 'proj' is not one of {wsum, none}"));
    cr_assert_eq(attn_plan_create(&plan, "combiner_axial:variant=col,mixture=average", &pb),
                 ATTN_EPARAM);
    cr_assert(tu_error_has("combiner_axial: variant = col with mixture = average"));
    cr_assert_eq(attn_plan_create(&plan, "combiner_axial:variant=mixed,mixture=union", &pb),
                 ATTN_EPARAM);
    cr_assert(tu_error_has("variant = mixed with mixture = union"));
    cr_assert_eq(attn_plan_create(&plan, "combiner_axial:variant=col,row_summary=none", &pb),
                 ATTN_EPARAM);
    cr_assert(tu_error_has("row_summary = none applies only to variant = row"));
    cr_assert_eq(attn_plan_create(&plan, "combiner_axial:mixture=union,row_summary=none", &pb),
                 ATTN_EPARAM);
    cr_assert(tu_error_has("row_summary = none applies only to variant = row"));
    cr_assert_eq(attn_plan_create(&plan, "combiner_axial:pool=mean", &pb), ATTN_EPARAM);
    cr_assert(tu_error_has("pool = mean with variant = row"));
    cr_assert_null(plan);
    /* Rectangular problems have no 2-D layout shared by queries and keys. */
    attn_problem rect = { .n = 64, .m = 32, .d = 8, .dv = 8 };
    cr_assert_eq(attn_plan_create(&plan, "combiner_axial", &rect), ATTN_EUNSUP);
    cr_assert(tu_error_has("combiner_axial needs m == n"));
}
