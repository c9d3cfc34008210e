/* test_contract.c — every registered method through every property of the plan contract.
 *
 * Cases are (method, spec, causal, shape, data): random Gaussian inputs and the bundled real data
 * (the OCR model, bidirectional, d = 15; the tiny language model, causal, d = 8), with n = 1,
 * n not a multiple of any tile size, m != n.  Each method is tested at its default spec and, when
 * it has a budget parameter, at a small budget, so that approximations really approximate.
 * Properties: finite output; rows of the materialized matrix nonnegative and summing to one
 * (row-stochastic methods); A V equals apply; linearity in V (unless the method declares
 * ATTN_WEIGHTS_DEPEND_ON_V); causality (changing queries, keys and values after position i leaves
 * rows <= i bitwise unchanged); the exact limit; the error not rising as the budget grows; spec
 * round trip; determinism.
 */
#include "config.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "attn.h"
#include "attn_io.h"
#include "testutil.h"

enum data_kind { DATA_RANDOM, DATA_OCR, DATA_LM };
static const char *const data_names[] = { "random", "ocr", "lm" };

typedef struct contract_case {
    size_t method_index;   /* index in the registry (never a pointer: cases are copied) */
    int small_budget;      /* 1: the budget parameter set to about n / 8 */
    int causal;
    size_t n, m;
    int data;              /* enum data_kind */
} contract_case;

/* Shapes: (n, m, causal, data). */
static const size_t shapes[][4] = {
    { 1, 1, 0, DATA_RANDOM },     { 1, 1, 1, DATA_RANDOM },     { 37, 37, 0, DATA_RANDOM },
    { 37, 37, 1, DATA_RANDOM },   { 300, 300, 0, DATA_RANDOM }, { 300, 300, 1, DATA_RANDOM },
    { 70, 131, 0, DATA_RANDOM },  { 131, 70, 0, DATA_RANDOM },  { 192, 192, 0, DATA_OCR },
    { 150, 150, 1, DATA_OCR },    { 100, 192, 0, DATA_OCR },    { 512, 512, 1, DATA_LM },
    { 200, 200, 0, DATA_LM },
};
#define NSHAPES (sizeof shapes / sizeof shapes[0])

static size_t make_cases(contract_case *out, size_t cap)
{
    size_t count = 0;
    for (size_t mi = 0; mi < attn_method_count(); mi++) {
        const attn_method *method = attn_method_at(mi);
        unsigned caps = attn_method_caps(method);
        for (int small = 0; small <= (attn_method_budget(method) != NULL); small++)
            for (size_t s = 0; s < NSHAPES; s++) {
                contract_case c = { .method_index = mi, .small_budget = small,
                                    .n = shapes[s][0], .m = shapes[s][1],
                                    .causal = (int) shapes[s][2], .data = (int) shapes[s][3] };
                if (c.causal && !(caps & ATTN_CAN_CAUSAL))
                    continue;
                if (!c.causal && !(caps & ATTN_CAN_BIDIR))
                    continue;
                if (c.m != c.n && !(caps & ATTN_CAN_RECT))
                    continue;
                if (count < cap)
                    out[count] = c;
                count++; /* counted even beyond cap, so the guard below sees an overflow */
            }
    }
    return count;
}

#define MAX_CASES 1024
#define CONTRACT_PARAMS(test)                                                                      \
    ParameterizedTestParameters(contract, test)                                                    \
    {                                                                                              \
        static contract_case cases[MAX_CASES];                                                     \
        size_t count = make_cases(cases, MAX_CASES);                                               \
        count = count < MAX_CASES ? count : MAX_CASES;                                             \
        return cr_make_param_array(contract_case, cases, count);                                   \
    }

/* Everything one case needs: the inputs (owned copies, so they can be perturbed) and a spec. */
typedef struct fixture {
    attn_problem pb;
    double *Q, *K, *V;
    char spec[256];
    char label[320];
} fixture;

