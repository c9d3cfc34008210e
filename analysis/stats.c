/* stats.c — quantiles (type 7), per-x medians, log-log least squares and crossover n.
 *
 * The definitions are in stats.h.  Pure functions: they allocate scratch, but never print or read
 * files.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>

#include <gsl/gsl_fit.h>

#include "attn.h"
#include "stats.h"

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *) a;
    double y = *(const double *) b;
    return (x > y) - (x < y);
}

size_t attn_stats_sort_finite(double *x, size_t n)
{
    size_t N = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isnan(x[i])) {
            double t = x[N];
            x[N++] = x[i];
            x[i] = t;
        }
    }
    qsort(x, N, sizeof *x, compare_double);
    return N;
}

double attn_stats_quantile_sorted(const double *sorted, size_t N, double p)
{
    if (N == 0 || !(p >= 0.0 && p <= 1.0))
        return NAN;
    double h = (double) (N - 1) * p;
    size_t j = (size_t) floor(h);
    double g = h - (double) j;
    if (j >= N - 1 || g == 0.0)
        return sorted[j < N - 1 ? j : N - 1];
    /* Written as a convex combination only when the two values differ, so that equal infinite
     * values give that infinity rather than inf - inf = NaN. */
    if (sorted[j] == sorted[j + 1])
        return sorted[j];
    return sorted[j] + g * (sorted[j + 1] - sorted[j]);
}

double attn_stats_quantile(double *x, size_t n, double p)
{
    size_t N = attn_stats_sort_finite(x, n);
    return attn_stats_quantile_sorted(x, N, p);
}

double attn_stats_median(double *x, size_t n)
{
    return attn_stats_quantile(x, n, 0.5);
}

typedef struct xy_pair {
    double x;
    double y;
} xy_pair;

static int compare_pair_x(const void *a, const void *b)
{
    return compare_double(&((const xy_pair *) a)->x, &((const xy_pair *) b)->x);
}

int attn_stats_group_median(const double *x, const double *y, size_t count, double *ux,
                            double *ymed, size_t *nu)
{
    *nu = 0;
    if (count == 0)
        return ATTN_OK;
    xy_pair *pairs = calloc(count, sizeof *pairs);
    double *ys = calloc(count, sizeof *ys);
    if (pairs == NULL || ys == NULL) {
        free(pairs);
        free(ys);
        return ATTN_ERR(ATTN_ENOMEM, "per-x medians of %zu pairs", count);
    }
    size_t np = 0;
    for (size_t i = 0; i < count; i++) {
        if (!isnan(x[i])) {
            pairs[np].x = x[i];
            pairs[np].y = y[i];
            np++;
        }
    }
    qsort(pairs, np, sizeof *pairs, compare_pair_x);
    size_t groups = 0;
    for (size_t start = 0; start < np;) {
        size_t end = start;
        while (end < np && pairs[end].x == pairs[start].x) {
            ys[end - start] = pairs[end].y;
            end++;
        }
        ux[groups] = pairs[start].x;
        ymed[groups] = attn_stats_median(ys, end - start);
        groups++;
        start = end;
    }
    *nu = groups;
    free(pairs);
    free(ys);
    return ATTN_OK;
}

int attn_stats_loglog_fit(const double *x, const double *y, size_t count, attn_loglog_fit *fit)
{
    fit->slope = NAN;
    fit->intercept = NAN;
    fit->slope_se = NAN;
    fit->points = 0;
    if (count == 0)
        return ATTN_OK;
    double *lx = calloc(count, sizeof *lx);
    double *ly = calloc(count, sizeof *ly);
    if (lx == NULL || ly == NULL) {
        free(lx);
        free(ly);
        return ATTN_ERR(ATTN_ENOMEM, "log-log fit of %zu points", count);
    }
    size_t np = 0;
    int distinct = 0;
    for (size_t i = 0; i < count; i++) {
        if (isfinite(x[i]) && x[i] > 0.0 && isfinite(y[i]) && y[i] > 0.0) {
            lx[np] = log(x[i]);
            ly[np] = log(y[i]);
            if (np > 0 && lx[np] != lx[0])
                distinct = 1;
            np++;
        }
    }
    fit->points = np;
    if (np >= 2 && distinct) {
        double c0, c1, cov00, cov01, cov11, sumsq;
        gsl_fit_linear(lx, 1, ly, 1, np, &c0, &c1, &cov00, &cov01, &cov11, &sumsq);
        fit->intercept = c0;
        fit->slope = c1;
        /* With two points the residual variance has no degree of freedom (GSL divides by 0). */
        fit->slope_se = np >= 3 ? sqrt(cov11) : NAN;
    }
    free(lx);
    free(ly);
    return ATTN_OK;
}

int attn_stats_crossover(const double *n, const double *t_method, const double *t_exact,
                         size_t count, attn_crossover *crossover)
{
    crossover->n = NAN;
    crossover->n_lo = NAN;
    crossover->n_hi = NAN;
    for (size_t i = 0; i < count; i++) {
        if (!(isfinite(n[i]) && n[i] > 0.0))
            return ATTN_ERR(ATTN_EINVAL, "crossover: n[%zu] = %g, expected a finite n > 0", i,
                            n[i]);
        if (i > 0 && !(n[i] > n[i - 1]))
            return ATTN_ERR(ATTN_EINVAL,
                            "crossover: n is not increasing (n[%zu] = %g after n[%zu] = %g)", i,
                            n[i], i - 1, n[i - 1]);
    }
    int have_prev = 0;
    size_t prev = 0;
    for (size_t i = 0; i < count; i++) {
        double tm = t_method[i];
        double te = t_exact[i];
        if (!(isfinite(tm) && tm > 0.0 && isfinite(te) && te > 0.0))
            continue;
        if (tm < te) {
            crossover->n_hi = n[i];
            if (!have_prev) {
                crossover->n = n[i];
                return ATTN_OK;
            }
            double r_lo = log(t_method[prev] / t_exact[prev]);    /* >= 0 */
            double r_hi = log(tm / te);                           /* < 0 */
            double ln_lo = log(n[prev]);
            double ln_hi = log(n[i]);
            crossover->n_lo = n[prev];
            crossover->n = exp(ln_lo + r_lo / (r_lo - r_hi) * (ln_hi - ln_lo));
            return ATTN_OK;
        }
        have_prev = 1;
        prev = i;
    }
    return ATTN_OK;
}
