/* test_fast.c — FAST / Fastmax (lib/methods/fast.c).
 *
 * The factorised apply against the method's own quadratic evaluation (materialize) over degrees,
 * normalisations, statistics, coefficients, temperatures, ragged n and m != n, on random and real
 * data; apply against an independent long-double evaluation written here from the definition (the
 * normalisation included); the target (truncation error falling like T^-3 for p = 2 and T^-2 for
 * p = 1); causality of running statistics and the acausality of global ones; rows of the matrix
 * as distributions; canonical specs; scratch independent of n; and the bad-input messages.
 */
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

#define OCR_FILE "data/ppocrv4-svtr-attn.h5"
#define LM_FILE "data/stories260k-attn.h5"

enum { NORM_MAXNORM, NORM_CENTER, NORM_NONE };
enum { STATS_AUTO, STATS_GLOBAL, STATS_RUNNING };
static const char *const norm_names[] = { "maxnorm", "center", "none" };
static const char *const stats_names[] = { "auto", "global", "running" };

/* One configuration of the method, written out in full so the test can evaluate it itself. */
typedef struct cfg {
    int p;
    double a0, a1, a2;
    int norm;
    double lim;
    double temp;   /* 0: auto */
    int stats;
} cfg;

static void cfg_spec(const cfg *c, char *buf, size_t len)
{
    char temp[64] = "auto";
    if (c->temp > 0)
        snprintf(temp, sizeof temp, "%.17g", c->temp);
    snprintf(buf, len, "fast:p=%d,a0=%.17g,a1=%.17g,a2=%.17g,norm=%s,lim=%.17g,temp=%s,stats=%s",
             c->p, c->a0, c->a1, c->a2, norm_names[c->norm], c->lim, temp,
             stats_names[c->stats]);
}

/* Inputs of one problem: owned copies. */
typedef struct inputs {
    attn_problem pb;
    double *Q, *K, *V;
    const char *what;
} inputs;

static inputs random_inputs(size_t n, size_t m, int causal, unsigned long seed)
{
    inputs in = { .pb = { .n = n, .m = m, .d = 13, .dv = 7, .causal = causal }, .what = "random" };
    tu_random_qkv(n, m, 13, 7, seed, &in.Q, &in.K, &in.V);
    return in;
}

/* The first n queries and m keys of one head of a bundled file. */
static inputs file_inputs(const char *file, size_t layer, size_t head, size_t n, size_t m,
                          int causal)
{
    const double *q, *k, *v;
    attn_inputs *data = tu_load_head(file, layer, head, &q, &k, &v);
    inputs in = { .pb = tu_inputs_problem(data, causal), .what = file };
    cr_assert(n <= data->n && m <= data->n, "%s has %zu tokens, %zu wanted", file, data->n,
              n > m ? n : m);
    in.pb.n = n;
    in.pb.m = m;
    size_t d = data->d, dv = data->dv;
    in.Q = tu_alloc(n * d);
    in.K = tu_alloc(m * d);
    in.V = tu_alloc(m * dv);
    memcpy(in.Q, q, n * d * sizeof *q);
    memcpy(in.K, k, m * d * sizeof *k);
    memcpy(in.V, v, m * dv * sizeof *v);
    attn_inputs_destroy(data);
    return in;
}

static void inputs_free(inputs *in)
{
    free(in->Q);
    free(in->K);
    free(in->V);
}

/* ---------------------------------------------------------------------------------------------
 * apply against materialize (the method's own quadratic evaluation).
 */
static void check_against_materialize(const char *spec, const inputs *in)
{
    const attn_problem *pb = &in->pb;
    size_t n = pb->n, m = pb->m, dv = pb->dv;
    attn_plan *plan = tu_plan(spec, pb);
    double *A = tu_alloc(n * m), *AV = tu_alloc(n * dv), *O = tu_alloc(n * dv);
    double *O2 = tu_alloc(n * dv);
    cr_assert_eq(attn_plan_materialize(plan, in->Q, in->K, in->V, A), ATTN_OK, "%s: %s", spec,
                 attn_last_error());
    cr_assert_eq(attn_plan_apply(plan, in->Q, in->K, in->V, O), ATTN_OK, "%s: %s", spec,
                 attn_last_error());
    cr_assert_eq(attn_plan_apply(plan, in->Q, in->K, in->V, O2), ATTN_OK);
    cr_assert(memcmp(O, O2, n * dv * sizeof *O) == 0, "%s: two applies differ", spec);
    tu_matmul(A, in->V, AV, n, m, dv);
    double err = tu_rel_fro(O, AV, n * dv);
    cr_assert(err <= 1e-12, "%s on %s, n = %zu, m = %zu, causal = %d: |O - AV| / |AV| = %.3g",
              spec, in->what, n, m, pb->causal, err);
    attn_plan_destroy(plan);
    free(A);
    free(AV);
    free(O);
    free(O2);
}