static void copy_head(double *dst, const double *src, size_t rows, size_t cols)
{
    memcpy(dst, src, rows * cols * sizeof *dst);
}

static void fixture_load(fixture *f, const contract_case *tc)
{
    const attn_method *method = attn_method_at(tc->method_index);
    size_t n = tc->n, m = tc->m;
    memset(f, 0, sizeof *f);
    if (tc->data == DATA_RANDOM) {
        size_t d = 13, dv = 7; /* not powers of two */
        f->pb = (attn_problem){ .n = n, .m = m, .d = d, .dv = dv, .causal = tc->causal };
        f->Q = tu_alloc(n * d);
        f->K = tu_alloc(m * d);
        f->V = tu_alloc(m * dv);
        /* Scale 2.385 makes logits spread over several units: rows are far from uniform. */
        tu_fill_gauss(f->Q, n * d, 11 + n, 2.385);
        tu_fill_gauss(f->K, m * d, 23 + m, 1.0);
        tu_fill_gauss(f->V, m * dv, 37 + m, 1.0);
    } else {
        /* Real heads: layer 1 head 3 of the OCR model is its one sharp head; layer 2 head 0 of
         * the language model is sharp and local. */
        const char *file = tc->data == DATA_OCR ? "data/ppocrv4-svtr-attn.h5"
                                                : "data/stories260k-attn.h5";
        size_t layer = tc->data == DATA_OCR ? 1 : 2, head = tc->data == DATA_OCR ? 3 : 0;
        attn_inputs *in = tu_read_inputs(file, n > m ? n : m);
        const double *q, *k, *v;
        attn_inputs_head(in, layer, head, &q, &k, &v);
        f->pb = (attn_problem){ .n = n, .m = m, .d = in->d, .dv = in->dv, .causal = tc->causal,
                                .scale = in->scale };
        f->Q = tu_alloc(n * in->d);
        f->K = tu_alloc(m * in->d);
        f->V = tu_alloc(m * in->dv);
        copy_head(f->Q, q, n, in->d);
        copy_head(f->K, k, m, in->d);
        copy_head(f->V, v, m, in->dv);
        attn_inputs_destroy(in);
    }
    const char *budget = attn_method_budget(method);
    if (tc->small_budget && budget != NULL) {
        double b = floor((double) n / 8.0);
        const attn_param *p = attn_method_params(method);
        while (strcmp(p->name, budget) != 0)
            p++;
        b = b < p->lo ? p->lo : (b > p->hi ? p->hi : b);
        snprintf(f->spec, sizeof f->spec, "%s:%s=%.17g", attn_method_name(method), budget, b);
    } else {
        snprintf(f->spec, sizeof f->spec, "%s", attn_method_name(method));
    }
    snprintf(f->label, sizeof f->label, "%s on %s data, n = %zu, m = %zu, causal = %d", f->spec,
             data_names[tc->data], n, m, tc->causal);
}

static void fixture_free(fixture *f)
{
    free(f->Q);
    free(f->K);
    free(f->V);
}

CONTRACT_PARAMS(finite_output)
ParameterizedTest(contract_case *tc, contract, finite_output)
{
    fixture f;
    fixture_load(&f, tc);
    double *O = tu_apply(f.spec, &f.pb, f.Q, f.K, f.V);
    for (size_t t = 0; t < f.pb.n * f.pb.dv; t++)
        cr_assert(isfinite(O[t]), "%s: O[%zu] = %g", f.label, t, O[t]);
    free(O);
    fixture_free(&f);
}

