/* linear_common.c — the shared kernel of normalised linear attention (definitions in linear.h).
 *
 * Defines no method: performer.c and linear_elu.c supply feature maps and call
 * attn_linear_apply / attn_linear_materialize.  All products are cblas_dgemm; apply allocates
 * nothing and uses the scratch its caller sized with attn_linear_scratch_doubles.
 */
#include "config.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "linear.h"

/* Rows per chunk: position-aligned; no larger than the problem, so small problems take little
 * scratch. */
static size_t chunk_rows(const attn_problem *pb)
{
    size_t chunk = pb->causal ? ATTN_LINEAR_CHUNK : ATTN_LINEAR_CHUNK_BIDIR;
    size_t span = pb->n > pb->m ? pb->n : pb->m;
    return span < chunk ? span : chunk;
}

/* The scratch, carved from one block in this order. */
typedef struct linear_scratch {
    double *PQ;   /* chunk x F query features */
    double *PK;   /* chunk x F key features */
    double *lk;   /* chunk key log-scales */
    double *R;    /* chunk running maxima of lk (causal) */
    double *G;    /* chunk x chunk intra-chunk kernel (causal) */
    double *Vaug; /* chunk x (dv + 1): [V_c, 1] */
    double *Out;  /* chunk x (dv + 1): numerators and denominators */
    double *T;    /* chunk x (dv + 1): the earlier chunks' part (causal) */
    double *S;    /* F x (dv + 1): [Phi_K^T V, Phi_K^T 1] over the keys summed so far */
} linear_scratch;

static size_t carve(const attn_problem *pb, size_t F, double *base, linear_scratch *s)
{
    size_t chunk = chunk_rows(pb), w = pb->dv + 1, used = 0;
    double *p = base;
#define TAKE(field, count)                                                                         \
    do {                                                                                           \
        if (s != NULL)                                                                             \
            s->field = p + used;                                                                   \
        used += (count);                                                                           \
    } while (0)
    TAKE(PQ, chunk * F);
    TAKE(PK, chunk * F);
    TAKE(lk, chunk);
    TAKE(R, chunk);
    TAKE(G, pb->causal ? chunk * chunk : 0);
    TAKE(Vaug, chunk * w);
    TAKE(Out, chunk * w);
    TAKE(T, pb->causal ? chunk * w : 0);
    TAKE(S, F * w);
#undef TAKE
    return used;
}

size_t attn_linear_scratch_doubles(const attn_problem *pb, size_t F)
{
    return carve(pb, F, NULL, NULL);
}

void attn_linear_cost(const attn_problem *pb, size_t F, attn_cost *cost)
{
    double w = (double) pb->dv + 1.0, f = (double) F;
    double flops = 2.0 * ((double) pb->m + (double) pb->n) * f * w;
    if (pb->causal) {
        size_t chunk = chunk_rows(pb);
        for (size_t c0 = 0; c0 < pb->n; c0 += chunk) {
            double nc = (double) (pb->n - c0 < chunk ? pb->n - c0 : chunk);
            flops += 2.0 * nc * nc * (f + w);
        }
    }
    cost->flops += flops;
}

void attn_linear_project(const double *X, size_t rows, size_t d, const double *W, size_t M,
                         double alpha, double *P)
{
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int) rows, (int) M, (int) d, alpha, X,
                (int) d, W, (int) d, 0.0, P, (int) M);
}

static void scale_row(double *x, size_t count, double f)
{
    for (size_t t = 0; t < count; t++)
        x[t] *= f;
}

/* Vaug (nc x (dv + 1)) = [V rows, 1]. */
static void augment(const double *V, size_t nc, size_t dv, double *Vaug)
{
    for (size_t b = 0; b < nc; b++) {
        memcpy(Vaug + b * (dv + 1), V + b * dv, dv * sizeof *V);
        Vaug[b * (dv + 1) + dv] = 1.0;
    }
}