/* Every degree, normalisation and statistics; default and other coefficients and temperatures.
 * Without normalisation, only p = 2 with the default coefficients (f >= 1/2) keeps its automatic
 * temperature; the others get T = 2 max |q| max |k|, so that |x| <= 1/2 and f stays positive
 * (the method refuses a non-positive denominator; that case is tested below). */
static void sweep_configs(const inputs *in)
{
    /* |q . k| <= max |q| max |k| = T / 2 with this temperature. */
    const attn_problem *pb = &in->pb;
    double mq = 0.0, mk = 0.0;
    for (size_t i = 0; i < pb->n; i++) {
        double s = 0.0;
        for (size_t t = 0; t < pb->d; t++)
            s += in->Q[i * pb->d + t] * in->Q[i * pb->d + t];
        mq = sqrt(s) > mq ? sqrt(s) : mq;
    }
    for (size_t j = 0; j < pb->m; j++) {
        double s = 0.0;
        for (size_t t = 0; t < pb->d; t++)
            s += in->K[j * pb->d + t] * in->K[j * pb->d + t];
        mk = sqrt(s) > mk ? sqrt(s) : mk;
    }
    double small_temp = 2.0 * mq * mk;
    const cfg coefs[] = {
        { .a0 = 1, .a1 = 1, .a2 = 0.5, .lim = 1, .temp = 0 },
        { .a0 = 0.8125, .a1 = 1.166666, .a2 = 0.145833, .lim = 0.75, .temp = 0.6180339887 },
    };
    for (size_t t = 0; t < 2; t++)
        for (int p = 1; p <= 2; p++)
            for (int norm = 0; norm < 3; norm++)
                for (int stats = STATS_GLOBAL; stats <= STATS_RUNNING; stats++) {
                    cfg c = coefs[t];
                    c.p = p;
                    c.norm = norm;
                    c.stats = stats;
                    if (norm == NORM_NONE && (p == 1 || t > 0))
                        c.temp = small_temp;
                    char spec[256];
                    cfg_spec(&c, spec, sizeof spec);
                    check_against_materialize(spec, in);
                }
}

Test(fast, apply_matches_materialize_random)
{
    /* n = 1, ragged against the chunk of 64 rows, and past several chunks. */
    const size_t ns[] = { 1, 37, 300, 1000 };
    for (size_t s = 0; s < sizeof ns / sizeof ns[0]; s++)
        for (int causal = 0; causal <= 1; causal++) {
            inputs in = random_inputs(ns[s], ns[s], causal, 100 + ns[s]);
            sweep_configs(&in);
            inputs_free(&in);
        }
    /* m != n, both ways (bidirectional only). */
    const size_t shapes[][2] = { { 70, 131 }, { 131, 70 }, { 1, 65 }, { 200, 1 } };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        inputs in = random_inputs(shapes[s][0], shapes[s][1], 0, 7 + s);
        sweep_configs(&in);
        inputs_free(&in);
    }
}

Test(fast, apply_matches_materialize_real_data)
{
    /* The OCR model is bidirectional (d = 15), the language model causal (d = 8); each is also
     * run the other way, and the OCR data with fewer queries than keys. */
    for (int causal = 0; causal <= 1; causal++) {
        inputs ocr = file_inputs(OCR_FILE, 1, 3, 192, 192, causal);
        sweep_configs(&ocr);
        inputs_free(&ocr);
        inputs lm = file_inputs(LM_FILE, 2, 0, 512, 512, causal);
        sweep_configs(&lm);
        inputs_free(&lm);
    }
    inputs rect = file_inputs(OCR_FILE, 0, 5, 100, 192, 0);
    sweep_configs(&rect);
    inputs_free(&rect);
}

/* ---------------------------------------------------------------------------------------------
 * An independent evaluation from the definition, in long double.
 */

/* out (rows x d) = the normalised rows of X, every statistic recomputed from its definition: the
 * mean that centres row r is a fresh sum over the rows its statistics see (all rows, or rows up to
 * r), and the largest norm that scales row i a fresh maximum over the rows it sees. */
