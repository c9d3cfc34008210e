/* lsh_testutil.h — checks shared by the suites of the two sorted-LSH sampling methods (kdeformer
 * and hyperattention: test_kdeformer.c, test_hyperattention.c). */
#ifndef ATTN_LSH_TESTUTIL_H
#define ATTN_LSH_TESTUTIL_H

#include <stddef.h>

#include "attn.h"

/* One plan of spec, materialized (A, n x m) and applied (O, n x dv): every entry of A nonnegative
 * and zero above the diagonal when causal, every row summing to one within 4 m eps, and
 * |A V - O|_F / |O|_F at most 64 m eps; with check_finite, first every entry of O finite.  Any
 * failure fails the test, naming spec and what (the data). */
void lsh_tu_check_matrix(const char *spec, const attn_problem *pb, const double *Q,
                         const double *K, const double *V, const char *what, int check_finite);

/* Unbiasedness of the numerator and normaliser over seeds.  lsh_plan_sums gives both rescaled by
 * e^{-lse_i} (lse_i the exact log row sum from the long-double reference), so the normaliser's
 * expectation is 1 and the numerator's is the exact output row.  The rows of one apply share the
 * draws, so the test statistics are row averages per seed (one number per seed and column; the
 * seeds are independent): z = (mean over seeds - expected) / (sd / sqrt(seeds)). */
typedef struct lsh_tu_unbiased {
    double z_den;     /* z of the row-averaged normaliser */
    double z_num_max; /* largest |z| of the row-averaged numerator columns */
    double mean_den;  /* mean over seeds of the row-averaged den_i - 1 */
} lsh_tu_unbiased;

/* lsh_tu_check_matrix of each spec on random inputs (d = 13, dv = 7, seeds seed0 + shape) at the
 * shapes n = m = 1, 37, 300, 1000 (both masks) and 70 x 131, 131 x 70 (bidirectional). */
void lsh_tu_check_matrix_shapes(const char *const *specs, size_t nspecs, unsigned long seed0,
                                int check_finite);
/* lsh_tu_check_matrix of ocr_spec on the bundled OCR head (layer 1, head 3, bidirectional) and of
 * lm_spec on the language model's head (layer 2, head 0, causal). */
void lsh_tu_check_matrix_real(const char *ocr_spec, const char *lm_spec, int check_finite);

/* The statistics above over the plans "base,seed=first_seed + s", s in [0, seeds). */
lsh_tu_unbiased lsh_tu_unbiased_z(const char *base, const attn_problem *pb, const double *Q,
                                  const double *K, const double *V, size_t seeds,
                                  size_t first_seed);
/* Mean over seeds of tu_error_vs_reference for "base,samples=samples,seed=first_seed + s",
 * s in [0, seeds). */
double lsh_tu_mean_error(const char *base, size_t samples, const attn_problem *pb,
                         const double *Q, const double *K, const double *V, size_t seeds,
                         size_t first_seed);

#endif
