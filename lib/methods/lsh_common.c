/* lsh_common.c — SimHash, bucket orders, the block-diagonal exact part, the sampled residual and
 * the causal recursion shared by kdeformer and hyperattention (the definitions are in lsh.h and
 * in the two method files).
 *
 * Layout of one apply.  The plan's gsl_rng_mt19937 is re-seeded from `seed`, the r x d SimHash
 * directions are drawn (standard normal, Box-Muller), and then either the whole bidirectional
 * problem is one sub-problem, or the causal recursion visits its pieces in a fixed order.  Every
 * piece adds into one accumulator of n rows (the shared streaming softmax of softmax.c): exact
 * pieces and the residual tile by tile in position order, the block part through a small tile
 * accumulator merged row by row (log-sum-exp).  The rng is consumed in the same order on every
 * apply and by amounts that depend on shapes only, so materialize (which runs the same pass twice:
 * once for the normalisers, once writing the weights into A) sees the same draws as apply.
 *
 * Causality, bit for bit.  In the causal recursion a query row i must not depend on queries,
 * keys or values after i.  Keys of an off-diagonal piece all precede its queries; the rng stream
 * is data-independent; hashing, the residual and the exact pieces run on fixed tiles of positions.
 * The released pairing (cut the sorted queries into equal blocks) would let a later query move an
 * earlier one to another block, so causal pieces pair each query with a key block by its own
 * bucket (lsh.h), and the block part processes the queries of a key block in position order in
 * tiles of CAUSAL_TQ rows, always full (padded with zero rows): every dgemm has a shape fixed by
 * the positions, and row i sits in a slot fixed by the queries before it.
 *
 * Memory: O((n + m)(d + dv) + S (d + dv) + ATTN_TILE_Q ATTN_TILE_K), allocated by init.
 */
#include "config.h"

#include <cblas.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lsh.h"

#define HASH_TILE 256         /* rows per projection dgemm */
#define BLOCK_TQ ATTN_TILE_Q  /* queries per block-part tile (bidirectional) */
#define CAUSAL_TQ 32          /* queries per block-part tile in causal pieces (always full) */
#define MAX_BUFFERS 40

const char *const lsh_order_choices[] = { "reference", "gray", NULL };

typedef struct lsh_state {
    lsh_config cfg;
    size_t n, m, d, dv, r;
    double scale;
    int causal;
    gsl_rng *rng;
    double *W;         /* r x d SimHash directions */
    double *P;         /* HASH_TILE x r projections */
    uint32_t *kkey;    /* sort key of each key of the piece (local index) */
    uint32_t *qkey;    /* sort key of each query of the piece */
    uint32_t *ksk;     /* sort keys of the keys in sorted order */
    size_t *korder;    /* sorted position -> local key */
    size_t *qorder;    /* sorted rank -> local query (bidirectional) */
    size_t *tmp;       /* radix sort scratch, max(n, m) */
    size_t *qblock;    /* key block paired with each local query */
    size_t *glist;     /* local queries grouped by key block (causal) */
    size_t *gstart;    /* first entry of each group, T + 1 */
    double *Ks, *Vs;   /* keys and values in sorted order */
    double *Qt;        /* BLOCK_TQ x d gathered queries */
    size_t *trow;      /* global row of each tile row (SIZE_MAX: padding) */
    size_t *tcol;      /* ATTN_TILE_K: global key of each tile column */
    size_t *dpos;      /* S: sorted position of each draw */
    size_t *dblock;    /* S: key block of each draw */
    size_t *dcol;      /* S: global key of each draw */
    double *bias;      /* S: log(1 / (S p)) of each draw */
    double *Kd, *Vd;   /* S x d, S x dv: the drawn keys and values */
    double *cdf;       /* n_k: cumulative u over the sorted keys (LSH_SAMPLE_VNORM) */
    double *G;         /* (dv + 1)^2: [V, 1]^T [V, 1] */
    double *x, *y;     /* dv + 1: power iteration */
    double *S;         /* ATTN_TILE_Q x ATTN_TILE_K logits */
    double *lse;       /* n: log normalisers (materialize) */
    double *zero;      /* dv zeros: the value of a padded key */
    attn_acc tile;     /* BLOCK_TQ rows */
    attn_acc acc;      /* n rows: the result */
    void *mem[MAX_BUFFERS];
    size_t nmem;
} lsh_state;

