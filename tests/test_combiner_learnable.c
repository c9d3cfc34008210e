/* test_combiner_learnable.c — Combiner-Learnable (spherical k-means clusters of the keys): the
 * partition property in both forms, the clustering on keys whose clusters are known, a
 * hand-derived 8-token example, full support, seeds, the cases where the factorization is exact,
 * the oracles on random and real data, causality with large clusters, and bad input.  Every
 * method also runs through test_contract.c. */
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

/* The Combiner matrix (Ren et al. eq. 8) for a given partition cluster[0..n), written from the
 * definition with plain loops and nothing of the library: for query i the allowed keys are
 * j <= i (causal) or all; the direct set is the allowed part of i's cluster; every other cluster's
 * allowed part G is a group with pooled key k~ and query q~ (coordinate-wise max or mean), group
 * logit s q_i.k~ (+ log|G| for mean_log) and local distribution softmax_{j in G}(s q~.k_j); one
 * softmax over the direct logits and the group logits. */
enum { POOL_MAX, POOL_MEAN, POOL_MEAN_LOG };

static double dot(const double *a, const double *b, size_t d)
{
    double s = 0.0;
    for (size_t c = 0; c < d; c++)
        s += a[c] * b[c];
    return s;
}

static void reference_matrix(size_t n, size_t d, double s, const double *Q, const double *K,
                             const size_t *cluster, size_t nclusters, int causal, int pool,
                             double *A)
{
    double *kt = tu_alloc(d), *qt = tu_alloc(d), *logit = tu_alloc(n), *glogit = tu_alloc(n);
    double *local = tu_alloc(n);
    memset(A, 0, n * n * sizeof *A);
    for (size_t i = 0; i < n; i++) {
        size_t jend = causal ? i + 1 : n;
        double mx = -INFINITY;
        for (size_t j = 0; j < jend; j++)
            if (cluster[j] == cluster[i]) {
                logit[j] = s * dot(Q + i * d, K + j * d, d);
                mx = fmax(mx, logit[j]);
            }
        for (size_t r = 0; r < nclusters; r++) {
            glogit[r] = -INFINITY;
            size_t size = 0;
            for (size_t j = 0; j < jend; j++) {
                if (cluster[j] != r || r == cluster[i])
                    continue;
                for (size_t c = 0; c < d; c++) {
                    double kv = K[j * d + c], qv = Q[j * d + c];
                    if (size == 0) {
                        kt[c] = kv;
                        qt[c] = qv;
                    } else if (pool == POOL_MAX) {
                        kt[c] = fmax(kt[c], kv);
                        qt[c] = fmax(qt[c], qv);
                    } else {
                        kt[c] += kv;
                        qt[c] += qv;
                    }
                }
                size++;
            }
            if (size == 0)
                continue;
            if (pool != POOL_MAX)
                for (size_t c = 0; c < d; c++) {
                    kt[c] /= (double) size;
                    qt[c] /= (double) size;
                }
            glogit[r] = s * dot(Q + i * d, kt, d) + (pool == POOL_MEAN_LOG ? log((double) size)
                                                                            : 0.0);
            mx = fmax(mx, glogit[r]);
            /* The local distribution of the group, stored at its members. */
            double lmx = -INFINITY, lsum = 0.0;
            for (size_t j = 0; j < jend; j++)
                if (cluster[j] == r)
                    lmx = fmax(lmx, s * dot(qt, K + j * d, d));
            for (size_t j = 0; j < jend; j++)
                if (cluster[j] == r) {
                    local[j] = exp(s * dot(qt, K + j * d, d) - lmx);
                    lsum += local[j];
                }
            for (size_t j = 0; j < jend; j++)
                if (cluster[j] == r)
                    local[j] /= lsum;
        }
        double Z = 0.0;
        for (size_t j = 0; j < jend; j++)
            if (cluster[j] == cluster[i])
                Z += exp(logit[j] - mx);
        for (size_t r = 0; r < nclusters; r++)
            if (glogit[r] > -INFINITY)
                Z += exp(glogit[r] - mx);
        for (size_t j = 0; j < jend; j++)
            A[i * n + j] = cluster[j] == cluster[i]
                               ? exp(logit[j] - mx) / Z
                               : exp(glogit[cluster[j]] - mx) / Z * local[j];
    }
    free(kt);
    free(qt);
    free(logit);
    free(glogit);
    free(local);
}

