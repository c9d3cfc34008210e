/* fast.c — FAST / Fastmax: factorable attention with a polynomial score of normalised queries and
 * keys.  A different attention function from softmax, not an approximation of the problem's own.
 *
 * Definition, exactly as computed.  With normalised rows q^_i, k^_j (below) and temperature T,
 *
 *     x_ij = q^_i . k^_j / T,     f(x) = a0 + a1 x + a2 x^2  (p = 2)   or   a0 + a1 x  (p = 1),
 *     A_ij = f(x_ij) / sum_j' f(x_ij'),     O = A V,
 *
 * where j, j' run over every key (bidirectional) or over j <= i (causal).  f is the Taylor
 * polynomial of exp at the defaults a = (1, 1, 1/2), so the truncated softmax is softmax(x_ij) of
 * the same x (attn_plan_target writes q^, k^ and 1/T for it).  A is never formed: with the
 * feature maps
 *
 *     phi_k(k) = [1, k, (k_c k_c')_{c <= c'}]                          F = 1 + d + d (d + 1) / 2
 *     phi_q(q) = [a0, (a1/T) q, (a2/T^2) w_cc' (q_c q_c')_{c <= c'}]   w_cc = 1, w_cc' = 2 (c < c')
 *
 * (p = 1: the first 1 + d entries) phi_q(q^_i) . phi_k(k^_j) = f(x_ij), since
 * (q . k)^2 = sum_{c <= c'} w_cc' q_c q_c' k_c k_c'.  The symmetric products halve the d^2
 * tensor-square features; the off-diagonal weight 2 (sqrt 2 on each side in the symmetric form)
 * and the coefficients are folded into the query side, so the key state holds plain products.
 * Numerator and denominator come from one product with the state S = sum_j phi_k(k^_j) [v_j | 1]
 * (F x (dv + 1)): row i is phi_q(q^_i)^T S, divided by its last column.
 *
 * Normalisation (`norm`; `lim` = L):
 *   maxnorm  q^_i = L q_i / max_i' |q_i'|, k^_j = L k_j / max_j' |k_j'| (no centring): the
 *            published CUDA kernel and its PyTorch wrapper (lim = 1 default there too).
 *   center   subtract the mean over positions of each feature, then scale by L / the largest
 *            norm of the centred rows: the published PyTorch reference's normalize = 1 (which has
 *            no lim, i.e. L = 1, the default).
 *   none     q^ = q, k^ = k (lim unused).
 * A row set whose largest (centred) norm is zero stays zero.  With maxnorm or center, |x| <= L^2/T.
 * `stats` says where the means and largest norms come from: global = the whole sequence (what the
 * published code does, also in its causal models, where it lets the future shape the past);
 * running = the prefix up to the row itself (q_i is divided by max_{i' <= i} |q_i'|, k_j likewise;
 * center subtracts the running mean through the row and divides by the running largest centred
 * norm), which keeps causal attention causal; auto = global when bidirectional, running when
 * causal, written resolved in the canonical spec.  Running statistics are allowed bidirectionally
 * (a different normalisation, nothing more).
 *
 * Temperature (`temp` = T): auto is 1 with maxnorm or center (the published default) and
 * 1 / scale with none, so that x is the problem's own softmax logit s q . k.  T always divides
 * the normalised score, so every T is honoured: the published CUDA path divides k by T before
 * its max-norm normalisation, where T then has no effect (attnlab's T = 1); the published
 * reference's non-normalised path uses T = 8 sqrt(d) (temp can be set so); the published PyTorch
 * wrapper of the CUDA kernel forces T = 1 in its non-normalised branch, which attnlab does not.
 * The CUDA file's commented-out fitted quadratic is fast:a1=1.166666,a2=0.145833,lim=2.
 *
 * Positivity: p = 2 with the default coefficients has f(x) = ((x + 1)^2 + 1) / 2 >= 1/2, so every
 * row is a distribution (ATTN_ROW_STOCHASTIC holds at the default spec and at p = 1 with maxnorm
 * or center and lim <= 1, where x >= -1 and f = 1 + x >= 0).  Other choices (p = 1 with norm =
 * none, lim > 1, or other coefficients) can make entries negative; a denominator that is not
 * positive and finite is an error naming the row, never a silent NaN or Inf.  a2 has no effect
 * when p = 1, nor lim and stats when norm = none; such specs are accepted (so that sweeps may
 * cross them) and compute the same thing.
 *
 * Apply.  Bidirectional: S is accumulated over key chunks of C rows (C = 256; features of a chunk
 * in a C x F scratch, then one dgemm), then O = phi_q(Q^) S over query chunks.  Causal:
 * position-aligned chunks of C rows (64 for p = 2, 32 for p = 1): the chunk's own block is
 * evaluated directly (X = Q^_c K^_c^T / T by dgemm, f on and below the diagonal and exact zeros
 * above, times [V_c | 1] by dgemm), the earlier chunks through phi_q(Q^_c) S, and then
 * S += phi_k(K^_c)^T [V_c | 1].  Running statistics advance in position order, so nothing at a
 * position after i reaches row i: the masked weights are exact zeros and the output adds +0.0, so
 * even the sign of a zero does not depend on the future.
 * Cost O((n + m) F dv) = O(n d^(p+1)) time (+ O(n C (d + dv)) causal), scratch O(C (F + C + d + dv)
 * + F dv) doubles, all allocated by init.  materialize evaluates x_ij and f directly, O(n m d): the
 * independent path apply is tested against.
 *
 * Reference: Gerami, Hoover, Dulepet, Duraiswami, "FAST: Factorizable Attention for Speeding up
 * Transformers", arXiv:2402.07901 (2024).
 * Departures: the summary of the paper's text normalises by mean and standard deviation; attnlab
 * offers the two published codes' normalisations instead (maxnorm, center).  Running statistics
 * are attnlab's (the codes have only global ones).  No dropout on the features, no relative
 * position terms, double precision.  T is honoured in every path.  A causal problem has m == n
 * (the CUDA kernel's bottom-right alignment for more keys than queries is not offered).
 */