/* O rows [r0, r0 + nr) = numerators / (denominator + eps) from Out (nr x (dv + 1)). */
static int finish(const double *Out, size_t r0, size_t nr, size_t dv, double eps, double *O,
                  const char *who)
{
    for (size_t a = 0; a < nr; a++) {
        const double *num = Out + a * (dv + 1);
        double den = num[dv] + eps;
        if (!(den > 0.0) || !isfinite(den))
            return ATTN_ERR(ATTN_EINVAL, "%s: row %zu: denominator %g is not positive and finite "
                            "(its feature products underflow to 0 or overflow)", who, r0 + a, den);
        double *o = O + (r0 + a) * dv;
        for (size_t c = 0; c < dv; c++)
            o[c] = num[c] / den;
    }
    return ATTN_OK;
}

static int apply_bidir(const attn_linear_map *map, const attn_problem *pb, const double *Q,
                       const double *K, const double *V, double eps, double *O,
                       const linear_scratch *s, const char *who)
{
    size_t n = pb->n, m = pb->m, d = pb->d, dv = pb->dv, F = map->F, w = dv + 1;
    size_t chunk = chunk_rows(pb);
    double R = -INFINITY; /* the reference of S: its keys are weighed by exp(lk_j - R) */
    memset(s->S, 0, F * w * sizeof *s->S);
    for (size_t k0 = 0; k0 < m; k0 += chunk) {
        size_t nc = m - k0 < chunk ? m - k0 : chunk;
        map->key(map->ctx, K + k0 * d, nc, s->PK, map->scaled ? s->lk : NULL);
        if (map->scaled) {
            double top = R;
            for (size_t b = 0; b < nc; b++)
                top = s->lk[b] > top ? s->lk[b] : top;
            if (top > R) {
                if (R > -INFINITY)
                    scale_row(s->S, F * w, exp(R - top));
                R = top;
            }
            for (size_t b = 0; b < nc; b++)
                if (s->lk[b] < R)
                    scale_row(s->PK + b * F, F, exp(s->lk[b] - R));
        }
        augment(V + k0 * dv, nc, dv, s->Vaug);
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int) F, (int) w, (int) nc, 1.0,
                    s->PK, (int) F, s->Vaug, (int) w, 1.0, s->S, (int) w);
    }
    for (size_t q0 = 0; q0 < n; q0 += chunk) {
        size_t nc = n - q0 < chunk ? n - q0 : chunk;
        map->query(map->ctx, Q + q0 * d, nc, s->PQ);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) nc, (int) w, (int) F, 1.0,
                    s->PQ, (int) F, s->S, (int) w, 0.0, s->Out, (int) w);
        int status = finish(s->Out, q0, nc, dv, eps, O, who);
        if (status != ATTN_OK)
            return status;
    }
    return ATTN_OK;
}

static int apply_causal(const attn_linear_map *map, const attn_problem *pb, const double *Q,
                        const double *K, const double *V, double eps, double *O,
                        const linear_scratch *s, const char *who)
{
    size_t n = pb->n, d = pb->d, dv = pb->dv, F = map->F, w = dv + 1;
    size_t chunk = chunk_rows(pb);
    double Rprev = -INFINITY; /* the reference of S (keys before the chunk) */
    memset(s->S, 0, F * w * sizeof *s->S);
    for (size_t c0 = 0; c0 < n; c0 += chunk) {
        size_t nc = n - c0 < chunk ? n - c0 : chunk;
        map->query(map->ctx, Q + c0 * d, nc, s->PQ);
        map->key(map->ctx, K + c0 * d, nc, s->PK, map->scaled ? s->lk : NULL);
        if (map->scaled) {
            /* R_a = max(Rprev, lk of keys c0 .. c0 + a): only keys <= c0 + a.  Key b's row is
             * taken to its own running maximum here, and to R_a of each later query below. */
            double run = Rprev;
            for (size_t b = 0; b < nc; b++) {
                run = s->lk[b] > run ? s->lk[b] : run;
                s->R[b] = run;
                if (s->lk[b] < run)
                    scale_row(s->PK + b * F, F, exp(s->lk[b] - run));
            }
        }
        /* Within the chunk: G = Phi_Q(Q_c) Phi_K(K_c)^T with the keys after each query zeroed. */
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int) nc, (int) nc, (int) F, 1.0,
                    s->PQ, (int) F, s->PK, (int) F, 0.0, s->G, (int) chunk);
        for (size_t a = 0; a < nc; a++) {
            double *g = s->G + a * chunk;
            for (size_t b = a + 1; b < nc; b++)
                g[b] = 0.0;
            if (map->scaled)
                for (size_t b = 0; b < a; b++)
                    if (s->R[b] < s->R[a])
                        g[b] *= exp(s->R[b] - s->R[a]);
        }
        augment(V + c0 * dv, nc, dv, s->Vaug);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) nc, (int) w, (int) nc, 1.0,
                    s->G, (int) chunk, s->Vaug, (int) w, 0.0, s->Out, (int) w);
        /* The keys of earlier chunks, weighed by exp(Rprev - R_a) <= 1. */
        if (c0 > 0) {
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) nc, (int) w, (int) F,
                        1.0, s->PQ, (int) F, s->S, (int) w, 0.0, s->T, (int) w);
            for (size_t a = 0; a < nc; a++) {
                double f = map->scaled && Rprev < s->R[a] ? exp(Rprev - s->R[a]) : 1.0;
                double *out = s->Out + a * w;
                const double *t = s->T + a * w;
                for (size_t c = 0; c < w; c++)
                    out[c] += f * t[c];
            }
        }
        int status = finish(s->Out, c0, nc, dv, eps, O, who);
        if (status != ATTN_OK)
            return status;
        /* Then fold this chunk's keys into the state, referred to the chunk's last maximum. */
        if (c0 + nc < n) {
            if (map->scaled) {
                double Rend = s->R[nc - 1];
                if (Rprev > -INFINITY && Rprev < Rend)
                    scale_row(s->S, F * w, exp(Rprev - Rend));
                for (size_t b = 0; b < nc; b++)
                    if (s->R[b] < Rend)
                        scale_row(s->PK + b * F, F, exp(s->R[b] - Rend));
                Rprev = Rend;
            }
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int) F, (int) w, (int) nc, 1.0,
                        s->PK, (int) F, s->Vaug, (int) w, 1.0, s->S, (int) w);
        }
    }
    return ATTN_OK;
}

