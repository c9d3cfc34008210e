/* testutil.c — helpers shared by the Criterion suites. */
#include "config.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "attn.h"
#include "testutil.h"

double *tu_alloc(size_t count)
{
    double *x = calloc(count ? count : 1, sizeof *x);
    cr_assert_not_null(x, "out of memory allocating %zu doubles", count);
    return x;
}

static uint64_t next(uint64_t *s)
{
    /* xorshift64*: deterministic on every platform. */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

void tu_fill_gauss(double *x, size_t count, unsigned long seed, double scale)
{
    uint64_t s = 0x9E3779B97F4A7C15ull ^ ((uint64_t) seed * 0xD1B54A32D192ED03ull);
    if (s == 0)
        s = 1;
    for (size_t t = 0; t < count; t += 2) {
        double u1 = ((next(&s) >> 11) + 0.5) * 0x1p-53;
        double u2 = ((next(&s) >> 11) + 0.5) * 0x1p-53;
        double r = sqrt(-2.0 * log(u1));
        x[t] = scale * r * cos(2.0 * M_PI * u2);
        if (t + 1 < count)
            x[t + 1] = scale * r * sin(2.0 * M_PI * u2);
    }
}

double tu_rel_fro(const double *a, const double *b, size_t count)
{
    double num = 0.0, den = 0.0;
    for (size_t t = 0; t < count; t++) {
        num += (a[t] - b[t]) * (a[t] - b[t]);
        den += b[t] * b[t];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

double tu_max_abs_diff(const double *a, const double *b, size_t count)
{
    double mx = 0.0;
    for (size_t t = 0; t < count; t++) {
        double e = fabs(a[t] - b[t]);
        mx = e > mx || isnan(e) ? e : mx;
    }
    return mx;
}

void tu_matmul(const double *A, const double *B, double *C, size_t n, size_t k, size_t c)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < c; j++) {
            double s = 0.0;
            for (size_t t = 0; t < k; t++)
                s += A[i * k + t] * B[t * c + j];
            C[i * c + j] = s;
        }
}

static char *join(const char *var, const char *relative)
{
    const char *dir = getenv(var);
    if (dir == NULL || *dir == '\0')
        dir = ".";
    size_t len = strlen(dir) + strlen(relative) + 2;
    char *p = malloc(len);
    cr_assert_not_null(p);
    snprintf(p, len, "%s/%s", dir, relative);
    return p;
}

char *tu_src_path(const char *relative)
{
    return join("ATTN_SRCDIR", relative);
}

char *tu_build_path(const char *relative)
{
    return join("ATTN_BUILDDIR", relative);
}

int tu_error_has(const char *needle)
{
    if (strstr(attn_last_error(), needle) != NULL)
        return 1;
    cr_log_error("message '%s' does not contain '%s'", attn_last_error(), needle);
    return 0;
}
