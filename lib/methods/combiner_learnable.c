/* combiner_learnable.c — Combiner-Learnable: full attention through a partition of the positions
 * into spherical k-means clusters of the keys (the Routing-Transformer flavour of Combiner).
 *
 * The keys are clustered into at most n_c clusters C^r (below); query i belongs to the cluster of
 * its own position, rho(i) = the cluster of key i, since Combiner partitions positions.
 * Bidirectional (MLM): query i attends directly to its own cluster C^rho(i) and, for every other
 * cluster r, to the cluster's abstraction: the group logit s q_i . k~_r (+ log |C^r| for
 * pool = mean_log) and the local expectation v~_r = sum_{j in C^r} softmax_j(s q~_r . k_j) v_j,
 * with k~_r, q~_r the pooled keys and queries of the cluster (combiner.h), computed once per
 * cluster and shared by every query.
 * Causal (LM): the direct set is C^rho(i) intersected with [0, i] and the groups are the prefixes
 * C^r intersected with [0, i], r != rho(i), when not empty.  A prefix's abstraction depends on its
 * length, so for every cluster and every prefix length t the pooled key and query of the first t
 * members (running max, or running mean) and the local expectation under that pooled query are
 * formed by a scan in position order inside the cluster; the scan is causal attention of the
 * prefix-pooled queries over the cluster's keys, sum_r |C^r|^2 (d + dv) flops.  Each query then
 * sees, for every other cluster, the summary of the prefix that ends at its last member <= i.
 * Direct and group logits share one softmax, so every row is a full distribution over all allowed
 * keys, strictly positive on each of them.
 *
 * Clustering.  Spherical: each key is scaled to unit length (a zero key stays zero) and compared
 * with unit centroids by cosine; ties go to the lowest cluster index.
 *  - Bidirectional: Lloyd's algorithm.  The initial centroids are n_c distinct keys drawn
 *    uniformly (Forgy) by a gsl_rng_mt19937 seeded from `seed` at the start of every apply, so the
 *    same plan on the same keys gives the same clusters, and materialize makes the same draws.
 *    An iteration assigns every key to its nearest centroid, then replaces each centroid by the
 *    normalized sum of its unit keys; a cluster left empty is re-seeded with the key farthest from
 *    its own centroid (smallest cosine; ties: lowest position; each key re-seeds at most one
 *    cluster per iteration).  `iterations` counts assignment steps and the partition is the last
 *    assignment; the loop stops early at a fixed point (an assignment equal to the previous one,
 *    with no empty cluster), where further iterations would repeat it.
 *  - Causal: clusters fitted to all keys would leak the future (a later key moves a centroid,
 *    which moves earlier keys between clusters and changes rows before it).  The causal form runs
 *    online spherical k-means (MacQueen 1967) in position order instead: key j < n_c opens cluster
 *    j; a later key joins the cluster whose centroid, the normalized sum of the unit keys that
 *    joined before it, has the largest cosine with it.  The cluster of key j depends on keys 0..j
 *    only, so the partition of [0, i] depends on keys up to i and the causal form is causal bit for
 *    bit.  This is routing with centroids updated online as tokens arrive (Roy et al. move their
 *    centroids by a running average during training); it makes one pass, draws no random numbers
 *    and ignores `iterations` and `seed`.
 * Clusters that end empty have no member and no group; they are dropped.
 *
 * Cost, for balanced clusters: O(n (n / n_c + n_c)(d + dv)) for the attention (O(n^1.5) at
 * n_c ~ sqrt n; the causal group terms take O(n (n_c + 16)(d + dv))) plus O(iterations n n_c d)
 * for Lloyd (causal: O(n n_c d) for the online pass).  k-means does not balance its clusters: one
 * cluster holding most keys makes the direct part approach O(n^2 (d + dv)).  Scratch
 * O(n (d + dv) + n_c d), never n x n.
 * Exact when n_c = 1 (size >= n: everything is direct); when every cluster holds one key (a group
 * of one key is its key and value; n_c = n gives this when no two keys share a direction, since
 * Forgy then takes every key and, causally, every key opens its own cluster); when the keys inside
 * every cluster are identical and pool = mean_log (the group logit plus log |C| is the exact group
 * mass and the local distribution is uniform, as exact; also for the causal prefixes); and always
 * with oracle = full.
 * Budget: `size`, the target keys per cluster w, giving n_c = ceil(n / w).  More clusters make
 * smaller direct sets and more pooled groups, so accuracy grows with w, and w >= n is exact
 * attention.  It is not monotone: w = 1 makes singletons, which are exact too.  `clusters` sets
 * n_c directly; give either (both must agree, size = ceil(n / clusters)); the canonical spec
 * records both.  More clusters than keys is an error.
 * Reference: Ren, Dai, Dai, Yang, Leskovec, Schuurmans, Dai, "Combiner: Full Attention
 * Transformer with Sparse Computation Cost", NeurIPS 2021, section 4.4, eq. 11-12 (no code was
 * published for this variant); Roy, Saffar, Vaswani, Grangier, "Efficient Content-Based Sparse
 * Attention with Routing Transformers", TACL 2021 (spherical k-means routing).
 * Departures: the partition is recomputed from the keys in every apply, with no learned parameters;
 * the Routing Transformer gives each cluster its top-w keys by distance (balanced, but a key may
 * be in several clusters or none, which is no partition) and routes each query by its own nearest
 * centroid, while here each key is in exactly one cluster and each query follows its position's
 * key; the abstractions are parameter-free (the paper's max pooling by default; mean and mean_log
 * as options); the causal clustering is online, as explained above.
 */