static void assert_close(const double *got, const double *want, size_t count, double tol,
                         const char *what)
{
    for (size_t t = 0; t < count; t++)
        cr_assert(fabs(got[t] - want[t]) <= tol, "%s: entry %zu = %.17g, expected %.17g", what,
                  t, got[t], want[t]);
}

/* The 8-token example.  Keys point in two obvious directions: positions 0, 2, 5, 6 along the
 * first axis and 1, 3, 4, 7 along the second (cosines within a direction > 0.98, across < 0.2),
 * so 2-means finds A = {0, 2, 5, 6} and B = {1, 3, 4, 7}: Lloyd from any two initial keys (two
 * from the same direction leave the other direction's keys nearer the mixed centroid, which the
 * next update separates), and causally key 0 opens A, key 1 opens B and the rest join by cosine.
 * The expected matrices come from reference_matrix above with that partition.  Derived by hand
 * for the causal form: rows 0 and 1 are exact softmax rows (every group there is one key), and
 * in row 2 (cluster A) the group B ∩ [0, 2] = {1} is one key too, so row 2 is also exact; the
 * first pooled group is A ∩ [0, 3] = {0, 2}, seen by row 3 (cluster B). */
static const double Q8[8][2] = { { 0.3, -1.2 }, { 1.1, 0.4 },  { -0.7, 0.9 }, { 0.2, 0.2 },
                                 { -1.3, -0.4 }, { 0.8, -0.6 }, { 0.5, 1.4 },  { -0.1, -0.9 } };
static const double K8[8][2] = { { 1.0, 0.1 },   { -0.1, 0.9 }, { 0.8, -0.05 }, { 0.05, 1.2 },
                                 { 0.1, 0.7 },   { 1.3, 0.15 }, { 0.6, 0.02 },  { -0.2, 1.1 } };
static const size_t cluster8[8] = { 0, 1, 0, 1, 1, 0, 0, 1 };

Test(combiner_learnable, hand_derived_8_token_example)
{
    double I[64] = { 0 };
    for (size_t j = 0; j < 8; j++)
        I[j * 8 + j] = 1.0;
    const char *specs[] = { "combiner_learnable:clusters=2",
                            "combiner_learnable:clusters=2,pool=mean",
                            "combiner_learnable:clusters=2,pool=mean_log,seed=7" };
    const int pools[] = { POOL_MAX, POOL_MEAN, POOL_MEAN_LOG };
    for (int causal = 0; causal <= 1; causal++)
        for (size_t s = 0; s < 3; s++) {
            attn_problem pb = { .n = 8, .m = 8, .d = 2, .dv = 8, .causal = causal };
            double want[64];
            reference_matrix(8, 2, 1.0 / sqrt(2.0), &Q8[0][0], &K8[0][0], cluster8, 2, causal,
                             pools[s], want);
            /* With V = I the output rows are the attention rows: this checks apply itself. */
            double *O = tu_apply(specs[s], &pb, &Q8[0][0], &K8[0][0], I);
            char what[128];
            snprintf(what, sizeof what, "%s causal %d", specs[s], causal);
            assert_close(O, want, 64, 1e-15, what);
            free(O);
        }
    /* The hand-derived rows: causal rows 0..2 equal exact attention, row 3 does not. */
    attn_problem pb = { .n = 8, .m = 8, .d = 2, .dv = 8, .causal = 1 };
    double *O = tu_apply("combiner_learnable:clusters=2", &pb, &Q8[0][0], &K8[0][0], I);
    double *R = tu_reference(&pb, &Q8[0][0], &K8[0][0], I);
    assert_close(O, R, 3 * 8, 1e-15, "causal rows 0..2");
    cr_assert(fabs(O[3 * 8 + 0] - R[3 * 8 + 0]) > 1e-6, "row 3 pools {0, 2}: not exact");
    free(O);
    free(R);
}

/* Keys along 5 orthogonal directions (scaled by 0.5..2, noise 0.03) so that k-means must find
 * the directions; the first 5 positions hold one key of each, so the causal online pass opens
 * one cluster per direction.  cluster[] receives the direction of each position. */
