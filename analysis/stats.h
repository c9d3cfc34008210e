/* stats.h — the statistics of attn-aggregate: quantiles, per-n medians, log-log slopes, crossovers.
 *
 * Pure functions: no I/O, no printing.  Missing values are NaN and are ignored wherever a function
 * says so.  Functions that can fail return an attn status (attn.h) with a message in
 * attn_last_error(); the others return NaN when their result is undefined.
 */
#ifndef ATTN_STATS_H
#define ATTN_STATS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Quantiles.  Definition (type 7 of Hyndman & Fan, the default of R's quantile() and NumPy's
 * percentile(method="linear")): with the N non-NaN values sorted, x_0 <= ... <= x_{N-1}, and
 * h = (N - 1) p, j = floor(h), g = h - j,
 *
 *     Q(p) = x_j + g (x_{j+1} - x_j)        (Q(p) = x_j when g = 0, so Q(1) = x_{N-1}).
 *
 * The median is Q(1/2): the middle value for odd N, the mean of the two middle values for even N.
 * NaN values are ignored; +-Inf are ordinary values.  The result is NaN when no value is left. */

/* Move the NaN values of x[0..n) to its end, sort the others ascending and return their count N.
 * x is reordered in place (as gsl_stats_median reorders its input).  O(n log n). */
size_t attn_stats_sort_finite(double *x, size_t n);

/* Q(p) of the ascending, NaN-free values sorted[0..N).  p outside [0, 1] or N == 0 gives NaN.
 * O(1). */
double attn_stats_quantile_sorted(const double *sorted, size_t N, double p);

/* Q(p) of x[0..n), NaN ignored.  x is reordered (see attn_stats_sort_finite). */
double attn_stats_quantile(double *x, size_t n, double p);

/* The median Q(1/2) of x[0..n), NaN ignored.  x is reordered. */
double attn_stats_median(double *x, size_t n);

/* Per-x medians.  Given pairs (x[i], y[i]), i < count, write the distinct values of x in ascending
 * order to ux[0..*nu) and the median of the y of each (NaN ignored; NaN when all are NaN) to
 * ymed[0..*nu).  Pairs with NaN x are dropped.  ux and ymed must have room for count values.
 * Returns ATTN_OK or ATTN_ENOMEM.  O(count log count). */
int attn_stats_group_median(const double *x, const double *y, size_t count, double *ux,
                            double *ymed, size_t *nu);

/* Least-squares line through (log x, log y) (natural logarithms): log y = intercept + slope log x.
 * Fitted with gsl_fit_linear over the pairs with x and y finite and > 0; the others are skipped. */
typedef struct attn_loglog_fit {
    double slope;      /* b: y grows like x^b */
    double intercept;  /* a, so that y ~ exp(a) x^b */
    double slope_se;   /* standard error of b, sqrt(cov_11) of gsl_fit_linear (residual variance
                        * over points - 2 degrees of freedom); NaN with fewer than 3 points */
    size_t points;     /* pairs used */
} attn_loglog_fit;

/* Fit x[0..count), y[0..count).  Fewer than 2 usable pairs, or all usable x equal, is not an error:
 * slope, intercept and slope_se are then NaN (points still says how many pairs were usable).
 * Returns ATTN_OK or ATTN_ENOMEM.  O(count). */
int attn_stats_loglog_fit(const double *x, const double *y, size_t count, attn_loglog_fit *fit);

/* Crossover of a method against exact attention.  n[0..count) is strictly increasing; t_method[i]
 * and t_exact[i] are the (median) times at n[i].  Points where either time is not finite and > 0
 * are skipped.  Among the remaining points, the crossover is the FIRST point i at which
 * t_method[i] < t_exact[i] (a later return to slower is not reported):
 *
 *   found, with an earlier point:  n_hi = n[i], n_lo = the n of the previous remaining point (where
 *       the method was not faster), and n is interpolated linearly in log n on r = log(t_method /
 *       t_exact), which is >= 0 at n_lo and < 0 at n_hi: the n between them at which r = 0,
 *           log n = log n_lo + r_lo / (r_lo - r_hi) (log n_hi - log n_lo);
 *   "always" (faster at the first remaining point):  n = n_hi = that first n, n_lo = NaN;
 *   "never" (faster at no remaining point, or no point remains):  n = n_lo = n_hi = NaN. */
typedef struct attn_crossover {
    double n;      /* interpolated crossover n (see above) */
    double n_lo;   /* largest n before the crossover at which the method was not faster */
    double n_hi;   /* smallest n at which the method is faster */
} attn_crossover;

/* Returns ATTN_OK, or ATTN_EINVAL (message names the index and values) when n is not strictly
 * increasing or has a value that is not finite and > 0.  O(count). */
int attn_stats_crossover(const double *n, const double *t_method, const double *t_exact,
                         size_t count, attn_crossover *crossover);

#ifdef __cplusplus
}
#endif
#endif /* ATTN_STATS_H */
