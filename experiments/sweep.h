/* sweep.h — the parameter sweep behind attn-sweep: INI configs, grid expansion and the run loop.
 *
 * A config has one [sweep] section and one [method ID] section per method:
 *
 *     [sweep]
 *     data    = data/ppocrv4-svtr-attn.h5, local:n=4096,d=64   ; sources (see attn_io.h)
 *     layers  = all                 ; or a list / range: 0,1  0:4
 *     heads   = all
 *     n       = 128:4096:x2         ; geometric range; also a:b (step 1), a:b:+k, lists
 *     causal  = 0, 1
 *     seeds   = 0                   ; synthetic inputs and random methods; files use the first
 *                                   ; seed for deterministic methods
 *     repeats = 3                   ; timed applies per point (best kept)
 *     matrix_n_max = 1024           ; materialize and compute matrix errors up to this n
 *     rank_n_max   = 512            ; singular values, ranks and spectra up to this n
 *     eps_rank_tol = 1e-6
 *
 *     [method band]
 *     w = 8, 32, 128                ; lists and ranges; the cartesian product of all parameters
 *
 * An optional [blocks] section asks for the near/far structure of each exact matrix (inputs with
 * n <= matrix_n_max), computed once per input and stored in the results file:
 *
 *     [blocks]
 *     sizes = 16, 32, 64, 128       ; off-diagonal b x b blocks: ranks by distance from the diagonal
 *     bands = 0, 4, 16, 32          ; far field A minus its band |i - j| <= k: rank, energy, mass
 *     tol   = 1e-3                  ; relative tolerance of those ranks (default eps_rank_tol)
 *
 * The tables are /blocks/offdiag_<id> and /blocks/farfield_<id>, id = the point_id of the input's
 * first point (whose /points row gives its data_label); `attn-h5cat FILE --blocks offdiag` lists
 * them joined with /points.  Their columns are documented in sweep.c (block_study).
 *
 * A key continued on indented lines, or given twice, lists all its values.  One method may have
 * several sections, [method ID/NAME], each expanded on its own (e.g. combinations of parameters
 * that are not a cartesian product); --set ID/NAME.key=value overrides in one of them.
 * Points are (source, layer, head, n, causal, seed, spec) expanded in that nesting order (spec
 * innermost), numbered from 0: the same config gives the same numbering on every machine.  A
 * source's n values above its length are left out of the grid.
 */
#ifndef ATTN_SWEEP_H
#define ATTN_SWEEP_H

#include <stddef.h>
#include <stdint.h>

typedef struct sweep_config {
    char *path;            /* the INI file */
    char *name;            /* stem of the file: results/<name>.h5 */
    char **sources;        /* data sources */
    size_t nsources;
    char *layers;          /* "all" or a list/range */
    char *heads;
    size_t *ns;            /* sequence lengths, ascending */
    size_t nns;
    int causal[2];
    size_t ncausal;
    unsigned long *seeds;
    size_t nseeds;
    int repeats;
    size_t matrix_n_max;
    size_t rank_n_max;
    double eps_rank_tol;
    char **specs;          /* canonical method specs, in section order */
    char **labels;         /* the same specs as the config writes them (only the parameters it
                              gives): short names that group one method across n */
    size_t nspecs;
    int blocks;            /* 1: a [blocks] section asks for the structure study */
    size_t *block_sizes;   /* [blocks] sizes */
    size_t nblock_sizes;
    size_t *bands;         /* [blocks] bands */
    size_t nbands;
    double block_tol;      /* [blocks] tol */
    char *text;            /* the resolved config (stored in the results file) */
    char hash[17];         /* FNV-1a 64 of text, hex */
} sweep_config;

/* Load path and apply overrides ("sweep.n=256:1024:x2", "band.w=8,16"; a key without a section
 * means sweep).  Errors (ATTN_ECONFIG) name the file and line or the key and value. */
int sweep_config_load(sweep_config **cfg, const char *path, const char *const *overrides,
                      size_t noverrides);
void sweep_config_free(sweep_config *cfg);

/* Parse a list of non-negative numbers: "1,2, 5", "a:b" (step 1), "a:b:+k", "a:b:xk".  The result
 * is malloc'd.  ATTN_ECONFIG naming what (e.g. "sweep.n") and the text when malformed. */
int sweep_parse_list(const char *what, const char *text, double **values, size_t *count);

typedef struct sweep_options {
    const char *output;        /* results file */
    size_t task;               /* run points with point_id % ntasks == task */
    size_t ntasks;             /* >= 1 */
    int quiet;                 /* no progress line */
    const char *command_line;  /* stored as provenance */
} sweep_options;

typedef struct sweep_summary {
    size_t total;       /* points in the grid */
    size_t mine;        /* points of this task */
    size_t skipped;     /* already in the results file */
    size_t done;        /* computed now */
    size_t failed;      /* computed now with a non-zero status (unsupported included) */
    size_t unsupported; /* of those, refused by the method as not applicable (ATTN_EUNSUP: a
                           bidirectional-only method or parameter on a causal point, ...) */
} sweep_summary;

/* Count the points of the grid (reads the sources to know their lengths). */
int sweep_count(const sweep_config *cfg, size_t *total);

/* Run the sweep into opts->output.  A failed point is recorded with its status and message and the
 * sweep goes on; only failures to read a source or to write the file stop it. */
int sweep_run(const sweep_config *cfg, const sweep_options *opts, sweep_summary *summary);

#endif