CONTRACT_PARAMS(rows_are_distributions)
ParameterizedTest(contract_case *tc, contract, rows_are_distributions)
{
    fixture f;
    fixture_load(&f, tc);
    const attn_method *method = attn_method_at(tc->method_index);
    if (!(attn_method_caps(method) & ATTN_ROW_STOCHASTIC)) {
        fixture_free(&f);
        cr_skip_test("%s is not row-stochastic (its header comment says why)",
                     attn_method_name(method));
    }
    size_t n = f.pb.n, m = f.pb.m;
    double *A = tu_materialize(f.spec, &f.pb, f.Q, f.K, f.V);
    for (size_t i = 0; i < n; i++) {
        double sum = 0.0;
        for (size_t j = 0; j < m; j++) {
            cr_assert(A[i * m + j] >= 0.0, "%s: A[%zu][%zu] = %g", f.label, i, j, A[i * m + j]);
            if (f.pb.causal && j > i)
                cr_assert(A[i * m + j] == 0.0, "%s: A[%zu][%zu] = %g above the diagonal",
                          f.label, i, j, A[i * m + j]);
            sum += A[i * m + j];
        }
        /* A row sum of m terms rounded in double: m eps bounds the error. */
        cr_assert(fabs(sum - 1.0) <= 4.0 * (double) m * DBL_EPSILON, "%s: row %zu sums to %.17g",
                  f.label, i, sum);
    }
    free(A);
    fixture_free(&f);
}

CONTRACT_PARAMS(materialize_matches_apply)
ParameterizedTest(contract_case *tc, contract, materialize_matches_apply)
{
    fixture f;
    fixture_load(&f, tc);
    attn_plan *plan = tu_plan(f.spec, &f.pb);
    size_t n = f.pb.n, m = f.pb.m, dv = f.pb.dv;
    double *A = tu_alloc(n * m), *AV = tu_alloc(n * dv), *O = tu_alloc(n * dv);
    cr_assert_eq(attn_plan_materialize(plan, f.Q, f.K, f.V, A), ATTN_OK, "%s",
                 attn_last_error());
    cr_assert_eq(attn_plan_apply(plan, f.Q, f.K, f.V, O), ATTN_OK, "%s", attn_last_error());
    tu_matmul(A, f.V, AV, n, m, dv);
    /* Both are sums of m products of rounded weights: allow 64 m eps relative. */
    double err = tu_rel_fro(AV, O, n * dv);
    cr_assert(err <= 64.0 * (double) m * DBL_EPSILON, "%s: |AV - O| / |O| = %.3g", f.label, err);
    free(A);
    free(AV);
    free(O);
    attn_plan_destroy(plan);
    fixture_free(&f);
}

CONTRACT_PARAMS(linear_in_values)
ParameterizedTest(contract_case *tc, contract, linear_in_values)
{
    fixture f;
    fixture_load(&f, tc);
    if (attn_method_caps(attn_method_at(tc->method_index)) & ATTN_WEIGHTS_DEPEND_ON_V) {
        fixture_free(&f);
        cr_skip_test("weights depend on V (declared ATTN_WEIGHTS_DEPEND_ON_V)");
    }
    size_t n = f.pb.n, m = f.pb.m, dv = f.pb.dv;
    double *V2 = tu_alloc(m * dv), *Vmix = tu_alloc(m * dv), *mix = tu_alloc(n * dv);
    tu_fill_gauss(V2, m * dv, 991, 1.7);
    const double a = 0.6180339887, b = -1.4142135623;
    for (size_t t = 0; t < m * dv; t++)
        Vmix[t] = a * f.V[t] + b * V2[t];
    double *O1 = tu_apply(f.spec, &f.pb, f.Q, f.K, f.V);
    double *O2 = tu_apply(f.spec, &f.pb, f.Q, f.K, V2);
    double *Om = tu_apply(f.spec, &f.pb, f.Q, f.K, Vmix);
    for (size_t t = 0; t < n * dv; t++)
        mix[t] = a * O1[t] + b * O2[t];
    double err = tu_rel_fro(Om, mix, n * dv);
    cr_assert(err <= 64.0 * (double) m * DBL_EPSILON, "%s: linearity error %.3g", f.label, err);
    free(V2);
    free(Vmix);
    free(mix);
    free(O1);
    free(O2);
    free(Om);
    fixture_free(&f);
}