/* One pass over the problem: accumulate (A == NULL) or write the weights into A. */
typedef struct lsh_run {
    lsh_state *st;
    const double *Q, *K, *V;
    double *A;
} lsh_run;

uint32_t lsh_sort_key(uint32_t bucket, int order)
{
    if (order == LSH_ORDER_REFERENCE)
        return bucket ^ (bucket >> 1);
    /* Gray^-1: prefix XOR of the bits from the top. */
    uint32_t x = bucket;
    x ^= x >> 1;
    x ^= x >> 2;
    x ^= x >> 4;
    x ^= x >> 8;
    x ^= x >> 16;
    return x;
}

static void *take(attn_plan *plan, lsh_state *st, size_t count, size_t size)
{
    if (st->nmem == MAX_BUFFERS)
        return NULL;
    void *p = attn_plan_calloc(plan, count > 0 ? count : 1, size);
    if (p != NULL)
        st->mem[st->nmem++] = p;
    return p;
}

void lsh_plan_fini(attn_plan *plan)
{
    lsh_state *st = plan->state;
    if (st == NULL)
        return;
    for (size_t t = 0; t < st->nmem; t++)
        free(st->mem[t]);
    if (st->rng != NULL)
        gsl_rng_free(st->rng);
    free(st);
    plan->state = NULL;
}

int lsh_plan_init(attn_plan *plan, const lsh_config *cfg)
{
    const attn_problem *pb = &plan->problem;
    lsh_state *st = attn_plan_calloc(plan, 1, sizeof *st);
    if (st == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "%s: plan state", cfg->id);
    plan->state = st;
    st->cfg = *cfg;
    st->n = pb->n;
    st->m = pb->m;
    st->d = pb->d;
    st->dv = pb->dv;
    st->r = cfg->bits;
    st->scale = pb->scale;
    st->causal = pb->causal;
    st->rng = gsl_rng_alloc(gsl_rng_mt19937);
    if (st->rng == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "%s: random number generator", cfg->id);
    size_t n = st->n, m = st->m, d = st->d, dv = st->dv, r = st->r, S = cfg->samples;
    size_t big = n > m ? n : m;
    /* Blocks of the largest piece: ceil(m / b) keys blocks (causal pieces are smaller). */
    size_t tmax = m / cfg->block + 2;
    int ok = 1;
#define TAKE(ptr, count) ok = ok && ((ptr) = take(plan, st, (count), sizeof *(ptr))) != NULL
    TAKE(st->W, r * d);
    TAKE(st->P, HASH_TILE * r);
    TAKE(st->kkey, m);
    TAKE(st->qkey, n);
    TAKE(st->ksk, m);
    TAKE(st->korder, m);
    TAKE(st->qorder, n);
    TAKE(st->tmp, big);
    TAKE(st->qblock, n);
    TAKE(st->glist, n);
    TAKE(st->gstart, tmax + 1);
    TAKE(st->Ks, m * d);
    TAKE(st->Vs, m * dv);
    TAKE(st->Qt, BLOCK_TQ * d);
    TAKE(st->trow, BLOCK_TQ);
    TAKE(st->tcol, ATTN_TILE_K);
    TAKE(st->dpos, S);
    TAKE(st->dblock, S);
    TAKE(st->dcol, S);
    TAKE(st->bias, S);
    TAKE(st->Kd, S * d);
    TAKE(st->Vd, S * dv);
    if (cfg->sampling == LSH_SAMPLE_VNORM) {
        TAKE(st->cdf, m);
        TAKE(st->G, (dv + 1) * (dv + 1));
        TAKE(st->x, dv + 1);
        TAKE(st->y, dv + 1);
    }
    TAKE(st->S, ATTN_TILE_Q * ATTN_TILE_K);
    TAKE(st->lse, n);
    TAKE(st->zero, dv);
    double *tilebuf = NULL, *accbuf = NULL;
    TAKE(tilebuf, attn_acc_doubles(BLOCK_TQ, dv));
    TAKE(accbuf, attn_acc_doubles(n, dv));
#undef TAKE
    if (!ok)
        return ATTN_ERR(ATTN_ENOMEM, "%s: scratch for n = %zu, m = %zu, d = %zu, dv = %zu, "
                        "samples = %zu", cfg->id, n, m, d, dv, S);
    attn_acc_init(&st->tile, BLOCK_TQ, dv, tilebuf);
    attn_acc_init(&st->acc, n, dv, accbuf);
    return ATTN_OK;
}

