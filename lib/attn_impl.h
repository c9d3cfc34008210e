/* attn_impl.h — internals of libattn: the method table, the plan, and the shared kernels every
 * method builds on.  Included only by files under lib/.
 */
#ifndef ATTN_IMPL_H
#define ATTN_IMPL_H

#include "attn.h"

/* ---------------------------------------------------------------------------------------------
 * The method table.  A method is one file in lib/methods/ defining `const attn_method attn_method_<id>`
 * and one line ATTN_METHOD(id) in lib/methods.def.
 */
struct attn_method {
    const char *id;            /* permanent id: "band" */
    const char *summary;       /* one line */
    const char *reference;     /* the paper */
    unsigned caps;             /* ATTN_CAN_CAUSAL | ATTN_CAN_BIDIR | ... */
    const attn_param *params;  /* terminated by { 0 } */
    const char *budget;        /* name of the budget parameter, or NULL */
    const char *causal_note;   /* for a method without ATTN_CAN_CAUSAL: why (ends the refusal
                                  message), or NULL */

    /* Validate the parameters against plan->problem (ATTN_EPARAM naming the parameter), build the
     * method's structure from shapes and parameters only, and allocate all scratch apply needs
     * (store it in plan->state and add its size to plan->bytes).  A parameter whose default lies
     * outside its range means "chosen from the problem": init replaces it in plan->values by the
     * value it chose, and the canonical spec records that.  Required. */
    int (*init)(attn_plan *plan);
    /* Free what init allocated; must cope with a half-built state.  NULL when init allocates
     * nothing beyond a single calloc'd plan->state (which plan.c frees). */
    void (*fini)(attn_plan *plan);
    /* O = attention of (Q, K, V); inputs already checked finite.  Never allocates.  Required. */
    int (*apply)(attn_plan *plan, const double *Q, const double *K, const double *V, double *O);
    /* A = the n x m matrix apply uses.  NULL: the generic fallback applies the method to blocks of
     * the identity (valid when the method is linear in V with weights independent of V). */
    int (*materialize)(attn_plan *plan, const double *Q, const double *K, const double *V,
                       double *A);
    /* Analytic cost of one apply.  NULL: flops unknown (reported as NaN). */
    void (*cost)(const attn_plan *plan, attn_cost *cost);
    /* Set values (preset to the defaults) to parameters at which the method equals exact attention
     * on problem.  NULL: no exact limit. */
    int (*exact_limit)(const attn_problem *problem, double *values);
    /* For a method that is a different attention function rather than an approximation of the
     * problem's softmax (FAST's polynomial of normalised scores): write Qt (n x d), Kt (m x d) and
     * *scale such that exact softmax attention of (Qt, Kt, V) at *scale, under the problem's mask,
     * is the softmax the method truncates (same normalised inputs, same temperature).  The sweep
     * reports the method's error against it beside its error against the problem's softmax.
     * NULL: the method approximates the problem's own softmax. */
    int (*target)(attn_plan *plan, const double *Q, const double *K, double *Qt, double *Kt,
                  double *scale);
};

/* The plan every method receives.  Methods read problem and values and own state. */
struct attn_plan {
    const attn_method *method;
    attn_problem problem;      /* scale resolved */
    double *values;            /* one per parameter, table order (choice parameters: index) */
    size_t nparams;
    char *spec;                /* canonical spec */
    void *state;               /* the method's structure and scratch */
    double bytes;              /* scratch bytes held (reported by attn_plan_cost) */
};

/* Index of a parameter in the method's table, or -1. */
long attn_param_index(const attn_method *method, const char *name);
/* The value of parameter name (which must exist: a programming error otherwise returns NAN). */
double attn_plan_value(const attn_plan *plan, const char *name);

/* calloc that records its size in plan->bytes; NULL on failure (raise ATTN_ENOMEM yourself). */
void *attn_plan_calloc(attn_plan *plan, size_t count, size_t size);

/* ---------------------------------------------------------------------------------------------
 * The streaming partial-softmax accumulator (lib/core/softmax.c).
 *
 * For each of `rows` query rows it keeps the running maximum logit mx, the running sum of
 * exp(logit - mx) and the unnormalized output out = sum_j exp(logit_j - mx) v_j (dv columns).
 * Blocks of logits are added in any order and partial accumulators over disjoint key sets merge
 * in any order; finishing divides by the sum.  Rows that saw no finite logit finish as zero output
 * with lse = -INFINITY.  Every method merges partial softmax results through these functions.
 */
