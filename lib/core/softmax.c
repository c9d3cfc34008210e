/* softmax.c — the exact kernels and THE streaming partial-softmax accumulator.
 *
 * Every method that forms softmax weights over some set of keys does it here: logits of a block
 * with dgemm, masking to a window, exp with the running maximum subtracted, and the merge of
 * partial results (Milakov & Gimelshein 2018; the FlashAttention tiling of Dao et al. 2022):
 *
 *     mx' = max(mx, max_j s_j);  alpha = exp(mx - mx');
 *     sum' = alpha sum + sum_j exp(s_j - mx');  out' = alpha out + sum_j exp(s_j - mx') v_j.
 *
 * The 1/sum division is deferred to attn_acc_finish.  Two partial results over disjoint key sets
 * merge with the same rule, so blocks and levels can be combined in any order.
 */
#include "config.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attn_impl.h"

size_t attn_acc_doubles(size_t rows, size_t dv)
{
    return rows * (2 + dv);
}

void attn_acc_init(attn_acc *acc, size_t rows, size_t dv, double *buf)
{
    acc->rows = rows;
    acc->dv = dv;
    acc->mx = buf;
    acc->sum = buf + rows;
    acc->out = buf + 2 * rows;
    attn_acc_reset(acc);
}

void attn_acc_reset(attn_acc *acc)
{
    for (size_t r = 0; r < acc->rows; r++) {
        acc->mx[r] = -INFINITY;
        acc->sum[r] = 0.0;
    }
    memset(acc->out, 0, acc->rows * acc->dv * sizeof *acc->out);
}

/* exp by range reduction x = k ln 2 + r, |r| <= ln2 / 2, and a degree-13 Taylor polynomial of
 * exp(r) (truncation error r^14 / 14! < 3e-18 relative), scaled by 2^k through the exponent bits.
 * Written without branches so that gcc vectorizes it; built for AVX-512, AVX2 and the baseline and
 * chosen at load time. */
#define EXP_LOG2E 1.4426950408889634074
#define EXP_LN2_HI 6.93147180369123816490e-01 /* ln 2 rounded to 32 bits: k ln2_hi is exact */
#define EXP_LN2_LO 1.90821492927058770002e-10 /* ln 2 - ln2_hi */
#define EXP_SHIFT 6755399441055744.0          /* 1.5 * 2^52: adding it rounds to an integer */
#define EXP_SHIFT_BITS 0x4338000000000000ull /* the bits of EXP_SHIFT */
#define EXP_MIN (-708.0)                      /* below this the result is flushed to 0 */

/* The map and the sum are separate loops: the map has no dependences and the sum keeps eight
 * independent partial sums (a fixed order, so results stay bit-reproducible), which lets gcc
 * vectorize both without -ffast-math. */
__attribute__((target_clones("avx512f", "avx2,fma", "default"), optimize("O3", "no-trapping-math"))) static void
vexp_map(double *x, size_t count, double shift)
{
    for (size_t i = 0; i < count; i++) {
        double a = x[i] - shift;
        double keep = a >= EXP_MIN ? 1.0 : 0.0;
        a = a >= EXP_MIN ? a : EXP_MIN;
        a = a <= 709.0 ? a : 709.0;
        double t = a * EXP_LOG2E + EXP_SHIFT;
        double k = t - EXP_SHIFT;
        double r = (a - k * EXP_LN2_HI) - k * EXP_LN2_LO;
        double p = 1.0 / 6227020800.0;
        p = p * r + 1.0 / 479001600.0;
        p = p * r + 1.0 / 39916800.0;
        p = p * r + 1.0 / 3628800.0;
        p = p * r + 1.0 / 362880.0;
        p = p * r + 1.0 / 40320.0;
        p = p * r + 1.0 / 5040.0;
        p = p * r + 1.0 / 720.0;
        p = p * r + 1.0 / 120.0;
        p = p * r + 1.0 / 24.0;
        p = p * r + 1.0 / 6.0;
        p = p * r + 0.5;
        p = p * r + 1.0;
        p = p * r + 1.0;
        /* t = 1.5 2^52 + k exactly, so its low bits hold k: no float-to-integer conversion. */
        uint64_t tbits;
        memcpy(&tbits, &t, sizeof tbits);
        uint64_t bits = (tbits - EXP_SHIFT_BITS + 1023) << 52;
        double scale;
        memcpy(&scale, &bits, sizeof scale);
        x[i] = p * scale * keep;
    }
}

__attribute__((target_clones("avx512f", "avx2,fma", "default"), optimize("O3"))) static double
sum8(const double *x, size_t count)
{
    double part[8] = { 0 };
    size_t i = 0;
    for (; i + 8 <= count; i += 8)
        for (size_t l = 0; l < 8; l++)
            part[l] += x[i + l];
    double total = 0.0;
    for (; i < count; i++)
        total += x[i];
    return total + (((part[0] + part[4]) + (part[1] + part[5])) +
                    ((part[2] + part[6]) + (part[3] + part[7])));
}