#include "config.h"

#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "combiner.h"

/* Keys per tile of the online (causal) clustering pass: the cosines of a tile against the
 * centroids at its start come from one dgemm; those of clusters that change inside the tile are
 * recomputed, at most this many per key. */
#define ONLINE_TILE 8

/* Query tile of the causal direct terms and prefix scans, in member coordinates.  Every tile has
 * this many rows and sees keys up to its last row, whether or not the cluster has that many
 * members: the number of members depends on later keys, and BLAS may round an entry differently
 * in a product of another shape, so shapes that followed the cluster size would let later keys
 * change earlier rows in the last bits.  The rows past the cluster's end are computed on the
 * padding (or the next cluster's rows) and discarded. */
#define CAUSAL_TILE 16

/* Queries per tile of the causal group terms: each tile also sees the summaries that end at its
 * own positions, GROUP_TILE columns beside the n_c summaries from before the tile. */
#define GROUP_TILE 16

/* Keys per tile of the Lloyd assignment step (a dgemm of KMEANS_TILE x ATTN_TILE_K cosines). */
#define KMEANS_TILE 256

typedef struct learnable_state {
    size_t nc;           /* clusters asked for, n_c */
    size_t L;            /* non-empty clusters of the last apply */
    size_t iterations;   /* Lloyd assignment steps (bidirectional) */
    unsigned long seed;
    int pool, oracle;
    gsl_rng *rng;
    /* Clustering. */
    double *Khat;        /* n x d unit keys */
    double *C;           /* nc x d unit centroids */
    double *Csum;        /* nc x d sums of the unit keys of each cluster */
    double *G;           /* cosines: ONLINE_TILE x nc (causal), KMEANS_TILE x ATTN_TILE_K */
    double *best;        /* n: cosine of each key with its centroid */
    size_t *assign;      /* n: cluster of each position */
    size_t *prev;        /* n: the previous assignment (fixed-point test) */
    size_t *order;       /* n: Forgy draw; re-seeding marks */
    size_t *stamp;       /* nc: online tile in which a centroid last changed (+1) */
    /* The partition, clusters 0..L-1, members ascending by position inside each cluster. */
    size_t *count;       /* nc: members per cluster */
    size_t *start;       /* nc + 1: first slot of each cluster in members */
    size_t *members;     /* n: positions grouped by cluster */
    size_t *slot;        /* n: index of each position in members */
    size_t *next;        /* n: next position of the same cluster (n when none) */
    /* Inputs gathered in member order (n + CAUSAL_TILE rows: the causal tiles read past the
     * end). */
    double *Qc, *Kc, *Vc;
    /* Bidirectional: one summary per cluster.  Causal: the summary each cluster has at the start
     * of the current query tile (its prefix up to the last member before the tile). */
    double *Kt, *Vt, *bias;
    size_t *seen;        /* nc: members before the current query tile (causal) */
    size_t *firstin;     /* nc: first member inside the current query tile, n when none */
    /* Causal prefix summaries in member order (Qp and Vp padded like Qc). */
    double *Qp, *Kp, *Vp, *biasp;
    double *Knew, *Vnew, *biasnew; /* GROUP_TILE summaries ending at one query tile's positions */
    size_t *cntle;       /* nc: members <= i (causal oracle) */
    double *work;        /* summarize scratch, d + n */
    double *S;           /* ATTN_TILE_Q x ATTN_TILE_K logits */
    double *accbuf;      /* storage of acc */
    double *accnbuf;     /* storage of accn */
    double *oracle_scratch;
    attn_acc acc;        /* ATTN_TILE_Q rows: one tile of a cluster's queries */
    attn_acc accn;       /* n rows: the causal group terms, by position */
} learnable_state;

static const attn_param learnable_params[] = {
    { .name = "clusters", .value = 0, .lo = 1, .hi = INFINITY, .integer = 1,
      .doc = "n_c, k-means clusters of the keys (default ceil(sqrt n), or ceil(n / size)); 1 is "
             "exact attention; more than n is an error" },
    { .name = "size", .value = 0, .lo = 1, .hi = INFINITY, .integer = 1,
      .doc = "w, target keys per cluster, the budget: clusters = ceil(n / w); w >= n is exact "
             "attention (default ceil(n / clusters))" },
    { .name = "iterations", .value = 10, .lo = 1, .hi = INFINITY, .integer = 1,
      .doc = "Lloyd assignment steps of the bidirectional k-means (the causal form's online "
             "k-means makes one pass)" },
    { .name = "seed", .value = 0, .lo = 0, .hi = 4294967295.0, .integer = 1,
      .doc = "seed of the gsl_rng_mt19937 drawing the initial centroids (bidirectional)" },
    COMBINER_POOL_PARAM,
    COMBINER_ORACLE_PARAM,
    { 0 },
};

