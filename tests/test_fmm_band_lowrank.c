/* test_fmm_band_lowrank.c — FMMformer's near field (band), far field (normalised linear
 * attention) and their blends.
 *
 * The halves against independent long-double evaluations written here from the definitions in
 * the method's header (band softmax; feature maps elu + 1, elu(-x) + 1, tanh + 1 through
 * 2 / (1 + exp(-2x)); one denominator over the concatenated features), part = near against the
 * band method bit for bit, the exact limits, the fixed blend against the blend of the naive halves
 * at ragged n, the oracle weights against a brute 2 x 2 solve and perturbations, materialize
 * against apply, bitwise causality across far-field chunks, the band's error falling with k, the
 * analytic cost, extreme inputs and the bad-parameter messages.  Random inputs and the bundled
 * real heads (OCR, bidirectional, d = 15; the small language model, causal, d = 8).
 */
#include "config.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "attn.h"
#include "testutil.h"

#define OCR_FILE "data/ppocrv4-svtr-attn.h5"
#define LM_FILE "data/stories260k-attn.h5"

/* ---------------------------------------------------------------------------------------------
 * Independent evaluations in long double.
 */

/* The r concatenated feature maps of alpha x, F = r d entries (key_norm: each block / its sum). */
static void naive_phi(const double *x, size_t d, size_t r, long double alpha, int key_norm,
                      long double *phi)
{
    for (size_t c = 0; c < d; c++) {
        long double v = alpha * (long double) x[c];
        phi[c] = v > 0 ? v + 1.0L : expl(v);                             /* elu(x) + 1 */
        if (r >= 2)
            phi[d + c] = v < 0 ? 1.0L - v : expl(-v);                    /* elu(-x) + 1 */
        if (r >= 3)
            phi[2 * d + c] = 2.0L / (1.0L + expl(-2.0L * v));            /* tanh(x) + 1 */
    }
    if (key_norm)
        for (size_t l = 0; l < r; l++) {
            long double s = 0.0L;
            for (size_t c = 0; c < d; c++)
                s += phi[l * d + c];
            for (size_t c = 0; c < d; c++)
                phi[l * d + c] /= s;
        }
}

static double problem_scale(const attn_problem *pb)
{
    return pb->scale > 0 ? pb->scale : 1.0 / sqrt((double) pb->d);
}

/* O (n x dv) = L V with L = diag(Phi(Q) Phi(K)^T 1)^-1 Phi(Q) Phi(K)^T under the mask. */
static double *naive_far(const attn_problem *pb, const double *Q, const double *K, const double *V,
                         size_t r, int prescale, int key_norm)
{
    size_t n = pb->n, d = pb->d, dv = pb->dv, F = r * d;
    long double alpha = prescale ? sqrtl((long double) problem_scale(pb)) : 1.0L;
    long double *PQ = calloc(n * F, sizeof *PQ), *PK = calloc(n * F, sizeof *PK);
    long double *num = calloc(dv, sizeof *num);
    cr_assert(PQ != NULL && PK != NULL && num != NULL);
    for (size_t i = 0; i < n; i++) {
        naive_phi(Q + i * d, d, r, alpha, 0, PQ + i * F);
        naive_phi(K + i * d, d, r, alpha, key_norm, PK + i * F);
    }
    double *O = tu_alloc(n * dv);
    for (size_t i = 0; i < n; i++) {
        long double den = 0.0L;
        for (size_t c = 0; c < dv; c++)
            num[c] = 0.0L;
        for (size_t j = 0; j < (pb->causal ? i + 1 : n); j++) {
            long double kij = 0.0L;
            for (size_t f = 0; f < F; f++)
                kij += PQ[i * F + f] * PK[j * F + f];
            den += kij;
            for (size_t c = 0; c < dv; c++)
                num[c] += kij * (long double) V[j * dv + c];
        }
        for (size_t c = 0; c < dv; c++)
            O[i * dv + c] = (double) (num[c] / den);
    }
    free(PQ);
    free(PK);
    free(num);
    return O;
}

/* O (n x dv) = D V, the softmax renormalised over |i - j| <= k (causal: i - k <= j <= i). */
static double *naive_band(const attn_problem *pb, const double *Q, const double *K,
                          const double *V, size_t k)
{
    size_t n = pb->n, d = pb->d, dv = pb->dv;
    long double s = problem_scale(pb);
    long double *num = calloc(dv, sizeof *num), *logit = calloc(n, sizeof *logit);
    cr_assert(num != NULL && logit != NULL);
    double *O = tu_alloc(n * dv);
    for (size_t i = 0; i < n; i++) {
        size_t lo = i > k ? i - k : 0, hi = pb->causal ? i + 1 : (i + k + 1 < n ? i + k + 1 : n);
        long double mx = -INFINITY, z = 0.0L;
        for (size_t j = lo; j < hi; j++) {
            long double l = 0.0L;
            for (size_t c = 0; c < d; c++)
                l += (long double) Q[i * d + c] * (long double) K[j * d + c];
            logit[j] = s * l;
            mx = logit[j] > mx ? logit[j] : mx;
        }
        for (size_t c = 0; c < dv; c++)
            num[c] = 0.0L;
        for (size_t j = lo; j < hi; j++) {
            long double e = expl(logit[j] - mx);
            z += e;
            for (size_t c = 0; c < dv; c++)
                num[c] += e * (long double) V[j * dv + c];
        }
        for (size_t c = 0; c < dv; c++)
            O[i * dv + c] = (double) (num[c] / z);
    }
    free(num);
    free(logit);
    return O;
}

