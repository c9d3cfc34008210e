/* test_analysis.c — the statistics of attn-aggregate (analysis/stats.c) against hand-computed values:
 * type-7 quantiles and medians with NaN ignored, per-n medians, log-log slopes of exact power laws,
 * and the crossover n of a method against exact attention in its three cases.
 */
#include "config.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/new/assert.h>

#include "attn.h"
#include "../analysis/stats.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* |got - want| <= tol * max(1, |want|): a relative tolerance that still works near zero. */
static int close_to(double got, double want, double tol)
{
    return fabs(got - want) <= tol * fmax(1.0, fabs(want));
}

/* Rounding of a few operations on values of order 10: a handful of ulps. */
#define TOL_Q (8.0 * DBL_EPSILON)

Test(quantile, median_odd_count)
{
    /* Sorted: -1.25 0.4 2.385 3.7 9.1; the middle (third) value. */
    double x[] = { 3.7, -1.25, 2.385, 9.1, 0.4 };
    double med = attn_stats_median(x, COUNT(x));
    cr_assert(close_to(med, 2.385, TOL_Q), "median = %.17g, expected 2.385", med);
}

Test(quantile, median_even_count)
{
    /* Sorted: -0.62 2.385 4.4 7.91; the mean of the two middle values (2.385 + 4.4) / 2. */
    double x[] = { 2.385, 7.91, -0.62, 4.4 };
    double med = attn_stats_median(x, COUNT(x));
    cr_assert(close_to(med, 3.3925, TOL_Q), "median = %.17g, expected 3.3925", med);
}

/* Type 7 worked out on six values.  Sorted: x_0..x_5 = 0.917 1.73 2.385 3.141 5.62 7.77, N = 6.
 *   Q(0.25): h = 5 * 0.25 = 1.25, j = 1, g = 0.25: 1.73 + 0.25 (2.385 - 1.73) = 1.89375
 *   Q(0.50): h = 2.5,  j = 2, g = 0.5:  2.385 + 0.5 (3.141 - 2.385) = 2.763
 *   Q(0.75): h = 3.75, j = 3, g = 0.75: 3.141 + 0.75 (5.62 - 3.141) = 5.00025
 *   Q(0) = 0.917 and Q(1) = 7.77 (g = 0: the extreme values themselves). */
static const double six[] = { 2.385, 0.917, 5.62, 3.141, 7.77, 1.73 };
static const double six_p[] = { 0.0, 0.25, 0.5, 0.75, 1.0 };
static const double six_q[] = { 0.917, 1.89375, 2.763, 5.00025, 7.77 };

Test(quantile, type7_quartiles)
{
    for (size_t k = 0; k < COUNT(six_p); k++) {
        double x[COUNT(six)];
        memcpy(x, six, sizeof x);
        double q = attn_stats_quantile(x, COUNT(x), six_p[k]);
        cr_assert(close_to(q, six_q[k], TOL_Q), "Q(%g) = %.17g, expected %.17g", six_p[k], q,
                  six_q[k]);
    }
}

Test(quantile, nan_ignored)
{
    /* The six values with three NaN mixed in give the same quantiles: N counts non-NaN values. */
    for (size_t k = 0; k < COUNT(six_p); k++) {
        double x[] = { NAN, 2.385, 0.917, NAN, 5.62, 3.141, 7.77, 1.73, NAN };
        double q = attn_stats_quantile(x, COUNT(x), six_p[k]);
        cr_assert(close_to(q, six_q[k], TOL_Q), "Q(%g) with NaN = %.17g, expected %.17g",
                  six_p[k], q, six_q[k]);
    }
    double y[] = { NAN, 4.625, NAN };
    double med = attn_stats_median(y, COUNT(y));
    cr_assert(eq(dbl, med, 4.625), "median of {NaN, 4.625, NaN} = %.17g", med);
}

Test(quantile, sort_finite_moves_nan_to_end)
{
    double x[] = { NAN, 3.5, -2.25, NAN, 0.125 };
    size_t N = attn_stats_sort_finite(x, COUNT(x));
    cr_assert(eq(sz, N, 3));
    cr_assert(eq(dbl, x[0], -2.25));
    cr_assert(eq(dbl, x[1], 0.125));
    cr_assert(eq(dbl, x[2], 3.5));
    cr_assert(isnan(x[3]) && isnan(x[4]), "NaN not moved to the end: %g %g", x[3], x[4]);
}

Test(quantile, undefined_is_nan)
{
    double all_nan[] = { NAN, NAN };
    cr_assert(isnan(attn_stats_median(all_nan, COUNT(all_nan))), "median of only NaN");
    cr_assert(isnan(attn_stats_median(NULL, 0)), "median of nothing");
    double x[] = { 1.5, 2.75 };
    cr_assert(isnan(attn_stats_quantile(x, COUNT(x), 1.25)), "Q(1.25) must be NaN");
    cr_assert(isnan(attn_stats_quantile(x, COUNT(x), -0.5)), "Q(-0.5) must be NaN");
    /* Two equal infinities: the quantile between them is that infinity, not inf - inf. */
    double inf[] = { INFINITY, INFINITY, 2.5 };
    double q = attn_stats_quantile(inf, COUNT(inf), 0.75);
    cr_assert(isinf(q) && q > 0, "Q(0.75) of {2.5, inf, inf} = %g, expected inf", q);
}