#include "config.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "attn_impl.h"

enum fast_norm { NORM_MAXNORM, NORM_CENTER, NORM_NONE };
enum fast_stats { STATS_AUTO, STATS_GLOBAL, STATS_RUNNING };

static const char *const norm_choices[] = { "maxnorm", "center", "none", NULL };
static const char *const stats_choices[] = { "auto", "global", "running", NULL };

/* Parameter indices, in table order. */
enum { PAR_P, PAR_A0, PAR_A1, PAR_A2, PAR_NORM, PAR_LIM, PAR_TEMP, PAR_STATS };

static const attn_param fast_params[] = {
    { .name = "p", .value = 2, .lo = 1, .hi = 2, .integer = 1,
      .doc = "degree of the score polynomial f (1 or 2); features F = 1 + d (+ d (d + 1) / 2)" },
    { .name = "a0", .value = 1, .lo = -INFINITY, .hi = INFINITY,
      .doc = "constant coefficient of f (finite)" },
    { .name = "a1", .value = 1, .lo = -INFINITY, .hi = INFINITY,
      .doc = "linear coefficient of f (finite)" },
    { .name = "a2", .value = 0.5, .lo = -INFINITY, .hi = INFINITY,
      .doc = "quadratic coefficient of f (finite; unused when p = 1)" },
    { .name = "norm", .value = NORM_MAXNORM, .choices = norm_choices,
      .doc = "normalisation of q, k: maxnorm (lim q / max |q|), center (subtract the mean, then "
             "maxnorm), none" },
    { .name = "lim", .value = 1, .lo = 0, .hi = INFINITY,
      .doc = "largest norm of a normalised q or k (> 0; unused when norm = none)" },
    { .name = "temp", .value = -1, .lo = 0, .hi = INFINITY,
      .doc = "temperature T > 0, x = q.k / T (default: 1 when normalised, 1 / scale with none)" },
    { .name = "stats", .value = STATS_AUTO, .choices = stats_choices,
      .doc = "normalisation statistics: global (whole sequence), running (prefix up to the row), "
             "auto (global bidirectional, running causal)" },
    { 0 },
};

