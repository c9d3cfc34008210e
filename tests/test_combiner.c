/* test_combiner.c — Combiner-Fixed and the shared Combiner pieces (combiner_common.c): a
 * hand-derived 8-token example, full support, the cases where the factorization is exact, the
 * oracles, the rank-one structure of shared groups, ragged blocks and bad input.  The other
 * variants have their own suites (test_combiner_<variant>.c); every method also runs through
 * test_contract.c. */
#include "config.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "attn.h"
#include "attn_io.h"
#include "testutil.h"

/* The 8-token example: d = 2, blocks of 4, max pooling.  Expected matrices computed independently
 * from the definition (Ren et al. eq. 8) in double-precision Python: for query i in block t,
 * A_ij = exp(s q_i.k_j) / Z_i on the own block (causal: j <= i) and, for every other allowed
 * block r, A_ij = exp(s q_i.k~_r) p(j | B_r) / Z_i with k~_r, q~_r the coordinate-wise maxima of
 * the block's keys and queries and p(j | B_r) = softmax_j(s q~_r.k_j); Z_i normalizes the row. */
static const double Q8[8][2] = { { 0.3, -1.2 }, { 1.1, 0.4 },  { -0.7, 0.9 }, { 0.2, 0.2 },
                                 { -1.3, -0.4 }, { 0.8, -0.6 }, { 0.5, 1.4 },  { -0.1, -0.9 } };
static const double K8[8][2] = { { 1.0, 0.1 },  { -0.4, 0.7 }, { 0.6, -1.1 }, { -0.9, -0.3 },
                                 { 0.2, 1.3 },  { 1.2, -0.5 }, { -0.6, 0.4 }, { 0.35, 0.05 } };
static const double want_bidir[8][8] = {
    { 0.18850427725495131, 0.08418518596284158, 0.47938385734176381, 0.17688168935044893, 0.037929160177080264, 0.011240199016745034, 0.0098968579681504645, 0.011978772928018508 },
    { 0.26562062045017754, 0.1059354807136766, 0.13859150773621812, 0.054113234927845977, 0.23263034070300079, 0.068939341515265165, 0.060700248312149131, 0.073469225641666663 },
    { 0.11866902494032321, 0.34763066978512736, 0.067400530589147953, 0.23562272260766731, 0.12315276342990578, 0.036495972068760402, 0.032134257715189823, 0.038894058863878159 },
    { 0.21589828944688788, 0.19280326749174914, 0.17217876089120082, 0.15595044480034684, 0.14049953621269609, 0.041636638971652762, 0.036660552145004154, 0.04437251004046238 },
    { 0.04581794971022167, 0.022591396506031904, 0.015640655124697478, 0.0081032427049030353, 0.16224999299589926, 0.10766411981733694, 0.43663072111293688, 0.2013019220279727 },
    { 0.10516430406573807, 0.051853225787184563, 0.035899437266920686, 0.018599083658839125, 0.10429194236653407, 0.39408036211448033, 0.097172079912761403, 0.19293956482754177 },
    { 0.14077759682325397, 0.069413025443408508, 0.048056577282963933, 0.024897557435166483, 0.38648198617348883, 0.092640791848228293, 0.11949660997986129, 0.11823585501362877 },
    { 0.073363023326231097, 0.036173009908263221, 0.025043585625454771, 0.012974792354038691, 0.10658341073487546, 0.3122269057184956, 0.19998710975648895, 0.23364816257615215 },
};
static const double want_causal[8][8] = {
    { 1, 0, 0, 0, 0, 0, 0, 0 },
    { 0.71488698373718895, 0.28511301626281105, 0, 0, 0, 0, 0, 0 },
    { 0.22235146119785085, 0.65135942106865452, 0.12628911773349466, 0, 0, 0, 0, 0 },
    { 0.29300933185283856, 0.26166560527891136, 0.23367477258494612, 0.21165029028330398, 0, 0, 0, 0 },
    { 0.18009971194942737, 0.088801529291563777, 0.061479780314786202, 0.03185196383162809, 0.63776701461259444, 0, 0, 0 },
    { 0.14814203287961536, 0.073044198292582532, 0.050570539720696903, 0.026200012327339931, 0.14691316119473632, 0.55513005558502915, 0, 0 },
    { 0.15965448087643647, 0.078720625961130872, 0.05450048922516202, 0.02823607375819449, 0.43830539988611389, 0.10506300621881168, 0.13551992407415051, 0 },
    { 0.073363023326231097, 0.036173009908263221, 0.025043585625454771, 0.012974792354038691, 0.10658341073487546, 0.3122269057184956, 0.19998710975648895, 0.23364816257615215 },
};