static void learnable_fini(attn_plan *plan)
{
    learnable_state *st = plan->state;
    if (st == NULL)
        return;
    if (st->rng != NULL)
        gsl_rng_free(st->rng);
    double *doubles[] = { st->Khat, st->C,  st->Csum,  st->G,       st->best,  st->Qc,
                          st->Kc,   st->Vc, st->Kt,    st->Vt,      st->bias,  st->Qp,
                          st->Kp,   st->Vp, st->biasp, st->Knew,    st->Vnew,  st->biasnew,
                          st->work, st->S,  st->accbuf, st->accnbuf, st->oracle_scratch };
    for (size_t t = 0; t < sizeof doubles / sizeof doubles[0]; t++)
        free(doubles[t]);
    size_t *sizes[] = { st->assign,  st->prev, st->order, st->stamp, st->count, st->start,
                        st->members, st->slot, st->next,  st->seen,  st->firstin, st->cntle };
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++)
        free(sizes[t]);
    free(st);
}

static size_t ceil_sqrt(size_t n)
{
    size_t c = 1;
    while (c * c < n)
        c++;
    return c;
}

/* Resolve clusters and size (either may be "auto", the out-of-range default 0) into n_c and write
 * both back, so that the canonical spec recreates the same plan. */
static int resolve_clusters(attn_plan *plan, size_t *nc)
{
    size_t n = plan->problem.n;
    long ic = attn_param_index(plan->method, "clusters");
    long is = attn_param_index(plan->method, "size");
    double c = plan->values[ic], w = plan->values[is];
    if (c > (double) n)
        return ATTN_ERR(ATTN_EPARAM,
                        "combiner_learnable: clusters = %.0f exceeds the number of keys (n = %zu)",
                        c, n);
    if (c == 0 && w == 0)
        *nc = ceil_sqrt(n);
    else if (c == 0)
        *nc = w >= (double) n ? 1 : (n + (size_t) w - 1) / (size_t) w;
    else
        *nc = (size_t) c;
    size_t size = (n + *nc - 1) / *nc;
    if (c != 0 && w != 0 && w != (double) size)
        return ATTN_ERR(ATTN_EPARAM,
                        "combiner_learnable: clusters = %.0f and size = %.0f disagree: for n = %zu "
                        "keys, clusters = %.0f means size = %zu (give one of them)",
                        c, w, n, c, size);
    plan->values[ic] = (double) *nc;
    plan->values[is] = (double) size;
    return ATTN_OK;
}