static void naive_normalise(const double *X, size_t rows, size_t d, int norm, int running,
                            long double lim, long double *out)
{
    long double *c = calloc(rows * d, sizeof *c), *nrm = calloc(rows, sizeof *nrm);
    cr_assert(c != NULL && nrm != NULL);
    for (size_t r = 0; r < rows; r++) {
        size_t seen = running ? r + 1 : rows;
        long double nrm2 = 0.0L;
        for (size_t t = 0; t < d; t++) {
            long double mean = 0.0L;
            if (norm == NORM_CENTER) {
                for (size_t u = 0; u < seen; u++)
                    mean += X[u * d + t];
                mean /= (long double) seen;
            }
            c[r * d + t] = X[r * d + t] - mean;
            nrm2 += c[r * d + t] * c[r * d + t];
        }
        nrm[r] = sqrtl(nrm2);
    }
    for (size_t i = 0; i < rows; i++) {
        long double largest = 0.0L;
        for (size_t r = 0; r < (running ? i + 1 : rows); r++)
            largest = nrm[r] > largest ? nrm[r] : largest;
        for (size_t t = 0; t < d; t++) {
            if (norm == NORM_NONE)
                out[i * d + t] = X[i * d + t];
            else
                out[i * d + t] = largest > 0.0L ? lim * c[i * d + t] / largest : 0.0L;
        }
    }
    free(c);
    free(nrm);
}

/* R (n x dv) = Fastmax attention of (Q, K, V) under c, in long double. */
static void naive_fast(const cfg *c, const inputs *in, double *R)
{
    const attn_problem *pb = &in->pb;
    size_t n = pb->n, m = pb->m, d = pb->d, dv = pb->dv;
    double s = pb->scale > 0 ? pb->scale : 1.0 / sqrt((double) d);
    long double T = c->temp > 0 ? c->temp : (c->norm == NORM_NONE ? 1.0L / s : 1.0L);
    int running = c->stats == STATS_RUNNING || (c->stats == STATS_AUTO && pb->causal);
    long double *qh = calloc(n * d, sizeof *qh), *kh = calloc(m * d, sizeof *kh);
    long double *num = calloc(dv, sizeof *num);
    cr_assert(qh != NULL && kh != NULL && num != NULL);
    naive_normalise(in->Q, n, d, c->norm, running, c->lim, qh);
    naive_normalise(in->K, m, d, c->norm, running, c->lim, kh);
    for (size_t i = 0; i < n; i++) {
        long double den = 0.0L;
        for (size_t t = 0; t < dv; t++)
            num[t] = 0.0L;
        for (size_t j = 0; j < (pb->causal ? i + 1 : m); j++) {
            long double x = 0.0L;
            for (size_t t = 0; t < d; t++)
                x += qh[i * d + t] * kh[j * d + t];
            x /= T;
            long double f = c->a0 + c->a1 * x + (c->p == 2 ? c->a2 * x * x : 0.0L);
            den += f;
            for (size_t t = 0; t < dv; t++)
                num[t] += f * in->V[j * dv + t];
        }
        for (size_t t = 0; t < dv; t++)
            R[i * dv + t] = (double) (num[t] / den);
    }
    free(qh);
    free(kh);
    free(num);
}

static void check_naive(const cfg *c, const inputs *in)
{
    char spec[256];
    cfg_spec(c, spec, sizeof spec);
    double *R = tu_alloc(in->pb.n * in->pb.dv);
    naive_fast(c, in, R);
    double *O = tu_apply(spec, &in->pb, in->Q, in->K, in->V);
    double err = tu_rel_fro(O, R, in->pb.n * in->pb.dv);
    cr_assert(err <= 1e-12, "%s on %s, n = %zu, m = %zu, causal = %d: error %.3g against the "
              "long-double evaluation", spec, in->what, in->pb.n, in->pb.m, in->pb.causal, err);
    free(R);
    free(O);
}

Test(fast, matches_long_double_definition)
{
    const cfg cases[] = {
        { .p = 2, .a0 = 1, .a1 = 1, .a2 = 0.5, .norm = NORM_MAXNORM, .lim = 1,
          .stats = STATS_AUTO },
        { .p = 2, .a0 = 1, .a1 = 1, .a2 = 0.5, .norm = NORM_CENTER, .lim = 1, .stats = STATS_AUTO },
        { .p = 1, .a0 = 1, .a1 = 1, .a2 = 0.5, .norm = NORM_MAXNORM, .lim = 1,
          .stats = STATS_RUNNING },
        { .p = 1, .a0 = 1, .a1 = 1, .a2 = 0.5, .norm = NORM_CENTER, .lim = 0.9,
          .stats = STATS_GLOBAL },
        { .p = 2, .a0 = 0.3, .a1 = 1.7, .a2 = 2.385, .norm = NORM_CENTER, .lim = 1.5,
          .temp = 0.37, .stats = STATS_RUNNING },
        { .p = 2, .a0 = 1, .a1 = 1, .a2 = 0.5, .norm = NORM_NONE, .lim = 1, .stats = STATS_AUTO },
        { .p = 2, .a0 = 1, .a1 = -0.5, .a2 = 0.25, .norm = NORM_NONE, .lim = 1, .temp = 3.3,
          .stats = STATS_GLOBAL },
        { .p = 2, .a0 = 1, .a1 = 1, .a2 = 0.5, .norm = NORM_MAXNORM, .lim = 2, .temp = 1.9,
          .stats = STATS_GLOBAL },
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        for (int causal = 0; causal <= 1; causal++) {
            inputs in = random_inputs(150, 150, causal, 300 + t);
            check_naive(&cases[t], &in);
            inputs_free(&in);
        }
        inputs rect = random_inputs(90, 141, 0, 400 + t);
        check_naive(&cases[t], &rect);
        inputs_free(&rect);
        inputs ocr = file_inputs(OCR_FILE, 1, 3, 192, 192, 0);
        check_naive(&cases[t], &ocr);
        inputs_free(&ocr);
        inputs lm = file_inputs(LM_FILE, 2, 0, 300, 300, 1);
        check_naive(&cases[t], &lm);
        inputs_free(&lm);
    }
}