Test(combiner_fixed, hand_derived_8_token_example)
{
    double I[64] = { 0 };
    for (size_t j = 0; j < 8; j++)
        I[j * 8 + j] = 1.0;
    for (int causal = 0; causal <= 1; causal++) {
        attn_problem pb = { .n = 8, .m = 8, .d = 2, .dv = 8, .causal = causal };
        /* With V = I the output rows are the attention rows: this checks apply itself. */
        double *O = tu_apply("combiner_fixed:block=4", &pb, &Q8[0][0], &K8[0][0], I);
        const double(*want)[8] = causal ? want_causal : want_bidir;
        for (size_t i = 0; i < 8; i++)
            for (size_t j = 0; j < 8; j++)
                cr_assert(fabs(O[i * 8 + j] - want[i][j]) <= 1e-15,
                          "causal %d: A[%zu][%zu] = %.17g, expected %.17g", causal, i, j,
                          O[i * 8 + j], want[i][j]);
        free(O);
    }
}

Test(combiner_fixed, full_support_where_the_sparse_twin_has_zeros)
{
    size_t n = 37, d = 5, dv = 3;
    double *Q, *K, *V;
    tu_random_qkv(n, n, d, dv, 3, &Q, &K, &V);
    const char *specs[] = { "combiner_fixed:block=8", "combiner_fixed:block=8,pool=mean",
                            "combiner_fixed:block=8,pool=mean_log",
                            "combiner_fixed:block=8,oracle=mass" };
    for (int causal = 0; causal <= 1; causal++)
        for (size_t s = 0; s < 4; s++) {
            attn_problem pb = { .n = n, .m = n, .d = d, .dv = dv, .causal = causal };
            double *A = tu_materialize(specs[s], &pb, Q, K, V);
            for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < n; j++) {
                    if (causal && j > i)
                        cr_assert_eq(A[i * n + j], 0.0, "%s: A[%zu][%zu] above the diagonal",
                                     specs[s], i, j);
                    else
                        cr_assert(A[i * n + j] > 0.0, "%s causal %d: A[%zu][%zu] = %g",
                                  specs[s], causal, i, j, A[i * n + j]);
                }
            free(A);
        }
    free(Q);
    free(K);
    free(V);
}

/* Blocks of one position: every group key is the key itself and every local expectation the
 * value itself, so the group logit is the exact logit. */
Test(combiner_fixed, exact_with_one_position_per_block)
{
    size_t n = 45, d = 6, dv = 4;
    double *Q, *K, *V;
    tu_random_qkv(n, n, d, dv, 5, &Q, &K, &V);
    for (int causal = 0; causal <= 1; causal++) {
        attn_problem pb = { .n = n, .m = n, .d = d, .dv = dv, .causal = causal };
        tu_expect_exact("combiner_fixed:block=1", &pb, Q, K, V, 1e-13, NULL);
    }
    free(Q);
    free(K);
    free(V);
}

/* Identical keys inside every block: the local distribution is uniform (as exact), and the group
 * mass is |B| exp(s q.k) = exp(s q.k + log|B|): exact with mean_log, and with the mass oracle
 * under any pooling.  Max pooling without the log|B| term is not exact (no prior for size). */
Test(combiner_fixed, exact_with_identical_keys_per_block)
{
    size_t n = 30, d = 4, dv = 3, b = 7; /* ragged: blocks 7, 7, 7, 7, 2 */
    double *Q, *K, *V;
    tu_random_qkv(n, n, d, dv, 9, &Q, &K, &V);
    for (size_t j = 0; j < n; j++)
        memcpy(K + j * d, K + (j / b) * b * d, d * sizeof *K);
    for (int causal = 0; causal <= 1; causal++) {
        attn_problem pb = { .n = n, .m = n, .d = d, .dv = dv, .causal = causal };
        const char *exact_specs[] = { "combiner_fixed:block=7,pool=mean_log",
                                      "combiner_fixed:block=7,pool=max,oracle=mass",
                                      "combiner_fixed:block=7,pool=mean,oracle=mass" };
        for (size_t s = 0; s < 3; s++)
            tu_expect_exact(exact_specs[s], &pb, Q, K, V, 1e-13, NULL);
        cr_assert(tu_error_vs_reference("combiner_fixed:block=7,pool=max", &pb, Q, K, V) > 1e-3,
                  "max pooling has no size prior");
    }
    free(Q);
    free(K);
    free(V);
}

