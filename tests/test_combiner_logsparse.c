/* test_combiner_logsparse.c — Combiner-Logsparse: its partition, a hand-computed 8-token example,
 * full support, the oracles, the exact cases, the published code's level count and bad input.
 *
 * The partition of every row is rebuilt here from the definition (METHODS.md 1.2) by greedy binary
 * peeling, independently of lib/methods/combiner_logsparse.c, and a naive Combiner built on it
 * (small loops over the definition: direct logits, pooled keys and queries, local softmax, one
 * normalization) is the reference the materialized matrix is compared with.
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
 * The reference partition.
 */
typedef struct ref_block {
    size_t start, len;
} ref_block;

typedef struct ref_row {
    size_t lo, hi;          /* direct window [lo, hi] */
    size_t ngroups;
    ref_block groups[128];
} ref_row;

/* ceil(log2(x)) for x >= 1: the smallest L with 2^L >= x. */
static size_t ceil_log2(size_t x)
{
    size_t L = 0;
    while (((size_t) 1 << L) < x)
        L++;
    return L;
}

/* Peel [0, e) from the left, largest power of two first: the binary expansion of e read from its
 * top bit, each set bit l giving the next 2^l positions.  A block of one position joins the
 * direct set (returned through *single); blocks of level >= levels are dropped (the code's
 * count).  mirror maps position p to n - 1 - p (the right side of a bidirectional row). */
static void peel(size_t n, size_t e, size_t levels, int mirror, ref_row *row, int *single)
{
    size_t p = 0;
    *single = 0;
    for (size_t l = 64; l-- > 0;) {
        size_t len = (size_t) 1 << l;
        if (!(e & len))
            continue;
        if (l < levels) {
            if (l == 0) {
                *single = 1;
            } else {
                size_t start = mirror ? n - p - len : p;
                row->groups[row->ngroups++] = (ref_block){ start, len };
            }
        }
        p += len;
    }
}

static void ref_row_build(size_t n, size_t i, int causal, size_t local, int code, ref_row *row)
{
    size_t levels = code ? (n >= 2 ? ceil_log2(n - 1) : 0) : 64;
    int single;
    memset(row, 0, sizeof *row);
    size_t e = i > local ? i - local : 0;
    peel(n, e, levels, 0, row, &single);
    row->lo = e - (size_t) single;
    row->hi = i;
    if (!causal) {
        size_t r = n - 1 - i, er = r > local ? r - local : 0;
        peel(n, er, levels, 1, row, &single);
        row->hi = n - 1 - er + (size_t) single;
    }
}

/* ---------------------------------------------------------------------------------------------
 * The reference Combiner on a given partition (pool: 0 max, 1 mean, 2 mean_log).
 */
static void pool_rows(const double *X, size_t d, size_t start, size_t len, int pool, double *out)
{
    for (size_t c = 0; c < d; c++) {
        double acc = X[start * d + c];
        for (size_t j = start + 1; j < start + len; j++)
            acc = pool == 0 ? fmax(acc, X[j * d + c]) : acc + X[j * d + c];
        out[c] = pool == 0 ? acc : acc / (double) len;
    }
}

static double dot(const double *a, const double *b, size_t d)
{
    double s = 0.0;
    for (size_t c = 0; c < d; c++)
        s += a[c] * b[c];
    return s;
}

/* Row i of the Combiner matrix (n entries) for the partition row. */
static void ref_combiner_row(const ref_row *row, size_t n, size_t i, const double *Q,
                             const double *K, size_t d, double scale, int pool, double *A)
{
    double logit[2048 + 128];
    double kt[64], qt[64];
    cr_assert(d <= 64 && row->hi - row->lo + 1 + row->ngroups <= 2048 + 128);
    size_t t = 0;
    for (size_t j = row->lo; j <= row->hi; j++)
        logit[t++] = scale * dot(Q + i * d, K + j * d, d);
    for (size_t g = 0; g < row->ngroups; g++) {
        pool_rows(K, d, row->groups[g].start, row->groups[g].len, pool, kt);
        logit[t++] = scale * dot(Q + i * d, kt, d) +
                     (pool == 2 ? log((double) row->groups[g].len) : 0.0);
    }
    double mx = -INFINITY, Z = 0.0;
    for (size_t u = 0; u < t; u++)
        mx = fmax(mx, logit[u]);
    for (size_t u = 0; u < t; u++)
        Z += exp(logit[u] - mx);
    memset(A, 0, n * sizeof *A);
    t = 0;
    for (size_t j = row->lo; j <= row->hi; j++)
        A[j] = exp(logit[t++] - mx) / Z;
    for (size_t g = 0; g < row->ngroups; g++) {
        size_t start = row->groups[g].start, len = row->groups[g].len;
        double mass = exp(logit[t++] - mx) / Z;
        pool_rows(Q, d, start, len, pool, qt);
        double lmx = -INFINITY, lz = 0.0;
        for (size_t j = start; j < start + len; j++)
            lmx = fmax(lmx, scale * dot(qt, K + j * d, d));
        for (size_t j = start; j < start + len; j++)
            lz += exp(scale * dot(qt, K + j * d, d) - lmx);
        for (size_t j = start; j < start + len; j++)
            A[j] = mass * exp(scale * dot(qt, K + j * d, d) - lmx) / lz;
    }
}