/* n = 1: the one key has weight f / f = 1, so O is V up to the rounding of the two sums. */
Test(fast, one_token_returns_v)
{
    const char *specs[] = { "fast", "fast:p=1", "fast:norm=center", "fast:norm=none",
                            "fast:stats=running,norm=center,p=1" };
    double Q[3] = { 0.3, -1.2, 2.385 }, K[3] = { -0.7, 0.4, 1.1 }, V[2] = { 1.25, -3.5 };
    for (int causal = 0; causal <= 1; causal++)
        for (size_t t = 0; t < sizeof specs / sizeof specs[0]; t++) {
            attn_problem pb = { .n = 1, .m = 1, .d = 3, .dv = 2, .causal = causal };
            double *O = tu_apply(specs[t], &pb, Q, K, V);
            cr_assert(fabs(O[0] - V[0]) <= 8 * DBL_EPSILON * fabs(V[0]) &&
                          fabs(O[1] - V[1]) <= 8 * DBL_EPSILON * fabs(V[1]),
                      "%s: O = (%.17g, %.17g)", specs[t], O[0], O[1]);
            free(O);
        }
}

/* ---------------------------------------------------------------------------------------------
 * The target: exact softmax of the normalised q, k at 1/T.
 */

/* ||fast - softmax of its target|| / ||softmax of its target|| for spec on in. */
static double truncation_error(const char *spec, const inputs *in, double *scale_out)
{
    const attn_problem *pb = &in->pb;
    size_t n = pb->n, m = pb->m, d = pb->d, dv = pb->dv;
    attn_plan *plan = tu_plan(spec, pb);
    cr_assert(attn_plan_has_target(plan), "%s has no target", spec);
    double *Qt = tu_alloc(n * d), *Kt = tu_alloc(m * d), *O = tu_alloc(n * dv);
    attn_problem tp = *pb;
    cr_assert_eq(attn_plan_target(plan, in->Q, in->K, Qt, Kt, &tp.scale), ATTN_OK, "%s",
                 attn_last_error());
    cr_assert_eq(attn_plan_apply(plan, in->Q, in->K, in->V, O), ATTN_OK);
    double *R = tu_reference(&tp, Qt, Kt, in->V);
    double err = tu_rel_fro(O, R, n * dv);
    *scale_out = tp.scale;
    attn_plan_destroy(plan);
    free(Qt);
    free(Kt);
    free(O);
    free(R);
    return err;
}

/* f_p is the Taylor polynomial of exp, so with |x| <= 1/T the relative kernel error is
 * x^(p+1) / (p+1)! and the attention error falls like T^-(p+1): halving 1/T divides it by 8
 * (p = 2) or 4 (p = 1), up to the next Taylor term (relative O(1/T)). */
static void check_truncation_order(const inputs *in, int p, const char *norm)
{
    double previous = NAN, factor = p == 2 ? 8.0 : 4.0;
    for (double T = 4; T <= 128; T *= 2) {
        char spec[128];
        snprintf(spec, sizeof spec, "fast:p=%d,norm=%s,temp=%g", p, norm, T);
        double scale;
        double err = truncation_error(spec, in, &scale);
        cr_assert(scale == 1.0 / T, "%s: target scale %.17g, expected 1/T", spec, scale);
        if (!isnan(previous)) {
            double ratio = previous / err;
            cr_assert(ratio > 0.8 * factor && ratio < 1.25 * factor,
                      "%s on %s: error %.3g at T = %g and %.3g at T = %g: ratio %.3g, expected "
                      "about %g", spec, in->what, previous, T / 2, err, T, ratio, factor);
        }
        previous = err;
    }
    /* At T = 128 the polynomial is within about (1/128)^(p+1) of exp. */
    cr_assert(previous < (p == 2 ? 1e-6 : 1e-4), "p = %d on %s: error %.3g at T = 128", p,
              in->what, previous);
}

