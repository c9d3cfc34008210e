/* bench-methods — apply time of approximate methods against exact attention, measured in one run.
 *
 *     bench-methods [--n 1024:16384:x2] [--d 64] [--causal 0,1] [--repeats 3] [--out FILE]
 *                   [--rss-n N] SPEC...
 *
 * For every causal flag and n, exact streaming attention and each spec are applied to the same
 * random inputs (best wall time of `repeats` applies; one apply for exact at n >= 8192, where it
 * takes seconds); the table gives each spec's time, the exact time of the same run and their
 * ratio, then the least-squares slope of log(time) against log(n) per spec (gsl_fit_linear).  The
 * BLAS line says which OpenBLAS kernel ran (OPENBLAS_CORETYPE may be preset to an older core):
 * compare ratios measured in one run, not seconds across machines.  A spec a problem does not
 * support (ATTN_EUNSUP, e.g. a bidirectional-only option on a causal run) is listed as not
 * applicable and has no slope.  --rss-n N: afterwards, each spec (not exact) is applied once at
 * n = N, for each causal flag, in a child process, and the child's peak resident set size is
 * printed beside the bytes of Q, K, V and O (the O(n) floor) and the plan's own scratch.
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <gsl/gsl_fit.h>

#include "attn.h"

#define MAX_SPECS 64
#define MAX_NS 32

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double) t.tv_sec + 1e-9 * (double) t.tv_nsec;
}

/* Deterministic inputs (a linear congruential sequence mapped to [-1, 1)): the same every run. */
static void fill(double *x, size_t count, unsigned long long seed)
{
    for (size_t t = 0; t < count; t++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        x[t] = (double) (seed >> 11) * 0x1p-52 - 1.0;
    }
}

static int time_spec(const char *spec, const attn_problem *pb, const double *Q, const double *K,
                     const double *V, double *O, int repeats, double *best, char *canonical,
                     size_t len)
{
    attn_plan *plan = NULL;
    int status = attn_plan_create(&plan, spec, pb);
    if (status != ATTN_OK)
        return status;
    snprintf(canonical, len, "%s", attn_plan_spec(plan));
    *best = INFINITY;
    for (int r = 0; r < repeats && status == ATTN_OK; r++) {
        double t = now();
        status = attn_plan_apply(plan, Q, K, V, O);
        t = now() - t;
        *best = t < *best ? t : *best;
    }
    attn_plan_destroy(plan);
    return status;
}

/* Apply spec once at n (d = dv) in a child process; *rss = the child's peak RSS in bytes and
 * *scratch the plan's scratch bytes (passed back through a pipe).  Returns the child's status. */
static int child_rss(const char *spec, size_t n, size_t d, int causal, double *rss,
                     double *scratch)
{
    int fd[2];
    if (pipe(fd) != 0)
        return ATTN_ERR(ATTN_EIO, "pipe");
    pid_t pid = fork();
    if (pid < 0)
        return ATTN_ERR(ATTN_EIO, "fork");
    if (pid == 0) {
        close(fd[0]);
        attn_problem pb = { .n = n, .m = n, .d = d, .dv = d, .causal = causal };
        double *Q = malloc(n * d * sizeof *Q), *K = malloc(n * d * sizeof *K);
        double *V = malloc(n * d * sizeof *V), *O = malloc(n * d * sizeof *O);
        attn_plan *plan = NULL;
        attn_cost cost = { 0 };
        int status = (Q == NULL || K == NULL || V == NULL || O == NULL) ? ATTN_ENOMEM : ATTN_OK;
        if (status == ATTN_OK) {
            fill(Q, n * d, 1);
            fill(K, n * d, 2);
            fill(V, n * d, 3);
            status = attn_plan_create(&plan, spec, &pb);
        }
        if (status == ATTN_OK) {
            attn_plan_cost(plan, &cost);
            status = attn_plan_apply(plan, Q, K, V, O);
        }
        if (write(fd[1], &cost.bytes, sizeof cost.bytes) != (ssize_t) sizeof cost.bytes)
            status = ATTN_EIO;
        _exit(status);
    }
    close(fd[1]);
    *scratch = NAN;
    if (read(fd[0], scratch, sizeof *scratch) != (ssize_t) sizeof *scratch)
        *scratch = NAN;
    close(fd[0]);
    int wstatus = 0;
    struct rusage ru;
    if (wait4(pid, &wstatus, 0, &ru) < 0)
        return ATTN_ERR(ATTN_EIO, "wait4");
    *rss = (double) ru.ru_maxrss * 1024.0;
    if (!WIFEXITED(wstatus))
        return ATTN_ERR(ATTN_EIO, "%s at n = %zu: child killed by a signal", spec, n);
    return WEXITSTATUS(wstatus);
}

