/* test_core.c — the framework: statuses and messages, problems, specs, plans, the registry and
 * the streaming accumulator. */
#include "config.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "attn.h"
#include "attn_impl.h"
#include "testutil.h"

Test(status, names_and_texts_cover_the_list)
{
#define CHECK_STATUS(id, code, text)                                                               \
    cr_assert_str_eq(attn_status_name(code), #id);                                                 \
    cr_assert_str_eq(attn_status_text(code), text);
    ATTN_STATUS_LIST(CHECK_STATUS)
#undef CHECK_STATUS
    cr_assert_str_eq(attn_status_name(999), "ATTN_UNKNOWN");
}

static int inner(void)
{
    return ATTN_ERR(ATTN_ESHAPE, "dataset /q: rank 2, expected 3");
}

static int outer(void)
{
    ATTN_TRY(inner(), "reading %s", "x.h5");
    return ATTN_OK;
}

Test(status, context_is_prefixed)
{
    cr_assert_eq(outer(), ATTN_ESHAPE);
    cr_assert_str_eq(attn_last_error(), "reading x.h5: dataset /q: rank 2, expected 3");
    attn_error_clear();
    cr_assert_str_eq(attn_last_error(), "");
}

Test(problem, bad_problems_are_named)
{
    attn_problem pb = { .n = 8, .m = 9, .d = 4, .dv = 4, .causal = 1 };
    cr_assert_eq(attn_problem_check(&pb), ATTN_ESHAPE);
    cr_assert(tu_error_has("causal attention needs m == n (n = 8, m = 9)"));
    pb = (attn_problem){ .n = 8, .m = 8, .d = 0, .dv = 4 };
    cr_assert_eq(attn_problem_check(&pb), ATTN_ESHAPE);
    cr_assert(tu_error_has("d = 0"));
    pb = (attn_problem){ .n = 8, .m = 8, .d = 4, .dv = 4, .scale = -1 };
    cr_assert_eq(attn_problem_check(&pb), ATTN_EINVAL);
    cr_assert(tu_error_has("scale = -1"));
    pb = (attn_problem){ .n = 8, .m = 8, .d = 16, .dv = 4 };
    cr_assert_eq(attn_problem_scale(&pb), 0.25);
}

Test(problem, nonfinite_inputs_name_operand_and_index)
{
    double x[12];
    tu_fill_gauss(x, 12, 3, 2.385);
    cr_assert_eq(attn_check_finite("K", x, 3, 4), ATTN_OK);
    x[7] = NAN;
    cr_assert_eq(attn_check_finite("K", x, 3, 4), ATTN_ENONFINITE);
    cr_assert(tu_error_has("K: row 1, column 3 is nan"));
    x[7] = 1.0;
    x[9] = -INFINITY;
    cr_assert_eq(attn_check_finite("V", x, 3, 4), ATTN_ENONFINITE);
    cr_assert(tu_error_has("V: row 2, column 1 is -inf"));
}

Test(plan, apply_rejects_nonfinite_input)
{
    attn_problem pb = { .n = 5, .m = 5, .d = 3, .dv = 2 };
    double Q[15], K[15], V[10], O[10];
    tu_fill_gauss(Q, 15, 1, 1.0);
    tu_fill_gauss(K, 15, 2, 1.0);
    tu_fill_gauss(V, 10, 3, 1.0);
    Q[4] = INFINITY;
    attn_plan *plan = tu_plan("exact", &pb);
    cr_assert_eq(attn_plan_apply(plan, Q, K, V, O), ATTN_ENONFINITE);
    cr_assert(tu_error_has("exact: Q: row 1, column 1 is inf"));
    attn_plan_destroy(plan);
}

Test(spec, defaults_and_canonical_form)
{
    const attn_method *method = NULL;
    double values[8];
    cr_assert_eq(attn_spec_parse("band", &method, values), ATTN_OK);
    cr_assert_str_eq(attn_method_name(method), "band");
    cr_assert_eq(values[0], 64.0);
    char buf[128];
    attn_spec_format(method, values, buf, sizeof buf);
    cr_assert_str_eq(buf, "band:w=64");
    cr_assert_eq(attn_spec_parse("  band : w = 16 ", &method, values), ATTN_OK);
    attn_spec_format(method, values, buf, sizeof buf);
    cr_assert_str_eq(buf, "band:w=16");
    cr_assert_eq(attn_spec_parse("exact", &method, values), ATTN_OK);
    attn_spec_format(method, values, buf, sizeof buf);
    cr_assert_str_eq(buf, "exact");
}

Test(spec, bad_specs_name_the_problem)
{
    const attn_method *method = NULL;
    double values[8];
    cr_assert_eq(attn_spec_parse("bandd:w=3", &method, values), ATTN_ENOMETHOD);
    cr_assert(tu_error_has("unknown method 'bandd' (known: exact, band"));
    cr_assert_eq(attn_spec_parse("band:x=3", &method, values), ATTN_EPARAM);
    cr_assert(tu_error_has("band: unknown parameter 'x' (parameters: w)"));
    cr_assert_eq(attn_spec_parse("band:w=-1", &method, values), ATTN_EPARAM);
    cr_assert(tu_error_has("parameter w = -1 is out of range [0, inf]"));
    cr_assert_eq(attn_spec_parse("band:w=2.5", &method, values), ATTN_EPARAM);
    cr_assert(tu_error_has("parameter w = 2.5 must be an integer"));
    cr_assert_eq(attn_spec_parse("band:w=wide", &method, values), ATTN_EPARAM);
    cr_assert(tu_error_has("parameter w = 'wide' is not a number"));
    cr_assert_eq(attn_spec_parse("band:w=3,w=4", &method, values), ATTN_EPARAM);
    cr_assert(tu_error_has("parameter w given twice"));
    cr_assert_eq(attn_spec_parse("band:w", &method, values), ATTN_EPARAM);
    cr_assert(tu_error_has("'w' is not key=value"));
    cr_assert_eq(attn_spec_parse("exact:w=3", &method, values), ATTN_EPARAM);
    cr_assert(tu_error_has("exact: unknown parameter 'w' (parameters: none)"));
}

Test(plan, create_failures_leave_null)
{
    attn_problem pb = { .n = 6, .m = 9, .d = 4, .dv = 4 };
    attn_plan *plan = (attn_plan *) 1;
    cr_assert_eq(attn_plan_create(&plan, "band:w=2", &pb), ATTN_EUNSUP);
    cr_assert_null(plan);
    cr_assert(tu_error_has("band needs m == n (n = 6, m = 9)"));
    pb.causal = 1;
    cr_assert_eq(attn_plan_create(&plan, "exact", &pb), ATTN_ESHAPE);
    cr_assert(tu_error_has("causal attention needs m == n"));
    cr_assert_null(plan);
    cr_assert_eq(attn_plan_create(&plan, "nosuch", &pb), ATTN_ENOMETHOD);
    cr_assert_null(plan);
    attn_plan_destroy(NULL);
}

Test(plan, spec_param_and_cost)
{
    attn_problem pb = { .n = 100, .m = 100, .d = 8, .dv = 4 };
    attn_plan *plan = tu_plan("band:w=5", &pb);
    cr_assert_str_eq(attn_plan_spec(plan), "band:w=5");
    cr_assert_eq(attn_plan_param(plan, "w"), 5.0);
    cr_assert(isnan(attn_plan_param(plan, "nope")));
    cr_assert_eq(attn_plan_problem(plan)->scale, 1.0 / sqrt(8.0));
    attn_cost cost;
    attn_plan_cost(plan, &cost);
    /* Every query sees at least its 6 causal-free neighbours and at most a tile's worth. */
    cr_assert(cost.exps >= 100.0 * 6 && cost.exps <= 100.0 * 100, "exps %g", cost.exps);
    cr_assert(cost.flops == 2.0 * cost.exps * (8 + 4));
    cr_assert(cost.bytes > 0);
    attn_plan_destroy(plan);
}

Test(registry, find_at_and_describe)
{
    size_t count = attn_method_count();
    cr_assert(count >= 2);
    cr_assert_null(attn_method_at(count));
    cr_assert_null(attn_method_find("nosuch"));
    const attn_method *band = attn_method_find("band");
    cr_assert_not_null(band);
    cr_assert_str_eq(attn_method_budget(band), "w");
    char buf[2048];
    attn_method_describe(band, buf, sizeof buf);
    cr_assert(strstr(buf, "w            = 64") != NULL, "%s", buf);
    cr_assert(strstr(buf, "Longformer") != NULL);
    attn_problem pb = { .n = 40, .m = 40, .d = 4, .dv = 4 };
    cr_assert_eq(attn_method_exact_spec(band, &pb, buf, sizeof buf), ATTN_OK);
    cr_assert_str_eq(buf, "band:w=39");
    for (size_t t = 0; t < count; t++) {
        const attn_method *m = attn_method_at(t);
        cr_assert_eq(attn_method_find(attn_method_name(m)), m);
        cr_assert(strlen(attn_method_summary(m)) > 10);
        cr_assert(strlen(attn_method_reference(m)) > 10);
    }
}

Test(softmax, vexp_matches_libm)
{
    /* 2 ulp of libm over the whole range used by softmax (see attn_vexp_sum). */
    double x[4001];
    for (size_t t = 0; t < 4001; t++)
        x[t] = -708.0 + 717.0 * (double) t / 4000.0 + 0.00123 * (double) (t % 7);
    double y[4001];
    memcpy(y, x, sizeof y);
    double sum = attn_vexp_sum(y, 4001, 0.0);
    double want = 0.0;
    for (size_t t = 0; t < 4001; t++) {
        if (x[t] > 709.0)
            continue;
        double r = exp(x[t]);
        want += r;
        cr_assert(fabs(y[t] - r) <= 2.5 * DBL_EPSILON * r, "exp(%.17g) = %.17g, libm %.17g", x[t],
                  y[t], r);
    }
    cr_assert(isfinite(sum));
    double z[3] = { -INFINITY, -709.0, 2.385 };
    attn_vexp_sum(z, 3, 2.385);
    cr_assert_eq(z[0], 0.0);
    cr_assert_eq(z[1], 0.0, "flush below -708: %g", z[1]);
    cr_assert_eq(z[2], 1.0);
}

/* Partial results over disjoint key blocks merge to the same answer in any order. */
Test(softmax, accumulator_merges_in_any_order)
{
    enum { rows = 5, dv = 3, keys = 12 };
    double S[rows * keys], V[keys * dv];
    tu_fill_gauss(S, rows * keys, 5, 2.385 * 4);
    tu_fill_gauss(V, keys * dv, 6, 1.0);
    S[2 * keys + 3] = -INFINITY; /* a masked entry */
    /* Closed form: O_i = sum_j exp(S_ij) V_j / sum_j exp(S_ij), in long double. */
    double want[rows * dv];
    for (size_t i = 0; i < rows; i++) {
        long double den = 0, num[dv] = { 0 };
        for (size_t j = 0; j < keys; j++) {
            long double e = expl((long double) S[i * keys + j]);
            den += e;
            for (size_t c = 0; c < dv; c++)
                num[c] += e * V[j * dv + c];
        }
        for (size_t c = 0; c < dv; c++)
            want[i * dv + c] = (double) (num[c] / den);
    }
    /* Order 1: blocks [0,4) [4,8) [8,12) added to one accumulator. */
    double buf1[rows * (2 + dv)], buf2[rows * (2 + dv)], buf3[rows * (2 + dv)];
    attn_acc a1, a2, a3;
    attn_acc_init(&a1, rows, dv, buf1);
    for (size_t b = 0; b < 3; b++) {
        double blk[rows * 4];
        for (size_t i = 0; i < rows; i++)
            memcpy(blk + i * 4, S + i * keys + 4 * b, 4 * sizeof *blk);
        attn_acc_add(&a1, 0, rows, blk, 4, V + 4 * b * dv, dv, 4);
    }
    double O1[rows * dv];
    attn_acc_finish(&a1, 0, rows, O1, dv, NULL);
    cr_assert(tu_rel_fro(O1, want, rows * dv) <= 1e-15);
    /* Order 2: keys one at a time backwards into a2, the last block into a3, merged. */
    attn_acc_init(&a2, rows, dv, buf2);
    attn_acc_init(&a3, rows, dv, buf3);
    for (size_t j = 8; j-- > 0;)
        for (size_t i = 0; i < rows; i++)
            attn_acc_add_one(&a2, i, S[i * keys + j], 1.0, V + j * dv);
    for (size_t j = 8; j < keys; j++)
        for (size_t i = 0; i < rows; i++)
            attn_acc_add_one(&a3, i, S[i * keys + j], 1.0, V + j * dv);
    attn_acc_merge(&a3, &a2);
    double O2[rows * dv];
    attn_acc_finish(&a3, 0, rows, O2, dv, NULL);
    cr_assert(tu_rel_fro(O2, want, rows * dv) <= 1e-15, "%g", tu_rel_fro(O2, want, rows * dv));
}

Test(softmax, weight_counts_copies_and_empty_rows_are_zero)
{
    /* One key of weight 3 equals three identical keys. */
    double buf1[2 + 2], buf2[2 + 2], v[2] = { 2.385, -1.5 }, u[2] = { 0.25, 4.0 };
    attn_acc a, b;
    attn_acc_init(&a, 1, 2, buf1);
    attn_acc_init(&b, 1, 2, buf2);
    attn_acc_add_one(&a, 0, 0.7, 3.0, v);
    attn_acc_add_one(&a, 0, 1.9, 1.0, u);
    for (int t = 0; t < 3; t++)
        attn_acc_add_one(&b, 0, 0.7, 1.0, v);
    attn_acc_add_one(&b, 0, 1.9, 1.0, u);
    double oa[2], ob[2], lse[1];
    attn_acc_finish(&a, 0, 1, oa, 2, NULL);
    attn_acc_finish(&b, 0, 1, ob, 2, NULL);
    cr_assert(tu_rel_fro(oa, ob, 2) <= 4 * DBL_EPSILON);
    attn_acc_reset(&a);
    attn_acc_finish(&a, 0, 1, oa, 2, lse);
    cr_assert(oa[0] == 0.0 && oa[1] == 0.0 && lse[0] == -INFINITY);
}

Test(version, provenance_is_filled)
{
    char buf[512];
    cr_assert(strlen(attn_version()) > 0);
    cr_assert(strlen(attn_git_describe()) > 0);
    cr_assert(strlen(attn_cc_version()) > 0);
    attn_blas_info(buf, sizeof buf);
    cr_assert(strstr(buf, "thread") != NULL, "%s", buf);
    cr_assert(attn_blas_threads() >= 1);
}

/* A method that approximates the problem's own softmax has no separate target. */
Test(core, target_of_a_softmax_approximation_is_unsupported)
{
    attn_problem pb = { .n = 4, .m = 4, .d = 2, .dv = 1 };
    attn_plan *plan = tu_plan("band:w=1", &pb);
    double Q[8] = { 0 }, K[8] = { 0 }, Qt[8], Kt[8], scale = 0;
    cr_assert_eq(attn_plan_has_target(plan), 0);
    cr_assert_eq(attn_plan_target(plan, Q, K, Qt, Kt, &scale), ATTN_EUNSUP);
    cr_assert(tu_error_has("band approximates the problem's own softmax"));
    attn_plan_destroy(plan);
}