Test(fast, target_truncation_error_falls_with_temperature)
{
    for (int causal = 0; causal <= 1; causal++)
        for (int p = 1; p <= 2; p++) {
            inputs in = random_inputs(200, 200, causal, 55);
            check_truncation_order(&in, p, "maxnorm");
            check_truncation_order(&in, p, "center");
            inputs_free(&in);
        }
    inputs ocr = file_inputs(OCR_FILE, 1, 3, 192, 192, 0);
    check_truncation_order(&ocr, 2, "maxnorm");
    inputs_free(&ocr);
    inputs lm = file_inputs(LM_FILE, 2, 0, 512, 512, 1);
    check_truncation_order(&lm, 2, "maxnorm");
    inputs_free(&lm);
}

/* The target's inputs are the normalisation itself: maxnorm gives rows parallel to the inputs
 * whose largest norm is lim; none gives the inputs and the problem's scale, so the target is the
 * problem's own softmax. */
Test(fast, target_inputs)
{
    inputs in = random_inputs(120, 90, 0, 77);
    size_t n = 120, m = 90, d = 13;
    double *Qt = tu_alloc(n * d), *Kt = tu_alloc(m * d), scale;
    attn_plan *plan = tu_plan("fast:lim=0.75", &in.pb);
    cr_assert_eq(attn_plan_target(plan, in.Q, in.K, Qt, Kt, &scale), ATTN_OK);
    cr_assert(scale == 1.0, "maxnorm: target scale %.17g, expected 1 (T = 1)", scale);
    double largest = 0.0;
    for (size_t i = 0; i < n; i++) {
        double nq = 0.0, nt = 0.0, dot = 0.0;
        for (size_t t = 0; t < d; t++) {
            nq += in.Q[i * d + t] * in.Q[i * d + t];
            nt += Qt[i * d + t] * Qt[i * d + t];
            dot += in.Q[i * d + t] * Qt[i * d + t];
        }
        cr_assert(fabs(dot / sqrt(nq * nt) - 1.0) < 1e-14, "row %zu of Qt is not parallel to Q",
                  i);
        largest = sqrt(nt) > largest ? sqrt(nt) : largest;
    }
    cr_assert(fabs(largest - 0.75) <= 4 * DBL_EPSILON, "largest |q^| = %.17g, expected lim = 0.75",
              largest);
    attn_plan_destroy(plan);

    plan = tu_plan("fast:norm=none", &in.pb);
    cr_assert_eq(attn_plan_target(plan, in.Q, in.K, Qt, Kt, &scale), ATTN_OK);
    cr_assert(memcmp(Qt, in.Q, n * d * sizeof *Qt) == 0, "norm = none: Qt is not Q");
    cr_assert(memcmp(Kt, in.K, m * d * sizeof *Kt) == 0, "norm = none: Kt is not K");
    cr_assert(fabs(scale - 1.0 / sqrt(13.0)) < 1e-16, "scale %.17g, expected 1/sqrt(13)", scale);
    attn_plan_destroy(plan);
    /* So with small logits (Q / 64: |s q.k| below about 0.2 here) Fastmax without normalisation
     * is the problem's own softmax up to the cubic Taylor term. */
    for (size_t t = 0; t < n * d; t++)
        in.Q[t] /= 64.0;
    double err = tu_error_vs_reference("fast:norm=none", &in.pb, in.Q, in.K, in.V);
    cr_assert(err < 1e-4, "fast:norm=none on small logits: error %.3g against exact", err);
    double err1 = tu_error_vs_reference("fast:norm=none,p=1", &in.pb, in.Q, in.K, in.V);
    cr_assert(err1 > 4.0 * err, "p = 1 (error %.3g) should be well above p = 2 (%.3g)", err1, err);
    free(Qt);
    free(Kt);
    inputs_free(&in);
}

/* ---------------------------------------------------------------------------------------------
 * Causality.
 */

/* 1 when rows <= i of spec's output are bitwise unchanged after queries, keys and values after i
 * change (keys get a larger norm, so that a global statistic would see them). */
static int rows_unchanged(const char *spec, const inputs *in, size_t i)
{
    size_t n = in->pb.n, d = in->pb.d, dv = in->pb.dv;
    double *O = tu_apply(spec, &in->pb, in->Q, in->K, in->V);
    double *Q2 = tu_alloc(n * d), *K2 = tu_alloc(n * d), *V2 = tu_alloc(n * dv);
    memcpy(Q2, in->Q, n * d * sizeof *Q2);
    memcpy(K2, in->K, n * d * sizeof *K2);
    memcpy(V2, in->V, n * dv * sizeof *V2);
    tu_fill_gauss(Q2 + (i + 1) * d, (n - i - 1) * d, 6 + i, 2.7);
    tu_fill_gauss(K2 + (i + 1) * d, (n - i - 1) * d, 7 + i, 31.0);
    tu_fill_gauss(V2 + (i + 1) * dv, (n - i - 1) * dv, 8 + i, 5.3);
    double *O2 = tu_apply(spec, &in->pb, Q2, K2, V2);
    int same = memcmp(O, O2, (i + 1) * dv * sizeof *O) == 0;
    free(O);
    free(O2);
    free(Q2);
    free(K2);
    free(V2);
    return same;
}