static double *direction_keys(size_t n, size_t d, size_t *cluster)
{
    double *K = tu_alloc(n * d), *noise = tu_alloc(n * d), *scale = tu_alloc(n);
    tu_fill_gauss(noise, n * d, 77, 0.03);
    tu_fill_gauss(scale, n, 78, 1.0);
    for (size_t j = 0; j < n; j++) {
        cluster[j] = j < 5 ? j : (j * 7 + j / 3 + (j % 11 == 0)) % 5;
        double a = 1.25 + 0.75 * tanh(scale[j]);
        for (size_t c = 0; c < d; c++)
            K[j * d + c] = a * ((c == cluster[j]) + noise[j * d + c]);
    }
    free(noise);
    free(scale);
    return K;
}

/* The partition property, read off the matrix: with Q = 0 every logit is 0 (the clustering sees
 * only K), so a direct key gets 1 / Z_i, a key of group G gets 1 / (Z_i |G|) (the local
 * distribution is uniform), disallowed keys 0, and Z_i = |direct set| + number of groups.  The
 * entries match this for the known clusters exactly when direct set and groups are disjoint and
 * cover the allowed keys: the own cluster (causal: up to i), every other non-empty cluster
 * (causal: its members up to i) once. */
Test(combiner_learnable, partition_of_direction_clusters)
{
    size_t n = 100, d = 8, dv = 3;
    size_t cluster[100];
    double *K = direction_keys(n, d, cluster);
    double *Q = tu_alloc(n * d), *V = tu_alloc(n * dv);
    for (int causal = 0; causal <= 1; causal++) {
        attn_problem pb = { .n = n, .m = n, .d = d, .dv = dv, .causal = causal };
        double *A = tu_materialize("combiner_learnable:clusters=5", &pb, Q, K, V);
        for (size_t i = 0; i < n; i++) {
            size_t jend = causal ? i + 1 : n, size[5] = { 0 };
            for (size_t j = 0; j < jend; j++)
                size[cluster[j]]++;
            double Z = (double) size[cluster[i]];
            for (size_t r = 0; r < 5; r++)
                Z += r != cluster[i] && size[r] > 0;
            for (size_t j = 0; j < n; j++) {
                double want = j >= jend                   ? 0.0
                              : cluster[j] == cluster[i] ? 1.0 / Z
                                                         : 1.0 / (Z * (double) size[cluster[j]]);
                cr_assert(fabs(A[i * n + j] - want) <= 1e-15, "causal %d: A[%zu][%zu] = %.17g, "
                          "expected %.17g", causal, i, j, A[i * n + j], want);
            }
        }
        free(A);
    }
    free(Q);
    free(K);
    free(V);
}

/* The same clusters with random queries and values: the whole matrix against the definition. */
Test(combiner_learnable, direction_clusters_match_the_definition)
{
    size_t n = 100, d = 8, dv = 3;
    size_t cluster[100];
    double *K = direction_keys(n, d, cluster);
    double *Q = tu_alloc(n * d), *V = tu_alloc(n * dv), *want = tu_alloc(n * n);
    tu_fill_gauss(Q, n * d, 79, 2.385);
    const char *specs[] = { "combiner_learnable:clusters=5,seed=3",
                            "combiner_learnable:clusters=5,pool=mean",
                            "combiner_learnable:clusters=5,pool=mean_log" };
    for (int causal = 0; causal <= 1; causal++)
        for (int pool = 0; pool < 3; pool++) {
            attn_problem pb = { .n = n, .m = n, .d = d, .dv = dv, .causal = causal };
            double *A = tu_materialize(specs[pool], &pb, Q, K, V);
            reference_matrix(n, d, 1.0 / sqrt((double) d), Q, K, cluster, 5, causal, pool, want);
            char what[128];
            snprintf(what, sizeof what, "%s causal %d", specs[pool], causal);
            assert_close(A, want, n * n, 1e-14, what);
            free(A);
        }
    free(Q);
    free(K);
    free(V);
    free(want);
}

/* On random keys the clusters are not known, but the partition still shows at Q = 0 (see above):
 * each allowed entry is 1 / (Z_i m) with m = 1 (direct) or m = |G|; keys of weight 1 / (Z_i m)
 * come in whole groups (a multiple of m of them); nothing outside the support.  Bidirectional,
 * the direct sets are the clusters themselves: they contain their query, partition the
 * positions, and every other key j is weighted as a member of its own cluster (m = |D_j|).  (A
 * one-key group is indistinguishable from a direct key; these clusters have none.) */