/* Statistics of one operand (Q or K) for its normalisation. */
typedef struct norm_stats {
    size_t rows;     /* running: rows seen so far */
    double *sum;     /* [d] running: sum of the rows seen (center) */
    double *mean;    /* [d] global: mean of all rows (center) */
    double maxn;     /* largest norm of the (centred) rows: global, or so far (running) */
    double factor;   /* lim / maxn (0 when maxn = 0) */
} norm_stats;

typedef struct fast_state {
    int p;            /* degree */
    double a0, a1, a2;
    int norm;         /* enum fast_norm */
    int running;      /* 1: running statistics, 0: global */
    double lim;
    double invT;      /* 1 / T */
    size_t d, dv, dv1; /* dv1 = dv + 1: values and the column of ones */
    size_t F;         /* features per row */
    size_t C;         /* rows per chunk */
    double *qh, *kh;  /* C x d normalised rows of the chunk */
    double *phi;      /* C x F features */
    double *vc;       /* C x dv1: [V_c | 1] */
    double *out;      /* C x dv1: numerators and denominators */
    double *S;        /* F x dv1: the state sum_j phi_k(k^_j) [v_j | 1] */
    double *X;        /* C x C: the causal chunk's own scores and weights */
    double *cbuf;     /* d: one centred row */
    norm_stats qs, ks;
} fast_state;

static void fast_fini(attn_plan *plan)
{
    fast_state *st = plan->state;
    if (st == NULL)
        return;
    double *owned[] = { st->qh,      st->kh,      st->phi,      st->vc,      st->out,
                        st->S,       st->X,       st->cbuf,     st->qs.sum,  st->qs.mean,
                        st->ks.sum,  st->ks.mean };
    for (size_t t = 0; t < sizeof owned / sizeof owned[0]; t++)
        free(owned[t]);
    free(st);
}

/* Rows per chunk.  Bidirectional: 256, so that the dgemm accumulating the state has a long inner
 * dimension.  Causal: the chunk's own block costs 2 C (d + dv + 1) flops per row beside the
 * 4 F (dv + 1) of the two state products, so C = 64 for p = 2 and 32 for p = 1 (F = d + 1, where
 * the block would otherwise dominate).  Fewer for short problems, and halved (down to 8) while the
 * C x F feature scratch would pass 2^20 doubles (8 MB) for large d. */
static size_t chunk_rows(size_t rows, size_t F, int causal, int p)
{
    size_t C = !causal ? 256 : (p == 2 ? 64 : 32);
    while (C > 8 && C * F > ((size_t) 1 << 20))
        C /= 2;
    return rows < C ? rows : C;
}

static size_t feature_count(int p, size_t d)
{
    return p == 1 ? 1 + d : 1 + d + d * (d + 1) / 2;
}

static int check_coefficient(const attn_plan *plan, int index)
{
    double a = plan->values[index];
    if (!isfinite(a))
        return ATTN_ERR(ATTN_EPARAM, "fast: parameter %s = %g must be finite",
                        fast_params[index].name, a);
    return ATTN_OK;
}

