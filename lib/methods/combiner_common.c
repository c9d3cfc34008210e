/* combiner_common.c — pooling, local expectations, group terms, oracles, the block kernel and the
 * default block shared by the Combiner variants and their sparse twins (see combiner.h for the
 * definitions).  Defines no method of its own. */
#include "config.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "combiner.h"

const char *const combiner_pool_choices[] = { "max", "mean", "mean_log", NULL };
const char *const combiner_oracle_choices[] = { "none", "mass", "full", NULL };

size_t combiner_default_block(size_t n)
{
    size_t b = 1;
    while (b * b < n)
        b *= 2;
    return b;
}

size_t combiner_block(attn_plan *plan)
{
    size_t n = plan->problem.n;
    long ib = attn_param_index(plan->method, "block");
    if (plan->values[ib] == 0)
        plan->values[ib] = (double) combiner_default_block(n);
    return plan->values[ib] >= (double) n ? n : (size_t) plan->values[ib];
}

int combiner_block_exact_limit(const attn_problem *problem, double *values)
{
    values[0] = (double) problem->n;
    return ATTN_OK;
}

/* Set the logit of query q0 + a against key j0 + e to -INFINITY where the two indices are equal. */
static void mask_self(double *S, size_t lds, size_t q0, size_t nr, size_t j0, size_t nc)
{
    for (size_t a = 0; a < nr; a++) {
        size_t i = q0 + a;
        if (i >= j0 && i < j0 + nc)
            S[a * lds + (i - j0)] = -INFINITY;
    }
}

void combiner_add_block(attn_acc *acc, size_t r0, const double *Qb, size_t q0, size_t nr,
                        const double *Kb, const double *Vb, size_t k0, size_t nc, size_t before,
                        size_t after, int no_self, const attn_problem *pb, double *S)
{
    size_t d = pb->d, dv = pb->dv;
    size_t q1 = q0 + nr - 1;
    for (size_t c0 = 0; c0 < nc; c0 += ATTN_TILE_K) {
        size_t w = nc - c0 < ATTN_TILE_K ? nc - c0 : ATTN_TILE_K;
        size_t j0 = k0 + c0, j1 = j0 + w - 1;
        attn_logits(Qb, nr, Kb + c0 * d, w, d, pb->scale, S, ATTN_TILE_K);
        int cut_before = before != SIZE_MAX && q1 > before && j0 < q1 - before;
        int cut_after = after != SIZE_MAX && j1 > q0 + after;
        if (cut_before || cut_after)
            attn_mask_window(S, ATTN_TILE_K, q0, nr, j0, w, before, after);
        if (no_self && j0 <= q1 && q0 <= j1)
            mask_self(S, ATTN_TILE_K, q0, nr, j0, w);
        attn_acc_add(acc, r0, nr, S, ATTN_TILE_K, Vb + c0 * dv, dv, w);
    }
}

int combiner_groups_alloc(attn_plan *plan, combiner_groups *g, size_t count, size_t maxlen,
                          size_t tile, size_t width, size_t oracle_rows)
{
    size_t d = plan->problem.d, dv = plan->problem.dv;
    g->pool = (int) attn_plan_value(plan, "pool");
    g->oracle = (int) attn_plan_value(plan, "oracle");
    g->Kt = attn_plan_calloc(plan, count ? count * d : 1, sizeof *g->Kt);
    g->Vt = attn_plan_calloc(plan, count ? count * dv : 1, sizeof *g->Vt);
    g->bias = attn_plan_calloc(plan, count ? count : 1, sizeof *g->bias);
    g->idx = attn_plan_calloc(plan, maxlen, sizeof *g->idx);
    g->work = attn_plan_calloc(plan, d + maxlen, sizeof *g->work);
    g->S = attn_plan_calloc(plan, tile * width, sizeof *g->S);
    g->accbuf = attn_plan_calloc(plan, attn_acc_doubles(tile, dv), sizeof *g->accbuf);
    if (g->oracle != COMBINER_ORACLE_NONE)
        g->oracle_scratch = attn_plan_calloc(
            plan, combiner_oracle_doubles(oracle_rows, maxlen, dv, d), sizeof *g->oracle_scratch);
    if (g->Kt == NULL || g->Vt == NULL || g->bias == NULL || g->idx == NULL || g->work == NULL ||
        g->S == NULL || g->accbuf == NULL ||
        (g->oracle != COMBINER_ORACLE_NONE && g->oracle_scratch == NULL))
        return -1;
    attn_acc_init(&g->acc, tile, dv, g->accbuf);
    return 0;
}