__attribute__((target_clones("avx512f", "avx2,fma", "default"), optimize("O3"))) double
attn_row_max(const double *x, size_t count)
{
    double part[8] = { -INFINITY, -INFINITY, -INFINITY, -INFINITY,
                       -INFINITY, -INFINITY, -INFINITY, -INFINITY };
    size_t i = 0;
    for (; i + 8 <= count; i += 8)
        for (size_t l = 0; l < 8; l++)
            part[l] = x[i + l] > part[l] ? x[i + l] : part[l];
    double mx = -INFINITY;
    for (; i < count; i++)
        mx = x[i] > mx ? x[i] : mx;
    for (size_t l = 0; l < 8; l++)
        mx = part[l] > mx ? part[l] : mx;
    return mx;
}

double attn_vexp_sum(double *x, size_t count, double shift)
{
    vexp_map(x, count, shift);
    return sum8(x, count);
}

void attn_logits(const double *Qblk, size_t nr, const double *Kblk, size_t nc, size_t d,
                 double scale, double *S, size_t lds)
{
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int) nr, (int) nc, (int) d, scale, Qblk,
                (int) d, Kblk, (int) d, 0.0, S, (int) lds);
}

void attn_mask_window(double *S, size_t lds, size_t q0, size_t nr, size_t k0, size_t nc,
                      size_t before, size_t after)
{
    for (size_t a = 0; a < nr; a++) {
        size_t i = q0 + a;
        /* Allowed keys of row i in block coordinates: [lo, hi). */
        size_t lo = (before == SIZE_MAX || i < before) ? 0 : i - before;
        size_t hi = (after == SIZE_MAX || i > SIZE_MAX - 1 - after) ? SIZE_MAX : i + after + 1;
        double *row = S + a * lds;
        for (size_t b = 0; b < nc; b++) {
            size_t j = k0 + b;
            if (j < lo || j >= hi)
                row[b] = -INFINITY;
        }
    }
}

void attn_acc_add(attn_acc *acc, size_t r0, size_t nr, double *S, size_t lds, const double *V,
                  size_t ldv, size_t nc)
{
    size_t dv = acc->dv;
    for (size_t a = 0; a < nr; a++) {
        size_t r = r0 + a;
        double *row = S + a * lds;
        double bmax = attn_row_max(row, nc);
        if (bmax == -INFINITY) {
            /* Nothing allowed in this block for row r: its weights are zero. */
            memset(row, 0, nc * sizeof *row);
            continue;
        }
        double mx = acc->mx[r] > bmax ? acc->mx[r] : bmax;
        double rowsum = attn_vexp_sum(row, nc, mx);
        if (mx != acc->mx[r]) {
            double alpha = acc->mx[r] == -INFINITY ? 0.0 : exp(acc->mx[r] - mx);
            acc->sum[r] *= alpha;
            double *out = acc->out + r * dv;
            for (size_t c = 0; c < dv; c++)
                out[c] *= alpha;
            acc->mx[r] = mx;
        }
        acc->sum[r] += rowsum;
    }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) nr, (int) dv, (int) nc, 1.0, S,
                (int) lds, V, (int) ldv, 1.0, acc->out + r0 * dv, (int) dv);
}

void attn_acc_add_one(attn_acc *acc, size_t r, double logit, double w, const double *v)
{
    if (!(w > 0.0) || logit == -INFINITY)
        return;
    size_t dv = acc->dv;
    double *out = acc->out + r * dv;
    double s = w == 1.0 ? logit : logit + log(w);
    if (s > acc->mx[r]) {
        double alpha = acc->mx[r] == -INFINITY ? 0.0 : exp(acc->mx[r] - s);
        acc->sum[r] = acc->sum[r] * alpha + 1.0;
        for (size_t c = 0; c < dv; c++)
            out[c] = out[c] * alpha + v[c];
        acc->mx[r] = s;
    } else {
        double e = exp(s - acc->mx[r]);
        acc->sum[r] += e;
        for (size_t c = 0; c < dv; c++)
            out[c] += e * v[c];
    }
}

void attn_acc_merge_row(attn_acc *acc, size_t r, const attn_acc *src, size_t rs)
{
    size_t dv = acc->dv;
    double m2 = src->mx[rs];
    if (m2 == -INFINITY)
        return;
    double m1 = acc->mx[r];
    double mx = m1 > m2 ? m1 : m2;
    double a1 = m1 == -INFINITY ? 0.0 : exp(m1 - mx);
    double a2 = exp(m2 - mx);
    double *out = acc->out + r * dv;
    const double *o2 = src->out + rs * dv;
    for (size_t c = 0; c < dv; c++)
        out[c] = a1 * out[c] + a2 * o2[c];
    acc->sum[r] = a1 * acc->sum[r] + a2 * src->sum[rs];
    acc->mx[r] = mx;
}

void attn_acc_merge(attn_acc *acc, const attn_acc *src)
{
    for (size_t r = 0; r < acc->rows; r++)
        attn_acc_merge_row(acc, r, src, r);
}