/* ---------------------------------------------------------------------------------------------
 * Inputs: random heads (d = 13, dv = 7, not powers of two) and the two real heads the contract
 * suite uses (OCR layer 1 head 3, sharp; language model layer 2 head 0, sharp and local).
 */
typedef struct head {
    attn_problem pb;
    double *Q, *K, *V;      /* owned (random) or borrowed from in */
    attn_inputs *in;        /* real data, or NULL */
    char what[64];
} head;

static head random_head(size_t n, int causal, unsigned long seed)
{
    head h = { .pb = { .n = n, .m = n, .d = 13, .dv = 7, .causal = causal } };
    tu_random_qkv(n, n, 13, 7, seed, &h.Q, &h.K, &h.V);
    snprintf(h.what, sizeof h.what, "random n = %zu causal = %d", n, causal);
    return h;
}

static head real_head(int lm)
{
    head h = { 0 };
    const double *q, *k, *v;
    h.in = tu_load_head(lm ? LM_FILE : OCR_FILE, lm ? 2 : 1, lm ? 0 : 3, &q, &k, &v);
    h.pb = tu_inputs_problem(h.in, lm);
    h.Q = (double *) q;
    h.K = (double *) k;
    h.V = (double *) v;
    snprintf(h.what, sizeof h.what, "%s (n = %zu, causal = %d)", lm ? LM_FILE : OCR_FILE,
             h.pb.n, lm);
    return h;
}

static void head_free(head *h)
{
    if (h->in != NULL) {
        attn_inputs_destroy(h->in);
    } else {
        free(h->Q);
        free(h->K);
        free(h->V);
    }
}

/* Random heads at n = 1, a ragged 37 and 300 (past several far chunks and a key tile), both
 * masks, then the two real heads: NHEADS in all. */
#define NHEADS 8
static head make_head(size_t t)
{
    static const size_t ns[] = { 1, 37, 300 };
    if (t < 6)
        return random_head(ns[t / 2], (int) (t % 2), 101 + t);
    return real_head(t == 7);
}

/* ---------------------------------------------------------------------------------------------
 * The halves.
 */

Test(fmm_band_lowrank, near_part_is_band_bit_for_bit)
{
    for (size_t t = 0; t < NHEADS; t++) {
        head h = make_head(t);
        size_t n = h.pb.n;
        size_t ks[] = { 0, 1, 5, 32, n > 1 ? n - 1 : 0, n, 3 * n + 2 };
        for (size_t c = 0; c < sizeof ks / sizeof ks[0]; c++) {
            char spec[128], bspec[64];
            snprintf(spec, sizeof spec, "fmm_band_lowrank:part=near,k=%zu", ks[c]);
            snprintf(bspec, sizeof bspec, "band:w=%zu", ks[c]);
            double *O = tu_apply(spec, &h.pb, h.Q, h.K, h.V);
            double *B = tu_apply(bspec, &h.pb, h.Q, h.K, h.V);
            cr_assert(memcmp(O, B, n * h.pb.dv * sizeof *O) == 0,
                      "%s on %s differs from %s (max %.3g)", spec, h.what, bspec,
                      tu_max_abs_diff(O, B, n * h.pb.dv));
            /* And both are the band softmax: rounding of at most 2k + 1 terms. */
            double *R = naive_band(&h.pb, h.Q, h.K, h.V, ks[c]);
            double err = tu_rel_fro(O, R, n * h.pb.dv);
            cr_assert(err <= 64.0 * (double) n * DBL_EPSILON, "%s on %s: error %.3g vs the naive "
                      "band", spec, h.what, err);
            free(O);
            free(B);
            free(R);
        }
        head_free(&h);
    }
}