Test(group, median_per_x)
{
    /* x = 128: y = 0.75, 2.5, NaN -> median of {0.75, 2.5} = 1.625
     * x = 256: y = 3.125            -> 3.125
     * x = 512: y = 9.5, 4.25, 6.375 -> 6.375
     * a NaN x is dropped. */
    const double x[] = { 512, 128, 256, 512, 128, NAN, 512, 128 };
    const double y[] = { 9.5, 0.75, 3.125, 4.25, 2.5, 77.7, 6.375, NAN };
    double ux[COUNT(x)];
    double ymed[COUNT(x)];
    size_t nu = 99;
    cr_assert(eq(int, attn_stats_group_median(x, y, COUNT(x), ux, ymed, &nu), ATTN_OK));
    cr_assert(eq(sz, nu, 3));
    const double want_x[] = { 128, 256, 512 };
    const double want_y[] = { 1.625, 3.125, 6.375 };
    for (size_t i = 0; i < 3; i++) {
        cr_assert(eq(dbl, ux[i], want_x[i]), "ux[%zu] = %g", i, ux[i]);
        cr_assert(close_to(ymed[i], want_y[i], TOL_Q), "median at x = %g: %.17g, expected %g",
                  ux[i], ymed[i], want_y[i]);
    }
}

/* n = 128, 256, ..., 4096 (six points). */
static void powers_of_two(double *n, size_t count)
{
    for (size_t i = 0; i < count; i++)
        n[i] = ldexp(1.0, (int) (7 + i));
}

Test(fit, exact_power_laws)
{
    /* y = c n^b exactly: the fit returns b and log c, with a zero residual (se ~ rounding). */
    const double b[] = { 2.0, 1.5 };
    const double c[] = { 2.385e-9, 3.17e-7 };
    double n[6];
    double y[6];
    powers_of_two(n, 6);
    for (size_t t = 0; t < COUNT(b); t++) {
        for (size_t i = 0; i < 6; i++)
            y[i] = c[t] * pow(n[i], b[t]);
        attn_loglog_fit fit;
        cr_assert(eq(int, attn_stats_loglog_fit(n, y, 6, &fit), ATTN_OK));
        cr_assert(eq(sz, fit.points, 6));
        cr_assert(close_to(fit.slope, b[t], 1e-12), "slope %.17g, expected %g", fit.slope, b[t]);
        cr_assert(close_to(fit.intercept, log(c[t]), 1e-12), "intercept %.17g, expected %.17g",
                  fit.intercept, log(c[t]));
        cr_assert(fit.slope_se >= 0.0 && fit.slope_se < 1e-12, "slope_se %.3g", fit.slope_se);
    }
}

Test(fit, noisy_slope_has_standard_error)
{
    /* Three points (log n = 0, L, 2L with L = log 2) on log y = 0.3, 0.3 + 2L + 0.05, 0.3 + 4L:
     * the least-squares slope is 2 (the middle residual is symmetric), residuals are
     * -0.05/3, +0.1/3, -0.05/3, so sumsq = 0.015/9 = 1/600, s^2 = sumsq / (3 - 2) = 1/600,
     * and se(b) = sqrt(s^2 / sum (x - xbar)^2) = sqrt(1/600 / (2 L^2)). */
    double L = log(2.0);
    const double n[] = { 1.0, 2.0, 4.0 };
    const double y[] = { exp(0.3), exp(0.3 + 2 * L + 0.05), exp(0.3 + 4 * L) };
    attn_loglog_fit fit;
    cr_assert(eq(int, attn_stats_loglog_fit(n, y, 3, &fit), ATTN_OK));
    cr_assert(close_to(fit.slope, 2.0, 1e-12), "slope %.17g", fit.slope);
    double se = sqrt(1.0 / 600.0 / (2.0 * L * L));
    cr_assert(close_to(fit.slope_se, se, 1e-10), "slope_se %.17g, expected %.17g", fit.slope_se,
              se);
}