static int learnable_init(attn_plan *plan)
{
    const attn_problem *pb = &plan->problem;
    size_t n = pb->n, d = pb->d, dv = pb->dv, T = ATTN_TILE_Q;
    size_t nc = 0;
    int status = resolve_clusters(plan, &nc);
    if (status != ATTN_OK)
        return status;
    learnable_state *st = attn_plan_calloc(plan, 1, sizeof *st);
    if (st == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "combiner_learnable: plan state");
    plan->state = st;
    st->nc = nc;
    st->iterations = (size_t) attn_plan_value(plan, "iterations");
    st->seed = (unsigned long) attn_plan_value(plan, "seed");
    st->pool = (int) attn_plan_value(plan, "pool");
    st->oracle = (int) attn_plan_value(plan, "oracle");
    st->rng = gsl_rng_alloc(gsl_rng_mt19937);
    if (st->rng != NULL)
        plan->bytes += (double) gsl_rng_size(st->rng);

    st->Khat = attn_plan_calloc(plan, n * d, sizeof *st->Khat);
    st->C = attn_plan_calloc(plan, nc * d, sizeof *st->C);
    st->Csum = attn_plan_calloc(plan, nc * d, sizeof *st->Csum);
    st->best = attn_plan_calloc(plan, n, sizeof *st->best);
    st->assign = attn_plan_calloc(plan, n, sizeof *st->assign);
    st->order = attn_plan_calloc(plan, n, sizeof *st->order);
    st->count = attn_plan_calloc(plan, nc, sizeof *st->count);
    st->start = attn_plan_calloc(plan, nc + 1, sizeof *st->start);
    st->members = attn_plan_calloc(plan, n, sizeof *st->members);
    st->slot = attn_plan_calloc(plan, n, sizeof *st->slot);
    st->Qc = attn_plan_calloc(plan, (n + CAUSAL_TILE) * d, sizeof *st->Qc);
    st->Kc = attn_plan_calloc(plan, (n + CAUSAL_TILE) * d, sizeof *st->Kc);
    st->Vc = attn_plan_calloc(plan, (n + CAUSAL_TILE) * dv, sizeof *st->Vc);
    st->Kt = attn_plan_calloc(plan, nc * d, sizeof *st->Kt);
    st->Vt = attn_plan_calloc(plan, nc * dv, sizeof *st->Vt);
    st->bias = attn_plan_calloc(plan, nc, sizeof *st->bias);
    st->work = attn_plan_calloc(plan, d + n, sizeof *st->work);
    st->S = attn_plan_calloc(plan, T * ATTN_TILE_K, sizeof *st->S);
    st->accbuf = attn_plan_calloc(plan, attn_acc_doubles(T, dv), sizeof *st->accbuf);
    int ok = st->rng != NULL && st->Khat != NULL && st->C != NULL && st->Csum != NULL &&
             st->best != NULL && st->assign != NULL && st->order != NULL && st->count != NULL &&
             st->start != NULL && st->members != NULL && st->slot != NULL && st->Qc != NULL &&
             st->Kc != NULL && st->Vc != NULL && st->Kt != NULL && st->Vt != NULL &&
             st->bias != NULL && st->work != NULL && st->S != NULL && st->accbuf != NULL;
    if (pb->causal) {
        st->G = attn_plan_calloc(plan, ONLINE_TILE * nc, sizeof *st->G);
        st->stamp = attn_plan_calloc(plan, nc, sizeof *st->stamp);
        st->next = attn_plan_calloc(plan, n, sizeof *st->next);
        st->seen = attn_plan_calloc(plan, nc, sizeof *st->seen);
        st->firstin = attn_plan_calloc(plan, nc, sizeof *st->firstin);
        st->cntle = attn_plan_calloc(plan, nc, sizeof *st->cntle);
        st->Qp = attn_plan_calloc(plan, (n + CAUSAL_TILE) * d, sizeof *st->Qp);
        st->Kp = attn_plan_calloc(plan, n * d, sizeof *st->Kp);
        st->Vp = attn_plan_calloc(plan, (n + CAUSAL_TILE) * dv, sizeof *st->Vp);
        st->biasp = attn_plan_calloc(plan, n, sizeof *st->biasp);
        st->Knew = attn_plan_calloc(plan, GROUP_TILE * d, sizeof *st->Knew);
        st->Vnew = attn_plan_calloc(plan, GROUP_TILE * dv, sizeof *st->Vnew);
        st->biasnew = attn_plan_calloc(plan, GROUP_TILE, sizeof *st->biasnew);
        st->accnbuf = attn_plan_calloc(plan, attn_acc_doubles(n, dv), sizeof *st->accnbuf);
        ok = ok && st->G != NULL && st->stamp != NULL && st->next != NULL && st->seen != NULL &&
             st->firstin != NULL && st->cntle != NULL && st->Qp != NULL && st->Kp != NULL &&
             st->Vp != NULL && st->biasp != NULL && st->Knew != NULL && st->Vnew != NULL &&
             st->biasnew != NULL && st->accnbuf != NULL;
    } else {
        st->G = attn_plan_calloc(plan, KMEANS_TILE * ATTN_TILE_K, sizeof *st->G);
        st->prev = attn_plan_calloc(plan, n, sizeof *st->prev);
        ok = ok && st->G != NULL && st->prev != NULL;
    }
    if (st->oracle != COMBINER_ORACLE_NONE) {
        /* The largest group is at most n keys; causal oracle groups are added one query at a
         * time, bidirectional ones a tile of queries at a time. */
        size_t rows = pb->causal ? 1 : T;
        st->oracle_scratch = attn_plan_calloc(plan, combiner_oracle_doubles(rows, n, dv, d),
                                              sizeof *st->oracle_scratch);
        ok = ok && st->oracle_scratch != NULL;
    }
    if (!ok)
        return ATTN_ERR(ATTN_ENOMEM, "combiner_learnable: scratch for n = %zu keys in %zu clusters",
                        n, nc);
    attn_acc_init(&st->acc, T, dv, st->accbuf);
    if (pb->causal)
        attn_acc_init(&st->accn, n, dv, st->accnbuf);
    return ATTN_OK;
}

/* Khat = K with every row scaled to unit length (zero rows stay zero). */
static void unit_keys(learnable_state *st, const double *K, size_t n, size_t d)
{
    for (size_t j = 0; j < n; j++) {
        const double *k = K + j * d;
        double *u = st->Khat + j * d;
        double norm = sqrt(combiner_logit(k, k, d, 1.0));
        double inv = norm > 0.0 ? 1.0 / norm : 0.0;
        for (size_t c = 0; c < d; c++)
            u[c] = k[c] * inv;
    }
}

/* Row r of C = row r of Csum scaled to unit length (zero stays zero). */
static void normalize_centroid(learnable_state *st, size_t r, size_t d)
{
    const double *s = st->Csum + r * d;
    double norm = sqrt(combiner_logit(s, s, d, 1.0));
    double inv = norm > 0.0 ? 1.0 / norm : 0.0;
    for (size_t c = 0; c < d; c++)
        st->C[r * d + c] = s[c] * inv;
}

/* The Lloyd assignment step: assign[j] = the centroid of largest cosine with key j (ties: lowest
 * index), best[j] = that cosine.  Tiles of keys against blocks of centroids, one dgemm each. */
