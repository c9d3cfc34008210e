/* bench-exact.c — `make bench`: how fast and how small exact streaming attention is.
 *
 *     bench-exact [--numpy-script FILE --python PYTHON] [--out FILE] [--quick] [--rss-n N]
 *
 * What is measured, in one run so that the ratios compare like with like:
 *   1. dgemm: square cblas_dgemm at n = 4096, 2 n^3 flops, best of 3 wall times, once at the
 *      start and once at the end of the run; the faster is the machine's attainable rate with
 *      this BLAS, kernel and thread count (a shared machine's load changes during a run, and a
 *      WARNING is printed when the two differ by more than 10%).
 *   2. exact: attn_plan_apply of spec "exact" (lib/methods/exact.c, the streaming kernel of
 *      lib/core/softmax.c) at n = m = 1024 ... 16384, d = dv = 64, bidirectional and causal.
 *      Nominal flops 4 n^2 d (the two products Q K^T and P V), half of that when causal; exps are
 *      not counted.  Best of 3 wall times for n <= 8192, of 2 at 16384.  Only apply is timed:
 *      the plan is created (and its scratch allocated) beforehand.  Rates are also given as a
 *      ratio to (1).
 *   3. numpy_naive: the textbook implementation (experiments/bench-numpy.py: materialize the
 *      n x n logits, softmax with the row maximum subtracted, multiply by V; float64) at
 *      n = 4096, d = 64, run through the given python with OPENBLAS_NUM_THREADS=1 and
 *      OMP_NUM_THREADS=1.  The script reports its best of 3; we report it beside our time at the
 *      same size, timed again right after the script so that both see the same load.  Skipped
 *      with a message when python or NumPy is missing.
 *   4. exact_rss: exact attention at n = 16384 and n = 65536 (--rss-n; 1.1 TFLOP at 65536) in a
 *      forked child; the child's peak resident set comes from wait4's rusage (ru_maxrss).  A
 *      forked child starts with the pages it shares with its parent, so the RSS it had at the fork
 *      is printed as well: the difference is what exact attention itself took.  Compare with the
 *      8 n^2 bytes of the n x n matrix a naive implementation holds.
 * Inputs are uniform on [-1, 1) from splitmix64 with fixed seeds.  Times are CLOCK_MONOTONIC.
 * The numbers go to a TSV (results/bench_exact.tsv) whose "# " lines hold the provenance, and a
 * readable table to stdout, with the load average at the start (the machine may be shared).
 * --quick: exact only up to n = 4096, dgemm once, RSS at 16384 only.
 * Exit status 1 on a real failure (allocation, plan, file), 2 on a bad command line.
 */
#include "config.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "attn.h"

#define HEAD_DIM 64         /* d = dv of every attention run */
#define DGEMM_N 4096        /* size of the reference dgemm */
#define NUMPY_N 4096        /* size of the NumPy comparison */
#define QUICK_RSS_N 16384   /* the RSS run of --quick, and the small RSS run of a full one */
#define DEFAULT_RSS_N 65536 /* the large RSS run */
#define MAX_ROWS 32

static const size_t exact_sizes[] = { 1024, 2048, 4096, 8192, 16384 };

/* One row of the results table; NAN marks a field that does not apply. */
typedef struct bench_row {
    const char *benchmark; /* dgemm, exact, numpy_naive, exact_rss */
    double n;              /* matrix size (dgemm) or sequence length n = m */
    double d;              /* head dimension d = dv */
    double causal;         /* 0 or 1 */
    double seconds;        /* best wall time */
    double gflops;         /* nominal flops / seconds / 1e9 */
    double ratio;          /* gflops / dgemm gflops of this run (the faster probe) */
    double rss_bytes;      /* peak resident set of the child process that ran it */
} bench_row;

typedef struct bench_table {
    bench_row rows[MAX_ROWS];
    size_t count;
} bench_table;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench-exact [options]\n"
            "  --numpy-script FILE  naive NumPy reference (experiments/bench-numpy.py)\n"
            "  --python PYTHON      interpreter with NumPy for it (e.g. /usr/bin/python3)\n"
            "  --out FILE           TSV of the results (default results/bench_exact.tsv)\n"
            "  --quick              short run: n <= 4096, dgemm once, RSS at n = %d only\n"
            "  --rss-n N            n of the large peak-RSS run (default %d; 0 skips it)\n"
            "  -h, --help           this text\n"
            "Run with OPENBLAS_NUM_THREADS=1 (as `make bench` does) for single-thread rates.\n",
            QUICK_RSS_N, DEFAULT_RSS_N);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + 1e-9 * (double) ts.tv_nsec;
}