/* ---------------------------------------------------------------------------------------------
 * Random inputs with their problem.
 */
typedef struct inputs {
    attn_problem pb;
    double *Q, *K, *V;
} inputs;

static inputs random_inputs(size_t n, size_t d, size_t dv, int causal, unsigned long seed)
{
    inputs in = { .pb = { .n = n, .m = n, .d = d, .dv = dv, .causal = causal } };
    tu_random_qkv(n, n, d, dv, seed, &in.Q, &in.K, &in.V);
    return in;
}

static void inputs_free(inputs *in)
{
    free(in->Q);
    free(in->K);
    free(in->V);
}

static const char *const pools[] = { "max", "mean", "mean_log" };

/* ---------------------------------------------------------------------------------------------
 * The partition.
 */

/* The reference partition covers the support exactly once with aligned dyadic blocks of at least
 * two positions, at most one per level and side. */
Test(logsparse, reference_partition_is_exact)
{
    size_t sizes[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 15, 16, 17, 31, 33, 63, 64, 65, 100, 129,
                       255, 257, 1000, 1025 };
    size_t locals[] = { 0, 1, 2, 5 };
    static ref_row row;
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (int causal = 0; causal <= 1; causal++)
            for (size_t li = 0; li < 4; li++) {
                size_t n = sizes[s], local = locals[li];
                unsigned char *hits = calloc(n, 1);
                cr_assert_not_null(hits);
                for (size_t i = 0; i < n; i++) {
                    ref_row_build(n, i, causal, local, 0, &row);
                    memset(hits, 0, n);
                    for (size_t j = row.lo; j <= row.hi; j++)
                        hits[j]++;
                    size_t per_level[2][64] = { { 0 } };
                    for (size_t g = 0; g < row.ngroups; g++) {
                        ref_block b = row.groups[g];
                        int right = b.start > i;
                        size_t l = 0;
                        while (((size_t) 1 << l) < b.len)
                            l++;
                        cr_assert(b.len == (size_t) 1 << l && l >= 1, "n %zu row %zu", n, i);
                        /* Aligned: left blocks from 0, right blocks from n, at multiples of
                         * 2^(l+1). */
                        size_t offset = right ? n - b.start - b.len : b.start;
                        cr_assert(offset % (2 * b.len) == 0, "n %zu row %zu block at %zu", n, i,
                                  b.start);
                        cr_assert(++per_level[right][l] == 1);
                        for (size_t j = b.start; j < b.start + b.len; j++)
                            hits[j]++;
                    }
                    size_t end = causal ? i + 1 : n;
                    for (size_t j = 0; j < n; j++)
                        cr_assert(hits[j] == (j < end),
                                  "n = %zu, causal = %d, local = %zu, row %zu: key %zu covered "
                                  "%d times",
                                  n, causal, local, i, j, hits[j]);
                }
                free(hits);
            }
}

/* The implementation's partition.  With Q = 0 every logit is 0 and with pool = mean_log a group
 * G enters with weight |G| spread uniformly over its keys, so row i of the matrix is 1/Z on
 * every key it covers, Z = the number of covered keys counted with multiplicity: exactly
 * 1/(allowed keys) on each allowed key if and only if the row's direct set and groups partition
 * the support (a missed key gives 0, a key counted twice 2/Z). */
static void check_partition(size_t n, int causal, size_t local)
{
    size_t d = 3, dv = 2;
    attn_problem pb = { .n = n, .m = n, .d = d, .dv = dv, .causal = causal };
    double *Q = tu_alloc(n * d), *K = tu_alloc(n * d), *V = tu_alloc(n * dv);
    tu_fill_gauss(K, n * d, n, 1.0);
    tu_fill_gauss(V, n * dv, n + 1, 1.0);
    char spec[128];
    snprintf(spec, sizeof spec, "combiner_logsparse:local=%zu,pool=mean_log", local);
    double *A = tu_materialize(spec, &pb, Q, K, V);
    for (size_t i = 0; i < n; i++) {
        size_t allowed = causal ? i + 1 : n;
        for (size_t j = 0; j < n; j++) {
            double expect = j < allowed ? 1.0 / (double) allowed : 0.0;
            cr_assert(fabs(A[i * n + j] - expect) <= 8.0 * DBL_EPSILON * expect,
                      "n = %zu, causal = %d, local = %zu: A[%zu][%zu] = %.17g, expected %.17g",
                      n, causal, local, i, j, A[i * n + j], expect);
        }
    }
    free(A);
    free(Q);
    free(K);
    free(V);
}