/* A standard normal draw (Box-Muller; two uniforms per draw, whatever their values). */
static double gauss(gsl_rng *rng)
{
    double u = gsl_rng_uniform_pos(rng), v = gsl_rng_uniform(rng);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586477 * v);
}

/* keys[a] = sort key of the bucket of row a of X (count x d). */
static void hash_rows(lsh_state *st, const double *X, size_t count, uint32_t *keys)
{
    size_t d = st->d, r = st->r;
    for (size_t a0 = 0; a0 < count; a0 += HASH_TILE) {
        size_t nr = count - a0 < HASH_TILE ? count - a0 : HASH_TILE;
        attn_logits(X + a0 * d, nr, st->W, r, d, 1.0, st->P, r);
        for (size_t a = 0; a < nr; a++) {
            const double *p = st->P + a * r;
            uint32_t bucket = 0;
            for (size_t t = 0; t < r; t++)
                bucket |= (uint32_t) (p[t] > 0.0) << t;
            keys[a0 + a] = lsh_sort_key(bucket, st->cfg.order);
        }
    }
}

/* order = 0..count-1 stably sorted by key (LSD radix sort, 8 bits a pass, r bits in all). */
static void radix_order(const uint32_t *key, size_t count, size_t bits, size_t *order,
                        size_t *tmp)
{
    for (size_t a = 0; a < count; a++)
        order[a] = a;
    for (size_t shift = 0; shift < bits; shift += 8) {
        size_t pos[257] = { 0 };
        for (size_t a = 0; a < count; a++)
            pos[((key[order[a]] >> shift) & 255u) + 1]++;
        for (size_t c = 0; c < 256; c++)
            pos[c + 1] += pos[c];
        for (size_t a = 0; a < count; a++)
            tmp[pos[(key[order[a]] >> shift) & 255u]++] = order[a];
        memcpy(order, tmp, count * sizeof *order);
    }
}

/* A += the weights of a tile of logits S (nr x nc, leading dimension ATTN_TILE_K): row a is the
 * global query rows[a] (r0 + a when rows is NULL; SIZE_MAX: padding), column b the global key
 * cols[b] (c0 + b when cols is NULL); the weight is e^{S - lse}. */
static void emit(lsh_run *rn, const double *S, size_t nr, size_t nc, const size_t *rows,
                 size_t r0, const size_t *cols, size_t c0)
{
    lsh_state *st = rn->st;
    for (size_t a = 0; a < nr; a++) {
        size_t i = rows != NULL ? rows[a] : r0 + a;
        if (i == SIZE_MAX)
            continue;
        double l = st->lse[i];
        double *Arow = rn->A + i * st->m;
        const double *row = S + a * ATTN_TILE_K;
        for (size_t b = 0; b < nc; b++)
            if (row[b] != -INFINITY)
                Arow[cols != NULL ? cols[b] : c0 + b] += exp(row[b] - l);
    }
}

/* Exact attention of queries [qlo, qlo + nq) over keys [klo, klo + nk) (causal: the diagonal
 * piece, qlo == klo, keys j <= i), tiles of positions. */
static void exact_piece(lsh_run *rn, size_t qlo, size_t nq, size_t klo, size_t nk, int causal)
{
    lsh_state *st = rn->st;
    size_t d = st->d, dv = st->dv;
    for (size_t a0 = 0; a0 < nq; a0 += ATTN_TILE_Q) {
        size_t nr = nq - a0 < ATTN_TILE_Q ? nq - a0 : ATTN_TILE_Q;
        size_t q0 = qlo + a0, khi = causal ? a0 + nr : nk;
        for (size_t k0 = 0; k0 < khi; k0 += ATTN_TILE_K) {
            size_t nc = khi - k0 < ATTN_TILE_K ? khi - k0 : ATTN_TILE_K;
            attn_logits(rn->Q + q0 * d, nr, rn->K + (klo + k0) * d, nc, d, st->scale, st->S,
                        ATTN_TILE_K);
            if (causal && k0 + nc - 1 > a0)
                attn_mask_window(st->S, ATTN_TILE_K, q0, nr, klo + k0, nc, SIZE_MAX, 0);
            if (rn->A == NULL)
                attn_acc_add(&st->acc, q0, nr, st->S, ATTN_TILE_K, rn->V + (klo + k0) * dv, dv,
                             nc);
            else
                emit(rn, st->S, nr, nc, NULL, q0, NULL, klo + k0);
        }
    }
}

