/* problem.c — checks of problems and inputs. */
#include "config.h"

#include <math.h>

#include "attn.h"

int attn_problem_check(const attn_problem *p)
{
    if (p == NULL)
        return ATTN_ERR(ATTN_EINVAL, "problem is NULL");
    if (p->n == 0 || p->m == 0 || p->d == 0 || p->dv == 0)
        return ATTN_ERR(ATTN_ESHAPE,
                        "empty problem (n = %zu, m = %zu, d = %zu, dv = %zu); all must be >= 1",
                        p->n, p->m, p->d, p->dv);
    if (p->causal != 0 && p->causal != 1)
        return ATTN_ERR(ATTN_EINVAL, "causal = %d, expected 0 or 1", p->causal);
    if (p->causal && p->m != p->n)
        return ATTN_ERR(ATTN_ESHAPE, "causal attention needs m == n (n = %zu, m = %zu)", p->n,
                        p->m);
    if (!isfinite(p->scale) || p->scale < 0)
        return ATTN_ERR(ATTN_EINVAL, "scale = %g, expected a finite value >= 0 (0: 1/sqrt(d))",
                        p->scale);
    return ATTN_OK;
}

double attn_problem_scale(const attn_problem *p)
{
    return p->scale > 0 ? p->scale : 1.0 / sqrt((double) p->d);
}

int attn_check_finite(const char *operand, const double *X, size_t rows, size_t cols)
{
    /* One pass with a cheap test; the slow path only runs to name the offender. */
    double acc = 0.0;
    size_t count = rows * cols;
    for (size_t t = 0; t < count; t++)
        acc += X[t] * 0.0;
    if (acc == 0.0)
        return ATTN_OK;
    for (size_t t = 0; t < count; t++)
        if (!isfinite(X[t]))
            return ATTN_ERR(ATTN_ENONFINITE, "%s: row %zu, column %zu is %s", operand, t / cols,
                            t % cols, isnan(X[t]) ? "nan" : (X[t] > 0 ? "inf" : "-inf"));
    return ATTN_OK;
}