void attn_acc_finish(const attn_acc *acc, size_t r0, size_t nr, double *O, size_t ldo,
                     double *lse)
{
    size_t dv = acc->dv;
    for (size_t a = 0; a < nr; a++) {
        size_t r = r0 + a;
        double *o = O + a * ldo;
        const double *out = acc->out + r * dv;
        if (acc->mx[r] == -INFINITY || !(acc->sum[r] > 0.0)) {
            memset(o, 0, dv * sizeof *o);
            if (lse != NULL)
                lse[a] = -INFINITY;
            continue;
        }
        double inv = 1.0 / acc->sum[r];
        for (size_t c = 0; c < dv; c++)
            o[c] = out[c] * inv;
        if (lse != NULL)
            lse[a] = acc->mx[r] + log(acc->sum[r]);
    }
}

void attn_stream_rows(const attn_problem *pb, const double *Q, const double *K, const double *V,
                      size_t q0, size_t nr, size_t k_lo, size_t k_hi, size_t before, size_t after,
                      attn_acc *acc, double *S, double *O)
{
    size_t d = pb->d, dv = pb->dv;
    double scale = attn_problem_scale(pb);
    size_t q1 = q0 + nr - 1; /* last query of the tile */
    attn_acc_reset(acc);
    for (size_t k0 = k_lo; k0 < k_hi; k0 += ATTN_TILE_K) {
        size_t nc = k_hi - k0 < ATTN_TILE_K ? k_hi - k0 : ATTN_TILE_K;
        size_t k1 = k0 + nc - 1;
        attn_logits(Q + q0 * d, nr, K + k0 * d, nc, d, scale, S, ATTN_TILE_K);
        /* Mask only when some entry of the tile falls outside some row's window. */
        int cut_before = before != SIZE_MAX && q1 > before && k0 < q1 - before;
        int cut_after = after != SIZE_MAX && k1 > q0 + after;
        if (cut_before || cut_after)
            attn_mask_window(S, ATTN_TILE_K, q0, nr, k0, nc, before, after);
        attn_acc_add(acc, 0, nr, S, ATTN_TILE_K, V + k0 * dv, dv, nc);
    }
    attn_acc_finish(acc, 0, nr, O + q0 * dv, dv, NULL);
}

int attn_exact_matrix(const attn_problem *problem, const double *Q, const double *K, double *A)
{
    ATTN_TRY(attn_problem_check(problem), "exact matrix");
    size_t n = problem->n, m = problem->m;
    attn_logits(Q, n, K, m, problem->d, attn_problem_scale(problem), A, m);
    if (problem->causal)
        attn_mask_window(A, m, 0, n, 0, m, SIZE_MAX, 0);
    for (size_t i = 0; i < n; i++) {
        double *row = A + i * m;
        double inv = 1.0 / attn_vexp_sum(row, m, attn_row_max(row, m));
        for (size_t j = 0; j < m; j++)
            row[j] *= inv;
    }
    return ATTN_OK;
}

/* The reference: per row, the exact maximum first, then logits, exps and both sums in long double
 * (64-bit mantissa on x86-64), rounded to double once.  Logits are recomputed in the second pass
 * rather than stored, so memory is O(dv). */
int attn_reference(const attn_problem *problem, const double *Q, const double *K, const double *V,
                   double *O, double *lse)
{
    ATTN_TRY(attn_problem_check(problem), "reference");
    size_t n = problem->n, m = problem->m, d = problem->d, dv = problem->dv;
    long double scale = problem->scale > 0 ? (long double) problem->scale
                                           : 1.0L / sqrtl((long double) d);
    long double *acc = calloc(dv, sizeof *acc);
    if (acc == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "reference: %zu accumulators", dv);
    for (size_t i = 0; i < n; i++) {
        size_t jend = problem->causal ? i + 1 : m;
        const double *q = Q + i * d;
        long double mx = -INFINITY;
        for (size_t j = 0; j < jend; j++) {
            long double s = 0.0L;
            for (size_t c = 0; c < d; c++)
                s += (long double) q[c] * (long double) K[j * d + c];
            s *= scale;
            mx = s > mx ? s : mx;
        }
        long double sum = 0.0L;
        for (size_t c = 0; c < dv; c++)
            acc[c] = 0.0L;
        for (size_t j = 0; j < jend; j++) {
            long double s = 0.0L;
            for (size_t c = 0; c < d; c++)
                s += (long double) q[c] * (long double) K[j * d + c];
            long double e = expl(s * scale - mx);
            sum += e;
            for (size_t c = 0; c < dv; c++)
                acc[c] += e * (long double) V[j * dv + c];
        }
        for (size_t c = 0; c < dv; c++)
            O[i * dv + c] = (double) (acc[c] / sum);
        if (lse != NULL)
            lse[i] = (double) (mx + logl(sum));
    }
    free(acc);
    return ATTN_OK;
}