Test(logsparse, partition_many_n)
{
    for (size_t n = 1; n <= 70; n++)
        for (int causal = 0; causal <= 1; causal++) {
            check_partition(n, causal, 0);
            check_partition(n, causal, 3);
        }
    size_t sizes[] = { 100, 129, 255, 257, 300, 1025 };
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (int causal = 0; causal <= 1; causal++)
            check_partition(sizes[s], causal, 0);
    check_partition(1025, 1, 7);
    check_partition(1000, 0, 2);
}

/* The whole matrix against the naive Combiner on the reference partition, on random data. */
Test(logsparse, matrix_matches_reference_combiner)
{
    size_t sizes[] = { 8, 17, 33, 50, 64, 101 };
    size_t locals[] = { 0, 1, 4 };
    static ref_row row;
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (int causal = 0; causal <= 1; causal++)
            for (size_t li = 0; li < 3; li++)
                for (int pool = 0; pool < 3; pool++) {
                    size_t n = sizes[s];
                    inputs in = random_inputs(n, 5, 3, causal, 100 + n);
                    char spec[128];
                    snprintf(spec, sizeof spec, "combiner_logsparse:local=%zu,pool=%s",
                             locals[li], pools[pool]);
                    double *A = tu_materialize(spec, &in.pb, in.Q, in.K, in.V);
                    double *R = tu_alloc(n);
                    double scale = 1.0 / sqrt(5.0);
                    for (size_t i = 0; i < n; i++) {
                        ref_row_build(n, i, causal, locals[li], 0, &row);
                        ref_combiner_row(&row, n, i, in.Q, in.K, 5, scale, pool, R);
                        double err = tu_max_abs_diff(A + i * n, R, n);
                        cr_assert(err <= 1e-13, "%s, n = %zu, causal = %d, row %zu: max diff %.3g",
                                  spec, n, causal, i, err);
                    }
                    free(R);
                    free(A);
                    inputs_free(&in);
                }
}

/* ---------------------------------------------------------------------------------------------
 * The hand-computed 8-token example.
 *
 * Partitions for n = 8, local = 0 (0-indexed; D = direct set, G = groups), derived from the
 * binary expansion of i (causal, left side: bit l >= 1 of i gives [a, a + 2^l) with
 * a = floor(i / 2^(l+1)) 2^(l+1); bit 0 puts i - 1 into D) and of r = 7 - i mirrored (right side):
 *
 *   causal                                    bidirectional
 *   i  i(bin)  D       G                      r = 7 - i   D        G
 *   0  000     {0}     -                      111         {0,1}    [2,4) [4,8)
 *   1  001     {0,1}   -                      110         {0,1}    [2,4) [4,8)
 *   2  010     {2}     [0,2)                  101         {2,3}    [0,2) [4,8)
 *   3  011     {2,3}   [0,2)                  100         {2,3}    [0,2) [4,8)
 *   4  100     {4}     [0,4)                  011         {4,5}    [0,4) [6,8)
 *   5  101     {4,5}   [0,4)                  010         {4,5}    [0,4) [6,8)
 *   6  110     {6}     [0,4) [4,6)            001         {6,7}    [0,4) [4,6)
 *   7  111     {6,7}   [0,4) [4,6)            000         {6,7}    [0,4) [4,6)
 *
 * e.g. bidirectional i = 0: r = 7 = 111b; bit 0 adds position 7 - 6 = 1 to D, bit 1 gives the
 * reversed block [4, 6) = positions [2, 4), bit 2 the reversed [0, 4) = positions [4, 8).
 */
typedef struct hand_row {
    size_t lo, hi;
    size_t ngroups;
    ref_block groups[2];
} hand_row;

static const hand_row hand_causal[8] = {
    { 0, 0, 0, { { 0 } } },        { 0, 1, 0, { { 0 } } },
    { 2, 2, 1, { { 0, 2 } } },     { 2, 3, 1, { { 0, 2 } } },
    { 4, 4, 1, { { 0, 4 } } },     { 4, 5, 1, { { 0, 4 } } },
    { 6, 6, 2, { { 0, 4 }, { 4, 2 } } }, { 6, 7, 2, { { 0, 4 }, { 4, 2 } } },
};

static const hand_row hand_bidir[8] = {
    { 0, 1, 2, { { 2, 2 }, { 4, 4 } } }, { 0, 1, 2, { { 2, 2 }, { 4, 4 } } },
    { 2, 3, 2, { { 0, 2 }, { 4, 4 } } }, { 2, 3, 2, { { 0, 2 }, { 4, 4 } } },
    { 4, 5, 2, { { 0, 4 }, { 6, 2 } } }, { 4, 5, 2, { { 0, 4 }, { 6, 2 } } },
    { 6, 7, 2, { { 0, 4 }, { 4, 2 } } }, { 6, 7, 2, { { 0, 4 }, { 4, 2 } } },
};

static void hand_to_ref(const hand_row *h, ref_row *row)
{
    memset(row, 0, sizeof *row);
    row->lo = h->lo;
    row->hi = h->hi;
    row->ngroups = h->ngroups;
    for (size_t g = 0; g < h->ngroups; g++)
        row->groups[g] = h->groups[g];
}