Test(combiner_learnable, partition_on_random_keys)
{
    size_t n = 150, d = 6, dv = 2;
    double *Q = tu_alloc(n * d), *K = tu_alloc(n * d), *V = tu_alloc(n * dv);
    tu_fill_gauss(K, n * d, 101, 1.0);
    size_t *m = calloc(n * n, sizeof *m), *hist = calloc(n + 1, sizeof *hist);
    const char *specs[] = { "combiner_learnable:clusters=9", "combiner_learnable:clusters=4",
                            "combiner_learnable:clusters=20,seed=5" };
    for (int causal = 0; causal <= 1; causal++)
        for (size_t s = 0; s < 3; s++) {
            attn_problem pb = { .n = n, .m = n, .d = d, .dv = dv, .causal = causal };
            double *A = tu_materialize(specs[s], &pb, Q, K, V);
            for (size_t i = 0; i < n; i++) {
                size_t jend = causal ? i + 1 : n;
                double top = 0.0;
                for (size_t j = 0; j < jend; j++)
                    top = fmax(top, A[i * n + j]);
                memset(hist, 0, (n + 1) * sizeof *hist);
                for (size_t j = 0; j < n; j++) {
                    if (j >= jend) {
                        cr_assert_eq(A[i * n + j], 0.0, "%s: A[%zu][%zu] outside", specs[s], i,
                                     j);
                        continue;
                    }
                    double ratio = top / A[i * n + j];
                    m[i * n + j] = (size_t) lround(ratio);
                    cr_assert(m[i * n + j] >= 1 && fabs(ratio - (double) m[i * n + j]) <= 1e-12 *
                                                       ratio,
                              "%s causal %d: A[%zu][%zu] = %.17g is not 1 / (Z m)", specs[s],
                              causal, i, j, A[i * n + j]);
                    hist[m[i * n + j]]++;
                }
                cr_assert(m[i * n + i] == 1, "%s causal %d: query %zu is not direct", specs[s],
                          causal, i);
                for (size_t g = 2; g <= n; g++)
                    cr_assert(hist[g] % g == 0, "%s causal %d: row %zu has %zu keys of a group "
                              "of %zu", specs[s], causal, i, hist[g], g);
            }
            for (size_t i = 0; !causal && i < n; i++)
                for (size_t j = 0; j < n; j++) {
                    /* j direct for i <=> same cluster <=> i direct for j, same direct sets. */
                    cr_assert_eq(m[i * n + j] == 1, m[j * n + i] == 1, "%s: %zu, %zu", specs[s],
                                 i, j);
                    size_t size_j = 0;
                    for (size_t u = 0; u < n; u++)
                        size_j += m[j * n + u] == 1;
                    if (m[i * n + j] != 1)
                        cr_assert_eq(m[i * n + j], size_j, "%s: key %zu in row %zu is weighted "
                                     "as a group of %zu, its cluster has %zu", specs[s], j, i,
                                     m[i * n + j], size_j);
                    else
                        for (size_t u = 0; u < n; u++)
                            cr_assert_eq(m[i * n + u] == 1, m[j * n + u] == 1,
                                         "%s: rows %zu and %zu share a cluster, not its members",
                                         specs[s], i, j);
                }
            free(A);
        }
    free(m);
    free(hist);
    free(Q);
    free(K);
    free(V);
}

Test(combiner_learnable, full_support)
{
    size_t n = 61, d = 5, dv = 3;
    double *Q, *K, *V;
    tu_random_qkv(n, n, d, dv, 3, &Q, &K, &V);
    const char *specs[] = { "combiner_learnable", "combiner_learnable:clusters=6,pool=mean",
                            "combiner_learnable:clusters=13,pool=mean_log",
                            "combiner_learnable:clusters=6,oracle=mass" };
    for (int causal = 0; causal <= 1; causal++)
        for (size_t s = 0; s < 4; s++) {
            attn_problem pb = { .n = n, .m = n, .d = d, .dv = dv, .causal = causal };
            double *A = tu_materialize(specs[s], &pb, Q, K, V);
            for (size_t i = 0; i < n; i++) {
                double sum = 0.0;
                for (size_t j = 0; j < n; j++) {
                    if (causal && j > i)
                        cr_assert_eq(A[i * n + j], 0.0, "%s: A[%zu][%zu] above the diagonal",
                                     specs[s], i, j);
                    else
                        cr_assert(A[i * n + j] > 0.0, "%s causal %d: A[%zu][%zu] = %g",
                                  specs[s], causal, i, j, A[i * n + j]);
                    sum += A[i * n + j];
                }
                cr_assert(fabs(sum - 1.0) <= 4.0 * (double) n * DBL_EPSILON,
                          "%s causal %d: row %zu sums to %.17g", specs[s], causal, i, sum);
            }
            free(A);
        }
    free(Q);
    free(K);
    free(V);
}