/* lambda = top eigenvalue of [V, 1]^T [V, 1] (nk rows of V) by power iteration from a random
 * start; then cdf over the sorted keys of u_p = ||[v_p, 1]|| / lambda + 1 / nk. */
static void vnorm_distribution(lsh_state *st, const double *V, size_t nk)
{
    size_t dv = st->dv, k = dv + 1;
    double *G = st->G;
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int) dv, (int) dv, (int) nk, 1.0, V,
                (int) dv, V, (int) dv, 0.0, G, (int) k);
    for (size_t c = 0; c < dv; c++) {
        double s = 0.0;
        for (size_t j = 0; j < nk; j++)
            s += V[j * dv + c];
        G[c * k + dv] = s;
        G[dv * k + c] = s;
    }
    G[dv * k + dv] = (double) nk;
    double norm = 0.0;
    for (size_t c = 0; c < k; c++) {
        st->x[c] = gauss(st->rng);
        norm += st->x[c] * st->x[c];
    }
    norm = sqrt(norm);
    /* A zero start (probability 0) falls back to the ones vector. */
    for (size_t c = 0; c < k; c++)
        st->x[c] = norm > 0.0 ? st->x[c] / norm : 1.0 / sqrt((double) k);
    double lambda = 0.0;
    for (size_t it = 0; it < st->cfg.power_iters; it++) {
        cblas_dgemv(CblasRowMajor, CblasNoTrans, (int) k, (int) k, 1.0, G, (int) k, st->x, 1,
                    0.0, st->y, 1);
        lambda = cblas_dnrm2((int) k, st->y, 1);
        for (size_t c = 0; c < k; c++)
            st->x[c] = st->y[c] / lambda;
    }
    /* G holds the entry nk > 0 on its diagonal, so lambda >= nk / (dv + 1) > 0 after one step
     * from a unit vector of positive weight on it; guard the measure-zero rest anyway. */
    if (!(lambda > 0.0))
        lambda = (double) nk;
    double total = 0.0;
    for (size_t p = 0; p < nk; p++) {
        const double *v = st->Vs + p * dv;
        double sq = 1.0;
        for (size_t c = 0; c < dv; c++)
            sq += v[c] * v[c];
        total += sqrt(sq) / lambda + 1.0 / (double) nk;
        st->cdf[p] = total;
    }
}

/* Draw the residual sample of a piece with nk sorted keys in blocks of b. */
static void draw_samples(lsh_run *rn, size_t klo, size_t nk)
{
    lsh_state *st = rn->st;
    size_t S = st->cfg.samples, b = st->cfg.block, d = st->d, dv = st->dv;
    if (st->cfg.sampling == LSH_SAMPLE_VNORM)
        vnorm_distribution(st, rn->V + klo * dv, nk);
    double logS = log((double) S);
    for (size_t t = 0; t < S; t++) {
        size_t p;
        if (st->cfg.sampling == LSH_SAMPLE_VNORM) {
            double total = st->cdf[nk - 1];
            double u = gsl_rng_uniform(st->rng) * total;
            /* First p with cdf[p] > u. */
            size_t lo = 0, hi = nk - 1;
            while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (st->cdf[mid] > u)
                    hi = mid;
                else
                    lo = mid + 1;
            }
            p = lo;
            double up = st->cdf[p] - (p > 0 ? st->cdf[p - 1] : 0.0);
            st->bias[t] = -(logS + log(up / total));
        } else {
            p = (size_t) gsl_rng_uniform_int(st->rng, (unsigned long) nk);
            st->bias[t] = log((double) nk) - logS;
        }
        st->dpos[t] = p;
        st->dblock[t] = p / b;
        st->dcol[t] = klo + st->korder[p];
        memcpy(st->Kd + t * d, st->Ks + p * d, d * sizeof *st->Kd);
        memcpy(st->Vd + t * dv, st->Vs + p * dv, dv * sizeof *st->Vd);
    }
}