static void oracle_full_is_exact(const attn_problem *pb, const double *Q, const double *K,
                                 const double *V, const char *what)
{
    const char *specs[] = { "combiner_fixed:oracle=full", "combiner_fixed:block=5,oracle=full",
                            "combiner_fixed:block=64,pool=mean,oracle=full" };
    for (size_t s = 0; s < 3; s++)
        tu_expect_exact(specs[s], pb, Q, K, V, 1e-12, what);
}

Test(combiner_fixed, oracle_full_reproduces_exact_attention)
{
    size_t n = 300, d = 13, dv = 7;
    double *Q, *K, *V;
    tu_random_qkv(n, n, d, dv, 21, &Q, &K, &V);
    for (int causal = 0; causal <= 1; causal++) {
        attn_problem pb = { .n = n, .m = n, .d = d, .dv = dv, .causal = causal };
        oracle_full_is_exact(&pb, Q, K, V, "random data");
    }
    free(Q);
    free(K);
    free(V);
    const char *files[] = { "data/ppocrv4-svtr-attn.h5", "data/stories260k-attn.h5" };
    for (size_t f = 0; f < 2; f++) {
        const double *q, *k, *v;
        attn_inputs *in = tu_load_head(files[f], 1, 3, &q, &k, &v);
        attn_problem pb = tu_inputs_problem(in, in->causal == 1);
        oracle_full_is_exact(&pb, q, k, v, files[f]);
        attn_inputs_destroy(in);
    }
}

/* Rows that share a group have proportional entries on it (Ren et al. section 3.3): for query
 * rows of block 0 and the columns of block 2, A_ij / A_i'j is the same for every j. */
Test(combiner_fixed, shared_groups_give_rank_one_blocks)
{
    size_t n = 48, d = 5, dv = 2, b = 16;
    double *Q, *K, *V;
    tu_random_qkv(n, n, d, dv, 31, &Q, &K, &V);
    attn_problem pb = { .n = n, .m = n, .d = d, .dv = dv };
    double *A = tu_materialize("combiner_fixed:block=16", &pb, Q, K, V);
    for (size_t i = 1; i < b; i++) {
        double ratio = A[i * n + 2 * b] / A[0 * n + 2 * b];
        for (size_t j = 2 * b; j < 3 * b; j++)
            cr_assert(fabs(A[i * n + j] / A[j] - ratio) <= 1e-13 * ratio,
                      "row %zu column %zu is not proportional to row 0", i, j);
    }
    free(A);
    free(Q);
    free(K);
    free(V);
}

Test(combiner_fixed, auto_block_is_resolved_in_the_spec)
{
    attn_problem pb = { .n = 1000, .m = 1000, .d = 8, .dv = 8 };
    attn_plan *plan = tu_plan("combiner_fixed", &pb);
    /* sqrt(1000) = 31.6: the power of two at or above it is 32. */
    cr_assert_str_eq(attn_plan_spec(plan), "combiner_fixed:block=32,pool=max,oracle=none");
    attn_plan_destroy(plan);
    /* Unresolved, the default is written "auto", and "auto" reads back. */
    const attn_method *method = NULL;
    double values[8];
    char buf[128];
    cr_assert_eq(attn_spec_parse("combiner_fixed", &method, values), ATTN_OK);
    attn_spec_format(method, values, buf, sizeof buf);
    cr_assert_str_eq(buf, "combiner_fixed:block=auto,pool=max,oracle=none");
    plan = tu_plan(buf, &pb);
    cr_assert_str_eq(attn_plan_spec(plan), "combiner_fixed:block=32,pool=max,oracle=none");
    attn_plan_destroy(plan);
    cr_assert_eq(attn_spec_parse("band:w=auto", &method, values), ATTN_EPARAM);
    cr_assert(tu_error_has("parameter w = 'auto' is not a number"));
}

Test(combiner_fixed, bad_parameters_are_named)
{
    attn_problem pb = { .n = 64, .m = 64, .d = 8, .dv = 8 };
    attn_plan *plan = NULL;
    cr_assert_eq(attn_plan_create(&plan, "combiner_fixed:block=0", &pb), ATTN_EPARAM);
    cr_assert(tu_error_has("combiner_fixed: parameter block = 0 is out of range [1, inf]"));
    cr_assert_eq(attn_plan_create(&plan, "combiner_fixed:pool=median", &pb), ATTN_EPARAM);
    cr_assert(tu_error_has("parameter pool = 'median' is not one of {max, mean, mean_log}"));
    cr_assert_eq(attn_plan_create(&plan, "combiner_fixed:oracle=yes", &pb), ATTN_EPARAM);
    cr_assert(tu_error_has("parameter oracle = 'yes' is not one of {none, mass, full}"));
    cr_assert_null(plan);
}
