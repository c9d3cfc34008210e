/* testutil.h — small helpers shared by the Criterion suites. */
#ifndef ATTN_TESTUTIL_H
#define ATTN_TESTUTIL_H

#include <stddef.h>

#include "attn.h"
#include "attn_io.h"

/* calloc that fails the test when memory runs out. */
double *tu_alloc(size_t count);
/* Fill x with deterministic standard normal draws (xorshift + Box-Muller), times scale. */
void tu_fill_gauss(double *x, size_t count, unsigned long seed, double scale);
/* ||a - b||_F / ||b||_F over count entries (||a - b|| when b is zero). */
double tu_rel_fro(const double *a, const double *b, size_t count);
double tu_max_abs_diff(const double *a, const double *b, size_t count);
/* C (n x c) = A (n x k) B (k x c), naive, row-major. */
void tu_matmul(const double *A, const double *B, double *C, size_t n, size_t k, size_t c);
/* Path of a file under the source tree ($ATTN_SRCDIR, default ".") or the build tree
 * ($ATTN_BUILDDIR, default "."): a static buffer per call site is not needed, the result is
 * malloc'd and leaked deliberately (tests are short-lived). */
char *tu_src_path(const char *relative);
char *tu_build_path(const char *relative);
/* 1 when the last error message contains needle (prints the message when not, for the log). */
int tu_error_has(const char *needle);

/* Inputs of a square or rectangular problem: Q (n x d) standard normal times 2.385 (logits spread
 * over several units, so rows are far from uniform), K (m x d) and V (m x dv) standard normal,
 * drawn with seeds seed, seed + 1 and seed + 2; each tu_alloc'd, for the caller to free. */
void tu_random_qkv(size_t n, size_t m, size_t d, size_t dv, unsigned long seed, double **Q,
                   double **K, double **V);
/* A plan of spec for pb; a failed create fails the test, naming spec and attn_last_error(). */
attn_plan *tu_plan(const char *spec, const attn_problem *pb);
/* One plan of spec, applied (O, n x dv) or materialized (A, n x m), then destroyed: the result is
 * tu_alloc'd for the caller to free; any failure fails the test, naming spec and the error. */
double *tu_apply(const char *spec, const attn_problem *pb, const double *Q, const double *K,
                 const double *V);
double *tu_materialize(const char *spec, const attn_problem *pb, const double *Q, const double *K,
                       const double *V);
/* Exact attention from the long-double reference (attn_reference): R (n x dv), tu_alloc'd. */
double *tu_reference(const attn_problem *pb, const double *Q, const double *K, const double *V);
/* ||tu_apply(spec) - tu_reference||_F / ||tu_reference||_F on these inputs. */
double tu_error_vs_reference(const char *spec, const attn_problem *pb, const double *Q,
                             const double *K, const double *V);
/* tu_error_vs_reference at most tol, else fail naming spec, what (data or case, may be NULL), n,
 * causal, the error and tol. */
void tu_expect_exact(const char *spec, const attn_problem *pb, const double *Q, const double *K,
                     const double *V, double tol, const char *what);
/* Plan creation of spec on pb must fail with status, leave the plan NULL, and give a message
 * containing needle; otherwise the test fails, naming spec, the status and the message. */
void tu_expect_refused(const char *spec, const attn_problem *pb, int status, const char *needle);
/* A bundled data file (relative to the source tree, as tu_src_path), its first rows tokens of every
 * head (0: all); a failed read fails the test, naming the file and the error.  The caller destroys
 * it with attn_inputs_destroy.  tu_load_head also points q, k, v at one head of it. */
attn_inputs *tu_read_inputs(const char *file, size_t rows);
attn_inputs *tu_load_head(const char *file, size_t layer, size_t head, const double **q,
                          const double **k, const double **v);
/* The problem of one head of in, all its tokens (n = m = in->n), its d, dv and scale, and causal
 * as given (the file's attribute or either form). */
attn_problem tu_inputs_problem(const attn_inputs *in, int causal);

#endif