/* The same seed gives the same bits (two plans, two applies); another seed draws other initial
 * centroids and, on random keys, ends in other clusters, which shows in the matrix at Q = 0.
 * The causal form draws nothing: every seed gives the same bits. */
Test(combiner_learnable, seeds)
{
    size_t n = 200, d = 6, dv = 4;
    double *Q, *K, *V;
    tu_random_qkv(n, n, d, dv, 41, &Q, &K, &V);
    double *Q0 = tu_alloc(n * d);
    attn_problem pb = { .n = n, .m = n, .d = d, .dv = dv };
    attn_plan *plan = tu_plan("combiner_learnable:clusters=14,seed=1", &pb);
    double *O1 = tu_alloc(n * dv), *O2 = tu_alloc(n * dv);
    cr_assert_eq(attn_plan_apply(plan, Q, K, V, O1), ATTN_OK);
    cr_assert_eq(attn_plan_apply(plan, Q, K, V, O2), ATTN_OK);
    cr_assert(memcmp(O1, O2, n * dv * sizeof *O1) == 0, "two applies of one plan differ");
    attn_plan_destroy(plan);
    double *O3 = tu_apply("combiner_learnable:clusters=14,seed=1", &pb, Q, K, V);
    cr_assert(memcmp(O1, O3, n * dv * sizeof *O1) == 0, "two plans of one spec differ");
    double *O4 = tu_apply("combiner_learnable:clusters=14,seed=2", &pb, Q, K, V);
    cr_assert(tu_max_abs_diff(O1, O4, n * dv) > 1e-6, "seed 2 gives the output of seed 1");
    double *A1 = tu_materialize("combiner_learnable:clusters=14,seed=1", &pb, Q0, K, V);
    double *A2 = tu_materialize("combiner_learnable:clusters=14,seed=2", &pb, Q0, K, V);
    cr_assert(memcmp(A1, A2, n * n * sizeof *A1) != 0, "seed 2 gives the clusters of seed 1");
    pb.causal = 1;
    double *C1 = tu_apply("combiner_learnable:clusters=14,seed=1", &pb, Q, K, V);
    double *C2 = tu_apply("combiner_learnable:clusters=14,seed=2", &pb, Q, K, V);
    cr_assert(memcmp(C1, C2, n * dv * sizeof *C1) == 0, "the causal form depends on the seed");
    free(O1);
    free(O2);
    free(O3);
    free(O4);
    free(A1);
    free(A2);
    free(C1);
    free(C2);
    free(Q0);
    free(Q);
    free(K);
    free(V);
}

static void oracle_full_is_exact(const attn_problem *pb, const double *Q, const double *K,
                                 const double *V, const char *what)
{
    const char *specs[] = { "combiner_learnable:oracle=full",
                            "combiner_learnable:clusters=5,oracle=full,seed=9",
                            "combiner_learnable:clusters=40,pool=mean,oracle=full" };
    for (size_t s = 0; s < 3; s++)
        tu_expect_exact(specs[s], pb, Q, K, V, 1e-12, what);
}

Test(combiner_learnable, oracle_full_reproduces_exact_attention)
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
    /* Real heads, in both forms whatever the model used. */
    const char *files[] = { "data/stories260k-attn.h5", "data/ppocrv4-svtr-attn.h5" };
    for (size_t f = 0; f < 2; f++) {
        const double *q, *k, *v;
        attn_inputs *in = tu_load_head(files[f], 1, 3, &q, &k, &v);
        for (int causal = 0; causal <= 1; causal++) {
            attn_problem pb = tu_inputs_problem(in, causal);
            oracle_full_is_exact(&pb, q, k, v, files[f]);
        }
        attn_inputs_destroy(in);
    }
}

/* One cluster: every allowed key is direct.  Singletons (clusters = n: Forgy takes every key and,
 * causally, every key opens its own cluster): a group of one key is that key and its value. */
