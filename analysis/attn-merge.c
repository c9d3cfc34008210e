/* attn-merge.c — combine the shard files of one sweep into one results file.
 *
 *     attn-merge OUT.h5 SHARD.h5...
 *
 * The shards come from `attn-sweep --task I/N` runs of the same config; attn_results_merge refuses
 * shards whose config_hash differs.  Exit status: 0, 1 on an error (message on stderr), 2 on a bad
 * command line.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn.h"
#include "attn_io.h"

static const char *program = "attn-merge";

static void usage(FILE *out)
{
    fprintf(out,
            "usage: %s OUT.h5 SHARD.h5...\n"
            "\n"
            "Merge the results files written by `attn-sweep --task I/N` runs of one config into\n"
            "OUT.h5.  Shards of different configs (config_hash) are refused.\n",
            program);
}

int main(int argc, char **argv)
{
    if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        usage(stdout);
        return EXIT_SUCCESS;
    }
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, "%s: unknown option %s\n", program, argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (argc < 3) {
        fprintf(stderr, "%s: %s\n", program,
                argc < 2 ? "missing OUT.h5 and SHARD.h5" : "missing SHARD.h5 (at least one)");
        usage(stderr);
        return 2;
    }
    const char *out = argv[1];
    const char *const *shards = (const char *const *) (argv + 2);
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], out) == 0) {
            fprintf(stderr, "%s: the output %s is also given as a shard\n", program, out);
            usage(stderr);
            return 2;
        }
    }
    int status = attn_results_merge(out, shards, (size_t) (argc - 2));
    if (status != ATTN_OK) {
        fprintf(stderr, "%s: error: %s\n", program, attn_last_error());
        return EXIT_FAILURE;
    }
    return EXIT_SUCCESS;
}