Test(fmm_band_lowrank, band_limit_is_exact)
{
    for (size_t t = 0; t < NHEADS; t++) {
        head h = make_head(t);
        size_t n = h.pb.n;
        char spec[160];
        snprintf(spec, sizeof spec, "fmm_band_lowrank:k=%zu,w_near=1,w_far=0", n - 1);
        tu_expect_exact(spec, &h.pb, h.Q, h.K, h.V, 1e-12, h.what);
        snprintf(spec, sizeof spec, "fmm_band_lowrank:k=%zu,w_near=1,w_far=0,r=3", 2 * n + 7);
        tu_expect_exact(spec, &h.pb, h.Q, h.K, h.V, 1e-12, h.what);
        /* The registered exact limit. */
        cr_assert_eq(attn_method_exact_spec(attn_method_find("fmm_band_lowrank"), &h.pb, spec,
                                            sizeof spec), ATTN_OK, "%s", attn_last_error());
        cr_assert(strstr(spec, "part=near") != NULL, "exact limit %s is not the near part", spec);
        tu_expect_exact(spec, &h.pb, h.Q, h.K, h.V, 1e-12, h.what);
        head_free(&h);
    }
}

Test(fmm_band_lowrank, far_part_is_normalised_linear_attention)
{
    for (size_t t = 0; t < NHEADS; t++) {
        head h = make_head(t);
        for (size_t r = 1; r <= 3; r++)
            for (int prescale = 0; prescale <= 1; prescale++)
                for (int key_norm = 0; key_norm <= 1; key_norm++) {
                    char spec[160];
                    snprintf(spec, sizeof spec,
                             "fmm_band_lowrank:part=far,r=%zu,prescale=%d,key_norm=%d", r,
                             prescale, key_norm);
                    double *O = tu_apply(spec, &h.pb, h.Q, h.K, h.V);
                    double *R = naive_far(&h.pb, h.Q, h.K, h.V, r, prescale, key_norm);
                    double err = tu_rel_fro(O, R, h.pb.n * h.pb.dv);
                    cr_assert(err <= 1e-12, "%s on %s: error %.3g vs the naive normalised "
                              "linear attention", spec, h.what, err);
                    free(O);
                    free(R);
                }
        head_free(&h);
    }
}

/* The far field does not depend on k, and the near field does not depend on r, prescale or
 * key_norm: each part ignores the other's parameters. */
Test(fmm_band_lowrank, parts_ignore_the_other_parameters)
{
    head h = random_head(150, 1, 7);
    size_t count = h.pb.n * h.pb.dv;
    double *F1 = tu_apply("fmm_band_lowrank:part=far,k=0,r=3", &h.pb, h.Q, h.K, h.V);
    double *F2 = tu_apply("fmm_band_lowrank:part=far,k=90,r=3", &h.pb, h.Q, h.K, h.V);
    double *N1 = tu_apply("fmm_band_lowrank:part=near,k=9", &h.pb, h.Q, h.K, h.V);
    double *N2 = tu_apply("fmm_band_lowrank:part=near,k=9,r=1,prescale=1,key_norm=1,w_near=3",
                          &h.pb, h.Q, h.K, h.V);
    cr_assert(memcmp(F1, F2, count * sizeof *F1) == 0, "the far part changed with k");
    cr_assert(memcmp(N1, N2, count * sizeof *N1) == 0, "the near part changed with r or weights");
    free(F1);
    free(F2);
    free(N1);
    free(N2);
    head_free(&h);
}

/* ---------------------------------------------------------------------------------------------
 * Fixed blends.
 */

/* The whole method against w_near * naive band + w_far * naive far, at n = 1, ragged sizes that
 * are not multiples of the far chunk (37, 300, 1000) and both masks. */
Test(fmm_band_lowrank, fixed_blend_is_weighted_sum_of_naive_halves)
{
    static const size_t ns[] = { 1, 37, 300, 1000 };
    static const struct {
        const char *params;
        size_t k, r;
        double wn, wf;
        int prescale, key_norm;
    } cases[] = {
        { "", 32, 2, 0.5, 0.5, 0, 0 },
        { ",k=7,r=3,w_near=0.3,w_far=0.9,key_norm=1", 7, 3, 0.3, 0.9, 0, 1 },
        { ",k=0,r=1,w_near=-0.25,w_far=1.75,prescale=1", 0, 1, -0.25, 1.75, 1, 0 },
    };
    for (size_t s = 0; s < sizeof ns / sizeof ns[0]; s++)
        for (int causal = 0; causal <= 1; causal++) {
            head h = random_head(ns[s], causal, 300 + ns[s]);
            size_t count = h.pb.n * h.pb.dv;
            for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
                char spec[160];
                snprintf(spec, sizeof spec, "fmm_band_lowrank:%s", cases[c].params);
                double *O = tu_apply(spec, &h.pb, h.Q, h.K, h.V);
                double *D = naive_band(&h.pb, h.Q, h.K, h.V, cases[c].k);
                double *L = naive_far(&h.pb, h.Q, h.K, h.V, cases[c].r, cases[c].prescale,
                                      cases[c].key_norm);
                for (size_t t = 0; t < count; t++)
                    D[t] = cases[c].wn * D[t] + cases[c].wf * L[t];
                double err = tu_rel_fro(O, D, count);
                cr_assert(err <= 1e-12, "%s on %s: error %.3g vs the naive blend", spec, h.what,
                          err);
                free(O);
                free(D);
                free(L);
            }
            head_free(&h);
        }
}