static void assign_nearest(learnable_state *st, size_t n, size_t d)
{
    size_t nc = st->nc;
    for (size_t j0 = 0; j0 < n; j0 += KMEANS_TILE) {
        size_t nr = n - j0 < KMEANS_TILE ? n - j0 : KMEANS_TILE;
        for (size_t a = 0; a < nr; a++) {
            st->best[j0 + a] = -INFINITY;
            st->assign[j0 + a] = 0;
        }
        for (size_t c0 = 0; c0 < nc; c0 += ATTN_TILE_K) {
            size_t ncol = nc - c0 < ATTN_TILE_K ? nc - c0 : ATTN_TILE_K;
            attn_logits(st->Khat + j0 * d, nr, st->C + c0 * d, ncol, d, 1.0, st->G, ATTN_TILE_K);
            for (size_t a = 0; a < nr; a++) {
                const double *row = st->G + a * ATTN_TILE_K;
                double top = st->best[j0 + a];
                size_t arg = st->assign[j0 + a];
                for (size_t b = 0; b < ncol; b++)
                    if (row[b] > top) {
                        top = row[b];
                        arg = c0 + b;
                    }
                st->best[j0 + a] = top;
                st->assign[j0 + a] = arg;
            }
        }
    }
}

/* The Lloyd update step.  count receives the cluster sizes.  Returns the number of clusters that
 * were empty (and have been re-seeded). */
static size_t update_centroids(learnable_state *st, size_t n, size_t d)
{
    size_t nc = st->nc, empty = 0;
    memset(st->Csum, 0, nc * d * sizeof *st->Csum);
    memset(st->count, 0, nc * sizeof *st->count);
    for (size_t j = 0; j < n; j++) {
        double *s = st->Csum + st->assign[j] * d;
        const double *u = st->Khat + j * d;
        for (size_t c = 0; c < d; c++)
            s[c] += u[c];
        st->count[st->assign[j]]++;
    }
    /* order[j] = 1 marks a key already used to re-seed a cluster in this step. */
    memset(st->order, 0, n * sizeof *st->order);
    for (size_t r = 0; r < nc; r++) {
        if (st->count[r] > 0) {
            normalize_centroid(st, r, d);
            continue;
        }
        /* Empty: restart from the key farthest from its centroid (nc <= n, so one is left). */
        size_t far = n;
        for (size_t j = 0; j < n; j++)
            if (!st->order[j] && (far == n || st->best[j] < st->best[far]))
                far = j;
        st->order[far] = 1;
        memcpy(st->C + r * d, st->Khat + far * d, d * sizeof *st->C);
        empty++;
    }
    return empty;
}

/* Bidirectional clustering: Forgy initialization from the seeded rng, then Lloyd. */
static void kmeans_lloyd(learnable_state *st, size_t n, size_t d)
{
    size_t nc = st->nc;
    gsl_rng_set(st->rng, st->seed);
    for (size_t j = 0; j < n; j++)
        st->order[j] = j;
    /* nc distinct positions: the first nc steps of a Fisher-Yates shuffle. */
    for (size_t r = 0; r < nc; r++) {
        size_t u = r + (size_t) gsl_rng_uniform_int(st->rng, (unsigned long) (n - r));
        size_t t = st->order[r];
        st->order[r] = st->order[u];
        st->order[u] = t;
        memcpy(st->C + r * d, st->Khat + st->order[r] * d, d * sizeof *st->C);
    }
    for (size_t it = 1;; it++) {
        assign_nearest(st, n, d);
        if (it == st->iterations)
            break;
        int same = it > 1 && memcmp(st->assign, st->prev, n * sizeof *st->assign) == 0;
        size_t empty = update_centroids(st, n, d);
        if (same && empty == 0)
            break; /* a fixed point: the next assignment would repeat this one */
        memcpy(st->prev, st->assign, n * sizeof *st->assign);
    }
}

/* Causal clustering: online spherical k-means in position order (MacQueen).  Key j < nc opens
 * cluster j; a later key joins the centroid of largest cosine, computed from the keys before it.
 * Tiles of ONLINE_TILE keys take their cosines against the centroids at the tile's start from one
 * dgemm; a centroid that changes inside the tile (stamp) is compared afresh. */
static void kmeans_online(learnable_state *st, size_t n, size_t d)
{
    size_t nc = st->nc;
    memset(st->Csum, 0, nc * d * sizeof *st->Csum);
    memset(st->C, 0, nc * d * sizeof *st->C);
    memset(st->stamp, 0, nc * sizeof *st->stamp);
    size_t tile = 0;
    for (size_t j0 = 0; j0 < n; j0 += ONLINE_TILE, tile++) {
        size_t nr = n - j0 < ONLINE_TILE ? n - j0 : ONLINE_TILE;
        int scan = j0 + nr > nc; /* some key of the tile chooses among open clusters */
        if (scan)
            attn_logits(st->Khat + j0 * d, nr, st->C, nc, d, 1.0, st->G, nc);
        for (size_t a = 0; a < nr; a++) {
            size_t j = j0 + a, r = j;
            const double *u = st->Khat + j * d;
            if (j >= nc) {
                double top = -INFINITY;
                const double *row = st->G + a * nc;
                for (size_t c = 0; c < nc; c++) {
                    double cos = st->stamp[c] == tile + 1
                                     ? combiner_logit(u, st->C + c * d, d, 1.0)
                                     : row[c];
                    if (cos > top) {
                        top = cos;
                        r = c;
                    }
                }
            }
            st->assign[j] = r;
            double *s = st->Csum + r * d;
            for (size_t c = 0; c < d; c++)
                s[c] += u[c];
            normalize_centroid(st, r, d);
            st->stamp[r] = tile + 1;
        }
    }
}