CONTRACT_PARAMS(causality)
ParameterizedTest(contract_case *tc, contract, causality)
{
    fixture f;
    fixture_load(&f, tc);
    if (!f.pb.causal || f.pb.n < 2) {
        fixture_free(&f);
        cr_skip_test("causality applies to causal problems with n >= 2");
    }
    size_t n = f.pb.n, d = f.pb.d, dv = f.pb.dv;
    double *O = tu_apply(f.spec, &f.pb, f.Q, f.K, f.V);
    size_t cuts[] = { 0, n / 3, n / 2, n - 2 };
    for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
        size_t i = cuts[c];
        /* Queries after i change too: a method must not let them shape earlier rows. */
        double *Q2 = tu_alloc(n * d), *K2 = tu_alloc(n * d), *V2 = tu_alloc(n * dv);
        memcpy(Q2, f.Q, n * d * sizeof *Q2);
        memcpy(K2, f.K, n * d * sizeof *K2);
        memcpy(V2, f.V, n * dv * sizeof *V2);
        tu_fill_gauss(Q2 + (i + 1) * d, (n - i - 1) * d, 6 + i, 2.7);
        tu_fill_gauss(K2 + (i + 1) * d, (n - i - 1) * d, 7 + i, 3.1);
        tu_fill_gauss(V2 + (i + 1) * dv, (n - i - 1) * dv, 8 + i, 5.3);
        double *O2 = tu_apply(f.spec, &f.pb, Q2, K2, V2);
        cr_assert(memcmp(O, O2, (i + 1) * dv * sizeof *O) == 0,
                  "%s: rows <= %zu changed when queries, keys and values after %zu changed",
                  f.label, i, i);
        free(Q2);
        free(K2);
        free(V2);
        free(O2);
    }
    free(O);
    fixture_free(&f);
}

CONTRACT_PARAMS(exact_limit)
ParameterizedTest(contract_case *tc, contract, exact_limit)
{
    fixture f;
    fixture_load(&f, tc);
    const attn_method *method = attn_method_at(tc->method_index);
    char spec[256];
    int status = attn_method_exact_spec(method, &f.pb, spec, sizeof spec);
    if (status == ATTN_EUNSUP) {
        fixture_free(&f);
        cr_skip_test("%s has no exact limit", attn_method_name(method));
    }
    cr_assert_eq(status, ATTN_OK, "%s", attn_last_error());
    double err = tu_error_vs_reference(spec, &f.pb, f.Q, f.K, f.V);
    cr_assert(err <= 1e-12, "%s at its exact limit %s: relative error %.3g", f.label, spec, err);
    fixture_free(&f);
}

/* Mean over rows of the total variation distance between the method's matrix and exact. */
static double mean_tv(const char *spec, const fixture *f, const double *Aexact)
{
    size_t n = f->pb.n, m = f->pb.m;
    double *A = tu_materialize(spec, &f->pb, f->Q, f->K, f->V);
    double tv = 0.0;
    for (size_t t = 0; t < n * m; t++)
        tv += fabs(A[t] - Aexact[t]);
    free(A);
    return 0.5 * tv / (double) n;
}