/* Materialize against apply and the row sums: every row of w1 D + w2 L sums to w1 + w2. */
static void check_materialize(const char *spec, const head *h, double w1, double w2)
{
    size_t n = h->pb.n, dv = h->pb.dv;
    attn_plan *plan = tu_plan(spec, &h->pb);
    double *A = tu_alloc(n * n), *AV = tu_alloc(n * dv), *O = tu_alloc(n * dv);
    cr_assert_eq(attn_plan_materialize(plan, h->Q, h->K, h->V, A), ATTN_OK, "%s",
                 attn_last_error());
    cr_assert_eq(attn_plan_apply(plan, h->Q, h->K, h->V, O), ATTN_OK, "%s", attn_last_error());
    tu_matmul(A, h->V, AV, n, n, dv);
    /* Sums of n products of rounded weights, as the contract suite. */
    double err = tu_rel_fro(AV, O, n * dv);
    cr_assert(err <= 64.0 * (double) n * DBL_EPSILON, "%s on %s: |AV - O| / |O| = %.3g", spec,
              h->what, err);
    for (size_t i = 0; i < n; i++) {
        double sum = 0.0;
        for (size_t j = 0; j < n; j++) {
            if (h->pb.causal && j > i)
                cr_assert(A[i * n + j] == 0.0, "%s on %s: A[%zu][%zu] = %g above the diagonal",
                          spec, h->what, i, j, A[i * n + j]);
            sum += A[i * n + j];
        }
        double want = w1 + w2;
        cr_assert(fabs(sum - want) <= 8.0 * (double) n * DBL_EPSILON * (fabs(w1) + fabs(w2)),
                  "%s on %s: row %zu sums to %.17g, expected %.17g", spec, h->what, i, sum, want);
    }
    attn_plan_destroy(plan);
    free(A);
    free(AV);
    free(O);
}

Test(fmm_band_lowrank, materialize_fixed_matches_apply_and_rows_sum_to_weights)
{
    for (size_t t = 0; t < NHEADS; t++) {
        head h = make_head(t);
        check_materialize("fmm_band_lowrank", &h, 0.5, 0.5);
        check_materialize("fmm_band_lowrank:k=3,r=3,key_norm=1,w_near=0.3,w_far=0.9", &h, 0.3,
                          0.9);
        check_materialize("fmm_band_lowrank:k=1,r=1,prescale=1,w_near=1.25,w_far=-0.5", &h, 1.25,
                          -0.5);
        check_materialize("fmm_band_lowrank:k=4,part=near,w_near=7", &h, 1.0, 0.0);
        check_materialize("fmm_band_lowrank:k=4,part=far,w_far=7", &h, 0.0, 1.0);
        check_materialize("fmm_band_lowrank:w_near=0,w_far=0", &h, 0.0, 0.0);
        head_free(&h);
    }
}

/* ---------------------------------------------------------------------------------------------
 * The oracle blend.
 */

/* Brute least squares in long double: the (w1, w2) minimising ||w1 X1 + w2 X2 - P||_F by
 * Cramer's rule on the 2 x 2 normal equations. */
static void brute_weights(const double *X1, const double *X2, const double *P, size_t count,
                          double w[2])
{
    long double a = 0, b = 0, c = 0, g1 = 0, g2 = 0;
    for (size_t t = 0; t < count; t++) {
        a += (long double) X1[t] * X1[t];
        b += (long double) X1[t] * X2[t];
        c += (long double) X2[t] * X2[t];
        g1 += (long double) X1[t] * P[t];
        g2 += (long double) X2[t] * P[t];
    }
    long double det = a * c - b * b;
    w[0] = (double) ((c * g1 - b * g2) / det);
    w[1] = (double) ((a * g2 - b * g1) / det);
}

static double residual(double w1, const double *X1, double w2, const double *X2, const double *P,
                       size_t count)
{
    long double s = 0;
    for (size_t t = 0; t < count; t++) {
        long double e = (long double) w1 * X1[t] + (long double) w2 * X2[t] - P[t];
        s += e * e;
    }
    return (double) sqrtl(s);
}