/* Relabel the clusters so that the non-empty ones are 0..L-1 (in their order), and lay out the
 * partition: count, start, members (ascending positions in each cluster), slot, next. */
static void build_partition(learnable_state *st, size_t n, int causal)
{
    size_t nc = st->nc, L = 0;
    memset(st->count, 0, nc * sizeof *st->count);
    for (size_t j = 0; j < n; j++)
        st->count[st->assign[j]]++;
    /* start[] holds the new label of each old cluster for a moment. */
    for (size_t r = 0; r < nc; r++) {
        st->start[r] = L;
        if (st->count[r] > 0)
            st->count[L++] = st->count[r];
    }
    for (size_t j = 0; j < n; j++)
        st->assign[j] = st->start[st->assign[j]];
    st->L = L;
    st->start[0] = 0;
    for (size_t r = 0; r < L; r++)
        st->start[r + 1] = st->start[r] + st->count[r];
    /* Counting sort, stable: members stay ascending.  slot first counts fill per cluster. */
    for (size_t r = 0; r < L; r++)
        st->order[r] = st->start[r];
    for (size_t j = 0; j < n; j++) {
        size_t u = st->order[st->assign[j]]++;
        st->members[u] = j;
        st->slot[j] = u;
    }
    if (causal)
        for (size_t r = 0; r < L; r++)
            for (size_t u = st->start[r]; u < st->start[r + 1]; u++)
                st->next[st->members[u]] = u + 1 < st->start[r + 1] ? st->members[u + 1] : n;
}

static void gather_rows(double *dst, const double *src, const size_t *idx, size_t count,
                        size_t cols)
{
    for (size_t u = 0; u < count; u++)
        memcpy(dst + u * cols, src + idx[u] * cols, cols * sizeof *dst);
}

/* Direct term of the query tile a0..a0+nr-1 of cluster r (member coordinates): every member of
 * the cluster, or (causal, nr = CAUSAL_TILE) every member up to the query. */
static void add_direct(learnable_state *st, const attn_problem *pb, size_t r, size_t a0,
                       size_t nr)
{
    size_t d = pb->d, dv = pb->dv, s = st->start[r];
    size_t k_hi = pb->causal ? a0 + nr : st->count[r];
    combiner_add_block(&st->acc, 0, st->Qc + (s + a0) * d, a0, nr, st->Kc + s * d, st->Vc + s * dv,
                       0, k_hi, SIZE_MAX, pb->causal ? 0 : SIZE_MAX, 0, pb, st->S);
}

static void apply_bidirectional(learnable_state *st, const attn_problem *pb, const double *Q,
                                const double *K, const double *V, double *O)
{
    size_t d = pb->d, dv = pb->dv, L = st->L;
    /* One summary per cluster, shared by every query of the other clusters. */
    for (size_t r = 0; r < L; r++)
        st->bias[r] = combiner_summarize(pb, st->pool, Q, K, V, st->members + st->start[r],
                                         st->count[r], st->Kt + r * d, st->Vt + r * dv, st->work);
    for (size_t r = 0; r < L; r++) {
        size_t s = st->start[r];
        for (size_t a0 = 0; a0 < st->count[r]; a0 += ATTN_TILE_Q) {
            size_t nr = st->count[r] - a0 < ATTN_TILE_Q ? st->count[r] - a0 : ATTN_TILE_Q;
            const double *Qrows = st->Qc + (s + a0) * d;
            st->acc.rows = nr;
            attn_acc_reset(&st->acc);
            add_direct(st, pb, r, a0, nr);
            if (st->oracle == COMBINER_ORACLE_NONE) {
                /* Every cluster but the own one: the summaries before r and after it. */
                combiner_add_summaries(&st->acc, 0, nr, Qrows, st->Kt, st->Vt, st->bias, r, d,
                                       pb->scale, st->S);
                combiner_add_summaries(&st->acc, 0, nr, Qrows, st->Kt + (r + 1) * d,
                                       st->Vt + (r + 1) * dv, st->bias + r + 1, L - r - 1, d,
                                       pb->scale, st->S);
            } else {
                for (size_t g = 0; g < L; g++)
                    if (g != r)
                        combiner_add_oracle(&st->acc, 0, nr, Qrows, K, V,
                                            st->members + st->start[g], st->count[g],
                                            st->Vt + g * dv, st->oracle, pb->scale, d,
                                            st->oracle_scratch);
            }
            for (size_t a = 0; a < nr; a++)
                attn_acc_finish(&st->acc, a, 1, O + st->members[s + a0 + a] * dv, dv, NULL);
        }
    }
}

/* Causal prefix summaries of every cluster, in member order: Qp, Kp = running pool of the first
 * t + 1 members' queries and keys (combiner_scan_pool), biasp = log(t + 1) for mean_log, and
 * Vp = the local expectation of that prefix under its pooled query, which is causal attention of
 * Qp over the cluster's keys Kc and values Vc. */
