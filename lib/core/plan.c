/* plan.c — plan create / apply / materialize / cost / destroy, common to every method. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn_impl.h"

#define SPEC_MAX 1024

void *attn_plan_calloc(attn_plan *plan, size_t count, size_t size)
{
    void *p = calloc(count, size);
    if (p != NULL)
        plan->bytes += (double) count * (double) size;
    return p;
}

double attn_plan_value(const attn_plan *plan, const char *name)
{
    long t = attn_param_index(plan->method, name);
    return t < 0 ? NAN : plan->values[t];
}

double attn_plan_param(const attn_plan *plan, const char *name)
{
    return attn_plan_value(plan, name);
}

static int check_caps(const attn_method *method, const attn_problem *pb)
{
    unsigned caps = method->caps;
    if (pb->causal && !(caps & ATTN_CAN_CAUSAL))
        return ATTN_ERR(ATTN_EUNSUP, "%s does not support causal attention (causal = 1 given)%s%s",
                        method->id, method->causal_note != NULL ? ": " : "",
                        method->causal_note != NULL ? method->causal_note : "");
    if (!pb->causal && !(caps & ATTN_CAN_BIDIR))
        return ATTN_ERR(ATTN_EUNSUP, "%s supports only causal attention (causal = 0 given)",
                        method->id);
    if (pb->m != pb->n && !(caps & ATTN_CAN_RECT))
        return ATTN_ERR(ATTN_EUNSUP, "%s needs m == n (n = %zu, m = %zu)", method->id, pb->n,
                        pb->m);
    return ATTN_OK;
}

int attn_plan_create(attn_plan **out, const char *spec, const attn_problem *problem)
{
    int status;
    const attn_method *method = NULL;
    double values[64];
    char canonical[SPEC_MAX];
    attn_plan *plan = NULL;

    if (out == NULL)
        return ATTN_ERR(ATTN_EINVAL, "plan pointer is NULL");
    *out = NULL;
    status = attn_spec_parse(spec, &method, values);
    if (status != ATTN_OK)
        return status;
    status = attn_problem_check(problem);
    if (status != ATTN_OK)
        return attn_error_context(status, "%s", method->id);
    status = check_caps(method, problem);
    if (status != ATTN_OK)
        return status;

    plan = calloc(1, sizeof *plan);
    if (plan == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "plan header");
    plan->method = method;
    plan->problem = *problem;
    plan->problem.scale = attn_problem_scale(problem);
    while (method->params[plan->nparams].name != NULL)
        plan->nparams++;
    plan->values = calloc(plan->nparams + 1, sizeof *plan->values);
    attn_spec_format(method, values, canonical, sizeof canonical);
    plan->spec = malloc(strlen(canonical) + 1);
    if (plan->values == NULL || plan->spec == NULL) {
        status = ATTN_ERR(ATTN_ENOMEM, "plan parameters");
        goto fail;
    }
    memcpy(plan->values, values, plan->nparams * sizeof *values);
    strcpy(plan->spec, canonical);
    status = method->init(plan);
    if (status != ATTN_OK)
        goto fail;
    /* init resolves parameters that default to a value chosen from the problem ("auto"): the
     * canonical spec records the resolved values, so that it recreates the same plan. */
    attn_spec_format(method, plan->values, canonical, sizeof canonical);
    if (strcmp(canonical, plan->spec) != 0) {
        char *resolved = realloc(plan->spec, strlen(canonical) + 1);
        if (resolved == NULL) {
            status = ATTN_ERR(ATTN_ENOMEM, "plan spec");
            goto fail;
        }
        plan->spec = strcpy(resolved, canonical);
    }
    *out = plan;
    return ATTN_OK;
fail:
    attn_plan_destroy(plan);
    return status;
}

void attn_plan_destroy(attn_plan *plan)
{
    if (plan == NULL)
        return;
    if (plan->method->fini != NULL)
        plan->method->fini(plan);
    else
        free(plan->state);
    free(plan->values);
    free(plan->spec);
    free(plan);
}

static int check_inputs(const attn_plan *plan, const double *Q, const double *K, const double *V)
{
    const attn_problem *pb = &plan->problem;
    if (Q == NULL || K == NULL)
        return ATTN_ERR(ATTN_EINVAL, "%s: Q or K is NULL", plan->method->id);
    ATTN_TRY(attn_check_finite("Q", Q, pb->n, pb->d), "%s", plan->method->id);
    ATTN_TRY(attn_check_finite("K", K, pb->m, pb->d), "%s", plan->method->id);
    if (V != NULL)
        ATTN_TRY(attn_check_finite("V", V, pb->m, pb->dv), "%s", plan->method->id);
    return ATTN_OK;
}