Test(fit, too_few_points_is_nan)
{
    const double n2[] = { 256, 1024 };
    const double y2[] = { 0.5 * 256 * 256, 0.5 * 1024 * 1024 };
    attn_loglog_fit fit;
    /* Two points: the line through them (slope 2), no residual degree of freedom for se. */
    cr_assert(eq(int, attn_stats_loglog_fit(n2, y2, 2, &fit), ATTN_OK));
    cr_assert(close_to(fit.slope, 2.0, 1e-12), "slope %.17g", fit.slope);
    cr_assert(isnan(fit.slope_se), "se with two points = %g", fit.slope_se);
    /* One usable point (the others are NaN, zero or negative): NaN, not an error. */
    const double n3[] = { 128, 256, 512, 1024 };
    const double y3[] = { NAN, 2.385, 0.0, -1.5 };
    cr_assert(eq(int, attn_stats_loglog_fit(n3, y3, 4, &fit), ATTN_OK));
    cr_assert(eq(sz, fit.points, 1));
    cr_assert(isnan(fit.slope) && isnan(fit.intercept) && isnan(fit.slope_se));
    /* All x equal: no slope. */
    const double n4[] = { 512, 512, 512 };
    const double y4[] = { 1.25, 2.5, 3.75 };
    cr_assert(eq(int, attn_stats_loglog_fit(n4, y4, 3, &fit), ATTN_OK));
    cr_assert(isnan(fit.slope), "slope with one distinct x = %g", fit.slope);
}

Test(crossover, faster_from_third_n)
{
    /* t_exact = 2.385e-9 n^2.  The method is 2.5x slower at 128, 1.6x slower at 256 and 0.4x
     * (faster) from 512 on.  r = log(ratio): r_lo = log 1.6, r_hi = log 0.4 = log 1.6 - log 4, so
     * the fraction of the way from log 256 to log 512 is log 1.6 / log 4 and
     * n = 256 * 2^(log 1.6 / log 4) = 256 * sqrt(1.6) = 323.817...; n_lo = 256, n_hi = 512. */
    double n[5];
    double te[5];
    double tm[5];
    const double ratio[] = { 2.5, 1.6, 0.4, 0.3, 0.2 };
    powers_of_two(n, 5);
    for (size_t i = 0; i < 5; i++) {
        te[i] = 2.385e-9 * n[i] * n[i];
        tm[i] = ratio[i] * te[i];
    }
    attn_crossover c;
    cr_assert(eq(int, attn_stats_crossover(n, tm, te, 5, &c), ATTN_OK));
    cr_assert(eq(dbl, c.n_lo, 256.0), "n_lo = %g", c.n_lo);
    cr_assert(eq(dbl, c.n_hi, 512.0), "n_hi = %g", c.n_hi);
    cr_assert(close_to(c.n, 256.0 * sqrt(1.6), 1e-13), "n = %.17g, expected %.17g", c.n,
              256.0 * sqrt(1.6));
}

Test(crossover, never_faster)
{
    double n[4];
    powers_of_two(n, 4);
    const double te[] = { 1.25e-4, 5.1e-4, 2.07e-3, 8.3e-3 };
    const double tm[] = { 2.385e-4, 9.7e-4, 2.07e-3, 1.9e-2 };   /* equal is not faster */
    attn_crossover c;
    cr_assert(eq(int, attn_stats_crossover(n, tm, te, 4, &c), ATTN_OK));
    cr_assert(isnan(c.n) && isnan(c.n_lo) && isnan(c.n_hi), "never: n %g, lo %g, hi %g", c.n,
              c.n_lo, c.n_hi);
    /* No usable point at all is "never" too. */
    cr_assert(eq(int, attn_stats_crossover(NULL, NULL, NULL, 0, &c), ATTN_OK));
    cr_assert(isnan(c.n) && isnan(c.n_lo) && isnan(c.n_hi));
}

Test(crossover, always_faster)
{
    double n[4];
    powers_of_two(n, 4);
    const double te[] = { 1.25e-4, 5.1e-4, 2.07e-3, 8.3e-3 };
    const double tm[] = { 0.8e-4, 2.385e-4, 6.1e-4, 1.9e-3 };
    attn_crossover c;
    cr_assert(eq(int, attn_stats_crossover(n, tm, te, 4, &c), ATTN_OK));
    cr_assert(eq(dbl, c.n, 128.0), "always: n = %g, expected the first n, 128", c.n);
    cr_assert(eq(dbl, c.n_hi, 128.0), "always: n_hi = %g", c.n_hi);
    cr_assert(isnan(c.n_lo), "always: n_lo = %g, expected NaN", c.n_lo);
}

Test(crossover, skips_missing_times)
{
    /* The method's time at 128 is missing: the first usable point (256) is already faster,
     * so this is "always" from 256. */
    double n[3];
    powers_of_two(n, 3);
    const double te[] = { 1.25e-4, 5.1e-4, 2.07e-3 };
    const double tm[] = { NAN, 2.385e-4, 6.1e-4 };
    attn_crossover c;
    cr_assert(eq(int, attn_stats_crossover(n, tm, te, 3, &c), ATTN_OK));
    cr_assert(eq(dbl, c.n, 256.0), "n = %g", c.n);
    cr_assert(isnan(c.n_lo), "n_lo = %g", c.n_lo);
}

Test(crossover, unsorted_n_is_an_error)
{
    const double n[] = { 128, 512, 256 };
    const double t[] = { 1.5, 2.5, 3.5 };
    attn_crossover c;
    cr_assert(eq(int, attn_stats_crossover(n, t, t, 3, &c), ATTN_EINVAL));
    cr_assert(strstr(attn_last_error(), "n[2] = 256") != NULL, "message: %s", attn_last_error());
}