/* Pair the nq queries of a piece with the T key blocks: qblock, and the groups glist/gstart (the
 * queries of each key block; *groups points at the list). */
static const size_t *pair_queries(lsh_state *st, size_t nq, size_t nk, size_t T)
{
    size_t b = st->cfg.block;
    if (!st->causal) {
        /* As released: sorted queries cut into T blocks in proportion to the key blocks. */
        radix_order(st->qkey, nq, st->r, st->qorder, st->tmp);
        for (size_t t = 0; t < T; t++)
            st->gstart[t] = t * b * nq / nk;
        st->gstart[T] = nq;
        for (size_t t = 0; t < T; t++)
            for (size_t k = st->gstart[t]; k < st->gstart[t + 1]; k++)
                st->qblock[st->qorder[k]] = t;
        return st->qorder;
    }
    /* Causal: the block holding the middle of the query's bucket among the sorted keys. */
    memset(st->gstart, 0, (T + 1) * sizeof *st->gstart);
    for (size_t a = 0; a < nq; a++) {
        uint32_t g = st->qkey[a];
        size_t lo = 0, hi = nk;
        while (lo < hi) { /* first sorted key with sort key >= g */
            size_t mid = lo + (hi - lo) / 2;
            if (st->ksk[mid] < g)
                lo = mid + 1;
            else
                hi = mid;
        }
        size_t first = lo;
        hi = nk;
        while (lo < hi) { /* first sorted key with sort key > g */
            size_t mid = lo + (hi - lo) / 2;
            if (st->ksk[mid] <= g)
                lo = mid + 1;
            else
                hi = mid;
        }
        size_t pos = first < lo ? first + (lo - 1 - first) / 2 : (first < nk ? first : nk - 1);
        st->qblock[a] = pos / b;
        st->gstart[pos / b + 1]++;
    }
    for (size_t t = 0; t < T; t++)
        st->gstart[t + 1] += st->gstart[t];
    /* Counting sort by block, in position order: tmp holds the fill pointers. */
    memcpy(st->tmp, st->gstart, T * sizeof *st->tmp);
    for (size_t a = 0; a < nq; a++)
        st->glist[st->tmp[st->qblock[a]]++] = a;
    return st->glist;
}

/* The block part: each query group against its key block, through the tile accumulator. */
static void block_part(lsh_run *rn, size_t qlo, size_t nk, size_t klo, size_t T,
                       const size_t *groups)
{
    lsh_state *st = rn->st;
    size_t d = st->d, dv = st->dv, b = st->cfg.block;
    size_t tq = st->causal ? CAUSAL_TQ : BLOCK_TQ;
    const double *Q = rn->Q;
    for (size_t t = 0; t < T; t++) {
        size_t k_lo = t * b, k_hi = k_lo + b < nk ? k_lo + b : nk;
        size_t g1 = st->gstart[t + 1];
        for (size_t c = st->gstart[t]; c < g1; c += tq) {
            size_t real = g1 - c < tq ? g1 - c : tq;
            size_t nr = st->causal ? tq : real;
            for (size_t a = 0; a < nr; a++) {
                if (a < real) {
                    size_t i = qlo + groups[c + a];
                    st->trow[a] = i;
                    memcpy(st->Qt + a * d, Q + i * d, d * sizeof *st->Qt);
                } else {
                    st->trow[a] = SIZE_MAX;
                    memset(st->Qt + a * d, 0, d * sizeof *st->Qt);
                }
            }
            if (rn->A == NULL) {
                st->tile.rows = nr;
                attn_acc_reset(&st->tile);
            }
            for (size_t k0 = k_lo; k0 < k_hi; k0 += ATTN_TILE_K) {
                size_t nc = k_hi - k0 < ATTN_TILE_K ? k_hi - k0 : ATTN_TILE_K;
                attn_logits(st->Qt, nr, st->Ks + k0 * d, nc, d, st->scale, st->S, ATTN_TILE_K);
                if (rn->A == NULL) {
                    attn_acc_add(&st->tile, 0, nr, st->S, ATTN_TILE_K, st->Vs + k0 * dv, dv, nc);
                } else {
                    for (size_t bb = 0; bb < nc; bb++)
                        st->tcol[bb] = klo + st->korder[k0 + bb];
                    emit(rn, st->S, nr, nc, st->trow, 0, st->tcol, 0);
                }
            }
            if (rn->A != NULL)
                continue;
            /* The published padding: T b - nk zero keys (logit 0, value 0) in the last block. */
            if (st->cfg.pad_zero_key && t == T - 1 && nk % b != 0)
                for (size_t a = 0; a < real; a++)
                    attn_acc_add_one(&st->tile, a, 0.0, (double) (T * b - nk), st->zero);
            for (size_t a = 0; a < real; a++)
                attn_acc_merge_row(&st->acc, st->trow[a], &st->tile, a);
        }
    }
}

