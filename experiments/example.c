/* example.c — the README's library example: exact attention and a sliding window on the same
 * random inputs, and how far apart they are.  Built and run by `make check`. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "attn.h"

int main(void)
{
    enum { n = 512, d = 64 };
    attn_problem pb = { .n = n, .m = n, .d = d, .dv = d, .causal = 1 };
    double *Q = malloc(sizeof(double[n][d])), *K = malloc(sizeof(double[n][d]));
    double *V = malloc(sizeof(double[n][d])), *O = malloc(sizeof(double[n][d]));
    double *Ow = malloc(sizeof(double[n][d]));
    for (size_t t = 0; t < (size_t) n * d; t++) {     /* any data will do */
        Q[t] = sin(0.37 * (double) t);
        K[t] = cos(0.11 * (double) t);
        V[t] = sin(0.05 * (double) t + 1.0);
    }
    attn_plan *exact = NULL, *band = NULL;
    int status = attn_plan_create(&exact, "exact", &pb);
    if (status == ATTN_OK)
        status = attn_plan_create(&band, "band:w=64", &pb);
    if (status == ATTN_OK)
        status = attn_plan_apply(exact, Q, K, V, O);
    if (status == ATTN_OK)
        status = attn_plan_apply(band, Q, K, V, Ow);
    if (status != ATTN_OK) {
        fprintf(stderr, "example: error: %s\n", attn_last_error());
        return EXIT_FAILURE;
    }
    double num = 0.0, den = 0.0;
    for (size_t t = 0; t < (size_t) n * d; t++) {
        num += (Ow[t] - O[t]) * (Ow[t] - O[t]);
        den += O[t] * O[t];
    }
    printf("%s vs %s: relative error %.3e\n", attn_plan_spec(band), attn_plan_spec(exact),
           sqrt(num / den));
    attn_plan_destroy(exact);
    attn_plan_destroy(band);
    free(Q), free(K), free(V), free(O), free(Ow);
    return EXIT_SUCCESS;
}
