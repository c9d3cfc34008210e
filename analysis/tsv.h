/* tsv.h — the output conventions of attn-h5cat and attn-aggregate: TSV fields, `# key: value`
 * provenance lines, and an output file written through a temporary file.
 *
 * A TSV file begins with `# ` lines giving its source, the sweep and the version (STYLE.md), then
 * one header line and one line per row.  Doubles are printed with %.17g, so that they read back to
 * the same bits, with NaN as "NaN" and infinities as "Inf" and "-Inf"; integer columns are printed
 * as integers.  A string field cannot hold a tab or a line break, so those become spaces.
 *
 * These helpers print, which lib/ never does: they belong to the programs in analysis/.
 */
#ifndef ATTN_ANALYSIS_TSV_H
#define ATTN_ANALYSIS_TSV_H

#include <stdio.h>

#include "attn_io.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Write the string s (NULL is the empty string) with its tabs, newlines and carriage returns
 * replaced by spaces. */
void attn_tsv_put_string(FILE *out, const char *s);

/* Write x with %.17g, or as NaN, Inf or -Inf. */
void attn_tsv_put_double(FILE *out, double x);

/* Write the value x of a numeric column of type type (enum attn_column_type): a finite value of an
 * ATTN_COL_I64 column as an integer, everything else as attn_tsv_put_double writes it. */
void attn_tsv_put_number(FILE *out, int type, double x);

/* Write the provenance lines of a table read from path: `# source:` (the absolute path when it can
 * be resolved), one line for each of the sweep's root attributes program, version, git_describe,
 * config_hash, utc_time, blas_vendor and command_line ("(absent)" when the file lacks one), then
 * `# written_by:` with program and the attnlab version, and `# command:` with argv. */
void attn_tsv_put_provenance(FILE *out, const attn_table *table, const char *path,
                             const char *program, int argc, char **argv);

/* Open the output: stdout when path is NULL (*tmp is then NULL), otherwise a new temporary file
 * beside path, whose name the caller owns in *tmp until attn_tsv_close takes it.  The temporary
 * file gets the permissions of an ordinary new file.  Returns ATTN_OK, ATTN_ENOMEM, or ATTN_EIO
 * naming path when the file cannot be created. */
int attn_tsv_open(const char *path, FILE **out, char **tmp);

/* Finish the output opened by attn_tsv_open.  When status is ATTN_OK the output is flushed and a
 * temporary file is closed and renamed to path, so that a failure never leaves a half-written
 * file at path; otherwise, or when any of these steps fails, the temporary file is removed.  tmp is
 * freed.  Returns status, or ATTN_EIO naming the file when finishing it fails.  out NULL (nothing
 * was opened) returns status unchanged. */
int attn_tsv_close(FILE *out, char *tmp, const char *path, int status);

#ifdef __cplusplus
}
#endif

#endif /* ATTN_ANALYSIS_TSV_H */
