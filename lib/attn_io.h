/* attn_io.h — inputs and results files of libattn (lib/io/, the only code that includes hdf5.h).
 *
 * Inputs: Q/K/V read from HDF5 files in the layout of the bundled real data (/layerL/{q,k,v}, or
 * /GROUP/layerL/{q,k,v}, each float32 or float64 [head, n, d]), or drawn by synthetic generators.
 * Results: the columnar /points table whose columns are listed once in lib/io/columns.def.
 */
#ifndef ATTN_IO_H
#define ATTN_IO_H

#include "attn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
 * Inputs.
 *
 * A source string is one of
 *   PATH.h5               layers /layer0, /layer1, ... of an HDF5 file
 *   PATH.h5:/GROUP        layers /GROUP/layer0, ... (e.g. data/ppocrv4-svtr-attn-long.h5:/n4096)
 *   gauss:n=..,d=..,dv=..,heads=..,layers=..,temp=..
 *                         i.i.d. standard normal Q, K, V; Q multiplied by temp (logit temperature)
 *   local:n=..,d=..,dv=..,heads=..,layers=..,width=..,temp=..,noise=..
 *                         attention with locality: q_i . k_j peaks at |i - j| ~ 0 and decays over
 *                         about `width` positions (random Fourier features of position), plus noise
 * Synthetic parameters have defaults (n=1024, d=64, dv=d, heads=1, layers=1, temp=1, width=16,
 * noise=0.5); the draws come from a gsl_rng seeded with seed and are the same on every machine.
 */
typedef struct attn_inputs {
    char *source;      /* the source string as given */
    char *label;       /* short name for tables: file stem or generator name ("stories260k-attn") */
    size_t layers;     /* number of layers */
    size_t heads;      /* heads per layer */
    size_t n;          /* tokens available (rows of q, k, v) */
    size_t d;          /* head dimension of q and k */
    size_t dv;         /* columns of v */
    int causal;        /* the data's causal attribute (files); -1 when the source has none */
    double scale;      /* the stored scale attribute of layer 0, 0 when absent */
    double *q;         /* [layer][head][n][d] */
    double *k;         /* [layer][head][n][d] */
    double *v;         /* [layer][head][n][dv] */
} attn_inputs;

/* Read (or generate) a source.  n_max > 0 reads only the first n_max tokens of every head (an
 * error naming the file and n when the data has fewer).  Errors name the file, dataset, shape or
 * value: missing file (ATTN_EIO), not HDF5 or missing dataset / attribute (ATTN_EFORMAT), wrong rank
 * or mismatched shapes of q/k/v across layers (ATTN_ESHAPE), NaN/Inf (ATTN_ENONFINITE with layer,
 * head, operand, row and column), bad generator parameter (ATTN_EPARAM). */
int attn_inputs_read(attn_inputs **inputs, const char *source, size_t n_max, unsigned long seed);

/* Pointers to the first row of q, k, v of one head (rows 0..n-1 contiguous, so a prefix of n' <= n
 * tokens is the same pointers with n'). */
void attn_inputs_head(const attn_inputs *inputs, size_t layer, size_t head, const double **q,
                      const double **k, const double **v);
void attn_inputs_destroy(attn_inputs *inputs);

/* ---------------------------------------------------------------------------------------------
 * Results files.
 */
enum attn_column_type { ATTN_COL_I64, ATTN_COL_F64, ATTN_COL_STR };

/* One row of /points: a field per column of lib/io/columns.def. */
typedef struct attn_row {
#define ATTN_COLUMN_I64(name, unit, doc) int64_t name;
#define ATTN_COLUMN_F64(name, unit, doc) double name;
#define ATTN_COLUMN_STR(name, unit, doc) const char *name;
#include "io/columns.def"
#undef ATTN_COLUMN_I64
#undef ATTN_COLUMN_F64
#undef ATTN_COLUMN_STR
} attn_row;

/* A row with every number NaN (doubles) or -1 (integers) and every string "". */
void attn_row_init(attn_row *row);