Test(fmm_band_lowrank, oracle_weights_minimise_the_residual)
{
    /* n >= 2: at n = 1 the halves are collinear (tested below). */
    for (size_t t = 2; t < NHEADS; t++) {
        head h = make_head(t);
        size_t count = h.pb.n * h.pb.dv;
        static const char *const params[] = { "k=2", "k=9,r=3,key_norm=1", "k=0,r=1,prescale=1" };
        for (size_t c = 0; c < sizeof params / sizeof params[0]; c++) {
            char spec[160], nspec[160], fspec[160], xspec[160];
            snprintf(spec, sizeof spec, "fmm_band_lowrank:blend=oracle,%s", params[c]);
            snprintf(nspec, sizeof nspec, "fmm_band_lowrank:part=near,%s", params[c]);
            snprintf(fspec, sizeof fspec, "fmm_band_lowrank:part=far,%s", params[c]);
            snprintf(xspec, sizeof xspec, "fmm_band_lowrank:%s", params[c]);
            double *O = tu_apply(spec, &h.pb, h.Q, h.K, h.V);
            double *D = tu_apply(nspec, &h.pb, h.Q, h.K, h.V);
            double *L = tu_apply(fspec, &h.pb, h.Q, h.K, h.V);
            double *X = tu_apply(xspec, &h.pb, h.Q, h.K, h.V);
            double *P = tu_reference(&h.pb, h.Q, h.K, h.V);
            double w[2];
            brute_weights(D, L, P, count, w);
            double *B = tu_alloc(count);
            for (size_t u = 0; u < count; u++)
                B[u] = w[0] * D[u] + w[1] * L[u];
            /* The method's P V is streamed (not the long-double reference) and its Gram sums are
             * in double: both move the weights by far less than 1e-9 on these inputs. */
            double err = tu_rel_fro(O, B, count);
            cr_assert(err <= 1e-9, "%s on %s: output %.3g from the brute fit (w = %.6g, %.6g)",
                      spec, h.what, err, w[0], w[1]);
            /* Any other weights do worse. */
            double r0 = residual(w[0], D, w[1], L, P, count);
            static const double steps[] = { 1e-3, -1e-3, 0.05, -0.05 };
            for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
                double up1 = residual(w[0] + steps[s], D, w[1], L, P, count);
                double up2 = residual(w[0], D, w[1] + steps[s], L, P, count);
                double up3 = residual(w[0] + steps[s], D, w[1] - steps[s], L, P, count);
                cr_assert(up1 > r0 && up2 > r0 && up3 > r0,
                          "%s on %s: perturbing the weights by %g lowers the residual %.17g "
                          "(%.17g, %.17g, %.17g)", spec, h.what, steps[s], r0, up1, up2, up3);
            }
            /* Fixed blends, either half alone and the fitted output: none beats the oracle. */
            double e_oracle = tu_rel_fro(O, P, count);
            double e_fixed = tu_rel_fro(X, P, count);
            double e_near = tu_rel_fro(D, P, count), e_far = tu_rel_fro(L, P, count);
            cr_assert(e_oracle <= e_fixed * (1 + 1e-12) && e_oracle <= e_near * (1 + 1e-12) &&
                          e_oracle <= e_far * (1 + 1e-12),
                      "%s on %s: oracle error %.6g above fixed %.6g, near %.6g or far %.6g", spec,
                      h.what, e_oracle, e_fixed, e_near, e_far);
            /* The oracle's residual is the brute minimum. */
            double e_min = r0 / residual(0, D, 0, L, P, count);
            cr_assert(fabs(e_oracle - e_min) <= 1e-9 * e_min, "%s on %s: oracle error %.17g, "
                      "brute minimum %.17g", spec, h.what, e_oracle, e_min);
            /* Materialize gives w1 D + w2 L with the weights fitted for this V. */
            check_materialize(spec, &h, w[0], w[1]);
            free(O);
            free(D);
            free(L);
            free(X);
            free(P);
            free(B);
        }
        head_free(&h);
    }
}

/* With one half the oracle fits its single weight: <X, P> / <X, X>. */
Test(fmm_band_lowrank, oracle_with_one_half_fits_one_weight)
{
    for (size_t t = 2; t < NHEADS; t++) {
        head h = make_head(t);
        size_t count = h.pb.n * h.pb.dv;
        for (int far = 0; far <= 1; far++) {
            char spec[128], pspec[128];
            snprintf(spec, sizeof spec, "fmm_band_lowrank:blend=oracle,k=3,part=%s",
                     far ? "far" : "near");
            snprintf(pspec, sizeof pspec, "fmm_band_lowrank:k=3,part=%s", far ? "far" : "near");
            double *O = tu_apply(spec, &h.pb, h.Q, h.K, h.V);
            double *X = tu_apply(pspec, &h.pb, h.Q, h.K, h.V);
            double *P = tu_reference(&h.pb, h.Q, h.K, h.V);
            long double xx = 0, xp = 0;
            for (size_t u = 0; u < count; u++) {
                xx += (long double) X[u] * X[u];
                xp += (long double) X[u] * P[u];
            }
            double w = (double) (xp / xx);
            for (size_t u = 0; u < count; u++)
                X[u] *= w;
            double err = tu_rel_fro(O, X, count);
            cr_assert(err <= 1e-9, "%s on %s: %.3g from w = %.9g times the half", spec, h.what,
                      err, w);
            check_materialize(spec, &h, far ? 0.0 : w, far ? w : 0.0);
            free(O);
            free(X);
            free(P);
        }
        head_free(&h);
    }
}