static void prefix_summaries(learnable_state *st, const attn_problem *pb)
{
    size_t d = pb->d, dv = pb->dv;
    for (size_t r = 0; r < st->L; r++) {
        size_t s = st->start[r], cnt = st->count[r];
        combiner_scan_pool(st->Qc + s * d, cnt, d, st->pool, 0, st->Qp + s * d, d);
        combiner_scan_pool(st->Kc + s * d, cnt, d, st->pool, 0, st->Kp + s * d, d);
        for (size_t t = 0; t < cnt; t++)
            st->biasp[s + t] = st->pool == COMBINER_POOL_MEAN_LOG ? log((double) (t + 1)) : 0.0;
        /* Full tiles (CAUSAL_TILE): rows past the cluster's end land in the next cluster's
         * rows, which are computed after this one, or in the padding. */
        st->acc.rows = CAUSAL_TILE;
        for (size_t a0 = 0; a0 < cnt; a0 += CAUSAL_TILE)
            attn_stream_rows(pb, st->Qp + s * d, st->Kc + s * d, st->Vc + s * dv, a0,
                             CAUSAL_TILE, 0, a0 + CAUSAL_TILE, SIZE_MAX, 0, &st->acc, st->S,
                             st->Vp + s * dv);
    }
}

/* Causal group terms into accn (rows = positions), one tile of consecutive queries at a time.
 * For query i and cluster r != rho(i), the group is C^r intersected with [0, i], summarized by the
 * prefix ending at r's last member <= i.  That summary is either the one r had before the tile
 * (Kt, Vt, bias: valid while r has no member in [q0, i]) or the one ending at a member p of the
 * tile (valid for q0 <= p <= i < next[p]).  Both kinds are formed for the whole tile and the
 * entries not valid for a row are masked, so each row sees exactly its own prefixes.  The shapes
 * depend on positions only (L = n_c here: key j < n_c opens cluster j, so none is empty), which
 * keeps later keys from changing earlier rows even in rounding. */
static void causal_groups(learnable_state *st, const attn_problem *pb, const double *Q)
{
    size_t n = pb->n, d = pb->d, dv = pb->dv, L = st->L;
    memset(st->Kt, 0, L * d * sizeof *st->Kt);
    memset(st->Vt, 0, L * dv * sizeof *st->Vt);
    memset(st->bias, 0, L * sizeof *st->bias);
    memset(st->seen, 0, L * sizeof *st->seen);
    for (size_t r = 0; r < L; r++)
        st->firstin[r] = n;
    for (size_t q0 = 0; q0 < n; q0 += GROUP_TILE) {
        size_t nr = n - q0 < GROUP_TILE ? n - q0 : GROUP_TILE;
        for (size_t p = q0 + nr; p-- > q0;)
            st->firstin[st->assign[p]] = p;
        /* Summaries from before the tile. */
        for (size_t c0 = 0; c0 < L; c0 += ATTN_TILE_K) {
            size_t nc = L - c0 < ATTN_TILE_K ? L - c0 : ATTN_TILE_K;
            attn_logits(Q + q0 * d, nr, st->Kt + c0 * d, nc, d, pb->scale, st->S, ATTN_TILE_K);
            for (size_t a = 0; a < nr; a++) {
                size_t i = q0 + a;
                double *row = st->S + a * ATTN_TILE_K;
                for (size_t b = 0; b < nc; b++) {
                    size_t r = c0 + b;
                    int valid = st->seen[r] > 0 && r != st->assign[i] && st->firstin[r] > i;
                    row[b] = valid ? row[b] + st->bias[r] : -INFINITY;
                }
            }
            attn_acc_add(&st->accn, q0, nr, st->S, ATTN_TILE_K, st->Vt + c0 * dv, dv, nc);
        }
        /* Summaries ending inside the tile. */
        for (size_t b = 0; b < nr; b++) {
            size_t u = st->slot[q0 + b];
            memcpy(st->Knew + b * d, st->Kp + u * d, d * sizeof *st->Knew);
            memcpy(st->Vnew + b * dv, st->Vp + u * dv, dv * sizeof *st->Vnew);
            st->biasnew[b] = st->biasp[u];
        }
        attn_logits(Q + q0 * d, nr, st->Knew, nr, d, pb->scale, st->S, ATTN_TILE_K);
        for (size_t a = 0; a < nr; a++) {
            size_t i = q0 + a;
            double *row = st->S + a * ATTN_TILE_K;
            for (size_t b = 0; b < nr; b++) {
                size_t p = q0 + b;
                int valid = p <= i && st->next[p] > i && st->assign[p] != st->assign[i];
                row[b] = valid ? row[b] + st->biasnew[b] : -INFINITY;
            }
        }
        attn_acc_add(&st->accn, q0, nr, st->S, ATTN_TILE_K, st->Vnew, dv, nr);
        /* Advance: the tile's members become the clusters' latest summaries. */
        for (size_t p = q0; p < q0 + nr; p++) {
            size_t r = st->assign[p], u = st->slot[p];
            memcpy(st->Kt + r * d, st->Kp + u * d, d * sizeof *st->Kt);
            memcpy(st->Vt + r * dv, st->Vp + u * dv, dv * sizeof *st->Vt);
            st->bias[r] = st->biasp[u];
            st->seen[r]++;
            st->firstin[r] = n;
        }
    }
}

/* Causal group terms with an oracle, one query at a time: the group C^r intersected with [0, i]
 * is the first cntle[r] members of r. */