/* The table above is what the peeling construction gives (two derivations agree). */
Test(logsparse, hand_table_matches_definition)
{
    static ref_row row;
    for (int causal = 0; causal <= 1; causal++)
        for (size_t i = 0; i < 8; i++) {
            const hand_row *h = causal ? &hand_causal[i] : &hand_bidir[i];
            ref_row_build(8, i, causal, 0, 0, &row);
            cr_assert(row.lo == h->lo && row.hi == h->hi && row.ngroups == h->ngroups,
                      "causal %d row %zu", causal, i);
            for (size_t g = 0; g < h->ngroups; g++) {
                int found = 0;
                for (size_t t = 0; t < row.ngroups; t++)
                    found |= row.groups[t].start == h->groups[g].start &&
                             row.groups[t].len == h->groups[g].len;
                cr_assert(found, "causal %d row %zu group %zu", causal, i, g);
            }
        }
}

/* Closed form with Q = 0: every logit (direct, group, local) is 0 and pool = max adds no bias, so
 * each of the |D| + |G-count| terms of row i gets 1/Z, Z = |D| + number of groups, and a group's
 * share is spread evenly over its keys.  Written out for the causal rows:
 *   row 0: 1 on key 0                     row 1: 1/2, 1/2
 *   row 2: Z = 2: key 2 gets 1/2, keys 0,1 get 1/4 each
 *   row 3: Z = 3: keys 2,3 get 1/3, keys 0,1 get 1/6
 *   row 4: Z = 2: key 4 gets 1/2, keys 0..3 get 1/8
 *   row 5: Z = 3: keys 4,5 get 1/3, keys 0..3 get 1/12
 *   row 6: Z = 3: key 6 gets 1/3, keys 4,5 get 1/6, keys 0..3 get 1/12
 *   row 7: Z = 4: keys 6,7 get 1/4, keys 4,5 get 1/8, keys 0..3 get 1/16
 * and for the bidirectional rows (Z = 4 each: two direct keys, two groups):
 *   rows 0,1: keys 0,1 get 1/4, keys 2,3 get 1/8, keys 4..7 get 1/16
 *   rows 2,3: keys 2,3 get 1/4, keys 0,1 get 1/8, keys 4..7 get 1/16
 *   rows 4,5: keys 4,5 get 1/4, keys 6,7 get 1/8, keys 0..3 get 1/16
 *   rows 6,7: keys 6,7 get 1/4, keys 4,5 get 1/8, keys 0..3 get 1/16 */
static const double closed_causal[8][8] = {
    { 1, 0, 0, 0, 0, 0, 0, 0 },
    { 1. / 2, 1. / 2, 0, 0, 0, 0, 0, 0 },
    { 1. / 4, 1. / 4, 1. / 2, 0, 0, 0, 0, 0 },
    { 1. / 6, 1. / 6, 1. / 3, 1. / 3, 0, 0, 0, 0 },
    { 1. / 8, 1. / 8, 1. / 8, 1. / 8, 1. / 2, 0, 0, 0 },
    { 1. / 12, 1. / 12, 1. / 12, 1. / 12, 1. / 3, 1. / 3, 0, 0 },
    { 1. / 12, 1. / 12, 1. / 12, 1. / 12, 1. / 6, 1. / 6, 1. / 3, 0 },
    { 1. / 16, 1. / 16, 1. / 16, 1. / 16, 1. / 8, 1. / 8, 1. / 4, 1. / 4 },
};
static const double closed_bidir[8][8] = {
    { 1. / 4, 1. / 4, 1. / 8, 1. / 8, 1. / 16, 1. / 16, 1. / 16, 1. / 16 },
    { 1. / 4, 1. / 4, 1. / 8, 1. / 8, 1. / 16, 1. / 16, 1. / 16, 1. / 16 },
    { 1. / 8, 1. / 8, 1. / 4, 1. / 4, 1. / 16, 1. / 16, 1. / 16, 1. / 16 },
    { 1. / 8, 1. / 8, 1. / 4, 1. / 4, 1. / 16, 1. / 16, 1. / 16, 1. / 16 },
    { 1. / 16, 1. / 16, 1. / 16, 1. / 16, 1. / 4, 1. / 4, 1. / 8, 1. / 8 },
    { 1. / 16, 1. / 16, 1. / 16, 1. / 16, 1. / 4, 1. / 4, 1. / 8, 1. / 8 },
    { 1. / 16, 1. / 16, 1. / 16, 1. / 16, 1. / 8, 1. / 8, 1. / 4, 1. / 4 },
    { 1. / 16, 1. / 16, 1. / 16, 1. / 16, 1. / 8, 1. / 8, 1. / 4, 1. / 4 },
};

/* With V = I (dv = 8) apply's output rows are the attention rows. */
static double *apply_identity(const char *spec, int causal, const double *Q, const double *K,
                              size_t d)
{
    double V[64] = { 0 };
    for (size_t j = 0; j < 8; j++)
        V[j * 8 + j] = 1.0;
    attn_problem pb = { .n = 8, .m = 8, .d = d, .dv = 8, .causal = causal };
    return tu_apply(spec, &pb, Q, K, V);
}