static int fast_init(attn_plan *plan)
{
    const attn_problem *pb = &plan->problem;
    double *v = plan->values;
    for (int t = PAR_A0; t <= PAR_A2; t++) {
        int status = check_coefficient(plan, t);
        if (status != ATTN_OK)
            return status;
    }
    if (!(v[PAR_LIM] > 0.0) || !isfinite(v[PAR_LIM]))
        return ATTN_ERR(ATTN_EPARAM, "fast: parameter lim = %g must be > 0 and finite (the "
                        "largest norm of a normalised q or k)", v[PAR_LIM]);
    int norm = (int) v[PAR_NORM];
    if (v[PAR_TEMP] == fast_params[PAR_TEMP].value) {
        /* auto: 1 when normalised, the problem's logit scale when not. */
        v[PAR_TEMP] = norm == NORM_NONE ? 1.0 / pb->scale : 1.0;
    }
    double T = v[PAR_TEMP];
    if (!(T > 0.0) || !isfinite(T) || !isfinite(1.0 / T) || 1.0 / T == 0.0)
        return ATTN_ERR(ATTN_EPARAM, "fast: parameter temp = %g must be > 0 and finite, with a "
                        "finite nonzero 1/temp (x = q.k / temp)", T);
    if ((int) v[PAR_STATS] == STATS_AUTO)
        v[PAR_STATS] = pb->causal ? STATS_RUNNING : STATS_GLOBAL;

    fast_state *st = attn_plan_calloc(plan, 1, sizeof *st);
    if (st == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "fast: plan state");
    plan->state = st;
    st->p = (int) v[PAR_P];
    st->a0 = v[PAR_A0];
    st->a1 = v[PAR_A1];
    st->a2 = v[PAR_A2];
    st->norm = norm;
    st->running = (int) v[PAR_STATS] == STATS_RUNNING;
    st->lim = v[PAR_LIM];
    st->invT = 1.0 / T;
    st->d = pb->d;
    st->dv = pb->dv;
    st->dv1 = pb->dv + 1;
    st->F = feature_count(st->p, pb->d);
    st->C = chunk_rows(pb->n > pb->m ? pb->n : pb->m, st->F, pb->causal, st->p);
    if (st->F > INT_MAX || st->dv1 > INT_MAX)
        return ATTN_ERR(ATTN_EUNSUP, "fast: p = %d with d = %zu, dv = %zu needs %zu features by "
                        "%zu columns, more than a BLAS int indexes", st->p, st->d, st->dv, st->F,
                        st->dv1);
    size_t C = st->C, d = st->d;
    st->qh = attn_plan_calloc(plan, C * d, sizeof *st->qh);
    st->kh = attn_plan_calloc(plan, C * d, sizeof *st->kh);
    st->phi = attn_plan_calloc(plan, C * st->F, sizeof *st->phi);
    st->vc = attn_plan_calloc(plan, C * st->dv1, sizeof *st->vc);
    st->out = attn_plan_calloc(plan, C * st->dv1, sizeof *st->out);
    st->S = attn_plan_calloc(plan, st->F * st->dv1, sizeof *st->S);
    st->cbuf = attn_plan_calloc(plan, d, sizeof *st->cbuf);
    st->qs.sum = attn_plan_calloc(plan, d, sizeof *st->qs.sum);
    st->qs.mean = attn_plan_calloc(plan, d, sizeof *st->qs.mean);
    st->ks.sum = attn_plan_calloc(plan, d, sizeof *st->ks.sum);
    st->ks.mean = attn_plan_calloc(plan, d, sizeof *st->ks.mean);
    if (pb->causal)
        st->X = attn_plan_calloc(plan, C * C, sizeof *st->X);
    if (st->qh == NULL || st->kh == NULL || st->phi == NULL || st->vc == NULL ||
        st->out == NULL || st->S == NULL || st->cbuf == NULL || st->qs.sum == NULL ||
        st->qs.mean == NULL || st->ks.sum == NULL || st->ks.mean == NULL ||
        (pb->causal && st->X == NULL))
        return ATTN_ERR(ATTN_ENOMEM, "fast: scratch for chunks of %zu rows, %zu features, "
                        "dv = %zu", C, st->F, st->dv);
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Normalisation.
 */

/* The Euclidean norm of x (d entries), without overflow or underflow of the squares. */
static double row_norm(const double *x, size_t d)
{
    double s = 0.0;
    for (size_t c = 0; c < d; c++)
        s += x[c] * x[c];
    if (isnormal(s) && isfinite(s))
        return sqrt(s);
    double amax = 0.0;
    for (size_t c = 0; c < d; c++)
        amax = fabs(x[c]) > amax ? fabs(x[c]) : amax;
    if (amax == 0.0)
        return 0.0;
    s = 0.0;
    for (size_t c = 0; c < d; c++)
        s += (x[c] / amax) * (x[c] / amax);
    return amax * sqrt(s);
}

static void set_factor(const fast_state *st, norm_stats *ns)
{
    ns->factor = ns->maxn > 0.0 ? st->lim / ns->maxn : 0.0;
}

/* Write out = (x - mean) scaled to the largest norm maxn: factor when it is finite, else (a
 * subnormal maxn) by division first, which cannot overflow since |x - mean| <= maxn. */
static void scale_row(const fast_state *st, const norm_stats *ns, const double *c, double *out)
{
    size_t d = st->d;
    if (ns->maxn == 0.0) {
        for (size_t t = 0; t < d; t++)
            out[t] = 0.0;
    } else if (isfinite(ns->factor)) {
        for (size_t t = 0; t < d; t++)
            out[t] = c[t] * ns->factor;
    } else {
        for (size_t t = 0; t < d; t++)
            out[t] = (c[t] / ns->maxn) * st->lim;
    }
}

/* Start a pass over the rows x d matrix X: global statistics are computed from all of its rows,
 * running ones are reset. */
static void stats_begin(const fast_state *st, norm_stats *ns, const double *X, size_t rows)
{
    size_t d = st->d;
    ns->rows = 0;
    ns->maxn = 0.0;
    ns->factor = 0.0;
    for (size_t c = 0; c < d; c++) {
        ns->sum[c] = 0.0;
        ns->mean[c] = 0.0;
    }
    if (st->norm == NORM_NONE || st->running)
        return;
    if (st->norm == NORM_CENTER) {
        for (size_t i = 0; i < rows; i++)
            for (size_t c = 0; c < d; c++)
                ns->sum[c] += X[i * d + c];
        for (size_t c = 0; c < d; c++)
            ns->mean[c] = ns->sum[c] / (double) rows;
    }
    for (size_t i = 0; i < rows; i++) {
        const double *x = X + i * d;
        double nrm;
        if (st->norm == NORM_CENTER) {
            for (size_t c = 0; c < d; c++)
                st->cbuf[c] = x[c] - ns->mean[c];
            nrm = row_norm(st->cbuf, d);
        } else {
            nrm = row_norm(x, d);
        }
        ns->maxn = nrm > ns->maxn ? nrm : ns->maxn;
    }
    set_factor(st, ns);
}

/* Normalise rows r0 .. r0 + nr - 1 of X into out (nr x d).  Running statistics need the rows in
 * position order (r0 is the number of rows seen), and include each row in its own statistics. */
static void stats_rows(const fast_state *st, norm_stats *ns, const double *X, size_t r0, size_t nr,
                       double *out)
{
    size_t d = st->d;
    for (size_t a = 0; a < nr; a++) {
        const double *x = X + (r0 + a) * d;
        double *o = out + a * d;
        if (st->norm == NORM_NONE) {
            memcpy(o, x, d * sizeof *o);
            continue;
        }
        const double *c = x;
        if (st->norm == NORM_CENTER) {
            const double *mean = ns->mean;
            if (st->running) {
                /* The running mean through this row. */
                double count = (double) (ns->rows + 1);
                for (size_t t = 0; t < d; t++) {
                    ns->sum[t] += x[t];
                    ns->mean[t] = ns->sum[t] / count;
                }
            }
            for (size_t t = 0; t < d; t++)
                st->cbuf[t] = x[t] - mean[t];
            c = st->cbuf;
        }
        if (st->running) {
            double nrm = row_norm(c, d);
            if (nrm > ns->maxn) {
                ns->maxn = nrm;
                set_factor(st, ns);
            }
            ns->rows++;
        }
        scale_row(st, ns, c, o);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Features and scores.
 */

/* phi (nr x F) = phi_q of the rows of qh (nr x d): the coefficients folded in. */
static void features_query(const fast_state *st, const double *qh, size_t nr, double *phi)
{
    size_t d = st->d, F = st->F;
    double c1 = st->a1 * st->invT, c2 = st->a2 * st->invT * st->invT, c2x2 = 2.0 * c2;
    for (size_t a = 0; a < nr; a++) {
        const double *q = qh + a * d;
        double *f = phi + a * F;
        *f++ = st->a0;
        for (size_t c = 0; c < d; c++)
            *f++ = c1 * q[c];
        if (st->p == 1)
            continue;
        for (size_t c = 0; c < d; c++) {
            *f++ = (c2 * q[c]) * q[c];
            double w = c2x2 * q[c];
            for (size_t e = c + 1; e < d; e++)
                *f++ = w * q[e];
        }
    }
}

/* phi (nr x F) = phi_k of the rows of kh (nr x d). */
static void features_key(const fast_state *st, const double *kh, size_t nr, double *phi)
{
    size_t d = st->d, F = st->F;
    for (size_t a = 0; a < nr; a++) {
        const double *k = kh + a * d;
        double *f = phi + a * F;
        *f++ = 1.0;
        for (size_t c = 0; c < d; c++)
            *f++ = k[c];
        if (st->p == 1)
            continue;
        for (size_t c = 0; c < d; c++)
            for (size_t e = c; e < d; e++)
                *f++ = k[c] * k[e];
    }
}

/* f(x), x already divided by T. */
static double score(const fast_state *st, double x)
{
    return st->p == 1 ? st->a0 + st->a1 * x : st->a0 + x * (st->a1 + st->a2 * x);
}

/* vc (nr x dv1) = [V rows j0 .. j0 + nr - 1 | 1]. */
static void load_values(const fast_state *st, const double *V, size_t j0, size_t nr)
{
    for (size_t b = 0; b < nr; b++) {
        memcpy(st->vc + b * st->dv1, V + (j0 + b) * st->dv, st->dv * sizeof *V);
        st->vc[b * st->dv1 + st->dv] = 1.0;
    }
}

/* The error of a row whose denominator is not positive and finite. */
static int bad_denominator(const fast_state *st, size_t i, double den)
{
    const char *f = st->p == 1 ? "f = a0 + a1 x" : "f = a0 + a1 x + a2 x^2";
    if (!isfinite(den))
        return ATTN_ERR(ATTN_ENONFINITE, "fast: row %zu: the denominator sum_j f(x_ij) is %g: "
                        "%s overflows at x = q.k / temp (1/temp = %g); use norm = maxnorm, or a "
                        "larger temp", i, den, f, st->invT);
    return ATTN_ERR(ATTN_EPARAM, "fast: row %zu: the denominator sum_j f(x_ij) = %g is not "
                    "positive: %s has no positive mass on this row's scores x = q.k / temp; "
                    "p = 2 with the default coefficients is always positive, p = 1 needs "
                    "1 + x > 0 (use norm = maxnorm with lim <= 1)", i, den, f);
}

/* O rows i0 .. i0 + nr - 1 = numerators / denominators of out (nr x dv1).  Adding +0.0 turns a
 * -0 into +0, so that not even the sign of a zero output depends on masked terms. */
static int finish_rows(const fast_state *st, size_t i0, size_t nr, double *O)
{
    size_t dv = st->dv, dv1 = st->dv1;
    for (size_t a = 0; a < nr; a++) {
        const double *r = st->out + a * dv1;
        double den = r[dv];
        if (!(den > 0.0) || !isfinite(den))
            return bad_denominator(st, i0 + a, den);
        double *o = O + (i0 + a) * dv;
        int finite = 1;
        for (size_t c = 0; c < dv; c++) {
            o[c] = r[c] / den + 0.0;
            finite &= isfinite(o[c]);
        }
        if (!finite)
            return ATTN_ERR(ATTN_ENONFINITE, "fast: row %zu: a numerator sum_j f(x_ij) v_j "
                            "overflows (denominator %g); use norm = maxnorm, or a larger temp",
                            i0 + a, den);
    }
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Apply.
 */
static int apply_bidir(fast_state *st, const attn_problem *pb, const double *Q, const double *K,
                       const double *V, double *O)
{
    size_t C = st->C, F = st->F, dv1 = st->dv1;
    stats_begin(st, &st->qs, Q, pb->n);
    stats_begin(st, &st->ks, K, pb->m);
    for (size_t j0 = 0; j0 < pb->m; j0 += C) {
        size_t nc = pb->m - j0 < C ? pb->m - j0 : C;
        stats_rows(st, &st->ks, K, j0, nc, st->kh);
        features_key(st, st->kh, nc, st->phi);
        load_values(st, V, j0, nc);
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int) F, (int) dv1, (int) nc, 1.0,
                    st->phi, (int) F, st->vc, (int) dv1, j0 == 0 ? 0.0 : 1.0, st->S, (int) dv1);
    }
    for (size_t i0 = 0; i0 < pb->n; i0 += C) {
        size_t nc = pb->n - i0 < C ? pb->n - i0 : C;
        stats_rows(st, &st->qs, Q, i0, nc, st->qh);
        features_query(st, st->qh, nc, st->phi);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) nc, (int) dv1, (int) F, 1.0,
                    st->phi, (int) F, st->S, (int) dv1, 0.0, st->out, (int) dv1);
        int status = finish_rows(st, i0, nc, O);
        if (status != ATTN_OK)
            return status;
    }
    return ATTN_OK;
}

