/* testutil.h — small helpers shared by the Criterion suites. */
#ifndef ATTN_TESTUTIL_H
#define ATTN_TESTUTIL_H

#include <stddef.h>

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

#endif