Test(logsparse, hand_example_closed_form)
{
    double Q[8 * 2] = { 0 };
    double K[8 * 2] = { 0.3, -1.2, 2.385, 0.7, -0.45, 1.9, 1.1, -2.2,
                        0.05, 0.6, -1.7, -0.33, 0.8, 1.4, -0.9, 0.25 };
    for (int causal = 0; causal <= 1; causal++) {
        double *O = apply_identity("combiner_logsparse:pool=max", causal, Q, K, 2);
        const double (*expect)[8] = causal ? closed_causal : closed_bidir;
        for (size_t i = 0; i < 8; i++)
            for (size_t j = 0; j < 8; j++)
                cr_assert(fabs(O[i * 8 + j] - expect[i][j]) <= 4 * DBL_EPSILON,
                          "causal %d: A[%zu][%zu] = %.17g, expected %.17g", causal, i, j,
                          O[i * 8 + j], expect[i][j]);
        free(O);
    }
}

/* Nonzero queries: the expected rows are built by ref_combiner_row on the hand-written table:
 * direct entries exp(s q_i . k_j) / Z; group G gets exp(s q_i . k~_G + b_G) / Z spread by
 * softmax_{j in G}(s q~_G . k_j), with k~, q~ the max (or mean) of the block's keys and queries
 * and b_G = log |G| for mean_log; Z normalizes direct and group terms together. */
Test(logsparse, hand_example_random)
{
    const size_t d = 3;
    double Q[8 * 3] = { 0.9, -1.3, 0.4, 2.385, 0.2, -0.7, -1.1, 1.6, 0.35, 0.05, -0.6, 1.8,
                        1.45, 0.95, -2.1, -0.4, -1.9, 0.75, 0.6, 1.2, 1.05, -1.5, 0.1, -0.25 };
    double K[8 * 3] = { -0.2, 1.1, 0.6, 1.7, -0.8, 0.3, 0.45, 0.55, -1.4, -1.25, -0.3, 0.9,
                        0.15, 2.0, -0.5, 0.8, -1.6, 1.3, -0.65, 0.4, 0.2, 1.35, 0.7, -1.05 };
    static ref_row row;
    double R[8];
    for (int causal = 0; causal <= 1; causal++)
        for (int pool = 0; pool < 3; pool++) {
            char spec[64];
            snprintf(spec, sizeof spec, "combiner_logsparse:pool=%s", pools[pool]);
            double *O = apply_identity(spec, causal, Q, K, d);
            for (size_t i = 0; i < 8; i++) {
                hand_to_ref(causal ? &hand_causal[i] : &hand_bidir[i], &row);
                ref_combiner_row(&row, 8, i, Q, K, d, 1.0 / sqrt((double) d), pool, R);
                double sum = 0.0;
                for (size_t j = 0; j < 8; j++) {
                    cr_assert(fabs(O[i * 8 + j] - R[j]) <= 1e-15,
                              "%s causal %d: A[%zu][%zu] = %.17g, expected %.17g", spec,
                              causal, i, j, O[i * 8 + j], R[j]);
                    sum += R[j];
                }
                cr_assert(fabs(sum - 1.0) <= 1e-15);
            }
            free(O);
        }
}

/* ---------------------------------------------------------------------------------------------
 * Support, oracles, exactness.
 */

Test(logsparse, full_support)
{
    size_t sizes[] = { 8, 17, 100, 257 };
    for (size_t s = 0; s < 4; s++)
        for (int causal = 0; causal <= 1; causal++)
            for (int pool = 0; pool < 3; pool++) {
                size_t n = sizes[s];
                inputs in = random_inputs(n, 7, 4, causal, 7 * n);
                char spec[64];
                snprintf(spec, sizeof spec, "combiner_logsparse:pool=%s", pools[pool]);
                double *A = tu_materialize(spec, &in.pb, in.Q, in.K, in.V);
                for (size_t i = 0; i < n; i++) {
                    double sum = 0.0;
                    for (size_t j = 0; j < n; j++) {
                        double a = A[i * n + j];
                        if (causal && j > i)
                            cr_assert(a == 0.0, "%s n %zu: A[%zu][%zu] = %g above the diagonal",
                                      spec, n, i, j, a);
                        else
                            cr_assert(a > 0.0, "%s n %zu causal %d: A[%zu][%zu] = %g", spec, n,
                                      causal, i, j, a);
                        sum += a;
                    }
                    cr_assert(fabs(sum - 1.0) <= 4.0 * (double) n * DBL_EPSILON);
                }
                free(A);
                inputs_free(&in);
            }
}