static int apply_causal(fast_state *st, const attn_problem *pb, const double *Q, const double *K,
                        const double *V, double *O)
{
    size_t n = pb->n, C = st->C, F = st->F, d = st->d, dv1 = st->dv1;
    stats_begin(st, &st->qs, Q, n);
    stats_begin(st, &st->ks, K, n);
    for (size_t c0 = 0; c0 < n; c0 += C) {
        size_t nc = n - c0 < C ? n - c0 : C;
        stats_rows(st, &st->qs, Q, c0, nc, st->qh);
        stats_rows(st, &st->ks, K, c0, nc, st->kh);
        load_values(st, V, c0, nc);
        /* The chunk's own block: weights on and below the diagonal, exact zeros above. */
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int) nc, (int) nc, (int) d,
                    st->invT, st->qh, (int) d, st->kh, (int) d, 0.0, st->X, (int) nc);
        for (size_t a = 0; a < nc; a++) {
            double *x = st->X + a * nc;
            for (size_t b = 0; b <= a; b++)
                x[b] = score(st, x[b]);
            for (size_t b = a + 1; b < nc; b++)
                x[b] = 0.0;
        }
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) nc, (int) dv1, (int) nc, 1.0,
                    st->X, (int) nc, st->vc, (int) dv1, 0.0, st->out, (int) dv1);
        /* The earlier chunks through the state. */
        if (c0 > 0) {
            features_query(st, st->qh, nc, st->phi);
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) nc, (int) dv1, (int) F,
                        1.0, st->phi, (int) F, st->S, (int) dv1, 1.0, st->out, (int) dv1);
        }
        int status = finish_rows(st, c0, nc, O);
        if (status != ATTN_OK)
            return status;
        if (c0 + nc < n) {
            features_key(st, st->kh, nc, st->phi);
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int) F, (int) dv1, (int) nc,
                        1.0, st->phi, (int) F, st->vc, (int) dv1, c0 == 0 ? 0.0 : 1.0, st->S,
                        (int) dv1);
        }
    }
    return ATTN_OK;
}