static void causal_groups_oracle(learnable_state *st, const attn_problem *pb, const double *Q,
                                 const double *K, const double *V)
{
    size_t n = pb->n, d = pb->d, dv = pb->dv, L = st->L;
    memset(st->cntle, 0, L * sizeof *st->cntle);
    for (size_t i = 0; i < n; i++) {
        st->cntle[st->assign[i]]++;
        for (size_t r = 0; r < L; r++) {
            size_t cnt = st->cntle[r];
            if (r == st->assign[i] || cnt == 0)
                continue;
            size_t s = st->start[r];
            combiner_add_oracle(&st->accn, i, 1, Q + i * d, K, V, st->members + s, cnt,
                                st->Vp + (s + cnt - 1) * dv, st->oracle, pb->scale, d,
                                st->oracle_scratch);
        }
    }
}

static void apply_causal(learnable_state *st, const attn_problem *pb, const double *Q,
                         const double *K, const double *V, double *O)
{
    size_t dv = pb->dv;
    prefix_summaries(st, pb);
    attn_acc_reset(&st->accn);
    if (st->oracle == COMBINER_ORACLE_NONE)
        causal_groups(st, pb, Q);
    else
        causal_groups_oracle(st, pb, Q, K, V);
    /* Direct terms, a full tile of each cluster's queries at a time, merged with their groups;
     * the rows past the cluster's end are dropped. */
    st->acc.rows = CAUSAL_TILE;
    for (size_t r = 0; r < st->L; r++) {
        size_t s = st->start[r];
        for (size_t a0 = 0; a0 < st->count[r]; a0 += CAUSAL_TILE) {
            size_t nr = st->count[r] - a0 < CAUSAL_TILE ? st->count[r] - a0 : CAUSAL_TILE;
            attn_acc_reset(&st->acc);
            add_direct(st, pb, r, a0, CAUSAL_TILE);
            for (size_t a = 0; a < nr; a++) {
                size_t p = st->members[s + a0 + a];
                attn_acc_merge_row(&st->acc, a, &st->accn, p);
                attn_acc_finish(&st->acc, a, 1, O + p * dv, dv, NULL);
            }
        }
    }
}

static int learnable_apply(attn_plan *plan, const double *Q, const double *K, const double *V,
                           double *O)
{
    learnable_state *st = plan->state;
    const attn_problem *pb = &plan->problem;
    size_t n = pb->n, d = pb->d, dv = pb->dv;
    unit_keys(st, K, n, d);
    if (pb->causal)
        kmeans_online(st, n, d);
    else
        kmeans_lloyd(st, n, d);
    build_partition(st, n, pb->causal);
    gather_rows(st->Qc, Q, st->members, n, d);
    gather_rows(st->Kc, K, st->members, n, d);
    gather_rows(st->Vc, V, st->members, n, dv);
    if (pb->causal)
        apply_causal(st, pb, Q, K, V, O);
    else
        apply_bidirectional(st, pb, Q, K, V, O);
    return ATTN_OK;
}

/* Flops for balanced clusters of n / n_c keys (the real sizes come from the data). */
static void learnable_cost(const attn_plan *plan, attn_cost *cost)
{
    const learnable_state *st = plan->state;
    const attn_problem *pb = &plan->problem;
    double n = (double) pb->n, d = (double) pb->d, dv = (double) pb->dv;
    double nc = (double) st->nc, w = n / nc;
    double cluster, pairs;
    if (pb->causal) {
        cluster = 2.0 * n * nc * d;
        /* Direct: half of each cluster; prefix scan: the same again; groups: n_c + one tile. */
        pairs = n * w + n * (nc + (double) GROUP_TILE);
    } else {
        cluster = 2.0 * (double) st->iterations * n * nc * d;
        /* Direct: the own cluster; summaries: every key once; groups: every other cluster. */
        pairs = n * w + n + n * (nc - 1.0);
    }
    if (st->oracle != COMBINER_ORACLE_NONE)
        pairs = n * n * (pb->causal ? 0.5 : 1.0) + n * w;
    cost->flops = cluster + 4.0 * n * d + 2.0 * pairs * (d + dv);
    cost->exps = pairs;
}

static int learnable_exact_limit(const attn_problem *problem, double *values)
{
    /* One cluster: every allowed key is in the direct set.  size = ceil(n / 1) agrees with it
     * (a spec carries no "auto" value). */
    values[0] = 1.0;
    values[1] = (double) problem->n;
    return ATTN_OK;
}

const attn_method attn_method_combiner_learnable = {
    .id = "combiner_learnable",
    .summary = "Combiner-Learnable: spherical k-means clusters of the keys, own cluster direct, "
               "every other cluster through its pooled summary, one softmax",
    .reference = "Ren et al., Combiner: Full Attention Transformer with Sparse Computation Cost, "
                 "NeurIPS 2021, section 4.4; Roy et al., Routing Transformers, TACL 2021",
    .caps = ATTN_CAN_CAUSAL | ATTN_CAN_BIDIR | ATTN_ROW_STOCHASTIC | ATTN_RANDOM,
    .params = learnable_params,
    .budget = "size",
    .init = learnable_init,
    .fini = learnable_fini,
    .apply = learnable_apply,
    .materialize = NULL,
    .cost = learnable_cost,
    .exact_limit = learnable_exact_limit,
};
