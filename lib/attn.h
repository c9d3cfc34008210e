/* attn.h — the public interface of libattn.
 *
 * libattn computes exact softmax attention O = softmax(s Q K^T [+ causal mask]) V and, on the same
 * inputs, the approximations of the efficient-attention literature, behind one plan interface:
 *
 *     attn_problem pb = { .n = n, .m = n, .d = d, .dv = d, .causal = 1 };
 *     attn_plan *plan = NULL;
 *     int status = attn_plan_create(&plan, "band:w=64", &pb);     checks, precomputes, allocates
 *     if (status == ATTN_OK)
 *         status = attn_plan_apply(plan, Q, K, V, O);              allocates nothing
 *     attn_plan_destroy(plan);                                     NULL is fine
 *
 * Conventions.  Matrices are dense, row-major, contiguous doubles: Q is n x d, K is m x d, V is m x dv,
 * O is n x dv and an attention matrix A is n x m.  The scale s defaults to 1/sqrt(d).  Causal attention
 * (query i sees keys j <= i) needs m == n.  Every function returns a status from the list below;
 * attn_last_error() then gives a message naming the offending value.  Nothing in libattn prints,
 * exits or aborts.
 */
#ifndef ATTN_H
#define ATTN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
 * Statuses.  One list; the enum, attn_status_name() and attn_status_text() all expand it.
 */
#define ATTN_STATUS_LIST(X)                                                                        \
    X(ATTN_OK, 0, "success")                                                                       \
    X(ATTN_EINVAL, 1, "invalid argument")                                                          \
    X(ATTN_ESHAPE, 2, "shape mismatch")                                                            \
    X(ATTN_EUNSUP, 3, "not supported by this method")                                              \
    X(ATTN_ENOMETHOD, 4, "unknown method")                                                         \
    X(ATTN_EPARAM, 5, "unknown or out-of-range parameter")                                         \
    X(ATTN_ENONFINITE, 6, "NaN or Inf in an input")                                                \
    X(ATTN_ENOMEM, 7, "out of memory")                                                             \
    X(ATTN_ELAPACK, 8, "LAPACK routine failed")                                                    \
    X(ATTN_EIO, 9, "input/output error")                                                           \
    X(ATTN_EFORMAT, 10, "file format error")                                                       \
    X(ATTN_ECONFIG, 11, "configuration error")                                                     \
    X(ATTN_ENOCONV, 12, "iteration did not converge")

enum attn_status {
#define ATTN_STATUS_ENUM(id, code, text) id = code,
    ATTN_STATUS_LIST(ATTN_STATUS_ENUM)
#undef ATTN_STATUS_ENUM
};

/* The symbolic name ("ATTN_ESHAPE") and the short text ("shape mismatch") of a status. */
const char *attn_status_name(int status);
const char *attn_status_text(int status);

/* The message of the last error raised in this thread ("" when none).  The buffer is thread-local
 * and valid until the next error in the same thread. */
const char *attn_last_error(void);

/* Raise an error: store the printf-formatted message as this thread's last error and return status.
 * attn_error_context() prefixes the current message with more context ("reading x.h5: " + old). */