/* The residual: every query against the drawn keys, tiles of positions. */
static void sample_part(lsh_run *rn, size_t qlo, size_t nq)
{
    lsh_state *st = rn->st;
    size_t d = st->d, dv = st->dv, S = st->cfg.samples;
    for (size_t a0 = 0; a0 < nq; a0 += ATTN_TILE_Q) {
        size_t nr = nq - a0 < ATTN_TILE_Q ? nq - a0 : ATTN_TILE_Q;
        for (size_t c0 = 0; c0 < S; c0 += ATTN_TILE_K) {
            size_t nc = S - c0 < ATTN_TILE_K ? S - c0 : ATTN_TILE_K;
            attn_logits(rn->Q + (qlo + a0) * d, nr, st->Kd + c0 * d, nc, d, st->scale, st->S,
                        ATTN_TILE_K);
            for (size_t a = 0; a < nr; a++) {
                size_t own = st->qblock[a0 + a];
                double *row = st->S + a * ATTN_TILE_K;
                for (size_t b = 0; b < nc; b++)
                    row[b] = st->cfg.exclude_block && st->dblock[c0 + b] == own
                                 ? -INFINITY
                                 : row[b] + st->bias[c0 + b];
            }
            if (rn->A == NULL)
                attn_acc_add(&st->acc, qlo + a0, nr, st->S, ATTN_TILE_K, st->Vd + c0 * dv, dv,
                             nc);
            else
                emit(rn, st->S, nr, nc, NULL, qlo + a0, st->dcol + c0, 0);
        }
    }
}

/* The non-causal estimate of queries [qlo, qlo + nq) over keys [klo, klo + nk). */
static void estimate(lsh_run *rn, size_t qlo, size_t nq, size_t klo, size_t nk)
{
    lsh_state *st = rn->st;
    size_t d = st->d, dv = st->dv, b = st->cfg.block;
    size_t T = (nk + b - 1) / b;
    hash_rows(st, rn->K + klo * d, nk, st->kkey);
    hash_rows(st, rn->Q + qlo * d, nq, st->qkey);
    radix_order(st->kkey, nk, st->r, st->korder, st->tmp);
    for (size_t p = 0; p < nk; p++) {
        size_t j = st->korder[p];
        st->ksk[p] = st->kkey[j];
        memcpy(st->Ks + p * d, rn->K + (klo + j) * d, d * sizeof *st->Ks);
        memcpy(st->Vs + p * dv, rn->V + (klo + j) * dv, dv * sizeof *st->Vs);
    }
    const size_t *groups = pair_queries(st, nq, nk, T);
    block_part(rn, qlo, nk, klo, T, groups);
    draw_samples(rn, klo, nk);
    sample_part(rn, qlo, nq);
}

/* A non-causal piece: exact when small (n_q below exact_below, or one key block), else the
 * estimate. */
static void noncausal_piece(lsh_run *rn, size_t qlo, size_t nq, size_t klo, size_t nk)
{
    lsh_state *st = rn->st;
    if (nq < st->cfg.exact_below || nk <= st->cfg.block)
        exact_piece(rn, qlo, nq, klo, nk, 0);
    else
        estimate(rn, qlo, nq, klo, nk);
}

/* The causal recursion on positions [lo, lo + len). */
static void causal_piece(lsh_run *rn, size_t lo, size_t len)
{
    if (len <= rn->st->cfg.causal_base) {
        exact_piece(rn, lo, len, lo, len, 1);
        return;
    }
    size_t h = (len + 1) / 2;
    causal_piece(rn, lo, h);
    causal_piece(rn, lo + h, len - h);
    noncausal_piece(rn, lo + h, len - h, lo, h);
}

