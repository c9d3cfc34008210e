/* linear.h — the shared kernel of normalised linear attention (performer, linear_elu).
 *
 * Given positive feature maps Phi_Q(q) and Phi_K(k) in R^F, normalised linear attention is
 *     O_i = sum_{j in C(i)} (Phi_Q(q_i).Phi_K(k_j)) v_j / (eps + sum_{j in C(i)} Phi_Q(q_i).Phi_K(k_j))
 * with C(i) every key (bidirectional) or the keys j <= i (causal), i.e. O = diag(den)^-1 A V with
 * A = Phi_Q(Q) Phi_K(K)^T under the mask and den = A 1 + eps.
 *
 * A method describes its features by an attn_linear_map: callbacks that fill a chunk of feature
 * rows from a chunk of input rows.  The kernel asks for chunks as it goes, so neither feature
 * matrix is ever held whole (scratch O(chunk F + F dv), independent of n).  Exponential features
 * (Performer) would overflow if written out, so a key map may return each row as
 *     Phi_K(k_j) = exp(lk_j) P_j
 * with P_j stored (entries in [0, 1]) and the log-scale lk_j apart.  The kernel then weighs key j
 * for query i by exp(lk_j - R_i) P_j, where R_i = max_{j in C(i)} lk_j: the largest key gets
 * factor 1, no factor exceeds 1, and the common factor exp(R_i) cancels between numerator and
 * denominator (it is not applied to eps: a scaled map should use eps = 0).  Causal, R_i is the
 * running maximum over keys j <= i, so row i never sees a later key, bit for bit.
 *
 * Apply.  Bidirectional: one state S = [Phi_K(K)^T V, Phi_K(K)^T 1] (F x (dv + 1)) built chunk by
 * chunk of keys (rescaled when the running maximum of lk rises), then Phi_Q(Q_c) S per chunk of
 * queries.  Causal: position-aligned chunks of ATTN_LINEAR_CHUNK rows; per chunk c,
 * G = Phi_Q(Q_c) Phi_K(K_c)^T masked to its lower triangle (and scaled), G [V_c, 1], plus
 * Phi_Q(Q_c) S for the earlier chunks, then S += Phi_K(K_c)^T [V_c, 1].  Every product is one
 * cblas_dgemm.  Chunks are placed by position, never by data, and masked entries are exact zeros,
 * so causal row i depends only on rows <= i bit for bit.
 *
 * Cost: 4 n F (dv + 1) flops for the state and its use (m keys, n queries), causal plus about
 * 2 n chunk (F + dv + 1) for the diagonal blocks, plus whatever the maps cost.
 */
#ifndef ATTN_LINEAR_H
#define ATTN_LINEAR_H

#include <stddef.h>

#include "attn_impl.h"

/* Rows of a causal chunk, and of a bidirectional chunk (there it only batches the dgemms).  The
 * causal diagonal blocks cost 2 chunk (F + dv + 1) flops per row against 4 F (dv + 1) for the
 * state, so the chunk stays small: n = 16384, d = dv = 64, one thread, performer with 256
 * features: chunk 32: 80.6 ms, 48: 80.4, 64: 84.7, 128: 96.9; linear_elu: 17.8, 19.1, 20.2,
 * 26.8 ms. */
#define ATTN_LINEAR_CHUNK 32
#define ATTN_LINEAR_CHUNK_BIDIR 256

typedef struct attn_linear_map {
    size_t F;        /* features per row */
    int scaled;      /* 1: the key map returns log-scales lk (see above); 0: lk is NULL */
    const void *ctx; /* borrowed: passed to the callbacks */
    /* Phi (rows x F) = Phi_Q of the rows x d queries X. */
    void (*query)(const void *ctx, const double *X, size_t rows, double *Phi);
    /* Phi (rows x F) = P of the rows x d keys X; lk (rows, NULL unless scaled) their log-scales. */
    void (*key)(const void *ctx, const double *X, size_t rows, double *Phi, double *lk);
} attn_linear_map;

/* Doubles of scratch attn_linear_apply needs for problem pb and F features (the caller allocates
 * them in init). */
size_t attn_linear_scratch_doubles(const attn_problem *pb, size_t F);

/* O (n x dv) = normalised linear attention of (Q, K, V) under pb's mask with the features of map,
 * eps >= 0 added to each denominator.  scratch holds attn_linear_scratch_doubles(pb, map->F).
 * Allocates nothing.  A denominator that is not positive and finite (features that underflow
 * together to 0 for a row, or overflow) is ATTN_EINVAL naming the method (who), the row and the
 * value; O is then partly written. */
int attn_linear_apply(const attn_linear_map *map, const attn_problem *pb, const double *Q,
                      const double *K, const double *V, double eps, double *O, double *scratch,
                      const char *who);

/* A (n x m) = the matrix attn_linear_apply applies: A_ij = w_ij / (eps + sum_j w_ij) with
 * w_ij = Phi_Q(q_i).P_j exp(lk_j - R_i) under the mask.  Allocates O((n + m) F) (analysis path). */
int attn_linear_materialize(const attn_linear_map *map, const attn_problem *pb, const double *Q,
                            const double *K, double eps, double *A, const char *who);

/* Adds to cost the kernel's flops on problem pb with F features (the maps' own cost is the
 * caller's): the state, its use and, causal, the diagonal blocks. */
void attn_linear_cost(const attn_problem *pb, size_t F, attn_cost *cost);

/* P (rows x M) = alpha X W^T with X rows x d and W M x d (row-major): the random projection of
 * the Performer's features, here so that the method's file needs no cblas.h next to GSL. */
void attn_linear_project(const double *X, size_t rows, size_t d, const double *W, size_t M,
                         double alpha, double *P);

/* The Performer's random matrix W (features x d, row-major) of a performer plan, borrowed: for
 * tests that rebuild its features independently.  ATTN_EINVAL for a plan of another method. */
int attn_performer_matrix(const attn_plan *plan, const double **W, size_t *features, size_t *d);

#endif /* ATTN_LINEAR_H */