/* splitmix64 (Steele, Lea, Flood 2014): small, fast and good enough for timing inputs; fixed
 * seeds give the same inputs in every run. */
static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* x[0..count) uniform on [-1, 1): the top 53 bits give a double in [0, 1). */
static void fill_uniform(double *x, size_t count, uint64_t seed)
{
    uint64_t state = seed;
    for (size_t i = 0; i < count; i++)
        x[i] = 2.0 * ((double) (splitmix64(&state) >> 11) * 0x1.0p-53) - 1.0;
}

static void table_add(bench_table *t, bench_row row)
{
    if (t->count < MAX_ROWS)
        t->rows[t->count++] = row;
}

/* ---------------------------------------------------------------------------------------------
 * Measurements.
 */

/* Best of `repeats` wall times of C = A B with A, B, C n x n.  Returns 0 when allocation fails. */
static int time_dgemm(size_t n, int repeats, double *best)
{
    double *A = calloc(n * n, sizeof *A);
    double *B = calloc(n * n, sizeof *B);
    double *C = calloc(n * n, sizeof *C);
    if (A == NULL || B == NULL || C == NULL) {
        free(A);
        free(B);
        free(C);
        return 0;
    }
    fill_uniform(A, n * n, 1);
    fill_uniform(B, n * n, 2);
    *best = INFINITY;
    for (int r = 0; r < repeats; r++) {
        double t0 = now();
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) n, (int) n, (int) n, 1.0, A,
                    (int) n, B, (int) n, 0.0, C, (int) n);
        double t = now() - t0;
        *best = t < *best ? t : *best;
    }
    free(A);
    free(B);
    free(C);
    return 1;
}

/* Operands of one attention problem with d = dv. */
typedef struct operands {
    double *Q;
    double *K;
    double *V;
    double *O;
} operands;

static void operands_free(operands *x)
{
    free(x->Q);
    free(x->K);
    free(x->V);
    free(x->O);
}

static int operands_alloc(operands *x, size_t n, size_t d)
{
    x->Q = calloc(n * d, sizeof *x->Q);
    x->K = calloc(n * d, sizeof *x->K);
    x->V = calloc(n * d, sizeof *x->V);
    x->O = calloc(n * d, sizeof *x->O);
    if (x->Q == NULL || x->K == NULL || x->V == NULL || x->O == NULL) {
        operands_free(x);
        return ATTN_ERR(ATTN_ENOMEM, "bench operands: 4 x %zu x %zu doubles", n, d);
    }
    fill_uniform(x->Q, n * d, 11);
    fill_uniform(x->K, n * d, 12);
    fill_uniform(x->V, n * d, 13);
    return ATTN_OK;
}

/* Best of `repeats` wall times of attn_plan_apply("exact") on x, n x d.  The plan is created
 * outside the timed region. */
static int time_exact(const operands *x, size_t n, size_t d, int causal, int repeats, double *best)
{
    attn_problem pb = { .n = n, .m = n, .d = d, .dv = d, .causal = causal, .scale = 0.0 };
    attn_plan *plan = NULL;
    int status = attn_plan_create(&plan, "exact", &pb);
    *best = INFINITY;
    for (int r = 0; status == ATTN_OK && r < repeats; r++) {
        double t0 = now();
        status = attn_plan_apply(plan, x->Q, x->K, x->V, x->O);
        double t = now() - t0;
        *best = t < *best ? t : *best;
    }
    attn_plan_destroy(plan);
    if (status != ATTN_OK)
        return attn_error_context(status, "exact attention, n = %zu, d = %zu, causal = %d", n, d,
                                  causal);
    return ATTN_OK;
}

/* Wall times taken of one exact run: the larger runs are long enough to be less noisy. */
static int exact_repeats(size_t n)
{
    return n <= 8192 ? 3 : 2;
}