static void run_pass(lsh_run *rn)
{
    lsh_state *st = rn->st;
    gsl_rng_set(st->rng, st->cfg.seed);
    for (size_t t = 0; t < st->r * st->d; t++)
        st->W[t] = gauss(st->rng);
    if (rn->A == NULL)
        attn_acc_reset(&st->acc);
    if (st->causal)
        causal_piece(rn, 0, st->n);
    else
        noncausal_piece(rn, 0, st->n, 0, st->m);
}

int lsh_plan_apply(attn_plan *plan, const double *Q, const double *K, const double *V, double *O)
{
    lsh_state *st = plan->state;
    lsh_run rn = { .st = st, .Q = Q, .K = K, .V = V, .A = NULL };
    run_pass(&rn);
    attn_acc_finish(&st->acc, 0, st->n, O, st->dv, NULL);
    return ATTN_OK;
}

int lsh_plan_materialize(attn_plan *plan, const double *Q, const double *K, const double *V,
                         double *A)
{
    lsh_state *st = plan->state;
    lsh_run rn = { .st = st, .Q = Q, .K = K, .V = V, .A = NULL };
    run_pass(&rn);
    for (size_t i = 0; i < st->n; i++)
        st->lse[i] = st->acc.mx[i] + log(st->acc.sum[i]);
    memset(A, 0, st->n * st->m * sizeof *A);
    rn.A = A;
    run_pass(&rn);
    return ATTN_OK;
}

int lsh_plan_sums(attn_plan *plan, const double *Q, const double *K, const double *V,
                  const double *shift, double *num, double *den)
{
    lsh_state *st = plan->state;
    size_t dv = st->dv;
    lsh_run rn = { .st = st, .Q = Q, .K = K, .V = V, .A = NULL };
    run_pass(&rn);
    for (size_t i = 0; i < st->n; i++) {
        double f = exp(st->acc.mx[i] - (shift != NULL ? shift[i] : 0.0));
        den[i] = f * st->acc.sum[i];
        for (size_t c = 0; c < dv; c++)
            num[i * dv + c] = f * st->acc.out[i * dv + c];
    }
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Cost: the same recursion, counted.
 */
typedef struct tally {
    double flops, exps;
} tally;

static void cost_exact(const lsh_state *st, double nq, double nk, int causal, tally *c)
{
    double pairs = causal ? nq * (nq + 1) / 2 : nq * nk;
    c->flops += 2.0 * pairs * (double) (st->d + st->dv);
    c->exps += pairs;
}

static void cost_noncausal(const lsh_state *st, size_t nq, size_t nk, tally *c)
{
    size_t b = st->cfg.block;
    if (nq < st->cfg.exact_below || nk <= b) {
        cost_exact(st, (double) nq, (double) nk, 0, c);
        return;
    }
    double d = (double) st->d, dv = (double) st->dv, S = (double) st->cfg.samples;
    double q = (double) nq, k = (double) nk, T = ceil(k / (double) b);
    /* Hash: 2 (n_q + n_k) d r; sort: a few passes over n_q + n_k (not flops). */
    c->flops += 2.0 * (q + k) * d * (double) st->r;
    /* Block part: each query against one block of about n_k / T keys. */
    double pairs = q * k / T + q * S;
    c->flops += 2.0 * pairs * (d + dv);
    c->exps += pairs;
    if (st->cfg.sampling == LSH_SAMPLE_VNORM) {
        double kk = dv + 1.0;
        c->flops += 2.0 * k * dv * dv + 3.0 * k * dv + 2.0 * kk * kk * (double) st->cfg.power_iters;
    }
}

static void cost_causal(const lsh_state *st, size_t len, tally *c)
{
    if (len <= st->cfg.causal_base) {
        cost_exact(st, (double) len, (double) len, 1, c);
        return;
    }
    size_t h = (len + 1) / 2;
    cost_causal(st, h, c);
    cost_causal(st, len - h, c);
    cost_noncausal(st, len - h, h, c);
}

void lsh_plan_cost(const attn_plan *plan, attn_cost *cost)
{
    const lsh_state *st = plan->state;
    tally c = { 0.0, 0.0 };
    if (st->causal)
        cost_causal(st, st->n, &c);
    else
        cost_noncausal(st, st->n, st->m, &c);
    cost->flops = c.flops;
    cost->exps = c.exps;
}