int attn_error_set(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int attn_error_context(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void attn_error_clear(void);

#define ATTN_ERR(status, ...) attn_error_set((status), __VA_ARGS__)
/* Evaluate expr; on failure add context to its message and return its status from the caller. */
#define ATTN_TRY(expr, ...)                                                                        \
    do {                                                                                           \
        int attn_try_status_ = (expr);                                                             \
        if (attn_try_status_ != ATTN_OK)                                                           \
            return attn_error_context(attn_try_status_, __VA_ARGS__);                              \
    } while (0)

/* ---------------------------------------------------------------------------------------------
 * Problems.
 */
typedef struct attn_problem {
    size_t n;     /* queries (rows of Q and O) */
    size_t m;     /* keys (rows of K and V) */
    size_t d;     /* head dimension of Q and K */
    size_t dv;    /* columns of V and O */
    int causal;   /* 1: query i sees keys j <= i (needs m == n); 0: every key */
    double scale; /* logit scale s; 0 means 1/sqrt(d) */
} attn_problem;

/* Check a problem: n, m, d, dv >= 1, causal in {0, 1}, m == n when causal, scale finite and >= 0.
 * Returns ATTN_OK, ATTN_ESHAPE or ATTN_EINVAL.  O(1). */
int attn_problem_check(const attn_problem *problem);

/* The scale actually used: problem->scale, or 1/sqrt(d) when it is 0. */
double attn_problem_scale(const attn_problem *problem);

/* Check that the rows x cols matrix X holds only finite numbers.  On failure returns ATTN_ENONFINITE
 * with a message naming the operand, the row and column, and the value ("K: row 3, column 7 is nan").
 * O(rows cols). */
int attn_check_finite(const char *operand, const double *X, size_t rows, size_t cols);

/* ---------------------------------------------------------------------------------------------
 * Methods and their parameters (the registry, lib/methods.def).
 */
typedef struct attn_method attn_method;

/* One parameter of a method.  Numeric parameters hold a double in [lo, hi] (an integer when
 * .integer is set).  Choice parameters list their names in .choices (NULL-terminated) and hold the
 * index of the chosen name; their default .value is an index too. */
typedef struct attn_param {
    const char *name;                /* as written in specs: "w" */
    double value;                    /* default */
    double lo;                       /* smallest allowed value */
    double hi;                       /* largest allowed value (INFINITY: unbounded) */
    int integer;                     /* 1: the value must be an integer */
    const char *const *choices;      /* NULL, or the names of a choice parameter */
    const char *doc;                 /* one line: meaning and units */
} attn_param;

/* Capability bits of a method. */
#define ATTN_CAN_CAUSAL (1u << 0)   /* supports causal problems */
#define ATTN_CAN_BIDIR (1u << 1)    /* supports bidirectional problems */
#define ATTN_CAN_RECT (1u << 2)     /* supports m != n (bidirectional) */
#define ATTN_ROW_STOCHASTIC (1u << 3) /* rows of its matrix are nonnegative and sum to one */
#define ATTN_RANDOM (1u << 4)       /* draws random numbers (has a "seed" parameter) */
#define ATTN_BUDGET_MONOTONE (1u << 5) /* its matrix error (row TV) never rises with the budget
                                          (provably, as for a window); otherwise only the largest
                                          budget is guaranteed to do no worse than the smallest */
#define ATTN_WEIGHTS_DEPEND_ON_V (1u << 6) /* its weights depend on V (importance sampling by value
                                          norms): not linear in V, and it materializes the matrix
                                          it applied to the V given (the generic identity-block
                                          materialization does not apply) */

size_t attn_method_count(void);
const attn_method *attn_method_at(size_t index);          /* NULL when index >= count */
const attn_method *attn_method_find(const char *id);     /* NULL when unknown */
const char *attn_method_name(const attn_method *method);  /* the permanent id: "band" */
const char *attn_method_summary(const attn_method *method);
const char *attn_method_reference(const attn_method *method);
unsigned attn_method_caps(const attn_method *method);
/* The parameter table, terminated by an entry with .name == NULL. */
const attn_param *attn_method_params(const attn_method *method);
/* The name of the parameter that trades cost for accuracy ("w"), or NULL when there is none. */
const char *attn_method_budget(const attn_method *method);

/* Write into buf the canonical spec of the method's parameters at which it equals exact attention on
 * problem (e.g. "band:w=1023" for n = 1024).  ATTN_EUNSUP when the method has no exact limit. */
int attn_method_exact_spec(const attn_method *method, const attn_problem *problem, char *buf,
                           size_t len);

/* Print-free listing helper: write a human-readable description of the method (summary, reference,
 * capabilities, parameters with defaults, ranges and docs) into buf.  Returns the length needed. */
size_t attn_method_describe(const attn_method *method, char *buf, size_t len);

/* ---------------------------------------------------------------------------------------------
 * Plans.
 */
typedef struct attn_plan attn_plan;

/* Analytic cost of one apply. */
typedef struct attn_cost {
    double flops;      /* floating-point operations (a multiply-add counts 2) */
    double exps;       /* calls of exp (not included in flops) */
    double bytes;      /* scratch memory the plan holds, bytes */
} attn_cost;

/* Create a plan for spec ("name" or "name:key=value,key=value") on problem.  Parses and validates the
 * parameters (unknown names, out-of-range or non-integer values are ATTN_EPARAM naming the parameter
 * and value), checks the problem against the method's capabilities (ATTN_EUNSUP), precomputes the
 * method's structure and allocates all scratch memory apply needs.  On failure *plan is NULL. */
int attn_plan_create(attn_plan **plan, const char *spec, const attn_problem *problem);

/* O = the method's attention of (Q, K, V), in the method's own cost.  Q is n x d, K is m x d, V is
 * m x dv, O is n x dv (must not alias the inputs).  Checks the inputs are finite (ATTN_ENONFINITE
 * naming operand and index).  Allocates nothing; the same plan on the same inputs gives the same
 * bits.  A plan is not safe to apply from two threads at once (it owns its scratch). */
int attn_plan_apply(attn_plan *plan, const double *Q, const double *K, const double *V, double *O);

/* A = the n x m matrix the method applies, so that A V equals apply's output (for the same V when
 * the method's draws depend on V).  The analysis path: O(n m) memory, may allocate. */
int attn_plan_materialize(attn_plan *plan, const double *Q, const double *K, const double *V,
                          double *A);

/* The softmax a method that is its own attention function truncates (FAST: exact softmax of its
 * normalised q, k at its temperature).  Qt is n x d, Kt is m x d; exact attention of (Qt, Kt, V)
 * at *scale under the problem's mask is that target.  ATTN_EUNSUP when the method approximates the
 * problem's own softmax (attn_plan_has_target() == 0). */
int attn_plan_has_target(const attn_plan *plan);
int attn_plan_target(attn_plan *plan, const double *Q, const double *K, double *Qt, double *Kt,
                     double *scale);

/* The canonical spec: every parameter in table order with its resolved value.  Owned by the plan.
 * attn_plan_create on this string gives a plan with the same bits. */
const char *attn_plan_spec(const attn_plan *plan);
const attn_method *attn_plan_method(const attn_plan *plan);
const attn_problem *attn_plan_problem(const attn_plan *plan);  /* scale resolved */
/* The value of a named parameter of the plan (choice parameters: the index); NAN if unknown. */
double attn_plan_param(const attn_plan *plan, const char *name);
void attn_plan_cost(const attn_plan *plan, attn_cost *cost);
void attn_plan_destroy(attn_plan *plan);

/* ---------------------------------------------------------------------------------------------
 * Specs (exposed for programs that validate before planning).
 */
/* Split a spec into its method and parameter values (defaults filled in).  values must hold one
 * double per parameter of the method.  Returns ATTN_ENOMETHOD or ATTN_EPARAM with a message. */
int attn_spec_parse(const char *spec, const attn_method **method, double *values);
/* Write the canonical spec of method with values into buf; returns the length needed. */
size_t attn_spec_format(const attn_method *method, const double *values, char *buf, size_t len);

/* ---------------------------------------------------------------------------------------------
 * Exact attention kernels (also used by methods).
 */
/* High-precision reference: two passes per row in long double (logits, exps, sums), rounded once.
 * O is n x dv; lse (may be NULL) receives log of the row sums (-INFINITY for an empty row).
 * O(n m (d + dv)) time, O(1) extra memory: for tests and spot checks. */
int attn_reference(const attn_problem *problem, const double *Q, const double *K, const double *V,
                   double *O, double *lse);

/* The exact row-stochastic matrix A = softmax(s Q K^T + mask), n x m, rows subtracting their max. */
int attn_exact_matrix(const attn_problem *problem, const double *Q, const double *K, double *A);

/* ---------------------------------------------------------------------------------------------
 * Metrics (lib/core/metrics.c).  All matrices row-major.
 */
/* Flags of undefined metrics, stored beside their NaN value. */
#define ATTN_KL_INFINITE (1u << 0)   /* some row puts zero mass where exact has mass */
#define ATTN_KL_UNDEFINED (1u << 1)  /* some row has a negative entry */

typedef struct attn_output_errors {
    double rel_fro;       /* ||Oh - O||_F / ||O||_F */
    double rel_spec;      /* ||Oh - O||_2 / ||O||_2 */
    double max_abs;       /* max |Oh - O| */
    double max_abs_rel;   /* max |Oh - O| / max |O| */
} attn_output_errors;

/* Errors of an approximate output Oh against the exact O, both n x dv.  Spectral norms by SVD
 * (LAPACKE_dgesdd) of the n x dv matrices.  O(n dv^2). */
int attn_output_errors_compute(const double *Oh, const double *O, size_t n, size_t dv,
                               attn_output_errors *err);

typedef struct attn_matrix_errors {
    double rel_fro;       /* ||Ah - A||_F / ||A||_F */
    double tv_mean;       /* mean over rows of (1/2) sum_j |Ah_ij - A_ij| */
    double tv_max;        /* max over rows of the same */
    double kl_mean;       /* mean over rows of KL(A_i || Ah_i); NaN when undefined (see flags) */
    unsigned kl_flags;    /* ATTN_KL_INFINITE, ATTN_KL_UNDEFINED */
} attn_matrix_errors;

/* Conventions: terms with A_ij = 0 add nothing to KL; a negative entry in A or Ah makes KL
 * undefined.  ATTN_EINVAL when ||A||_F = 0. */
int attn_matrix_errors_compute(const double *Ah, const double *A, size_t n, size_t m,
                               attn_matrix_errors *err);

/* Spectral norm of an n x c matrix: SVD when n, c <= 4096 (exact to rounding), otherwise
 * Golub-Kahan-Lanczos with full reorthogonalization from a fixed start vector (stops when the
 * estimate changes by less than 1e-10 relative, so it is accurate to about that; close leading
 * singular values converge more slowly).  *iterations (may be NULL) receives the number of Lanczos
 * steps, 0 for SVD.  ATTN_ENOCONV when 100 steps do not converge (*norm still gets the last
 * estimate). */
int attn_spectral_norm(const double *X, size_t n, size_t c, double *norm, int *iterations);

/* Singular values of the n x c matrix X, descending, into sv (min(n, c) entries).  dgesdd, jobz 'N'. */
int attn_singular_values(const double *X, size_t n, size_t c, double *sv);

typedef struct attn_rank_stats {
    double eps_rank;        /* #{sigma_k > eps sigma_1} (relative threshold) */
    double stable_rank;     /* ||X||_F^2 / ||X||_2^2 */
    double effective_rank;  /* exp(entropy of sigma_k / sum sigma), Roy & Vetterli */
} attn_rank_stats;

/* Rank statistics from singular values sv[0..k) (descending) with relative threshold eps.  All
 * zero: eps_rank 0, stable and effective rank NaN. */
void attn_rank_stats_compute(const double *sv, size_t k, double eps, attn_rank_stats *stats);

/* ---------------------------------------------------------------------------------------------
 * Near/far structure of an attention matrix (lib/core/structure.c): how low-rank the part of A
 * away from the diagonal is — the premise of the banded + low-rank (FMMformer) and multilevel (FMM)
 * methods.  Ranks are counted at a relative tolerance tol in two ways: against the piece's own
 * largest singular value (rank_rel: its shape) and against ||A||_2 (rank_abs: what approximating
 * A to tol ||A||_2 needs).
 */
typedef struct attn_offdiag_rank {
    size_t distance;        /* |I - J| in blocks (>= 1) */
    size_t count;           /* blocks at this distance (causal: below the diagonal only) */
    double rank_rel_mean, rank_rel_max;   /* #{sigma > tol sigma_1(block)} */
    double rank_abs_mean, rank_abs_max;   /* #{sigma > tol ||A||_2} */
    double norm_rel_mean;   /* mean ||block||_2 / ||A||_2 */
} attn_offdiag_rank;

/* Ranks of the b x b blocks (I, J), I != J, of the n x n matrix A (rows and columns cut into
 * ceil(n / b) blocks, the last one ragged), grouped by distance |I - J| = 1 .. nb - 1: out[t] is
 * distance t + 1 and *count = nb - 1 entries are written (out must hold ceil(n / b) entries).
 * causal: only blocks below the diagonal (J < I).  norm_A = ||A||_2 (attn_spectral_norm).  Blocks
 * that are all zero have rank 0.  O(n^2 b) time, O(b^2) scratch (allocated). */
int attn_offdiag_ranks(const double *A, size_t n, size_t block, int causal, double tol,
                       double norm_A, attn_offdiag_rank *out, size_t *count);

typedef struct attn_farfield_rank {
    double rank_rel;        /* #{sigma > tol sigma_1(F)} of F = A minus its band */
    double rank_abs;        /* #{sigma > tol ||A||_2} */
    double energy90;        /* smallest r with sum_{k<=r} sigma_k^2 >= 0.90 ||F||_F^2 */
    double energy99;        /* the same at 0.99 */
    double stable_rank;     /* ||F||_F^2 / ||F||_2^2 */
    double norm_rel;        /* ||F||_2 / ||A||_2 */
    double mass;            /* mean row sum of F: the attention mass outside the band */
} attn_farfield_rank;

/* Rank of the far field F = A - B_k(A) of the n x n matrix A, where B_k keeps the entries with
 * |i - j| <= k unrenormalised (FMMformer's decomposition); k = SIZE_MAX removes nothing (F = A).
 * Full SVD: O(n^3) time, n^2 + n doubles of scratch (allocated). */
int attn_farfield_rank_compute(const double *A, size_t n, size_t k, double tol, double norm_A,
                               attn_farfield_rank *out);

/* ---------------------------------------------------------------------------------------------
 * Build and runtime information (provenance).
 */
const char *attn_version(void);          /* package version */
const char *attn_git_describe(void);     /* git describe at configure time, or "unknown" */
const char *attn_configure_args(void);
const char *attn_cc_version(void);
/* The BLAS that runs: "OpenBLAS 0.3.21 ... core Haswell (OPENBLAS_CORETYPE=Haswell preset), 1 thread"
 * or the reference BLAS.  Written into buf; returns buf. */
const char *attn_blas_info(char *buf, size_t len);
int attn_blas_threads(void);

#ifdef __cplusplus
}
#endif
#endif /* ATTN_H */