/* Nominal flops of exact attention: 2 n^2 d for Q K^T and 2 n^2 dv for P V, half when causal. */
static double exact_flops(size_t n, size_t d, int causal)
{
    double f = 4.0 * (double) n * (double) n * (double) d;
    return causal ? 0.5 * f : f;
}

/* What the forked child of measure_rss reports through its pipe. */
typedef struct rss_report {
    int status;
    double seconds;
    double rss_at_fork;   /* bytes: the child's ru_maxrss before it allocated anything */
    char message[512];
} rss_report;

/* Run exact attention (bidirectional, n x d) once in a forked child and return the child's peak
 * RSS from wait4, the RSS it started with, and the apply time. */
static int measure_rss(size_t n, size_t d, double *seconds, double *peak, double *at_fork)
{
    int fd[2];
    if (pipe(fd) != 0)
        return ATTN_ERR(ATTN_EIO, "peak RSS run (n = %zu): pipe: %s", n, strerror(errno));
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        close(fd[0]);
        close(fd[1]);
        return ATTN_ERR(ATTN_EIO, "peak RSS run (n = %zu): fork: %s", n, strerror(errno));
    }
    if (pid == 0) {
        rss_report rep = { .status = ATTN_OK, .seconds = NAN, .rss_at_fork = NAN };
        struct rusage ru;
        close(fd[0]);
        if (getrusage(RUSAGE_SELF, &ru) == 0)
            rep.rss_at_fork = 1024.0 * (double) ru.ru_maxrss;   /* Linux: kilobytes */
        operands x = { 0 };
        rep.status = operands_alloc(&x, n, d);
        if (rep.status == ATTN_OK) {
            rep.status = time_exact(&x, n, d, 0, 1, &rep.seconds);
            operands_free(&x);
        }
        if (rep.status != ATTN_OK)
            snprintf(rep.message, sizeof rep.message, "%s", attn_last_error());
        ssize_t w = write(fd[1], &rep, sizeof rep);
        _exit(w == (ssize_t) sizeof rep ? 0 : 1);
    }
    close(fd[1]);
    rss_report rep;
    size_t got = 0;
    while (got < sizeof rep) {
        ssize_t r = read(fd[0], (char *) &rep + got, sizeof rep - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t) r;
    }
    close(fd[0]);
    int wstatus;
    struct rusage ru;
    while (wait4(pid, &wstatus, 0, &ru) < 0) {
        if (errno != EINTR)
            return ATTN_ERR(ATTN_EIO, "peak RSS run (n = %zu): wait4: %s", n, strerror(errno));
    }
    if (got != sizeof rep || !WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
        if (WIFSIGNALED(wstatus))
            return ATTN_ERR(ATTN_EIO, "peak RSS run (n = %zu): child killed by signal %d%s", n,
                            WTERMSIG(wstatus),
                            WTERMSIG(wstatus) == SIGKILL ? " (out of memory?)" : "");
        return ATTN_ERR(ATTN_EIO, "peak RSS run (n = %zu): child ended without a report", n);
    }
    if (rep.status != ATTN_OK)
        return ATTN_ERR(rep.status, "peak RSS run: %s", rep.message);
    *seconds = rep.seconds;
    *peak = 1024.0 * (double) ru.ru_maxrss;
    *at_fork = rep.rss_at_fork;
    return ATTN_OK;
}

/* Run `python script n d` with one BLAS thread and read the seconds it prints.  Returns 1 with
 * *seconds and *peak (the child's peak RSS) on success, 0 with a reason otherwise. */