void combiner_groups_free(combiner_groups *g)
{
    free(g->Kt);
    free(g->Vt);
    free(g->bias);
    free(g->idx);
    free(g->work);
    free(g->S);
    free(g->accbuf);
    free(g->oracle_scratch);
}

double combiner_logit(const double *q, const double *k, size_t d, double scale)
{
    double s = 0.0;
    for (size_t c = 0; c < d; c++)
        s += q[c] * k[c];
    return scale * s;
}

void combiner_pool_rows(const double *X, size_t d, const size_t *idx, size_t count, int pool,
                        double *out)
{
    const double *first = X + idx[0] * d;
    memcpy(out, first, d * sizeof *out);
    if (pool == COMBINER_POOL_MAX) {
        for (size_t t = 1; t < count; t++) {
            const double *x = X + idx[t] * d;
            for (size_t c = 0; c < d; c++)
                out[c] = x[c] > out[c] ? x[c] : out[c];
        }
    } else {
        for (size_t t = 1; t < count; t++) {
            const double *x = X + idx[t] * d;
            for (size_t c = 0; c < d; c++)
                out[c] += x[c];
        }
        double inv = 1.0 / (double) count;
        for (size_t c = 0; c < d; c++)
            out[c] *= inv;
    }
}

/* out = max(x, prev) (pool = max) or prev + x, coordinate by coordinate: one step of a running
 * pool.  The rows never overlap; with restrict and blocks of eight the compiler vectorizes it. */
static void pool_step(double *restrict out, const double *restrict x, const double *restrict prev,
                      size_t d, int pool)
{
    size_t c = 0;
    if (pool == COMBINER_POOL_MAX) {
        for (; c + 8 <= d; c += 8)
            for (size_t l = 0; l < 8; l++)
                out[c + l] = x[c + l] > prev[c + l] ? x[c + l] : prev[c + l];
        for (; c < d; c++)
            out[c] = x[c] > prev[c] ? x[c] : prev[c];
    } else {
        for (; c + 8 <= d; c += 8)
            for (size_t l = 0; l < 8; l++)
                out[c + l] = prev[c + l] + x[c + l];
        for (; c < d; c++)
            out[c] = prev[c] + x[c];
    }
}

void combiner_scan_pool(const double *X, size_t count, size_t d, int pool, int backward,
                        double *P, size_t ldp)
{
    /* Each output row is the previous one (still in cache) pooled with the next input row; the
     * mean keeps running sums there and scales them by 1 / t once the scan is done. */
    const double *prev = NULL;
    for (size_t s = 0; s < count; s++) {
        size_t t = backward ? count - 1 - s : s;
        double *p = P + t * ldp;
        if (s == 0)
            memcpy(p, X + t * d, d * sizeof *p);
        else
            pool_step(p, X + t * d, prev, d, pool);
        prev = p;
    }
    if (pool == COMBINER_POOL_MAX)
        return;
    for (size_t s = 1; s < count; s++) {
        double *p = P + (backward ? count - 1 - s : s) * ldp;
        double inv = 1.0 / (double) (s + 1);
        size_t c = 0;
        for (; c + 8 <= d; c += 8)
            for (size_t l = 0; l < 8; l++)
                p[c + l] *= inv;
        for (; c < d; c++)
            p[c] *= inv;
    }
}

/* 1 when idx[0..count) are consecutive positions (a block): then BLAS works on the rows in place. */
static int is_block(const size_t *idx, size_t count)
{
    return idx[count - 1] - idx[0] == count - 1;
}