int attn_plan_apply(attn_plan *plan, const double *Q, const double *K, const double *V, double *O)
{
    if (plan == NULL || V == NULL || O == NULL)
        return ATTN_ERR(ATTN_EINVAL, "apply: plan, V or O is NULL");
    int status = check_inputs(plan, Q, K, V);
    if (status != ATTN_OK)
        return status;
    return plan->method->apply(plan, Q, K, V, O);
}

/* The generic materialization: the method is linear in V with weights that do not depend on V, so
 * applying it to the columns of the identity gives the columns of its matrix.  A plan of the same
 * canonical spec with dv = the block width does that, block by block. */
static int materialize_by_identity(attn_plan *plan, const double *Q, const double *K, double *A)
{
    const attn_problem *pb = &plan->problem;
    size_t n = pb->n, m = pb->m;
    size_t width = m < 256 ? m : 256;
    attn_problem sub = *pb;
    sub.dv = width;
    attn_plan *subplan = NULL;
    double *E = calloc(m * width, sizeof *E);
    double *Ob = calloc(n * width, sizeof *Ob);
    int status = (E == NULL || Ob == NULL)
                     ? ATTN_ERR(ATTN_ENOMEM, "materialize: %zu x %zu identity block", m, width)
                     : attn_plan_create(&subplan, plan->spec, &sub);
    for (size_t j0 = 0; status == ATTN_OK && j0 < m; j0 += width) {
        size_t w = m - j0 < width ? m - j0 : width;
        memset(E, 0, m * width * sizeof *E);
        for (size_t c = 0; c < w; c++)
            E[(j0 + c) * width + c] = 1.0;
        status = subplan->method->apply(subplan, Q, K, E, Ob);
        for (size_t i = 0; status == ATTN_OK && i < n; i++)
            memcpy(A + i * m + j0, Ob + i * width, w * sizeof *A);
    }
    attn_plan_destroy(subplan);
    free(E);
    free(Ob);
    return status;
}

int attn_plan_materialize(attn_plan *plan, const double *Q, const double *K, const double *V,
                          double *A)
{
    if (plan == NULL || A == NULL)
        return ATTN_ERR(ATTN_EINVAL, "materialize: plan or A is NULL");
    int status = check_inputs(plan, Q, K, V);
    if (status != ATTN_OK)
        return status;
    if (plan->method->materialize != NULL)
        return plan->method->materialize(plan, Q, K, V, A);
    if (plan->method->caps & ATTN_WEIGHTS_DEPEND_ON_V)
        return ATTN_ERR(ATTN_EUNSUP, "%s: weights depend on V and no materialize is defined",
                        plan->method->id);
    return materialize_by_identity(plan, Q, K, A);
}

int attn_plan_has_target(const attn_plan *plan)
{
    return plan != NULL && plan->method->target != NULL;
}

int attn_plan_target(attn_plan *plan, const double *Q, const double *K, double *Qt, double *Kt,
                     double *scale)
{
    if (plan == NULL || Qt == NULL || Kt == NULL || scale == NULL)
        return ATTN_ERR(ATTN_EINVAL, "target: plan, Qt, Kt or scale is NULL");
    if (plan->method->target == NULL)
        return ATTN_ERR(ATTN_EUNSUP, "%s approximates the problem's own softmax: it has no "
                        "separate target", plan->method->id);
    int status = check_inputs(plan, Q, K, NULL);
    if (status != ATTN_OK)
        return status;
    return plan->method->target(plan, Q, K, Qt, Kt, scale);
}

const char *attn_plan_spec(const attn_plan *plan)
{
    return plan->spec;
}

const attn_method *attn_plan_method(const attn_plan *plan)
{
    return plan->method;
}

const attn_problem *attn_plan_problem(const attn_plan *plan)
{
    return &plan->problem;
}

void attn_plan_cost(const attn_plan *plan, attn_cost *cost)
{
    cost->flops = NAN;
    cost->exps = NAN;
    cost->bytes = plan->bytes;
    if (plan->method->cost != NULL)
        plan->method->cost(plan, cost);
    cost->bytes = plan->bytes;
}