Test(logsparse, oracle_full_is_exact_random)
{
    size_t sizes[] = { 2, 3, 17, 33, 200, 1025 };
    const char *specs[] = { "combiner_logsparse:oracle=full",
                            "combiner_logsparse:oracle=full,pool=mean_log,local=3",
                            "combiner_logsparse:oracle=full,pool=mean,local=1" };
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (int causal = 0; causal <= 1; causal++)
            for (size_t t = 0; t < 3; t++) {
                inputs in = random_inputs(sizes[s], 16, 9, causal, 5 + sizes[s]);
                tu_expect_exact(specs[t], &in.pb, in.Q, in.K, in.V, 1e-12, NULL);
                inputs_free(&in);
            }
}

Test(logsparse, oracle_full_is_exact_real_data)
{
    attn_inputs *data = tu_read_inputs("data/stories260k-attn.h5", 0);
    for (int causal = 0; causal <= 1; causal++)
        for (size_t l = 0; l < data->layers; l++)
            for (size_t h = 0; h < data->heads; h++) {
                const double *q, *k, *v;
                attn_inputs_head(data, l, h, &q, &k, &v);
                attn_problem pb = tu_inputs_problem(data, causal);
                double err = tu_error_vs_reference("combiner_logsparse:oracle=full", &pb, q, k, v);
                cr_assert(err <= 1e-12, "layer %zu head %zu causal %d: error %.3g", l, h, causal,
                          err);
            }
    attn_inputs_destroy(data);
}

/* Keys constant on every block some row uses as a group: the blocks are nested or disjoint
 * (dyadic) within each side, but forward and mirrored blocks can straddle each other, so the
 * classes of equal keys are the connected unions of all used blocks. */
static void constant_keys_on_groups(size_t n, int causal, size_t local, double *K, size_t d)
{
    static ref_row row;
    size_t *cls = calloc(n, sizeof *cls);
    cr_assert_not_null(cls);
    for (size_t j = 0; j < n; j++)
        cls[j] = j;
    for (size_t i = 0; i < n; i++) {
        ref_row_build(n, i, causal, local, 0, &row);
        for (size_t g = 0; g < row.ngroups; g++) {
            ref_block b = row.groups[g];
            /* Join the block to the class of its first key: relabel every key of the other
             * classes it touches (small n, quadratic is fine). */
            for (size_t j = b.start + 1; j < b.start + b.len; j++) {
                size_t from = cls[j], to = cls[b.start];
                if (from != to)
                    for (size_t t = 0; t < n; t++)
                        if (cls[t] == from)
                            cls[t] = to;
            }
        }
    }
    for (size_t j = 0; j < n; j++)
        if (cls[j] != j)
            memcpy(K + j * d, K + cls[j] * d, d * sizeof *K);
    free(cls);
}

Test(logsparse, mean_log_exact_when_keys_constant_on_groups)
{
    size_t sizes[] = { 8, 16, 37, 100 };
    for (size_t s = 0; s < 4; s++)
        for (int causal = 0; causal <= 1; causal++)
            for (size_t local = 0; local <= 2; local += 2) {
                size_t n = sizes[s];
                inputs in = random_inputs(n, 6, 5, causal, 3 * n + local);
                constant_keys_on_groups(n, causal, local, in.K, 6);
                char spec[96];
                snprintf(spec, sizeof spec, "combiner_logsparse:pool=mean_log,local=%zu", local);
                tu_expect_exact(spec, &in.pb, in.Q, in.K, in.V, 1e-12, NULL);
                /* Without the log |G| term the group mass is wrong: the case is not vacuous. */
                snprintf(spec, sizeof spec, "combiner_logsparse:pool=mean,local=%zu", local);
                double err = tu_error_vs_reference(spec, &in.pb, in.Q, in.K, in.V);
                cr_assert(err > 1e-6, "%s n %zu causal %d: error %.3g", spec, n, causal, err);
                /* The local distribution is exact here, so the mass oracle is exact with any
                 * pooling, even max. */
                snprintf(spec, sizeof spec, "combiner_logsparse:pool=max,oracle=mass,local=%zu",
                         local);
                tu_expect_exact(spec, &in.pb, in.Q, in.K, in.V, 1e-12, NULL);
                inputs_free(&in);
            }
}

/* All queries equal: the pooled query of every block (max or mean of equal rows) is every
 * query, so the local distribution is the exact within-group one and the mass oracle is exact;
 * without the oracle the pooled group logit is not the group mass. */
Test(logsparse, oracle_mass_exact_when_queries_equal)
{
    size_t sizes[] = { 9, 33, 150 };
    for (size_t s = 0; s < 3; s++)
        for (int causal = 0; causal <= 1; causal++)
            for (int pool = 0; pool < 3; pool++) {
                size_t n = sizes[s], d = 5;
                inputs in = random_inputs(n, d, 4, causal, 11 * n);
                for (size_t i = 1; i < n; i++)
                    memcpy(in.Q + i * d, in.Q, d * sizeof *in.Q);
                char spec[96];
                snprintf(spec, sizeof spec, "combiner_logsparse:pool=%s,oracle=mass",
                         pools[pool]);
                tu_expect_exact(spec, &in.pb, in.Q, in.K, in.V, 1e-12, NULL);
                snprintf(spec, sizeof spec, "combiner_logsparse:pool=%s", pools[pool]);
                double err = tu_error_vs_reference(spec, &in.pb, in.Q, in.K, in.V);
                cr_assert(err > 1e-6, "%s n %zu causal %d: error %.3g", spec, n, causal, err);
                inputs_free(&in);
            }
}