static int parse_sizes(const char *text, size_t *out, size_t cap, size_t *count)
{
    unsigned long a, b, f;
    *count = 0;
    if (sscanf(text, "%lu:%lu:x%lu", &a, &b, &f) == 3 && a > 0 && f > 1) {
        for (unsigned long x = a; x <= b && *count < cap; x *= f)
            out[(*count)++] = x;
        return *count > 0;
    }
    char *copy = strdup(text);
    for (char *s = strtok(copy, ","); s != NULL && *count < cap; s = strtok(NULL, ","))
        out[(*count)++] = strtoul(s, NULL, 10);
    free(copy);
    return *count > 0;
}

int main(int argc, char **argv)
{
    size_t ns[MAX_NS], nns = 0, causals[2] = { 0, 1 }, ncausal = 2, d = 64;
    int repeats = 3;
    const char *specs[MAX_SPECS], *out_path = NULL;
    size_t nspecs = 0, rss_n = 0;
    parse_sizes("1024:16384:x2", ns, MAX_NS, &nns);
    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--n") == 0 && a + 1 < argc) {
            if (!parse_sizes(argv[++a], ns, MAX_NS, &nns)) {
                fprintf(stderr, "bench-methods: --n '%s': expected a:b:xk or a list\n", argv[a]);
                return 2;
            }
        } else if (strcmp(argv[a], "--d") == 0 && a + 1 < argc) {
            d = strtoul(argv[++a], NULL, 10);
        } else if (strcmp(argv[a], "--causal") == 0 && a + 1 < argc) {
            parse_sizes(argv[++a], causals, 2, &ncausal);
        } else if (strcmp(argv[a], "--repeats") == 0 && a + 1 < argc) {
            repeats = atoi(argv[++a]);
        } else if (strcmp(argv[a], "--out") == 0 && a + 1 < argc) {
            out_path = argv[++a];
        } else if (strcmp(argv[a], "--rss-n") == 0 && a + 1 < argc) {
            rss_n = strtoul(argv[++a], NULL, 10);
        } else if (argv[a][0] == '-') {
            fprintf(stderr, "usage: bench-methods [--n a:b:xk] [--d D] [--causal 0,1] "
                            "[--repeats R] [--out FILE] [--rss-n N] SPEC...\n");
            return 2;
        } else if (nspecs < MAX_SPECS) {
            specs[nspecs++] = argv[a];
        }
    }
    if (nspecs == 0 || d == 0 || repeats < 1) {
        fprintf(stderr, "bench-methods: give at least one SPEC (and d, repeats >= 1)\n");
        return 2;
    }
    size_t nmax = 0;
    for (size_t t = 0; t < nns; t++)
        nmax = ns[t] > nmax ? ns[t] : nmax;
    double *Q = calloc(nmax * d, sizeof *Q), *K = calloc(nmax * d, sizeof *K);
    double *V = calloc(nmax * d, sizeof *V), *O = calloc(nmax * d, sizeof *O);
    double (*times)[MAX_NS][2] = calloc(MAX_SPECS, sizeof *times);
    double exact[MAX_NS][2];
    if (Q == NULL || K == NULL || V == NULL || O == NULL || times == NULL) {
        fprintf(stderr, "bench-methods: out of memory for n = %zu, d = %zu\n", nmax, d);
        return EXIT_FAILURE;
    }
    fill(Q, nmax * d, 1);
    fill(K, nmax * d, 2);
    fill(V, nmax * d, 3);

    char blas[512];
    FILE *out = out_path != NULL ? fopen(out_path, "w") : NULL;
    if (out_path != NULL && out == NULL) {
        fprintf(stderr, "bench-methods: cannot write %s\n", out_path);
        return EXIT_FAILURE;
    }
    printf("# attnlab %s (%s), %s\n# BLAS: %s\n", attn_version(), attn_git_describe(),
           attn_cc_version(), attn_blas_info(blas, sizeof blas));
    if (getenv("OPENBLAS_CORETYPE") != NULL)
        printf("# NOTE: OPENBLAS_CORETYPE=%s is preset: BLAS runs that kernel; ratios measured "
               "in this run remain comparable\n",
               getenv("OPENBLAS_CORETYPE"));
    printf("# d = dv = %zu, best of %d applies (exact: 1 at n >= 8192)\n", d, repeats);
    printf("%-58s %6s %7s %11s %11s %9s\n", "spec", "causal", "n", "seconds", "exact_s",
           "speedup");
    if (out != NULL) {
        fprintf(out, "# attnlab %s (%s)\n# BLAS: %s\n# d = %zu, repeats = %d\n", attn_version(),
                attn_git_describe(), blas, d, repeats);
        fprintf(out, "spec\tcanonical\tcausal\tn\td\tseconds\texact_seconds\tspeedup\n");
    }
    for (size_t c = 0; c < ncausal; c++)
        for (size_t t = 0; t < nns; t++) {
            attn_problem pb = { .n = ns[t], .m = ns[t], .d = d, .dv = d,
                                .causal = (int) causals[c] };
            char canonical[1024];
            int status = time_spec("exact", &pb, Q, K, V, O, ns[t] >= 8192 ? 1 : repeats,
                                   &exact[t][c], canonical, sizeof canonical);
            for (size_t s = 0; s <= nspecs && status == ATTN_OK; s++) {
                const char *spec = s == 0 ? "exact" : specs[s - 1];
                double secs = exact[t][c];
                if (s > 0)
                    status = time_spec(spec, &pb, Q, K, V, O, repeats, &secs, canonical,
                                       sizeof canonical);
                if (status == ATTN_EUNSUP) {
                    /* A combination the method refuses by design (e.g. a bidirectional-only
                     * parameter on a causal problem): not applicable, not a failure. */
                    times[s - 1][t][c] = NAN;
                    printf("%-58s %6zu %7zu   not applicable: %s\n", spec, causals[c], ns[t],
                           attn_last_error());
                    attn_error_clear();
                    status = ATTN_OK;
                    continue;
                }
                if (status != ATTN_OK)
                    break;
                if (s > 0)
                    times[s - 1][t][c] = secs;
                printf("%-58s %6zu %7zu %11.5f %11.5f %9.2f\n", spec, causals[c], ns[t], secs,
                       exact[t][c], exact[t][c] / secs);
                if (out != NULL)
                    fprintf(out, "%s\t%s\t%zu\t%zu\t%zu\t%.6g\t%.6g\t%.4g\n", spec, canonical,
                            causals[c], ns[t], d, secs, exact[t][c], exact[t][c] / secs);
            }
            fflush(stdout);
            if (status != ATTN_OK) {
                fprintf(stderr, "bench-methods: error: %s\n", attn_last_error());
                return EXIT_FAILURE;
            }
        }
    /* Log-log slopes of time against n. */
    printf("\n%-58s %6s %9s %11s\n", "spec", "causal", "slope", "n range");
    for (size_t s = 0; s <= nspecs; s++)
        for (size_t c = 0; c < ncausal; c++) {
            double x[MAX_NS], y[MAX_NS], c0, c1, cov00, cov01, cov11, sumsq;
            for (size_t t = 0; t < nns; t++) {
                x[t] = log((double) ns[t]);
                y[t] = log(s == 0 ? exact[t][c] : times[s - 1][t][c]);
            }
            double slope = NAN;
            if (nns >= 2 && gsl_fit_linear(x, 1, y, 1, nns, &c0, &c1, &cov00, &cov01, &cov11,
                                           &sumsq) == 0)
                slope = c1;
            printf("%-58s %6zu %9.3f %5zu..%zu\n", s == 0 ? "exact" : specs[s - 1], causals[c],
                   slope, ns[0], ns[nns - 1]);
        }
    if (rss_n > 0) {
        double floor_mb = 4.0 * (double) rss_n * (double) d * sizeof(double) / 1e6;
        struct rusage self;
        getrusage(RUSAGE_SELF, &self);
        printf("\n# peak RSS of one apply at n = %zu, d = %zu in a child process (Q, K, V, O "
               "alone: %.1f MB; the child starts from the %.1f MB this process held at the "
               "fork)\n%-58s %6s %12s %14s\n", rss_n, d, floor_mb,
               (double) self.ru_maxrss * 1024.0 / 1e6, "spec", "causal", "peak RSS MB",
               "plan scratch MB");
        for (size_t s = 0; s < nspecs; s++)
            for (size_t c = 0; c < ncausal; c++) {
                double rss = NAN, scratch = NAN;
                int status = child_rss(specs[s], rss_n, d, (int) causals[c], &rss, &scratch);
                if (status == ATTN_EUNSUP) {
                    printf("%-58s %6zu   not applicable\n", specs[s], causals[c]);
                    continue;
                }
                if (status != ATTN_OK) {
                    fprintf(stderr, "bench-methods: %s at n = %zu failed (status %d)\n", specs[s],
                            rss_n, status);
                    return EXIT_FAILURE;
                }
                printf("%-58s %6zu %12.1f %14.2f\n", specs[s], causals[c], rss / 1e6,
                       scratch / 1e6);
            }
    }
    if (out != NULL)
        fclose(out);
    free(Q);
    free(K);
    free(V);
    free(O);
    free(times);
    return EXIT_SUCCESS;
}
