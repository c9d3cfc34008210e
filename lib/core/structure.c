/* structure.c — near/far structure of an attention matrix: ranks of its off-diagonal blocks by
 * distance from the diagonal, and of its far field (the matrix minus a band).
 *
 * These are the measurements behind the banded + low-rank and multilevel methods: a block far from
 * the diagonal that has low rank at a tolerance relative to ||A||_2 can be replaced by a few coarse
 * terms.  Singular values come from attn_singular_values (LAPACK dgesdd) on a copy of each piece.
 */
#include "config.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attn_impl.h"

static size_t count_above(const double *sv, size_t k, double threshold)
{
    size_t r = 0;
    while (r < k && sv[r] > threshold)
        r++;
    return r;
}

int attn_offdiag_ranks(const double *A, size_t n, size_t block, int causal, double tol,
                       double norm_A, attn_offdiag_rank *out, size_t *count)
{
    if (A == NULL || out == NULL || count == NULL)
        return ATTN_ERR(ATTN_EINVAL, "off-diagonal ranks: A, out or count is NULL");
    if (block < 1 || n < 1)
        return ATTN_ERR(ATTN_EINVAL, "off-diagonal ranks: block = %zu, n = %zu, expected >= 1",
                        block, n);
    if (!(tol > 0) || !isfinite(tol) || !(norm_A >= 0) || !isfinite(norm_A))
        return ATTN_ERR(ATTN_EINVAL, "off-diagonal ranks: tol = %g, ||A||_2 = %g, expected "
                        "tol > 0 and a finite norm", tol, norm_A);
    size_t nb = (n + block - 1) / block;
    *count = nb > 0 ? nb - 1 : 0;
    for (size_t t = 0; t < *count; t++)
        out[t] = (attn_offdiag_rank){ .distance = t + 1 };
    double *X = malloc(block * block * sizeof *X), *sv = malloc(block * sizeof *sv);
    if (X == NULL || sv == NULL) {
        free(X);
        free(sv);
        return ATTN_ERR(ATTN_ENOMEM, "off-diagonal ranks: %zu x %zu block", block, block);
    }
    int status = ATTN_OK;
    for (size_t I = 0; I < nb && status == ATTN_OK; I++)
        for (size_t J = 0; J < nb && status == ATTN_OK; J++) {
            if (I == J || (causal && J > I))
                continue;
            size_t r0 = I * block, c0 = J * block;
            size_t rows = n - r0 < block ? n - r0 : block, cols = n - c0 < block ? n - c0 : block;
            for (size_t a = 0; a < rows; a++)
                memcpy(X + a * cols, A + (r0 + a) * n + c0, cols * sizeof *X);
            status = attn_singular_values(X, rows, cols, sv);
            if (status != ATTN_OK)
                break;
            size_t k = rows < cols ? rows : cols;
            double rel = sv[0] > 0 ? (double) count_above(sv, k, tol * sv[0]) : 0.0;
            double abs_rank = (double) count_above(sv, k, tol * norm_A);
            attn_offdiag_rank *o = &out[(I > J ? I - J : J - I) - 1];
            o->count++;
            o->rank_rel_mean += rel;
            o->rank_abs_mean += abs_rank;
            o->rank_rel_max = rel > o->rank_rel_max ? rel : o->rank_rel_max;
            o->rank_abs_max = abs_rank > o->rank_abs_max ? abs_rank : o->rank_abs_max;
            o->norm_rel_mean += norm_A > 0 ? sv[0] / norm_A : 0.0;
        }
    for (size_t t = 0; t < *count; t++) {
        double c = (double) out[t].count;
        out[t].rank_rel_mean /= c;
        out[t].rank_abs_mean /= c;
        out[t].norm_rel_mean /= c;
    }
    free(X);
    free(sv);
    return status == ATTN_OK ? ATTN_OK
                             : attn_error_context(status, "off-diagonal ranks, block %zu", block);
}

/* Smallest r with sum_{k<r} sv[k]^2 >= frac * total. */
static double energy_rank(const double *sv, size_t k, double total, double frac)
{
    double acc = 0.0;
    for (size_t r = 0; r < k; r++) {
        acc += sv[r] * sv[r];
        if (acc >= frac * total)
            return (double) (r + 1);
    }
    return (double) k;
}

int attn_farfield_rank_compute(const double *A, size_t n, size_t k, double tol, double norm_A,
                               attn_farfield_rank *out)
{
    if (A == NULL || out == NULL || n < 1)
        return ATTN_ERR(ATTN_EINVAL, "far-field rank: A or out is NULL or n = 0");
    if (!(tol > 0) || !isfinite(tol) || !(norm_A >= 0) || !isfinite(norm_A))
        return ATTN_ERR(ATTN_EINVAL, "far-field rank: tol = %g, ||A||_2 = %g, expected tol > 0 "
                        "and a finite norm", tol, norm_A);
    double *F = malloc(n * n * sizeof *F), *sv = malloc(n * sizeof *sv);
    if (F == NULL || sv == NULL) {
        free(F);
        free(sv);
        return ATTN_ERR(ATTN_ENOMEM, "far-field rank: %zu x %zu copy", n, n);
    }
    double mass = 0.0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            size_t dist = i > j ? i - j : j - i;
            double x = (k != SIZE_MAX && dist <= k) ? 0.0 : A[i * n + j];
            F[i * n + j] = x;
            mass += x;
        }
    int status = attn_singular_values(F, n, n, sv);
    if (status == ATTN_OK) {
        double total = 0.0;
        for (size_t r = 0; r < n; r++)
            total += sv[r] * sv[r];
        *out = (attn_farfield_rank){
            .rank_rel = sv[0] > 0 ? (double) count_above(sv, n, tol * sv[0]) : 0.0,
            .rank_abs = (double) count_above(sv, n, tol * norm_A),
            .energy90 = total > 0 ? energy_rank(sv, n, total, 0.90) : 0.0,
            .energy99 = total > 0 ? energy_rank(sv, n, total, 0.99) : 0.0,
            .stable_rank = sv[0] > 0 ? total / (sv[0] * sv[0]) : NAN,
            .norm_rel = norm_A > 0 ? sv[0] / norm_A : NAN,
            .mass = mass / (double) n,
        };
    }
    free(F);
    free(sv);
    return status == ATTN_OK ? ATTN_OK : attn_error_context(status, "far-field rank, band %zu", k);
}