Test(logsparse, exact_when_everything_is_direct)
{
    /* local >= n - 1 puts every allowed key in the direct set; n <= 2 has no groups at all. */
    size_t sizes[] = { 1, 2, 5, 64, 130 };
    for (size_t s = 0; s < 5; s++)
        for (int causal = 0; causal <= 1; causal++) {
            size_t n = sizes[s];
            inputs in = random_inputs(n, 8, 3, causal, n + 17);
            char spec[96];
            snprintf(spec, sizeof spec, "combiner_logsparse:local=%zu", n > 1 ? n - 1 : 0);
            tu_expect_exact(spec, &in.pb, in.Q, in.K, in.V, 1e-12, NULL);
            tu_expect_exact("combiner_logsparse:local=100000", &in.pb, in.Q, in.K, in.V, 1e-12,
                            NULL);
            if (n <= 2)
                tu_expect_exact("combiner_logsparse", &in.pb, in.Q, in.K, in.V, 1e-12, NULL);
            inputs_free(&in);
        }
}

Test(logsparse, pool_variants_have_finite_error)
{
    const double *q, *k, *v;
    attn_inputs *data = tu_load_head("data/stories260k-attn.h5", 2, 0, &q, &k, &v);
    const char *oracles[] = { "none", "mass" };
    for (int causal = 0; causal <= 1; causal++)
        for (int pool = 0; pool < 3; pool++)
            for (int o = 0; o < 2; o++) {
                char spec[96];
                snprintf(spec, sizeof spec, "combiner_logsparse:pool=%s,oracle=%s", pools[pool],
                         oracles[o]);
                attn_problem pb = tu_inputs_problem(data, causal);
                double err = tu_error_vs_reference(spec, &pb, q, k, v);
                /* Finite, and not zero (nothing here makes the factorization exact).  Max
                 * pooling can exceed 1 relative on this sharp head: METHODS.md 1.7. */
                cr_assert(isfinite(err) && err > 0.0, "%s real causal %d: %.3g", spec, causal,
                          err);
                inputs in = random_inputs(300, 16, 8, causal, 99);
                err = tu_error_vs_reference(spec, &in.pb, in.Q, in.K, in.V);
                cr_assert(isfinite(err) && err > 0.0, "%s random causal %d: %.3g", spec, causal,
                          err);
                inputs_free(&in);
            }
    attn_inputs_destroy(data);
}

/* ---------------------------------------------------------------------------------------------
 * The published code's level count.
 */
Test(logsparse, code_levels_drop_the_top_block)
{
    /* n = 17: n - 1 = 16 = 2^4, the code forms ceil(log2 16) = 4 levels (blocks up to 8), so the
     * last row (i = 16 = 10000b) loses its left block [0, 16) and has D = {16}: it attends to
     * itself only, causal and bidirectional.  The bidirectional mirror does the same to row 0
     * (r = 16).  Every other row is the paper's. */
    size_t n = 17;
    for (int causal = 0; causal <= 1; causal++) {
        inputs in = random_inputs(n, 4, 3, causal, 71);
        double *P = tu_materialize("combiner_logsparse", &in.pb, in.Q, in.K, in.V);
        double *C = tu_materialize("combiner_logsparse:levels=code", &in.pb, in.Q, in.K, in.V);
        size_t lonely = n - 1;
        for (size_t i = 0; i < n; i++) {
            double sum = 0.0;
            for (size_t j = 0; j < n; j++) {
                sum += C[i * n + j];
                if (i == lonely || (!causal && i == 0))
                    cr_assert(C[i * n + j] == (j == i ? 1.0 : 0.0), "causal %d: C[%zu][%zu] = %g",
                              causal, i, j, C[i * n + j]);
                else
                    cr_assert(C[i * n + j] == P[i * n + j], "causal %d: row %zu differs", causal,
                              i);
            }
            cr_assert(fabs(sum - 1.0) <= 4.0 * (double) n * DBL_EPSILON);
        }
        /* The paper's count reaches every key of those rows. */
        for (size_t j = 0; j < n; j++) {
            cr_assert(P[lonely * n + j] > 0.0);
            cr_assert(causal || P[j] > 0.0);
        }
        free(P);
        free(C);
        inputs_free(&in);
    }
    /* When n - 1 is not a power of two the counts agree (here n = 16, 18, 100), and local >= 1
     * never needs the top block. */
    size_t sizes[] = { 16, 18, 100 };
    for (size_t s = 0; s < 3; s++) {
        inputs in = random_inputs(sizes[s], 4, 3, 1, 72);
        double *P = tu_apply("combiner_logsparse", &in.pb, in.Q, in.K, in.V);
        double *C = tu_apply("combiner_logsparse:levels=code", &in.pb, in.Q, in.K, in.V);
        cr_assert(memcmp(P, C, sizes[s] * 3 * sizeof *P) == 0, "n = %zu", sizes[s]);
        free(P);
        free(C);
        inputs_free(&in);
    }
    inputs in = random_inputs(33, 4, 3, 1, 73);
    double *P = tu_apply("combiner_logsparse:local=1", &in.pb, in.Q, in.K, in.V);
    double *C = tu_apply("combiner_logsparse:local=1,levels=code", &in.pb, in.Q, in.K, in.V);
    cr_assert(memcmp(P, C, 33 * 3 * sizeof *P) == 0);
    free(P);
    free(C);
    inputs_free(&in);
}