Test(fast, running_statistics_are_causal)
{
    const char *specs[] = { "fast", "fast:p=1", "fast:norm=center", "fast:p=1,norm=center",
                            "fast:norm=none", "fast:stats=running,lim=0.5,temp=0.7" };
    /* Cuts at the start, inside, at the edges of the causal chunks (32 rows for p = 1, 64 for
     * p = 2) and near the end. */
    const size_t cuts[] = { 0, 1, 30, 31, 32, 62, 63, 64, 100, 191, 298 };
    inputs in = random_inputs(300, 300, 1, 99);
    for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++)
        for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++)
            cr_assert(rows_unchanged(specs[s], &in, cuts[c]),
                      "%s: rows <= %zu changed when positions after %zu changed", specs[s],
                      cuts[c], cuts[c]);
    inputs_free(&in);
    inputs lm = file_inputs(LM_FILE, 2, 0, 512, 512, 1);
    for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++)
        cr_assert(rows_unchanged(specs[s], &lm, 255), "%s on the language model", specs[s]);
    inputs_free(&lm);
}

/* The published normalisation takes its maximum over the whole sequence: in a causal model the
 * future then shapes the past.  The same check that passes above must fail here. */
Test(fast, global_statistics_see_the_future)
{
    inputs in = random_inputs(300, 300, 1, 99);
    const char *specs[] = { "fast:stats=global", "fast:stats=global,norm=center",
                            "fast:stats=global,p=1" };
    for (size_t s = 0; s < 3; s++) {
        cr_assert(!rows_unchanged(specs[s], &in, 100),
                  "%s: rows <= 100 did not change although the largest key norm did", specs[s]);
        cr_assert(rows_unchanged("fast:stats=running", &in, 100));
    }
    /* Without normalisation there are no statistics, and global is causal too. */
    cr_assert(rows_unchanged("fast:stats=global,norm=none", &in, 100));
    inputs_free(&in);
}

/* ---------------------------------------------------------------------------------------------
 * Rows as distributions.
 */
static void check_rows(const char *spec, const inputs *in)
{
    size_t n = in->pb.n, m = in->pb.m;
    int bounded = strstr(spec, "p=1") == NULL && strstr(spec, "norm=none") == NULL;
    double *A = tu_materialize(spec, &in->pb, in->Q, in->K, in->V);
    for (size_t i = 0; i < n; i++) {
        double sum = 0.0;
        for (size_t j = 0; j < m; j++) {
            double a = A[i * m + j];
            cr_assert(a >= 0.0, "%s on %s: A[%zu][%zu] = %g", spec, in->what, i, j, a);
            if (in->pb.causal && j > i)
                cr_assert(a == 0.0, "%s: A[%zu][%zu] = %g above the diagonal", spec, i, j, a);
            if (a > 0.0 && bounded)
                /* |x| <= 1: f in [1/2, 5/2], so no weight is below 1/(5 m). */
                cr_assert(a >= 0.2 / (double) m, "%s: A[%zu][%zu] = %g is below 1/(5 m)", spec, i,
                          j, a);
            sum += a;
        }
        cr_assert(fabs(sum - 1.0) <= 4.0 * (double) m * DBL_EPSILON, "%s: row %zu sums to %.17g",
                  spec, i, sum);
    }
    free(A);
}

Test(fast, rows_are_distributions)
{
    const char *specs[] = { "fast", "fast:p=1", "fast:p=1,norm=center", "fast:norm=none",
                            "fast:stats=running" };
    for (int causal = 0; causal <= 1; causal++) {
        /* Logits spread far (Q times 2.385 and again 10): p = 2 stays positive regardless. */
        inputs in = random_inputs(257, 257, causal, 31);
        for (size_t t = 0; t < 257 * 13; t++)
            in.Q[t] *= 10.0;
        for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++)
            check_rows(specs[s], &in);
        inputs_free(&in);
    }
    inputs ocr = file_inputs(OCR_FILE, 1, 3, 100, 192, 0);
    inputs lm = file_inputs(LM_FILE, 2, 0, 512, 512, 1);
    for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++) {
        check_rows(specs[s], &ocr);
        check_rows(specs[s], &lm);
    }
    inputs_free(&ocr);
    inputs_free(&lm);
}