double combiner_summarize(const attn_problem *pb, int pool, const double *Q, const double *K,
                          const double *V, const size_t *idx, size_t count, double *kt,
                          double *vt, double *scratch)
{
    size_t d = pb->d, dv = pb->dv;
    double *qt = scratch, *w = scratch + d;
    combiner_pool_rows(K, d, idx, count, pool, kt);
    combiner_pool_rows(Q, d, idx, count, pool, qt);
    /* Local distribution p(j | Omega) = softmax_j(s q~ . k_j), the same for every query. */
    int block = is_block(idx, count);
    if (block)
        cblas_dgemv(CblasRowMajor, CblasNoTrans, (int) count, (int) d, pb->scale,
                    K + idx[0] * d, (int) d, qt, 1, 0.0, w, 1);
    else
        for (size_t t = 0; t < count; t++)
            w[t] = combiner_logit(qt, K + idx[t] * d, d, pb->scale);
    double inv = 1.0 / attn_vexp_sum(w, count, attn_row_max(w, count));
    if (block) {
        cblas_dgemv(CblasRowMajor, CblasTrans, (int) count, (int) dv, inv, V + idx[0] * dv,
                    (int) dv, w, 1, 0.0, vt, 1);
    } else {
        memset(vt, 0, dv * sizeof *vt);
        for (size_t t = 0; t < count; t++) {
            const double *v = V + idx[t] * dv;
            double p = w[t] * inv;
            for (size_t c = 0; c < dv; c++)
                vt[c] += p * v[c];
        }
    }
    return pool == COMBINER_POOL_MEAN_LOG ? log((double) count) : 0.0;
}

void combiner_add_summaries(attn_acc *acc, size_t r0, size_t nr, const double *Qrows,
                            const double *Kt, const double *Vt, const double *bias, size_t count,
                            size_t d, double scale, double *S)
{
    size_t dv = acc->dv;
    for (size_t g0 = 0; g0 < count; g0 += ATTN_TILE_K) {
        size_t nc = count - g0 < ATTN_TILE_K ? count - g0 : ATTN_TILE_K;
        attn_logits(Qrows, nr, Kt + g0 * d, nc, d, scale, S, ATTN_TILE_K);
        if (bias != NULL)
            for (size_t a = 0; a < nr; a++)
                for (size_t b = 0; b < nc; b++)
                    S[a * ATTN_TILE_K + b] += bias[g0 + b];
        attn_acc_add(acc, r0, nr, S, ATTN_TILE_K, Vt + g0 * dv, dv, nc);
    }
}

size_t combiner_oracle_doubles(size_t nr, size_t count, size_t dv, size_t d)
{
    return count * (d + dv) + nr * count + attn_acc_doubles(nr, dv);
}

void combiner_add_oracle(attn_acc *acc, size_t r0, size_t nr, const double *Qrows,
                         const double *K, const double *V, const size_t *idx, size_t count,
                         const double *vt, int oracle, double scale, size_t d, double *scratch)
{
    size_t dv = acc->dv;
    double *Kg = scratch, *Vg = Kg + count * d, *S = Vg + count * dv, *buf = S + nr * count;
    for (size_t t = 0; t < count; t++) {
        memcpy(Kg + t * d, K + idx[t] * d, d * sizeof *Kg);
        memcpy(Vg + t * dv, V + idx[t] * dv, dv * sizeof *Vg);
    }
    attn_acc part;
    attn_acc_init(&part, nr, dv, buf);
    attn_logits(Qrows, nr, Kg, count, d, scale, S, count);
    attn_acc_add(&part, 0, nr, S, count, Vg, dv, count);
    for (size_t a = 0; a < nr; a++) {
        if (oracle == COMBINER_ORACLE_FULL) {
            attn_acc_merge_row(acc, r0 + a, &part, a);
        } else if (part.mx[a] != -INFINITY) {
            /* Exact group mass exp(lse), pooled local expectation. */
            double lse = part.mx[a] + log(part.sum[a]);
            attn_acc_add_one(acc, r0 + a, lse, 1.0, vt);
        }
    }
}