typedef struct attn_acc {
    size_t rows;    /* query rows held */
    size_t dv;      /* output columns */
    double *mx;     /* [rows] running maximum logit (-INFINITY: nothing seen) */
    double *sum;    /* [rows] running sum of exp(logit - mx) */
    double *out;    /* [rows][dv] running unnormalized output */
} attn_acc;

/* Point acc at caller-provided storage (rows + rows + rows*dv doubles from buf) and reset it. */
void attn_acc_init(attn_acc *acc, size_t rows, size_t dv, double *buf);
size_t attn_acc_doubles(size_t rows, size_t dv);
void attn_acc_reset(attn_acc *acc);

/* Add a block of logits: rows r0 .. r0+nr-1 of acc see keys whose logits are S (nr x nc, leading
 * dimension lds; -INFINITY marks a masked entry) and whose values are V (nc x dv, leading dimension
 * ldv).  S is overwritten by the weights exp(S - new max).  Uses one dgemm for the output update. */
void attn_acc_add(attn_acc *acc, size_t r0, size_t nr, double *S, size_t lds, const double *V,
                  size_t ldv, size_t nc);

/* Add one weighted term to row r: a key with logit `logit` and value row v (dv entries), with an
 * extra multiplicity weight w >= 0 (the key stands for w identical keys: log w is added to the
 * logit).  For coarse/pooled contributions. */
void attn_acc_add_one(attn_acc *acc, size_t r, double logit, double w, const double *v);

/* Merge the partial result (mx, sum, out row) of another accumulator's row rs into row r of acc. */
void attn_acc_merge_row(attn_acc *acc, size_t r, const attn_acc *src, size_t rs);
/* Merge every row of src into the same row of acc (same rows and dv). */
void attn_acc_merge(attn_acc *acc, const attn_acc *src);

/* O (nr x dv, leading dimension ldo) = out / sum for rows r0..r0+nr-1; lse (may be NULL) gets
 * mx + log(sum).  Rows with nothing seen give zeros and lse = -INFINITY. */
void attn_acc_finish(const attn_acc *acc, size_t r0, size_t nr, double *O, size_t ldo,
                     double *lse);

/* x[i] <- exp(x[i] - shift) for i < count and return their sum: the hot loop of every softmax.
 * Vectorized; within 2 ulp of libm's exp for arguments in [-708, 709].  Arguments below -708
 * (including -INFINITY) give exactly 0: after the row maximum is subtracted such a weight is below
 * 1e-307 of the row's largest, far under the rounding of the row sum. */
double attn_vexp_sum(double *x, size_t count, double shift);
/* The largest of x[0..count) (-INFINITY when count = 0). */
double attn_row_max(const double *x, size_t count);

/* S (nr x nc, leading dimension lds) = scale * Qblk Kblk^T with Qblk nr x d and Kblk nc x d. */
void attn_logits(const double *Qblk, size_t nr, const double *Kblk, size_t nc, size_t d,
                 double scale, double *S, size_t lds);

/* Mask a logit block to a window: entry (a, b) of the block is query i = q0 + a and key
 * j = k0 + b; it is set to -INFINITY unless i - before <= j <= i + after.  Causal attention is
 * before = SIZE_MAX, after = 0; a sliding window of half-width w is before = after = w. */
void attn_mask_window(double *S, size_t lds, size_t q0, size_t nr, size_t k0, size_t nc,
                      size_t before, size_t after);

/* The methods' shared streaming kernel: O (rows q0..q0+nr-1) = softmax over the keys
 * k_lo <= j < k_hi allowed by the window (before, after) of scale Q K^T, times V.  Tiles the keys
 * by ATTN_TILE_K, forms logits with dgemm, masks only the tiles the window cuts, and merges the
 * tiles with acc (nr rows).  S is scratch of nr x ATTN_TILE_K doubles. */
void attn_stream_rows(const attn_problem *pb, const double *Q, const double *K, const double *V,
                      size_t q0, size_t nr, size_t k_lo, size_t k_hi, size_t before, size_t after,
                      attn_acc *acc, double *S, double *O);

/* Block sizes of the streaming kernels (rows of a query tile, keys of a key tile). */
#define ATTN_TILE_Q 64
#define ATTN_TILE_K 256

#endif /* ATTN_IMPL_H */