static int run_numpy(const char *python, const char *script, size_t n, size_t d, double *seconds,
                     double *peak, char *reason, size_t len)
{
    if (python == NULL || script == NULL) {
        snprintf(reason, len, "no %s given", python == NULL ? "--python" : "--numpy-script");
        return 0;
    }
    if (strcmp(python, "no") == 0) {
        snprintf(reason, len, "configure found no python3 (PYTHON3_SYSTEM=no)");
        return 0;
    }
    if (access(python, X_OK) != 0) {
        snprintf(reason, len, "python %s: %s", python, strerror(errno));
        return 0;
    }
    if (access(script, R_OK) != 0) {
        snprintf(reason, len, "script %s: %s", script, strerror(errno));
        return 0;
    }
    char narg[32], darg[32];
    snprintf(narg, sizeof narg, "%zu", n);
    snprintf(darg, sizeof darg, "%zu", d);
    int fd[2];
    if (pipe(fd) != 0) {
        snprintf(reason, len, "pipe: %s", strerror(errno));
        return 0;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        close(fd[0]);
        close(fd[1]);
        snprintf(reason, len, "fork: %s", strerror(errno));
        return 0;
    }
    if (pid == 0) {
        /* Both output streams go to the pipe: the last line is the time or the reason. */
        close(fd[0]);
        dup2(fd[1], STDOUT_FILENO);
        dup2(fd[1], STDERR_FILENO);
        close(fd[1]);
        setenv("OPENBLAS_NUM_THREADS", "1", 1);
        setenv("OMP_NUM_THREADS", "1", 1);
        setenv("MKL_NUM_THREADS", "1", 1);
        char *const args[] = { (char *) python, (char *) script, narg, darg, NULL };
        execv(python, args);
        fprintf(stderr, "exec %s: %s\n", python, strerror(errno));
        _exit(127);
    }
    close(fd[1]);
    char out[4096];
    size_t used = 0;
    for (;;) {
        char chunk[1024];
        ssize_t r = read(fd[0], chunk, sizeof chunk);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        /* Keep the tail: the verdict is the last line. */
        size_t k = (size_t) r;
        if (used + k > sizeof out - 1) {
            size_t drop = used + k - (sizeof out - 1);
            drop = drop < used ? drop : used;
            memmove(out, out + drop, used - drop);
            used -= drop;
            k = k < sizeof out - 1 - used ? k : sizeof out - 1 - used;
        }
        memcpy(out + used, chunk, k);
        used += k;
    }
    close(fd[0]);
    out[used] = '\0';
    int wstatus;
    struct rusage ru;
    while (wait4(pid, &wstatus, 0, &ru) < 0) {
        if (errno != EINTR) {
            snprintf(reason, len, "wait4: %s", strerror(errno));
            return 0;
        }
    }
    /* The last non-empty line. */
    while (used > 0 && (out[used - 1] == '\n' || out[used - 1] == '\r' || out[used - 1] == ' '))
        out[--used] = '\0';
    char *last = strrchr(out, '\n');
    last = last != NULL ? last + 1 : out;
    if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
        if (WIFSIGNALED(wstatus))
            snprintf(reason, len, "%s %s killed by signal %d", python, script,
                     WTERMSIG(wstatus));
        else
            snprintf(reason, len, "%.300s (exit status %d)", *last ? last : "no output",
                     WEXITSTATUS(wstatus));
        return 0;
    }
    char *end;
    errno = 0;
    double t = strtod(last, &end);
    if (end == last || *end != '\0' || errno != 0 || !(t > 0.0) || !isfinite(t)) {
        snprintf(reason, len, "%.200s printed \"%.200s\", expected seconds", script, last);
        return 0;
    }
    *seconds = t;
    *peak = 1024.0 * (double) ru.ru_maxrss;
    return 1;
}

/* ---------------------------------------------------------------------------------------------
 * Output.
 */

/* A TSV field: NaN for a missing value, integers without a fraction. */
static void tsv_number(FILE *f, double x, int integer)
{
    if (isnan(x))
        fputs("NaN", f);
    else if (integer)
        fprintf(f, "%.0f", x);
    else
        fprintf(f, "%.6g", x);
}

/* Make the directories leading to path (mkdir -p of its dirname). */
static int make_parent_dirs(const char *path)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int) sizeof buf)
        return ATTN_ERR(ATTN_EIO, "output path too long: %s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return ATTN_ERR(ATTN_EIO, "creating directory %s for %s: %s", buf, path,
                            strerror(errno));
        *p = '/';
    }
    return ATTN_OK;
}

typedef struct provenance {
    char blas[512];
    char date[64];
    char host[256];
    const char *coretype;   /* OPENBLAS_CORETYPE, or NULL */
    const char *threads;    /* OPENBLAS_NUM_THREADS, or NULL */
    char cpu[256];
    double load[3];         /* load averages over 1, 5, 15 minutes at the start; NaN if unknown */
} provenance;

