/* attn-sweep — run a parameter sweep from an INI config into an HDF5 results file.
 *
 *     attn-sweep [options] CONFIG.ini
 *
 * See experiments/sweep.h for the config format and README.md for a walk-through.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "attn.h"
#include "sweep.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: attn-sweep [options] CONFIG.ini\n"
            "  -o FILE           results file (default results/<config stem>.h5)\n"
            "  --set KEY=VALUE   override a config key: sweep.n=256:1024:x2, band.w=8,16\n"
            "                    (a key without a section is a [sweep] key); repeatable\n"
            "  --task I/N        run only points with point_id %% N == I (shards); by default\n"
            "                    taken from Open MPI (OMPI_COMM_WORLD_RANK/SIZE) or Slurm\n"
            "                    (SLURM_ARRAY_TASK_ID/COUNT) when set\n"
            "  --count           print the number of points of the grid and exit\n"
            "  --list-methods    print the registered methods with their parameters and exit\n"
            "  -q                no progress line\n"
            "  -h, --help        this text\n");
}

static int parse_task(const char *text, size_t *task, size_t *ntasks)
{
    unsigned long i, n;
    char extra;
    if (sscanf(text, "%lu/%lu%c", &i, &n, &extra) != 2 || n == 0 || i >= n)
        return 0;
    *task = i;
    *ntasks = n;
    return 1;
}

static void task_from_environment(size_t *task, size_t *ntasks)
{
    const char *rank = getenv("OMPI_COMM_WORLD_RANK"), *size = getenv("OMPI_COMM_WORLD_SIZE");
    if (rank == NULL || size == NULL) {
        rank = getenv("SLURM_ARRAY_TASK_ID");
        size = getenv("SLURM_ARRAY_TASK_COUNT");
    }
    if (rank != NULL && size != NULL && atol(size) > 1 && atol(rank) >= 0 &&
        atol(rank) < atol(size)) {
        *task = (size_t) atol(rank);
        *ntasks = (size_t) atol(size);
    }
}

int main(int argc, char **argv)
{
    const char *config = NULL, *output = NULL;
    const char **overrides = calloc((size_t) argc, sizeof *overrides);
    size_t noverrides = 0, task = 0, ntasks = 1;
    int quiet = 0, count_only = 0, task_given = 0;
    if (overrides == NULL)
        return EXIT_FAILURE;
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            usage(stdout);
            return EXIT_SUCCESS;
        } else if (strcmp(arg, "--list-methods") == 0) {
            for (size_t t = 0; t < attn_method_count(); t++) {
                char buf[8192];
                attn_method_describe(attn_method_at(t), buf, sizeof buf);
                fputs(buf, stdout);
            }
            return EXIT_SUCCESS;
        } else if (strcmp(arg, "-o") == 0 && a + 1 < argc) {
            output = argv[++a];
        } else if (strcmp(arg, "--set") == 0 && a + 1 < argc) {
            overrides[noverrides++] = argv[++a];
        } else if (strncmp(arg, "--set=", 6) == 0) {
            overrides[noverrides++] = arg + 6;
        } else if (strcmp(arg, "--task") == 0 && a + 1 < argc) {
            if (!parse_task(argv[++a], &task, &ntasks)) {
                fprintf(stderr, "attn-sweep: --task '%s': expected I/N with 0 <= I < N\n",
                        argv[a]);
                return 2;
            }
            task_given = 1;
        } else if (strcmp(arg, "--count") == 0) {
            count_only = 1;
        } else if (strcmp(arg, "-q") == 0) {
            quiet = 1;
        } else if (arg[0] == '-' || config != NULL) {
            fprintf(stderr, "attn-sweep: unexpected argument '%s'\n", arg);
            usage(stderr);
            return 2;
        } else {
            config = arg;
        }
    }
    if (config == NULL) {
        usage(stderr);
        return 2;
    }
    if (!task_given)
        task_from_environment(&task, &ntasks);

    sweep_config *cfg = NULL;
    int status = sweep_config_load(&cfg, config, overrides, noverrides);
    if (status != ATTN_OK) {
        fprintf(stderr, "attn-sweep: error: %s\n", attn_last_error());
        return EXIT_FAILURE;
    }
    if (count_only) {
        size_t total = 0;
        status = sweep_count(cfg, &total);
        if (status == ATTN_OK)
            printf("%zu\n", total);
    } else {
        /* The default output, and one shard file per task when sharded. */
        char path[4096];
        if (output == NULL) {
            mkdir("results", 0777);
            snprintf(path, sizeof path, "results/%s.h5", cfg->name);
        } else {
            snprintf(path, sizeof path, "%s", output);
        }
        if (ntasks > 1) {
            char *dot = strrchr(path, '.');
            char stem[3968];
            snprintf(stem, sizeof stem, "%.*s", dot ? (int) (dot - path) : (int) strlen(path),
                     path);
            snprintf(path, sizeof path, "%.3968s.task%zuof%zu.h5", stem, task, ntasks);
        }
        char command[8192] = "";
        size_t pos = 0;
        for (int a = 0; a < argc && pos < sizeof command; a++) {
            int k = snprintf(command + pos, sizeof command - pos, "%s%s", a ? " " : "", argv[a]);
            pos += k > 0 ? (size_t) k : 0;
        }
        sweep_options opts = { .output = path, .task = task, .ntasks = ntasks, .quiet = quiet,
                               .command_line = command };
        sweep_summary summary;
        status = sweep_run(cfg, &opts, &summary);
        if (status == ATTN_OK && !quiet)
            fprintf(stderr,
                    "attn-sweep: %s: %zu points computed (%zu failed, %zu of them not "
                    "applicable to the method), %zu already present, %zu in this task of %zu in "
                    "the grid\n",
                    path, summary.done, summary.failed, summary.unsupported, summary.skipped,
                    summary.mine,
                    summary.total);
    }
    sweep_config_free(cfg);
    free(overrides);
    if (status != ATTN_OK) {
        fprintf(stderr, "attn-sweep: error: %s\n", attn_last_error());
        return EXIT_FAILURE;
    }
    return EXIT_SUCCESS;
}