CONTRACT_PARAMS(error_falls_with_budget)
ParameterizedTest(contract_case *tc, contract, error_falls_with_budget)
{
    fixture f;
    fixture_load(&f, tc);
    const attn_method *method = attn_method_at(tc->method_index);
    const char *budget = attn_method_budget(method);
    if (budget == NULL || tc->small_budget || f.pb.n < 8) {
        fixture_free(&f);
        cr_skip_test("no budget to sweep (or n < 8; each method is swept once per shape)");
    }
    const attn_param *p = attn_method_params(method);
    while (strcmp(p->name, budget) != 0)
        p++;
    size_t n = f.pb.n, m = f.pb.m;
    double *Ax = tu_alloc(n * m);
    cr_assert_eq(attn_exact_matrix(&f.pb, f.Q, f.K, Ax), ATTN_OK);
    /* Budgets grow by 4x from the smallest allowed (at least 1) to beyond n.  A method that
     * declares ATTN_BUDGET_MONOTONE never rises from one budget to the next; any other method
     * must end no worse than it started. */
    int monotone = (attn_method_caps(method) & ATTN_BUDGET_MONOTONE) != 0;
    double first = NAN, previous = INFINITY, tv = NAN;
    char spec[256] = "";
    for (double b = p->lo > 1 ? p->lo : 1; b <= 4.0 * (double) (n > m ? n : m); b *= 4) {
        if (p->hi < b)
            break;
        snprintf(spec, sizeof spec, "%s:%s=%.17g", attn_method_name(method), budget, b);
        tv = mean_tv(spec, &f, Ax);
        /* Rounding of the two matrices only: 1e-12. */
        if (monotone)
            cr_assert(tv <= previous + 1e-12, "%s: mean TV %.6g at %s rose from %.6g", f.label,
                      tv, spec, previous);
        if (isnan(first))
            first = tv;
        previous = tv;
    }
    cr_assert(tv <= first + 1e-12, "%s: mean TV %.6g at %s is above %.6g at the smallest budget",
              f.label, tv, spec, first);
    free(Ax);
    fixture_free(&f);
}

CONTRACT_PARAMS(spec_round_trip)
ParameterizedTest(contract_case *tc, contract, spec_round_trip)
{
    fixture f;
    fixture_load(&f, tc);
    attn_plan *plan = tu_plan(f.spec, &f.pb);
    char canonical[256];
    snprintf(canonical, sizeof canonical, "%s", attn_plan_spec(plan));
    attn_plan *again = tu_plan(canonical, &f.pb);
    cr_assert_str_eq(attn_plan_spec(again), canonical, "%s: spec does not round-trip", f.label);
    double *O1 = tu_alloc(f.pb.n * f.pb.dv), *O2 = tu_alloc(f.pb.n * f.pb.dv);
    cr_assert_eq(attn_plan_apply(plan, f.Q, f.K, f.V, O1), ATTN_OK);
    cr_assert_eq(attn_plan_apply(again, f.Q, f.K, f.V, O2), ATTN_OK);
    cr_assert(memcmp(O1, O2, f.pb.n * f.pb.dv * sizeof *O1) == 0,
              "%s: plan from the canonical spec %s gives other bits", f.label, canonical);
    free(O1);
    free(O2);
    attn_plan_destroy(plan);
    attn_plan_destroy(again);
    fixture_free(&f);
}

CONTRACT_PARAMS(deterministic)
ParameterizedTest(contract_case *tc, contract, deterministic)
{
    fixture f;
    fixture_load(&f, tc);
    attn_plan *plan = tu_plan(f.spec, &f.pb);
    double *O1 = tu_alloc(f.pb.n * f.pb.dv), *O2 = tu_alloc(f.pb.n * f.pb.dv);
    cr_assert_eq(attn_plan_apply(plan, f.Q, f.K, f.V, O1), ATTN_OK);
    cr_assert_eq(attn_plan_apply(plan, f.Q, f.K, f.V, O2), ATTN_OK);
    cr_assert(memcmp(O1, O2, f.pb.n * f.pb.dv * sizeof *O1) == 0,
              "%s: two applies of one plan differ", f.label);
    free(O1);
    free(O2);
    attn_plan_destroy(plan);
    fixture_free(&f);
}

/* The guard that keeps the suite honest: every method has at least one case. */
Test(contract, every_method_has_cases)
{
    static contract_case cases[MAX_CASES];
    size_t count = make_cases(cases, MAX_CASES);
    cr_assert(count <= MAX_CASES, "%zu contract cases exceed MAX_CASES = %d: raise it", count,
              MAX_CASES);
    for (size_t mi = 0; mi < attn_method_count(); mi++) {
        size_t hits = 0;
        for (size_t c = 0; c < count; c++)
            hits += cases[c].method_index == mi;
        cr_assert(hits > 0, "%s has no contract case", attn_method_name(attn_method_at(mi)));
    }
}