/* n = 1: D V = L V = P V = v_0, the normal equations are singular and the minimum-norm weights are
 * (1/2, 1/2), so the output is v_0 again (not NaN). */
Test(fmm_band_lowrank, oracle_with_collinear_halves)
{
    for (int causal = 0; causal <= 1; causal++) {
        head h = random_head(1, causal, 77);
        double *O = tu_apply("fmm_band_lowrank:blend=oracle", &h.pb, h.Q, h.K, h.V);
        double err = tu_rel_fro(O, h.V, h.pb.dv);
        cr_assert(err <= 16 * DBL_EPSILON, "n = 1, causal = %d: oracle output %.3g from v_0",
                  causal, err);
        check_materialize("fmm_band_lowrank:blend=oracle", &h, 0.5, 0.5);
        free(O);
        head_free(&h);
    }
    /* V = 0: every fit is zero and so is the output. */
    head h = random_head(40, 0, 78);
    memset(h.V, 0, 40 * 7 * sizeof *h.V);
    double *O = tu_apply("fmm_band_lowrank:blend=oracle", &h.pb, h.Q, h.K, h.V);
    for (size_t t = 0; t < 40 * 7; t++)
        cr_assert(O[t] == 0.0, "V = 0: O[%zu] = %g", t, O[t]);
    free(O);
    head_free(&h);
}

/* ---------------------------------------------------------------------------------------------
 * Budget, causality, cost, extreme inputs, errors.
 */

/* The near field's row TV to exact is the mass exact attention puts outside the band: it never
 * rises with k and reaches 0 at k = n - 1. */
Test(fmm_band_lowrank, near_error_falls_with_k)
{
    for (size_t t = 2; t < NHEADS; t++) {
        head h = make_head(t);
        size_t n = h.pb.n;
        double *Ax = tu_alloc(n * n);
        cr_assert_eq(attn_exact_matrix(&h.pb, h.Q, h.K, Ax), ATTN_OK);
        double previous = INFINITY, first = NAN, tv = NAN;
        for (size_t k = 0;; k = k ? 2 * k : 1) {
            size_t kk = k < n - 1 ? k : n - 1;
            char spec[96];
            snprintf(spec, sizeof spec, "fmm_band_lowrank:part=near,k=%zu", kk);
            double *A = tu_materialize(spec, &h.pb, h.Q, h.K, h.V);
            tv = 0.0;
            for (size_t u = 0; u < n * n; u++)
                tv += fabs(A[u] - Ax[u]);
            tv *= 0.5 / (double) n;
            cr_assert(tv <= previous + 1e-12, "%s on %s: mean TV %.6g rose from %.6g", spec,
                      h.what, tv, previous);
            if (isnan(first))
                first = tv;
            previous = tv;
            free(A);
            if (kk == n - 1)
                break;
        }
        cr_assert(tv <= 1e-12, "%s: mean TV %.3g at k = n - 1", h.what, tv);
        cr_assert(first > 1e-3, "%s: the band at k = 0 is already exact (TV %.3g): weak input",
                  h.what, first);
        free(Ax);
        head_free(&h);
    }
}

/* Rows <= i are bitwise unchanged when queries, keys and values after i change, for cuts on both
 * sides of causal far-chunk boundaries (multiples of 32) and near-tile boundaries (tiles of 8, 33
 * and 64 rows for k = 5, 32 and 70) and in the middle of them. */
Test(fmm_band_lowrank, causal_rows_ignore_the_future_across_chunks)
{
    static const char *const specs[] = {
        "fmm_band_lowrank", "fmm_band_lowrank:k=5,r=3,key_norm=1,prescale=1",
        "fmm_band_lowrank:part=far,r=1", "fmm_band_lowrank:k=70,w_near=0.2,w_far=1.1",
    };
    size_t n = 200, d = 13, dv = 7;
    head h = random_head(n, 1, 55);
    static const size_t cuts[] = { 0, 30, 31, 32, 33, 63, 64, 100, 127, 128, 191, 198 };
    for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++) {
        double *O = tu_apply(specs[s], &h.pb, h.Q, h.K, h.V);
        for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
            size_t i = cuts[c];
            double *Q2 = tu_alloc(n * d), *K2 = tu_alloc(n * d), *V2 = tu_alloc(n * dv);
            memcpy(Q2, h.Q, n * d * sizeof *Q2);
            memcpy(K2, h.K, n * d * sizeof *K2);
            memcpy(V2, h.V, n * dv * sizeof *V2);
            tu_fill_gauss(Q2 + (i + 1) * d, (n - i - 1) * d, 60 + i, 2.7);
            tu_fill_gauss(K2 + (i + 1) * d, (n - i - 1) * d, 61 + i, 3.1);
            tu_fill_gauss(V2 + (i + 1) * dv, (n - i - 1) * dv, 62 + i, 5.3);
            double *O2 = tu_apply(specs[s], &h.pb, Q2, K2, V2);
            cr_assert(memcmp(O, O2, (i + 1) * dv * sizeof *O) == 0,
                      "%s: rows <= %zu changed when the inputs after %zu changed", specs[s], i,
                      i);
            cr_assert(memcmp(O, O2, n * dv * sizeof *O) != 0,
                      "%s: rows after %zu did not change: the check is vacuous", specs[s], i);
            free(Q2);
            free(K2);
            free(V2);
            free(O2);
        }
        free(O);
    }
    head_free(&h);
}