Test(combiner_learnable, exact_with_one_cluster_and_with_singletons)
{
    size_t n = 97, d = 6, dv = 4;
    double *Q, *K, *V;
    tu_random_qkv(n, n, d, dv, 5, &Q, &K, &V);
    const char *specs[] = { "combiner_learnable:clusters=1", "combiner_learnable:size=97",
                            "combiner_learnable:size=1000", "combiner_learnable:clusters=97",
                            "combiner_learnable:size=1,pool=mean_log" };
    for (int causal = 0; causal <= 1; causal++) {
        attn_problem pb = { .n = n, .m = n, .d = d, .dv = dv, .causal = causal };
        for (size_t s = 0; s < 5; s++)
            tu_expect_exact(specs[s], &pb, Q, K, V, 1e-13, NULL);
    }
    free(Q);
    free(K);
    free(V);
}

/* Identical keys inside every cluster (three distinct keys, repeated at scattered positions, the
 * first three positions holding one of each): k-means puts each key's copies in one cluster,
 * the local distribution is uniform (as exact) and exp(s q.k + log|G|) = |G| exp(s q.k) is the
 * exact group mass, so mean_log is exact, and so is the mass oracle with any pooling.  The
 * causal prefixes are identical keys too.  Max pooling without log|G| is not exact. */
Test(combiner_learnable, exact_with_identical_keys_per_cluster)
{
    size_t n = 90, d = 5, dv = 3;
    double *Q, *K, *V;
    tu_random_qkv(n, n, d, dv, 13, &Q, &K, &V);
    for (size_t j = 0; j < n; j++) {
        size_t src = j < 3 ? j : (j * 5 + j / 4) % 3;
        memcpy(K + j * d, K + src * d, d * sizeof *K);
    }
    const char *exact_specs[] = { "combiner_learnable:clusters=3,pool=mean_log",
                                  "combiner_learnable:clusters=3,pool=mean_log,seed=11",
                                  "combiner_learnable:clusters=3,pool=max,oracle=mass",
                                  "combiner_learnable:clusters=3,pool=mean,oracle=mass" };
    for (int causal = 0; causal <= 1; causal++) {
        attn_problem pb = { .n = n, .m = n, .d = d, .dv = dv, .causal = causal };
        for (size_t s = 0; s < 4; s++)
            tu_expect_exact(exact_specs[s], &pb, Q, K, V, 1e-13, NULL);
        double err = tu_error_vs_reference("combiner_learnable:clusters=3,pool=max", &pb, Q, K, V);
        cr_assert(err > 1e-3, "max pooling has no size prior");
    }
    free(Q);
    free(K);
    free(V);
}

/* Causality with clusters of hundreds of members (several query and key tiles per cluster, and
 * query tiles of the group pass holding several members of a cluster): changing queries, keys
 * and values after position i leaves rows <= i bitwise unchanged. */
Test(combiner_learnable, causal_with_large_clusters)
{
    size_t n = 1100, d = 7, dv = 5;
    double *Q, *K, *V;
    tu_random_qkv(n, n, d, dv, 17, &Q, &K, &V);
    const char *specs[] = { "combiner_learnable:clusters=3", "combiner_learnable:clusters=2,"
                                                             "pool=mean_log",
                            "combiner_learnable:clusters=40,pool=mean",
                            "combiner_learnable:clusters=3,oracle=mass" };
    attn_problem pb = { .n = n, .m = n, .d = d, .dv = dv, .causal = 1 };
    double *Q2 = tu_alloc(n * d), *K2 = tu_alloc(n * d), *V2 = tu_alloc(n * dv);
    for (size_t s = 0; s < 4; s++) {
        double *O = tu_apply(specs[s], &pb, Q, K, V);
        size_t cuts[] = { 0, 63, 64, 300, 700, n - 2 };
        for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
            size_t i = cuts[c];
            memcpy(Q2, Q, n * d * sizeof *Q2);
            memcpy(K2, K, n * d * sizeof *K2);
            memcpy(V2, V, n * dv * sizeof *V2);
            tu_fill_gauss(Q2 + (i + 1) * d, (n - i - 1) * d, 6 + i, 2.2);
            tu_fill_gauss(K2 + (i + 1) * d, (n - i - 1) * d, 7 + i, 3.1);
            tu_fill_gauss(V2 + (i + 1) * dv, (n - i - 1) * dv, 8 + i, 5.3);
            double *O2 = tu_apply(specs[s], &pb, Q2, K2, V2);
            cr_assert(memcmp(O, O2, (i + 1) * dv * sizeof *O) == 0,
                      "%s: rows <= %zu changed when inputs after %zu changed", specs[s], i, i);
            free(O2);
        }
        free(O);
    }
    free(Q2);
    free(K2);
    free(V2);
    free(Q);
    free(K);
    free(V);
}