static void provenance_collect(provenance *p)
{
    attn_blas_info(p->blas, sizeof p->blas);
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(p->date, sizeof p->date, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (gethostname(p->host, sizeof p->host) != 0)
        snprintf(p->host, sizeof p->host, "unknown");
    p->host[sizeof p->host - 1] = '\0';
    p->coretype = getenv("OPENBLAS_CORETYPE");
    p->threads = getenv("OPENBLAS_NUM_THREADS");
    if (getloadavg(p->load, 3) != 3)
        p->load[0] = p->load[1] = p->load[2] = NAN;
    snprintf(p->cpu, sizeof p->cpu, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f != NULL) {
        char line[512];
        while (fgets(line, sizeof line, f) != NULL) {
            char *colon = strchr(line, ':');
            if (strncmp(line, "model name", 10) == 0 && colon != NULL) {
                colon += 1 + strspn(colon + 1, " \t");
                colon[strcspn(colon, "\n")] = '\0';
                snprintf(p->cpu, sizeof p->cpu, "%s", colon);
                break;
            }
        }
        fclose(f);
    }
}

static void print_header(const provenance *p)
{
    printf("bench-exact: attnlab %s (%s)\n", attn_version(), attn_git_describe());
    printf("compiler:    %s\n", attn_cc_version());
    printf("BLAS:        %s\n", p->blas);
    printf("OPENBLAS_NUM_THREADS=%s (BLAS reports %d)\n", p->threads ? p->threads : "(unset)",
           attn_blas_threads());
    printf("host:        %s, cpu %s, %ld online cores\n", p->host, p->cpu,
           sysconf(_SC_NPROCESSORS_ONLN));
    printf("date:        %s, load average %.2f %.2f %.2f\n", p->date, p->load[0], p->load[1],
           p->load[2]);
    if (p->coretype != NULL)
        printf("NOTE: OPENBLAS_CORETYPE=%s is preset in the environment, so OpenBLAS runs its\n"
               "      %s kernels rather than the ones it would pick for this CPU (an older core\n"
               "      type can halve the GEMM rate).  Every GFLOP/s below is relative to that\n"
               "      kernel; the ratios to dgemm, measured in this same run, remain comparable.\n",
               p->coretype, p->coretype);
    printf("\n");
}

static void print_row(const bench_row *r)
{
    char d[16], causal[8], rss[32];
    snprintf(d, sizeof d, isnan(r->d) ? "-" : "%.0f", r->d);
    snprintf(causal, sizeof causal, "%s", isnan(r->causal) ? "-" : r->causal ? "yes" : "no");
    if (isnan(r->rss_bytes))
        snprintf(rss, sizeof rss, "-");
    else
        snprintf(rss, sizeof rss, "%.1f MB", r->rss_bytes / 1e6);
    printf("%-12s %6.0f %4s %6s %10.4f %9.2f %8.3f %12s\n", r->benchmark, r->n, d, causal,
           r->seconds, r->gflops, r->ratio, rss);
}

/* notes: nnotes pairs of key and text, written as "# key: text" lines. */
static int write_tsv(const char *path, const bench_table *t, const provenance *p, int quick,
                     const char *const *notes, size_t nnotes)
{
    ATTN_TRY(make_parent_dirs(path), "writing %s", path);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return ATTN_ERR(ATTN_EIO, "writing %s: %s", path, strerror(errno));
    fprintf(f, "# source: experiments/bench-exact%s (make bench)\n", quick ? " --quick" : "");
    fprintf(f, "# version: attnlab %s (%s)\n", attn_version(), attn_git_describe());
    fprintf(f, "# compiler: %s\n", attn_cc_version());
    fprintf(f, "# blas: %s\n", p->blas);
    fprintf(f, "# openblas_coretype: %s\n",
            p->coretype ? p->coretype : "(unset: OpenBLAS chose the kernel for this CPU)");
    fprintf(f, "# openblas_num_threads: %s (BLAS reports %d)\n",
            p->threads ? p->threads : "(unset)", attn_blas_threads());
    fprintf(f, "# host: %s; cpu: %s\n", p->host, p->cpu);
    fprintf(f, "# date: %s; load average at start: %.2f %.2f %.2f\n", p->date, p->load[0],
            p->load[1], p->load[2]);
    fprintf(f, "# flops: dgemm 2 n^3; exact and numpy_naive 4 n^2 d (half when causal), exps "
               "not counted; ratio_to_dgemm = gflops / dgemm gflops of this run (see the dgemm "
               "line)\n");
    fprintf(f, "# seconds: best wall time (CLOCK_MONOTONIC) of 3 runs (dgemm: 1 with --quick); "
               "exact: of 3 for n <= 8192, of 2 above; numpy_naive: best of 3 inside the script; "
               "exact_rss: one run\n");
    fprintf(f, "# peak_rss_bytes: ru_maxrss of the child process that ran the row (wait4); "
               "includes the pages shared with the parent at fork\n");
    for (size_t k = 0; k < nnotes; k++)
        fprintf(f, "# %s: %s\n", notes[2 * k], notes[2 * k + 1]);
    fprintf(f, "benchmark\tn\td\tcausal\tseconds\tgflops\tratio_to_dgemm\tpeak_rss_bytes\n");
    for (size_t i = 0; i < t->count; i++) {
        const bench_row *r = &t->rows[i];
        fprintf(f, "%s\t", r->benchmark);
        tsv_number(f, r->n, 1);
        fputc('\t', f);
        tsv_number(f, r->d, 1);
        fputc('\t', f);
        tsv_number(f, r->causal, 1);
        fputc('\t', f);
        tsv_number(f, r->seconds, 0);
        fputc('\t', f);
        tsv_number(f, r->gflops, 0);
        fputc('\t', f);
        tsv_number(f, r->ratio, 0);
        fputc('\t', f);
        tsv_number(f, r->rss_bytes, 1);
        fputc('\n', f);
    }
    if (ferror(f) | fclose(f))
        return ATTN_ERR(ATTN_EIO, "writing %s: %s", path, strerror(errno));
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------
 * The run.
 */

/* Progress on stderr: the full run takes a minute or two. */
static void progress(const char *what)
{
    fprintf(stderr, "bench-exact: %s ...\n", what);
}

static double gemm_rate(double seconds)
{
    return 2.0 * pow(DGEMM_N, 3) / seconds / 1e9;
}

static int run(const char *python, const char *script, const char *out, int quick, size_t rss_n)
{
    bench_table table = { .count = 0 };
    provenance prov;
    provenance_collect(&prov);
    print_header(&prov);
    int gemm_repeats = quick ? 1 : 3;

    /* 1. The dgemm rate, probed here and again at the end: on a shared machine the load changes
     *    during the run, and the faster probe is the better estimate of what the core can do. */
    double t_gemm_start, t_gemm_end;
    progress("dgemm n = 4096 (first probe)");
    if (!time_dgemm(DGEMM_N, gemm_repeats, &t_gemm_start))
        return ATTN_ERR(ATTN_ENOMEM, "dgemm benchmark: 3 x %d x %d doubles", DGEMM_N, DGEMM_N);

    /* 2. Exact streaming attention. */
    size_t nsizes = sizeof exact_sizes / sizeof exact_sizes[0];
    for (size_t s = 0; s < nsizes; s++) {
        size_t n = exact_sizes[s];
        if (quick && n > 4096)
            break;
        char what[64];
        snprintf(what, sizeof what, "exact n = %zu", n);
        progress(what);
        operands x = { 0 };
        ATTN_TRY(operands_alloc(&x, n, HEAD_DIM), "exact benchmark");
        for (int causal = 0; causal <= 1; causal++) {
            double t;
            int status = time_exact(&x, n, HEAD_DIM, causal, exact_repeats(n), &t);
            if (status != ATTN_OK) {
                operands_free(&x);
                return status;
            }
            table_add(&table, (bench_row) { .benchmark = "exact", .n = (double) n,
                                            .d = HEAD_DIM, .causal = causal, .seconds = t,
                                            .gflops = exact_flops(n, HEAD_DIM, causal) / t / 1e9,
                                            .rss_bytes = NAN });
        }
        operands_free(&x);
    }

    /* 3. The naive NumPy reference.  Our time at the same size is taken right before and right
     *    after it, and the speedup uses their mean, so that under a changing load both sides are
     *    timed in the same window. */
    double t_numpy = NAN, rss_numpy = NAN, t_before = NAN, t_after = NAN, t_exact_numpy_n = NAN;
    char reason[512], numpy_note[800];
    progress("numpy naive n = 4096, with exact n = 4096 just before and after");
    operands xn = { 0 };
    ATTN_TRY(operands_alloc(&xn, NUMPY_N, HEAD_DIM), "exact benchmark beside numpy");
    int status = time_exact(&xn, NUMPY_N, HEAD_DIM, 0, exact_repeats(NUMPY_N), &t_before);
    int have_numpy = status == ATTN_OK && run_numpy(python, script, NUMPY_N, HEAD_DIM, &t_numpy,
                                                    &rss_numpy, reason, sizeof reason);
    if (have_numpy)
        status = time_exact(&xn, NUMPY_N, HEAD_DIM, 0, exact_repeats(NUMPY_N), &t_after);
    operands_free(&xn);
    if (status != ATTN_OK)
        return status;
    if (have_numpy) {
        t_exact_numpy_n = 0.5 * (t_before + t_after);
        table_add(&table, (bench_row) { .benchmark = "numpy_naive", .n = NUMPY_N, .d = HEAD_DIM,
                                        .causal = 0, .seconds = t_numpy,
                                        .gflops = exact_flops(NUMPY_N, HEAD_DIM, 0) / t_numpy / 1e9,
                                        .rss_bytes = rss_numpy });
        snprintf(numpy_note, sizeof numpy_note,
                 "%s %s; at n = %d, d = %d: numpy_naive %.6g s, exact %.6g s just before and "
                 "%.6g s just after it, speedup %.3f (numpy_naive / mean of the two)",
                 python, script, NUMPY_N, HEAD_DIM, t_numpy, t_before, t_after,
                 t_numpy / t_exact_numpy_n);
    } else {
        snprintf(numpy_note, sizeof numpy_note, "comparison skipped: %s", reason);
    }

    /* 4. Peak RSS in forked children. */
    size_t rss_sizes[2];
    size_t nrss = 0;
    if (quick) {
        rss_sizes[nrss++] = rss_n != 0 && rss_n < QUICK_RSS_N ? rss_n : QUICK_RSS_N;
    } else {
        rss_sizes[nrss++] = QUICK_RSS_N;
        if (rss_n != 0 && rss_n != QUICK_RSS_N)
            rss_sizes[nrss++] = rss_n;
    }
    double rss_at_fork[2] = { NAN, NAN };
    size_t rss_row0 = table.count;
    for (size_t k = 0; k < nrss; k++) {
        size_t n = rss_sizes[k];
        char what[64];
        snprintf(what, sizeof what, "peak RSS, exact n = %zu in a child", n);
        progress(what);
        double t = NAN, peak = NAN;
        ATTN_TRY(measure_rss(n, HEAD_DIM, &t, &peak, &rss_at_fork[k]), "peak RSS");
        table_add(&table, (bench_row) { .benchmark = "exact_rss", .n = (double) n, .d = HEAD_DIM,
                                        .causal = 0, .seconds = t,
                                        .gflops = exact_flops(n, HEAD_DIM, 0) / t / 1e9,
                                        .rss_bytes = peak });
    }

    /* 5. The second dgemm probe, and the ratios to the faster one. */
    progress("dgemm n = 4096 (second probe)");
    if (!time_dgemm(DGEMM_N, gemm_repeats, &t_gemm_end))
        return ATTN_ERR(ATTN_ENOMEM, "dgemm benchmark: 3 x %d x %d doubles", DGEMM_N, DGEMM_N);
    double t_gemm = t_gemm_start < t_gemm_end ? t_gemm_start : t_gemm_end;
    double gemm_gflops = gemm_rate(t_gemm);
    double drift = fabs(t_gemm_end - t_gemm_start) / (t_gemm_start > t_gemm_end ? t_gemm_start
                                                                                : t_gemm_end);
    bench_table all = { .count = 0 };
    table_add(&all, (bench_row) { .benchmark = "dgemm", .n = DGEMM_N, .d = NAN, .causal = NAN,
                                  .seconds = t_gemm, .gflops = gemm_gflops, .rss_bytes = NAN });
    for (size_t i = 0; i < table.count; i++)
        table_add(&all, table.rows[i]);
    for (size_t i = 0; i < all.count; i++)
        all.rows[i].ratio = all.rows[i].gflops / gemm_gflops;
    char gemm_note[256];
    snprintf(gemm_note, sizeof gemm_note,
             "probed at the start (%.2f GFLOP/s) and the end (%.2f GFLOP/s), best of %d each; "
             "the dgemm row and ratio_to_dgemm use the faster",
             gemm_rate(t_gemm_start), gemm_rate(t_gemm_end), gemm_repeats);

    /* The table and the summaries that need more than one row. */
    printf("%-12s %6s %4s %6s %10s %9s %8s %12s\n", "benchmark", "n", "d", "causal", "seconds",
           "GFLOP/s", "x dgemm", "peak RSS");
    for (size_t i = 0; i < all.count; i++)
        print_row(&all.rows[i]);
    printf("\n");
    printf("dgemm: %.2f GFLOP/s at the start, %.2f at the end (best of %d each); ratios use the "
           "faster\n", gemm_rate(t_gemm_start), gemm_rate(t_gemm_end), gemm_repeats);
    if (drift > 0.10)
        printf("WARNING: the dgemm rate changed by %.0f%% during the run: the machine is shared or "
               "throttled,\n         so the ratios are uncertain by about as much.\n",
               100.0 * drift);
    if (have_numpy)
        printf("numpy naive vs exact at n = %d, d = %d, float64, 1 thread: numpy %.4f s, "
               "attnlab %.4f s\n    (%.4f s just before, %.4f s just after numpy), "
               "speedup %.2fx\n", NUMPY_N, HEAD_DIM, t_numpy, t_exact_numpy_n, t_before, t_after,
               t_numpy / t_exact_numpy_n);
    else
        printf("numpy comparison skipped: %s\n", reason);
    for (size_t k = 0; k < nrss; k++) {
        size_t n = rss_sizes[k];
        const bench_row *r = &table.rows[rss_row0 + k];
        double naive = 8.0 * (double) n * (double) n;
        double operands_bytes = 4.0 * 8.0 * (double) n * HEAD_DIM;
        printf("peak RSS at n = %zu: %.1f MB (%.1f MB of it held at the fork; Q, K, V, O take "
               "%.1f MB)\n", n, r->rss_bytes / 1e6, rss_at_fork[k] / 1e6, operands_bytes / 1e6);
        if (naive >= 1e9)
            printf("    the naive n x n matrix alone would need %.1f GB (%.1f GiB), %.0f x that\n",
                   naive / 1e9, naive / 1073741824.0, naive / r->rss_bytes);
        else
            printf("    the naive n x n matrix alone would need %.1f MB, %.1f x that\n",
                   naive / 1e6, naive / r->rss_bytes);
    }

    const char *notes[] = { "dgemm", gemm_note, "numpy", numpy_note };
    ATTN_TRY(write_tsv(out, &all, &prov, quick, notes, sizeof notes / sizeof notes[0] / 2),
             "results");
    printf("wrote %s\n", out);
    return ATTN_OK;
}

int main(int argc, char **argv)
{
    const char *python = NULL, *script = NULL, *out = "results/bench_exact.tsv";
    int quick = 0;
    size_t rss_n = DEFAULT_RSS_N;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            usage(stdout);
            return EXIT_SUCCESS;
        } else if (strcmp(arg, "--quick") == 0) {
            quick = 1;
        } else if (strcmp(arg, "--numpy-script") == 0 && a + 1 < argc) {
            script = argv[++a];
        } else if (strcmp(arg, "--python") == 0 && a + 1 < argc) {
            python = argv[++a];
        } else if (strcmp(arg, "--out") == 0 && a + 1 < argc) {
            out = argv[++a];
        } else if (strcmp(arg, "--rss-n") == 0 && a + 1 < argc) {
            char *end;
            const char *text = argv[++a];
            errno = 0;
            unsigned long long v = strtoull(text, &end, 10);
            if (end == text || *end != '\0' || errno != 0 || text[0] == '-') {
                fprintf(stderr, "bench-exact: --rss-n: expected a size, got \"%s\"\n", text);
                return 2;
            }
            rss_n = (size_t) v;
        } else {
            fprintf(stderr, "bench-exact: unknown or incomplete option \"%s\"\n", arg);
            usage(stderr);
            return 2;
        }
    }
    int status = run(python, script, out, quick, rss_n);
    if (status != ATTN_OK) {
        fprintf(stderr, "bench-exact: error: %s\n", attn_last_error());
        return EXIT_FAILURE;
    }
    return EXIT_SUCCESS;
}