Test(fmm_band_lowrank, repeated_applies_give_the_same_bits)
{
    head h = random_head(333, 1, 91);
    static const char *const specs[] = { "fmm_band_lowrank:r=3,key_norm=1",
                                         "fmm_band_lowrank:blend=oracle,k=4" };
    for (size_t s = 0; s < 2; s++) {
        attn_plan *plan = tu_plan(specs[s], &h.pb);
        double *O1 = tu_alloc(333 * 7), *O2 = tu_alloc(333 * 7);
        cr_assert_eq(attn_plan_apply(plan, h.Q, h.K, h.V, O1), ATTN_OK);
        cr_assert_eq(attn_plan_apply(plan, h.Q, h.K, h.V, O2), ATTN_OK);
        cr_assert(memcmp(O1, O2, 333 * 7 * sizeof *O1) == 0, "%s: two applies differ", specs[s]);
        attn_plan_destroy(plan);
        free(O1);
        free(O2);
    }
    head_free(&h);
}

Test(fmm_band_lowrank, analytic_cost)
{
    attn_problem pb = { .n = 1000, .m = 1000, .d = 64, .dv = 48, .causal = 0 };
    attn_cost c_near, c_band, c_far, c_both, c_oracle;
    attn_plan *p;
    p = tu_plan("fmm_band_lowrank:part=near,k=20", &pb);
    attn_plan_cost(p, &c_near);
    attn_plan_destroy(p);
    p = tu_plan("band:w=20", &pb);
    attn_plan_cost(p, &c_band);
    attn_plan_destroy(p);
    /* The near part is the band, tile for tile. */
    cr_assert(c_near.flops == c_band.flops && c_near.exps == c_band.exps,
              "near part %g flops %g exps, band %g flops %g exps", c_near.flops, c_near.exps,
              c_band.flops, c_band.exps);
    /* Bidirectional far field, r = 2: state 2 n F (dv + 1) and its use 2 n F (dv + 1), F = 128;
     * one exp per entry of Q and K. */
    p = tu_plan("fmm_band_lowrank:part=far,r=2", &pb);
    attn_plan_cost(p, &c_far);
    attn_plan_destroy(p);
    cr_assert(c_far.flops == 4.0 * 1000 * 128 * 49, "far part: %g flops", c_far.flops);
    cr_assert(c_far.exps == 2.0 * 1000 * 64, "far part: %g exps", c_far.exps);
    p = tu_plan("fmm_band_lowrank:k=20,r=2", &pb);
    attn_plan_cost(p, &c_both);
    attn_plan_destroy(p);
    cr_assert(c_both.flops == c_near.flops + c_far.flops, "both: %g flops", c_both.flops);
    cr_assert(c_both.bytes > c_near.bytes && c_both.bytes > 0, "both: %g bytes", c_both.bytes);
    /* Linear in n: doubling n doubles the flops to within the band's edge tiles. */
    attn_problem pb2 = pb;
    pb2.n = pb2.m = 2000;
    attn_cost c_both2;
    p = tu_plan("fmm_band_lowrank:k=20,r=2", &pb2);
    attn_plan_cost(p, &c_both2);
    attn_plan_destroy(p);
    double ratio = c_both2.flops / c_both.flops;
    cr_assert(ratio > 1.98 && ratio < 2.02, "flops grew by %.4g when n doubled", ratio);
    /* The oracle adds exact attention: 2 n^2 (d + dv) flops and n^2 exps. */
    p = tu_plan("fmm_band_lowrank:k=20,r=2,blend=oracle", &pb);
    attn_plan_cost(p, &c_oracle);
    attn_plan_destroy(p);
    cr_assert(c_oracle.exps == c_both.exps + 1e6, "oracle: %g exps", c_oracle.exps);
    cr_assert(c_oracle.flops >= c_both.flops + 2e6 * 112, "oracle: %g flops", c_oracle.flops);
    cr_assert(c_oracle.bytes >= c_both.bytes + 2.0 * 1000 * 48 * 8, "oracle: %g bytes",
              c_oracle.bytes);
}

/* Feature products that underflow leave a zero denominator: that row's far field is zero, never
 * NaN; the near field is unaffected. */