Test(combiner_learnable, auto_parameters_are_resolved_in_the_spec)
{
    attn_problem pb = { .n = 1000, .m = 1000, .d = 8, .dv = 8 };
    /* ceil(sqrt 1000) = 32 clusters; ceil(1000 / 32) = 32 keys each. */
    attn_plan *plan = tu_plan("combiner_learnable", &pb);
    cr_assert_str_eq(attn_plan_spec(plan), "combiner_learnable:clusters=32,size=32,iterations=10,"
                                           "seed=0,pool=max,oracle=none");
    attn_plan_destroy(plan);
    /* size = 300: ceil(1000 / 300) = 4 clusters, recorded with their size ceil(1000 / 4). */
    plan = tu_plan("combiner_learnable:size=300", &pb);
    cr_assert_str_eq(attn_plan_spec(plan), "combiner_learnable:clusters=4,size=250,"
                                           "iterations=10,seed=0,pool=max,oracle=none");
    attn_plan_destroy(plan);
    plan = tu_plan("combiner_learnable:clusters=4,size=250", &pb);
    attn_plan_destroy(plan);
    char spec[256];
    cr_assert_eq(attn_method_exact_spec(attn_method_find("combiner_learnable"), &pb, spec,
                                        sizeof spec),
                 ATTN_OK);
    cr_assert_str_eq(spec, "combiner_learnable:clusters=1,size=1000,iterations=10,seed=0,"
                           "pool=max,oracle=none");
}

Test(combiner_learnable, bad_parameters_are_named)
{
    attn_problem pb = { .n = 256, .m = 256, .d = 8, .dv = 8 };
    attn_plan *plan = NULL;
    cr_assert_eq(attn_plan_create(&plan, "combiner_learnable:clusters=300", &pb), ATTN_EPARAM);
    cr_assert(tu_error_has("combiner_learnable: clusters = 300 exceeds the number of keys "
                           "(n = 256)"));
    cr_assert_eq(attn_plan_create(&plan, "combiner_learnable:clusters=0", &pb), ATTN_EPARAM);
    cr_assert(tu_error_has("combiner_learnable: parameter clusters = 0 is out of range [1, inf]"));
    cr_assert_eq(attn_plan_create(&plan, "combiner_learnable:iterations=0", &pb), ATTN_EPARAM);
    cr_assert(tu_error_has("combiner_learnable: parameter iterations = 0 is out of range"));
    cr_assert_eq(attn_plan_create(&plan, "combiner_learnable:size=0", &pb), ATTN_EPARAM);
    cr_assert(tu_error_has("combiner_learnable: parameter size = 0 is out of range"));
    cr_assert_eq(attn_plan_create(&plan, "combiner_learnable:clusters=10,size=10", &pb),
                 ATTN_EPARAM);
    cr_assert(tu_error_has("combiner_learnable: clusters = 10 and size = 10 disagree: for n = 256 "
                           "keys, clusters = 10 means size = 26"));
    cr_assert_eq(attn_plan_create(&plan, "combiner_learnable:seed=-1", &pb), ATTN_EPARAM);
    cr_assert(tu_error_has("parameter seed = -1 is out of range"));
    cr_assert_eq(attn_plan_create(&plan, "combiner_learnable:pool=median", &pb), ATTN_EPARAM);
    cr_assert(tu_error_has("parameter pool = 'median' is not one of {max, mean, mean_log}"));
    cr_assert_null(plan);
    /* m != n: queries follow their position's cluster, so the method needs m == n. */
    attn_problem rect = { .n = 64, .m = 80, .d = 8, .dv = 8 };
    cr_assert_eq(attn_plan_create(&plan, "combiner_learnable", &rect), ATTN_EUNSUP);
    cr_assert(tu_error_has("combiner_learnable needs m == n (n = 64, m = 80)"));
}