/* ---------------------------------------------------------------------------------------------
 * Plan properties and bad input.
 */
Test(logsparse, canonical_spec_and_exact_limit)
{
    attn_problem pb = { .n = 100, .m = 100, .d = 8, .dv = 8, .causal = 1 };
    attn_plan *plan = tu_plan("combiner_logsparse", &pb);
    cr_assert_str_eq(attn_plan_spec(plan),
                     "combiner_logsparse:local=0,pool=max,oracle=none,levels=paper");
    attn_plan_destroy(plan);
    char spec[128];
    cr_assert_eq(attn_method_exact_spec(attn_method_find("combiner_logsparse"), &pb, spec,
                                        sizeof spec),
                 ATTN_OK);
    cr_assert_str_eq(spec, "combiner_logsparse:local=99,pool=max,oracle=none,levels=paper");
}

/* Memory O(n (d + dv)) and flops O(n log n (d + dv)): doubling n at most doubles the plan's
 * bytes (plus the fixed tile scratch) and multiplies flops by about 2 (1 + 1 / log2 n). */
Test(logsparse, cost_is_n_log_n)
{
    attn_cost c1, c2;
    for (int causal = 0; causal <= 1; causal++) {
        attn_problem pb = { .n = 4096, .m = 4096, .d = 64, .dv = 64, .causal = causal };
        attn_plan *plan = tu_plan("combiner_logsparse", &pb);
        attn_plan_cost(plan, &c1);
        attn_plan_destroy(plan);
        pb.n = pb.m = 8192;
        plan = tu_plan("combiner_logsparse", &pb);
        attn_plan_cost(plan, &c2);
        attn_plan_destroy(plan);
        cr_assert(c2.bytes <= 2.0 * c1.bytes, "bytes %g -> %g", c1.bytes, c2.bytes);
        cr_assert(c2.bytes <= 8.0 * 2.0 * 8192 * (64 + 64 + 1) + 1e6, "bytes %g", c2.bytes);
        double ratio = c2.flops / c1.flops;
        cr_assert(ratio > 2.0 && ratio < 2.3, "flops ratio %g", ratio);
    }
}

Test(logsparse, bad_input_messages)
{
    attn_problem pb = { .n = 16, .m = 16, .d = 4, .dv = 4, .causal = 1 };
    attn_plan *plan = NULL;
    cr_assert_eq(attn_plan_create(&plan, "combiner_logsparse:pool=median", &pb), ATTN_EPARAM);
    cr_assert_null(plan);
    cr_assert(tu_error_has("pool") && tu_error_has("median") && tu_error_has("mean_log"));
    cr_assert_eq(attn_plan_create(&plan, "combiner_logsparse:local=-1", &pb), ATTN_EPARAM);
    cr_assert(tu_error_has("local") && tu_error_has("-1") && tu_error_has("out of range"));
    cr_assert_eq(attn_plan_create(&plan, "combiner_logsparse:local=2.5", &pb), ATTN_EPARAM);
    cr_assert(tu_error_has("local") && tu_error_has("2.5") && tu_error_has("integer"));
    cr_assert_eq(attn_plan_create(&plan, "combiner_logsparse:levels=floor", &pb), ATTN_EPARAM);
    cr_assert(tu_error_has("levels") && tu_error_has("floor") && tu_error_has("paper"));
    cr_assert_eq(attn_plan_create(&plan, "combiner_logsparse:oracle=perfect", &pb), ATTN_EPARAM);
    cr_assert(tu_error_has("oracle") && tu_error_has("perfect"));
    cr_assert_eq(attn_plan_create(&plan, "combiner_logsparse:block=4", &pb), ATTN_EPARAM);
    cr_assert(tu_error_has("block") && tu_error_has("local"));
    /* m != n is not a Combiner-Logsparse problem (positions index both queries and keys). */
    attn_problem rect = { .n = 16, .m = 20, .d = 4, .dv = 4, .causal = 0 };
    cr_assert_eq(attn_plan_create(&plan, "combiner_logsparse", &rect), ATTN_EUNSUP);
    cr_assert(tu_error_has("combiner_logsparse") && tu_error_has("m == n"));
    cr_assert_null(plan);
}