static int fast_apply(attn_plan *plan, const double *Q, const double *K, const double *V,
                      double *O)
{
    fast_state *st = plan->state;
    const attn_problem *pb = &plan->problem;
    return pb->causal ? apply_causal(st, pb, Q, K, V, O) : apply_bidir(st, pb, Q, K, V, O);
}

/* ---------------------------------------------------------------------------------------------
 * Materialize and target.
 */

/* Qt (n x d) = q^, Kt (m x d) = k^, the whole operands normalised in one pass each. */
static void normalise_all(fast_state *st, const attn_problem *pb, const double *Q, const double *K,
                          double *Qt, double *Kt)
{
    stats_begin(st, &st->qs, Q, pb->n);
    stats_rows(st, &st->qs, Q, 0, pb->n, Qt);
    stats_begin(st, &st->ks, K, pb->m);
    stats_rows(st, &st->ks, K, 0, pb->m, Kt);
}

/* A_ij = f(x_ij) / sum_j' f(x_ij') with x_ij = q^_i . k^_j / T evaluated entry by entry. */
static int fast_materialize(attn_plan *plan, const double *Q, const double *K, const double *V,
                            double *A)
{
    fast_state *st = plan->state;
    const attn_problem *pb = &plan->problem;
    size_t n = pb->n, m = pb->m, d = pb->d;
    double *Qt = calloc(n * d, sizeof *Qt), *Kt = calloc(m * d, sizeof *Kt);
    int status = ATTN_OK;
    if (Qt == NULL || Kt == NULL) {
        status = ATTN_ERR(ATTN_ENOMEM, "fast: materialize: normalised %zu x %zu and %zu x %zu",
                          n, d, m, d);
        goto done;
    }
    normalise_all(st, pb, Q, K, Qt, Kt);
    for (size_t i = 0; i < n; i++) {
        size_t jend = pb->causal ? i + 1 : m;
        double *row = A + i * m, sum = 0.0;
        for (size_t j = 0; j < jend; j++) {
            double dot = 0.0;
            for (size_t c = 0; c < d; c++)
                dot += Qt[i * d + c] * Kt[j * d + c];
            row[j] = score(st, dot * st->invT);
            sum += row[j];
        }
        for (size_t j = jend; j < m; j++)
            row[j] = 0.0;
        if (!(sum > 0.0) || !isfinite(sum)) {
            status = bad_denominator(st, i, sum);
            goto done;
        }
        for (size_t j = 0; j < jend; j++)
            row[j] /= sum;
    }
done:
    free(Qt);
    free(Kt);
    return status;
}