int attn_linear_apply(const attn_linear_map *map, const attn_problem *pb, const double *Q,
                      const double *K, const double *V, double eps, double *O, double *scratch,
                      const char *who)
{
    linear_scratch s;
    carve(pb, map->F, scratch, &s);
    if (pb->causal)
        return apply_causal(map, pb, Q, K, V, eps, O, &s, who);
    return apply_bidir(map, pb, Q, K, V, eps, O, &s, who);
}

int attn_linear_materialize(const attn_linear_map *map, const attn_problem *pb, const double *Q,
                            const double *K, double eps, double *A, const char *who)
{
    size_t n = pb->n, m = pb->m, F = map->F;
    int status = ATTN_OK;
    double *PQ = calloc(n * F, sizeof *PQ);
    double *PK = calloc(m * F, sizeof *PK);
    double *lk = calloc(m, sizeof *lk);
    if (PQ == NULL || PK == NULL || lk == NULL) {
        status = ATTN_ERR(ATTN_ENOMEM, "%s materialize: %zu + %zu rows of %zu features", who, n,
                          m, F);
        goto done;
    }
    map->query(map->ctx, Q, n, PQ);
    map->key(map->ctx, K, m, PK, map->scaled ? lk : NULL);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int) n, (int) m, (int) F, 1.0, PQ,
                (int) F, PK, (int) F, 0.0, A, (int) m);
    double top = -INFINITY; /* bidirectional R: every key; causal: the running maximum */
    if (map->scaled && !pb->causal)
        for (size_t j = 0; j < m; j++)
            top = lk[j] > top ? lk[j] : top;
    for (size_t i = 0; i < n; i++) {
        double *a = A + i * m, den = 0.0;
        size_t end = pb->causal ? i + 1 : m;
        if (map->scaled && pb->causal)
            top = lk[i] > top ? lk[i] : top;
        for (size_t j = end; j < m; j++)
            a[j] = 0.0;
        for (size_t j = 0; j < end; j++) {
            if (map->scaled)
                a[j] *= exp(lk[j] - top);
            den += a[j];
        }
        den += eps;
        if (!(den > 0.0) || !isfinite(den)) {
            status = ATTN_ERR(ATTN_EINVAL, "%s materialize: row %zu: denominator %g is not "
                              "positive and finite", who, i, den);
            goto done;
        }
        for (size_t j = 0; j < end; j++)
            a[j] /= den;
    }
done:
    free(PQ);
    free(PK);
    free(lk);
    return status;
}
