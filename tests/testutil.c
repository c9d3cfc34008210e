/* testutil.c — helpers shared by the Criterion suites. */
#include "config.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "attn.h"
#include "attn_io.h"
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

void tu_random_qkv(size_t n, size_t m, size_t d, size_t dv, unsigned long seed, double **Q,
                   double **K, double **V)
{
    *Q = tu_alloc(n * d);
    *K = tu_alloc(m * d);
    *V = tu_alloc(m * dv);
    tu_fill_gauss(*Q, n * d, seed, 2.385);
    tu_fill_gauss(*K, m * d, seed + 1, 1.0);
    tu_fill_gauss(*V, m * dv, seed + 2, 1.0);
}

attn_plan *tu_plan(const char *spec, const attn_problem *pb)
{
    attn_plan *plan = NULL;
    cr_assert_eq(attn_plan_create(&plan, spec, pb), ATTN_OK, "plan %s: %s", spec,
                 attn_last_error());
    return plan;
}

/* One plan of spec, applied (materialize = 0: O, n x dv) or materialized (A, n x m). */
static double *run(const char *spec, const attn_problem *pb, const double *Q, const double *K,
                   const double *V, int materialize)
{
    attn_plan *plan = tu_plan(spec, pb);
    double *X = tu_alloc(pb->n * (materialize ? pb->m : pb->dv));
    int status = materialize ? attn_plan_materialize(plan, Q, K, V, X)
                             : attn_plan_apply(plan, Q, K, V, X);
    cr_assert_eq(status, ATTN_OK, "%s %s: %s", materialize ? "materialize" : "apply", spec,
                 attn_last_error());
    attn_plan_destroy(plan);
    return X;
}

double *tu_apply(const char *spec, const attn_problem *pb, const double *Q, const double *K,
                 const double *V)
{
    return run(spec, pb, Q, K, V, 0);
}

double *tu_materialize(const char *spec, const attn_problem *pb, const double *Q, const double *K,
                       const double *V)
{
    return run(spec, pb, Q, K, V, 1);
}

double *tu_reference(const attn_problem *pb, const double *Q, const double *K, const double *V)
{
    double *R = tu_alloc(pb->n * pb->dv);
    cr_assert_eq(attn_reference(pb, Q, K, V, R, NULL), ATTN_OK, "reference: %s",
                 attn_last_error());
    return R;
}

double tu_error_vs_reference(const char *spec, const attn_problem *pb, const double *Q,
                             const double *K, const double *V)
{
    double *O = tu_apply(spec, pb, Q, K, V), *R = tu_reference(pb, Q, K, V);
    double err = tu_rel_fro(O, R, pb->n * pb->dv);
    free(O);
    free(R);
    return err;
}

void tu_expect_exact(const char *spec, const attn_problem *pb, const double *Q, const double *K,
                     const double *V, double tol, const char *what)
{
    double err = tu_error_vs_reference(spec, pb, Q, K, V);
    cr_assert(err <= tol, "%s%s%s, n = %zu, causal %d: error %.3g against exact (tolerance %.3g)",
              spec, what ? " on " : "", what ? what : "", pb->n, pb->causal, err, tol);
}

attn_inputs *tu_read_inputs(const char *file, size_t rows)
{
    attn_inputs *in = NULL;
    char *path = tu_src_path(file);
    cr_assert_eq(attn_inputs_read(&in, path, rows, 0), ATTN_OK, "reading %s: %s", file,
                 attn_last_error());
    free(path);
    return in;
}

attn_inputs *tu_load_head(const char *file, size_t layer, size_t head, const double **q,
                          const double **k, const double **v)
{
    attn_inputs *in = tu_read_inputs(file, 0);
    attn_inputs_head(in, layer, head, q, k, v);
    return in;
}

attn_problem tu_inputs_problem(const attn_inputs *in, int causal)
{
    return (attn_problem){ .n = in->n, .m = in->n, .d = in->d, .dv = in->dv, .causal = causal,
                           .scale = in->scale };
}

void tu_expect_refused(const char *spec, const attn_problem *pb, int status, const char *needle)
{
    attn_plan *plan = (attn_plan *) 1;
    int got = attn_plan_create(&plan, spec, pb);
    cr_assert_eq(got, status, "%s: status %s, expected %s (%s)", spec, attn_status_name(got),
                 attn_status_name(status), attn_last_error());
    cr_assert_null(plan, "%s: a failed create left a plan", spec);
    cr_assert(tu_error_has(needle), "%s: message '%s' lacks '%s'", spec, attn_last_error(),
              needle);
}