/* The column table, for programs that loop over columns. */
typedef struct attn_column {
    const char *name;
    enum attn_column_type type;
    const char *unit;
    const char *doc;
} attn_column;
size_t attn_column_count(void);
const attn_column *attn_column_at(size_t index);
const attn_column *attn_column_find(const char *name);  /* NULL when unknown */

/* Provenance written on / when a results file is created (program, version, git_describe,
 * configure_args, cc_version, blas_vendor, blas_threads, hostname and utc_time are filled in by
 * the library). */
typedef struct attn_provenance {
    const char *program;       /* "attn-sweep" */
    const char *command_line;  /* the program's arguments, space separated */
    const char *config_text;   /* the fully resolved sweep */
    const char *config_hash;   /* hex digest of config_text: files of different configs never mix */
} attn_provenance;

typedef struct attn_results attn_results;

/* Open path for appending points.  A new file is created with the provenance attributes and an
 * empty /points table.  An existing file must be an attnlab results file (otherwise ATTN_EFORMAT
 * naming the file: not HDF5, or no /points) whose config_hash equals prov->config_hash (otherwise
 * ATTN_ECONFIG: "results/x.h5 was written by a different config (hash A, this sweep B); refusing
 * to mix them — use another -o or delete the file"; the file is opened read-only for the check and
 * left unchanged); its point ids are loaded so that attn_results_has() can skip finished points. */
int attn_results_open(attn_results **results, const char *path, const attn_provenance *prov);
/* 1 when a point with this point_id is already in the file. */
int attn_results_has(const attn_results *results, int64_t point_id);
/* Append one row to every column and flush the file, so a killed run loses at most this row
 * (point_id is written last: a row cut short is dropped when the file is reopened).  A point_id
 * already in the file is refused (ATTN_EINVAL). */
int attn_results_append(attn_results *results, const attn_row *row);
/* Store /spectra/<point_id>: k singular values (descending) of the point's attention matrix, with
 * attributes naming the point's method spec. */
int attn_results_write_spectrum(attn_results *results, int64_t point_id, const double *sv,
                                size_t k);
/* Store /blocks/<name>: a rows x cols double table with column names (comma separated). */
int attn_results_write_table(attn_results *results, const char *name, const double *x,
                             size_t rows, size_t cols, const char *column_names);
int attn_results_close(attn_results *results);

/* ---------------------------------------------------------------------------------------------
 * Reading results back (analysis/).
 */
typedef struct attn_table {
    size_t rows;           /* points in the file */
    size_t ncols;          /* columns found (those of columns.def present in the file) */
    char **names;          /* [ncols] column names */
    int *types;            /* [ncols] enum attn_column_type */
    double **num;          /* [ncols] rows values (integers converted), NULL for string columns */
    char ***str;           /* [ncols] rows strings, NULL for numeric columns */
    char **attr_names;     /* [nattrs] root attributes (provenance) */
    char **attr_values;    /* [nattrs] their values as text */
    size_t nattrs;
} attn_table;

int attn_table_read(attn_table **table, const char *path);
/* Index of a column by name, or -1 (the error message lists the columns that exist). */
long attn_table_column(const attn_table *table, const char *name);
void attn_table_destroy(attn_table *table);

/* Read /spectra/<point_id> of a results file into a new array (caller frees). */
int attn_results_read_spectrum(const char *path, int64_t point_id, double **sv, size_t *k);

/* Read /blocks/<name> of a results file: a new rows x cols array (row-major) and its
 * comma-separated column names (caller frees both).  A missing table is ATTN_EFORMAT with a message
 * containing "is missing". */
int attn_results_read_table(const char *path, const char *name, double **x, size_t *rows,
                            size_t *cols, char **column_names);

/* Merge shard files (all with the same config_hash) into out, which must not exist yet; rows
 * sorted by point_id (the first shard's row kept for duplicates), spectra and /blocks copied.
 * ATTN_ECONFIG when the shards' configs differ; out is removed on failure. */
int attn_results_merge(const char *out, const char *const *shards, size_t nshards);

#ifdef __cplusplus
}
#endif
#endif /* ATTN_IO_H */