/* ---------------------------------------------------------------------------------------------
 * Specs, scratch and cost.
 */
Test(fast, canonical_spec_resolves_auto)
{
    attn_problem bidir = { .n = 50, .m = 60, .d = 16, .dv = 4, .causal = 0 };
    attn_problem causal = { .n = 50, .m = 50, .d = 16, .dv = 4, .causal = 1, .scale = 0.2 };
    const struct {
        const char *spec;
        const attn_problem *pb;
        const char *canonical;
    } cases[] = {
        { "fast", &bidir, "fast:p=2,a0=1,a1=1,a2=0.5,norm=maxnorm,lim=1,temp=1,stats=global" },
        { "fast", &causal, "fast:p=2,a0=1,a1=1,a2=0.5,norm=maxnorm,lim=1,temp=1,stats=running" },
        /* Without normalisation the temperature is 1 / scale: 1/sqrt(16) and 0.2. */
        { "fast:norm=none", &bidir,
          "fast:p=2,a0=1,a1=1,a2=0.5,norm=none,lim=1,temp=4,stats=global" },
        { "fast:norm=none,p=1", &causal,
          "fast:p=1,a0=1,a1=1,a2=0.5,norm=none,lim=1,temp=5,stats=running" },
        { "fast:stats=global,temp=auto", &causal,
          "fast:p=2,a0=1,a1=1,a2=0.5,norm=maxnorm,lim=1,temp=1,stats=global" },
        { "fast:stats=running,temp=2.5,a1=1.166666", &bidir,
          "fast:p=2,a0=1,a1=1.166666,a2=0.5,norm=maxnorm,lim=1,temp=2.5,stats=running" },
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        attn_plan *plan = tu_plan(cases[t].spec, cases[t].pb);
        cr_assert_str_eq(attn_plan_spec(plan), cases[t].canonical, "from %s", cases[t].spec);
        attn_plan *again = tu_plan(attn_plan_spec(plan), cases[t].pb);
        cr_assert_str_eq(attn_plan_spec(again), cases[t].canonical);
        attn_plan_destroy(plan);
        attn_plan_destroy(again);
    }
}

/* The scratch is chunks and the state, O(C F + F dv): it does not grow with n, and the flops grow
 * linearly in n (bidirectional exactly; causal up to the ragged last chunk). */
Test(fast, scratch_constant_and_cost_linear_in_n)
{
    for (int causal = 0; causal <= 1; causal++)
        for (int p = 1; p <= 2; p++) {
            attn_cost c1, c2;
            attn_problem pb1 = { .n = 4096, .m = 4096, .d = 16, .dv = 16, .causal = causal };
            attn_problem pb2 = pb1;
            pb2.n = pb2.m = 65536;
            char spec[32];
            snprintf(spec, sizeof spec, "fast:p=%d", p);
            attn_plan *a = tu_plan(spec, &pb1), *b = tu_plan(spec, &pb2);
            attn_plan_cost(a, &c1);
            attn_plan_cost(b, &c2);
            cr_assert(c1.bytes == c2.bytes, "%s causal = %d: scratch %g bytes at n = 4096, %g at "
                      "65536", spec, causal, c1.bytes, c2.bytes);
            /* At most 256 rows per chunk: normalised q, k (d each), features (F), [V | 1] and
             * numerators (dv + 1 each), the causal C x C block (C <= 64 there), the state
             * F x (dv + 1), a few d-vectors and the header. */
            double F = p == 1 ? 17 : 153, C = causal ? 64 : 256;
            double bound = 8.0 * (C * (F + 2 * 16 + 2 * 17) + (causal ? C * C : 0) + F * 17 +
                                  5 * 16) + 512;
            cr_assert(c1.bytes <= bound, "%s causal = %d: %g bytes of scratch, above %g", spec,
                      causal, c1.bytes, bound);
            /* Causal: the first chunk has no earlier state and the last adds none, 1/64 of
             * the state work at n = 4096. */
            double tol = causal ? 0.02 : 1e-12;
            cr_assert(fabs(c2.flops / c1.flops - 16.0) < tol * 16.0, "%s causal = %d: flops "
                      "%g at n = 4096 and %g at 65536", spec, causal, c1.flops, c2.flops);
            cr_assert(c1.exps == 0.0);
            attn_plan_destroy(a);
            attn_plan_destroy(b);
        }
}

/* ---------------------------------------------------------------------------------------------
 * Bad input.
 */
static void expect_param_error(const char *spec, const char *needle, const char *needle2)
{
    attn_problem pb = { .n = 8, .m = 8, .d = 4, .dv = 4, .causal = 0 };
    tu_expect_refused(spec, &pb, ATTN_EPARAM, needle);
    if (needle2 != NULL)
        cr_assert(tu_error_has(needle2), "%s", spec);
}