static int fast_target(attn_plan *plan, const double *Q, const double *K, double *Qt, double *Kt,
                       double *scale)
{
    fast_state *st = plan->state;
    normalise_all(st, &plan->problem, Q, K, Qt, Kt);
    *scale = st->invT;
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Cost.
 */
static void fast_cost(const attn_plan *plan, attn_cost *cost)
{
    const fast_state *st = plan->state;
    const attn_problem *pb = &plan->problem;
    double F = (double) st->F, dv1 = (double) st->dv1, d = (double) st->d;
    double n = (double) pb->n, m = (double) pb->m;
    /* Normalisation (a norm and a scaling per row, twice with center) and the division. */
    double flops = (st->norm == NORM_NONE ? 0.0 : (st->norm == NORM_CENTER ? 7.0 : 4.0) * d *
                    (n + m)) + n * (double) st->dv;
    if (!pb->causal) {
        /* Features (one product each, two on the query side) and the two state products. */
        flops += 3.0 * F * (n + m) + 2.0 * F * dv1 * (n + m);
    } else {
        for (size_t c0 = 0; c0 < pb->n; c0 += st->C) {
            double nc = (double) (pb->n - c0 < st->C ? pb->n - c0 : st->C);
            flops += 2.0 * nc * nc * d + 2.0 * nc * (nc + 1.0) + 2.0 * nc * nc * dv1;
            if (c0 > 0)
                flops += 2.0 * nc * F + 2.0 * nc * F * dv1;
            if (c0 + st->C < pb->n)
                flops += nc * F + 2.0 * nc * F * dv1;
        }
    }
    cost->flops = flops;
    cost->exps = 0.0;
}

const attn_method attn_method_fast = {
    .id = "fast",
    .summary = "FAST / Fastmax: attention with the polynomial score a0 + a1 x + a2 x^2 of "
               "normalised q.k, factorised to O(n d^(p+1))",
    .reference = "Gerami, Hoover, Dulepet, Duraiswami, FAST: Factorizable Attention for Speeding "
                 "up Transformers, arXiv:2402.07901 (2024)",
    .caps = ATTN_CAN_CAUSAL | ATTN_CAN_BIDIR | ATTN_CAN_RECT | ATTN_ROW_STOCHASTIC,
    .params = fast_params,
    .budget = "p",
    .init = fast_init,
    .fini = fast_fini,
    .apply = fast_apply,
    .materialize = fast_materialize,
    .cost = fast_cost,
    .exact_limit = NULL,
    .target = fast_target,
};