Test(fmm_band_lowrank, underflowing_features_give_a_zero_far_field)
{
    size_t n = 70, d = 4, dv = 3;
    attn_problem pb = { .n = n, .m = n, .d = d, .dv = dv, .causal = 1, .scale = 1e-6 };
    double *Q = tu_alloc(n * d), *K = tu_alloc(n * d), *V = tu_alloc(n * dv);
    /* elu(x) + 1 = e^x: each product e^(q + k) = e^-800 underflows. */
    for (size_t t = 0; t < n * d; t++) {
        Q[t] = -400.0 - 0.01 * (double) t;
        K[t] = -400.0 + 0.02 * (double) (t % 7);
    }
    tu_fill_gauss(V, n * dv, 3, 1.0);
    double *O = tu_apply("fmm_band_lowrank:part=far,r=1", &pb, Q, K, V);
    for (size_t t = 0; t < n * dv; t++)
        cr_assert(O[t] == 0.0, "O[%zu] = %g with an underflowed denominator", t, O[t]);
    free(O);
    O = tu_apply("fmm_band_lowrank:r=1,key_norm=1", &pb, Q, K, V);
    for (size_t t = 0; t < n * dv; t++)
        cr_assert(isfinite(O[t]), "O[%zu] = %g", t, O[t]);
    free(O);
    free(Q);
    free(K);
    free(V);
}

Test(fmm_band_lowrank, canonical_spec)
{
    attn_problem pb = { .n = 10, .m = 10, .d = 3, .dv = 2, .causal = 1 };
    attn_plan *plan = tu_plan("fmm_band_lowrank", &pb);
    cr_assert_str_eq(attn_plan_spec(plan), "fmm_band_lowrank:k=32,r=2,w_near=0.5,w_far=0.5,"
                     "blend=fixed,part=both,prescale=0,key_norm=0");
    attn_plan_destroy(plan);
    plan = tu_plan("fmm_band_lowrank:part=far,blend=oracle,w_near=0.1", &pb);
    cr_assert_str_eq(attn_plan_spec(plan), "fmm_band_lowrank:k=32,r=2,w_near=0.1,w_far=0.5,"
                     "blend=oracle,part=far,prescale=0,key_norm=0");
    attn_plan_destroy(plan);
}

static void expect_bad(const char *spec, const attn_problem *pb, int status, const char *needle)
{
    tu_expect_refused(spec, pb, status, needle);
}

Test(fmm_band_lowrank, bad_parameters_are_named)
{
    attn_problem pb = { .n = 16, .m = 16, .d = 4, .dv = 4, .causal = 0 };
    expect_bad("fmm_band_lowrank:k=-1", &pb, ATTN_EPARAM, "k = -1");
    expect_bad("fmm_band_lowrank:k=2.5", &pb, ATTN_EPARAM, "k = 2.5");
    expect_bad("fmm_band_lowrank:r=0", &pb, ATTN_EPARAM, "r = 0");
    expect_bad("fmm_band_lowrank:r=4", &pb, ATTN_EPARAM, "r = 4");
    expect_bad("fmm_band_lowrank:w_near=inf", &pb, ATTN_EPARAM, "w_near = inf");
    expect_bad("fmm_band_lowrank:w_far=-inf", &pb, ATTN_EPARAM, "w_far = -inf");
    expect_bad("fmm_band_lowrank:w_far=nan", &pb, ATTN_EPARAM, "w_far = 'nan'");
    expect_bad("fmm_band_lowrank:blend=learned", &pb, ATTN_EPARAM, "blend = 'learned'");
    expect_bad("fmm_band_lowrank:part=middle", &pb, ATTN_EPARAM, "part = 'middle'");
    expect_bad("fmm_band_lowrank:prescale=2", &pb, ATTN_EPARAM, "prescale = 2");
    expect_bad("fmm_band_lowrank:key_norm=-1", &pb, ATTN_EPARAM, "key_norm = -1");
    expect_bad("fmm_band_lowrank:kernels=2", &pb, ATTN_EPARAM, "'kernels'");
    /* A band in index space needs m == n. */
    attn_problem rect = { .n = 16, .m = 20, .d = 4, .dv = 4, .causal = 0 };
    expect_bad("fmm_band_lowrank", &rect, ATTN_EUNSUP, "m = 20");
}

Test(fmm_band_lowrank, nonfinite_input_is_named)
{
    head h = random_head(20, 0, 5);
    h.K[3 * 13 + 2] = NAN;
    attn_plan *plan = tu_plan("fmm_band_lowrank", &h.pb);
    double *O = tu_alloc(20 * 7);
    cr_assert_eq(attn_plan_apply(plan, h.Q, h.K, h.V, O), ATTN_ENONFINITE);
    cr_assert(tu_error_has("K: row 3, column 2"));
    attn_plan_destroy(plan);
    free(O);
    head_free(&h);
}