Test(fast, bad_parameters)
{
    expect_param_error("fast:p=0", "p = 0", "[1, 2]");
    expect_param_error("fast:p=3", "p = 3", "[1, 2]");
    expect_param_error("fast:p=1.5", "p = 1.5", "integer");
    expect_param_error("fast:lim=0", "lim = 0", "> 0");
    expect_param_error("fast:lim=-0.5", "lim = -0.5", NULL);
    expect_param_error("fast:lim=inf", "lim = inf", "finite");
    expect_param_error("fast:a0=inf", "a0 = inf", "finite");
    expect_param_error("fast:a1=-inf", "a1 = -inf", "finite");
    expect_param_error("fast:a2=nan", "a2 = 'nan'", "not a number");
    expect_param_error("fast:temp=0", "temp = 0", "> 0");
    expect_param_error("fast:temp=-2", "temp = -2", NULL);
    expect_param_error("fast:temp=inf", "temp = inf", "finite");
    expect_param_error("fast:temp=1e-320", "temp = 9.99989e-321", "finite");
    expect_param_error("fast:norm=l2", "norm = 'l2'", "maxnorm, center, none");
    expect_param_error("fast:stats=causal", "stats = 'causal'", "auto, global, running");
    expect_param_error("fast:q=2", "unknown parameter 'q'", NULL);
}

/* p = 1 without normalisation: f = 1 + x is negative for x < -1.  With d = 1, scale 1, q = -3 and
 * keys 1 and 1.5, the scores are -2 and -3.5: the denominator -5.5 must be an error naming the row,
 * from apply and from materialize, never a NaN or a negative-weight "distribution". */
Test(fast, nonpositive_denominator_is_an_error)
{
    attn_problem pb = { .n = 2, .m = 2, .d = 1, .dv = 2, .causal = 0, .scale = 1 };
    double Q[2] = { 0.5, -3 }, K[2] = { 1, 1.5 }, V[4] = { 1, 2, 3, 4 }, O[4], A[4];
    attn_plan *plan = tu_plan("fast:p=1,norm=none", &pb);
    cr_assert_eq(attn_plan_apply(plan, Q, K, V, O), ATTN_EPARAM);
    cr_assert(tu_error_has("row 1"));
    cr_assert(tu_error_has("-5.5"));
    cr_assert(tu_error_has("norm = maxnorm"));
    cr_assert_eq(attn_plan_materialize(plan, Q, K, V, A), ATTN_EPARAM);
    cr_assert(tu_error_has("row 1"));
    attn_plan_destroy(plan);
    /* Causal: row 0 alone has f(-3) = -2. */
    pb.causal = 1;
    Q[0] = -3;
    plan = tu_plan("fast:p=1,norm=none", &pb);
    cr_assert_eq(attn_plan_apply(plan, Q, K, V, O), ATTN_EPARAM);
    cr_assert(tu_error_has("row 0"));
    cr_assert(tu_error_has("= -2 "));
    attn_plan_destroy(plan);
    /* Normalised by maxnorm (running statistics), x >= -1.  With d = 1 every x is -1 or 1, and a
     * row whose keys all have x = -1 has no mass; these inputs keep both rows away from that. */
    Q[0] = 0.5;
    K[1] = -1.5;
    plan = tu_plan("fast:p=1", &pb);
    cr_assert_eq(attn_plan_apply(plan, Q, K, V, O), ATTN_OK, "%s", attn_last_error());
    attn_plan_destroy(plan);
}

/* Without normalisation, huge inputs overflow f: an error naming the row, not an Inf. */
Test(fast, overflow_is_an_error)
{
    attn_problem pb = { .n = 3, .m = 3, .d = 2, .dv = 1, .causal = 0, .scale = 1 };
    double Q[6] = { 0.1, 0.2, 1e160, 1e160, 0.3, 0.1 }, K[6] = { 1e160, 1e160, 0.5, 0.5, 1, 2 };
    double V[3] = { 1, 2, 3 }, O[3];
    for (int causal = 0; causal <= 1; causal++) {
        pb.causal = causal;
        attn_plan *plan = tu_plan("fast:norm=none", &pb);
        cr_assert_eq(attn_plan_apply(plan, Q, K, V, O), ATTN_ENONFINITE);
        cr_assert(tu_error_has("row 0"));
        cr_assert(tu_error_has("norm = maxnorm"));
        attn_plan_destroy(plan);
        /* Normalised, the same inputs are fine. */
        plan = tu_plan("fast", &pb);
        cr_assert_eq(attn_plan_apply(plan, Q, K, V, O), ATTN_OK, "%s", attn_last_error());
        for (size_t i = 0; i < 3; i++)
            cr_assert(isfinite(O[i]));
        attn_plan_destroy(plan);
    }
}
