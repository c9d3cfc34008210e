/* combiner_common.c — pooling, local expectations, group terms and oracles shared by the
 * Combiner variants (see combiner.h for the definitions).  Defines no method of its own. */
#include "config.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "combiner.h"

const char *const combiner_pool_choices[] = { "max", "mean", "mean_log", NULL };
const char *const combiner_oracle_choices[] = { "none", "mass", "full", NULL };

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
