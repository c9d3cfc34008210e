/* tsv.c — TSV fields, provenance lines and the temporary-file output of the analysis programs.
 *
 * The conventions are described in tsv.h.  attn-h5cat and attn-aggregate both write through these
 * functions, so that their files look alike and a fix to one reaches the other.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "attn.h"
#include "attn_io.h"
#include "tsv.h"

void attn_tsv_put_string(FILE *out, const char *s)
{
    for (; s != NULL && *s != '\0'; s++)
        fputc(*s == '\t' || *s == '\n' || *s == '\r' ? ' ' : *s, out);
}

void attn_tsv_put_double(FILE *out, double x)
{
    if (isnan(x))
        fputs("NaN", out);
    else if (isinf(x))
        fputs(x > 0 ? "Inf" : "-Inf", out);
    else
        fprintf(out, "%.17g", x);
}

void attn_tsv_put_number(FILE *out, int type, double x)
{
    if (type == ATTN_COL_I64 && isfinite(x))
        fprintf(out, "%" PRId64, (int64_t) x);
    else
        attn_tsv_put_double(out, x);
}

/* The root attribute name of table as text, or "(absent)" when the file has no such attribute. */
static const char *table_attr(const attn_table *table, const char *name)
{
    for (size_t i = 0; i < table->nattrs; i++)
        if (strcmp(table->attr_names[i], name) == 0)
            return table->attr_values[i];
    return "(absent)";
}

void attn_tsv_put_provenance(FILE *out, const attn_table *table, const char *path,
                             const char *program, int argc, char **argv)
{
    static const char *const keys[] = { "program", "version", "git_describe", "config_hash",
                                        "utc_time", "blas_vendor", "command_line" };
    char *abs = realpath(path, NULL);
    fputs("# source: ", out);
    attn_tsv_put_string(out, abs != NULL ? abs : path);
    fputc('\n', out);
    free(abs);
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        fprintf(out, "# %s: ", keys[i]);
        attn_tsv_put_string(out, table_attr(table, keys[i]));
        fputc('\n', out);
    }
    fprintf(out, "# written_by: %s %s (%s)\n# command:", program, attn_version(),
            attn_git_describe());
    for (int i = 0; i < argc; i++) {
        fputc(' ', out);
        attn_tsv_put_string(out, argv[i]);
    }
    fputc('\n', out);
}

int attn_tsv_open(const char *path, FILE **out, char **tmp)
{
    *out = NULL;
    *tmp = NULL;
    if (path == NULL) {
        *out = stdout;
        return ATTN_OK;
    }
    size_t len = strlen(path) + sizeof ".tmp.XXXXXX";
    char *name = calloc(len, 1);
    if (name == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "name of a temporary file for %s", path);
    snprintf(name, len, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(name);
    if (fd < 0) {
        int status = ATTN_ERR(ATTN_EIO, "cannot create a temporary file beside %s: %s", path,
                              strerror(errno));
        free(name);
        return status;
    }
    /* mkstemp creates the file 0600; give the TSV the permissions of an ordinary new file. */
    mode_t mask = umask(0);
    umask(mask);
    fchmod(fd, 0666 & ~mask);
    *out = fdopen(fd, "w");
    if (*out == NULL) {
        int status = ATTN_ERR(ATTN_EIO, "cannot open %s: %s", name, strerror(errno));
        close(fd);
        unlink(name);
        free(name);
        return status;
    }
    *tmp = name;
    return ATTN_OK;
}

int attn_tsv_close(FILE *out, char *tmp, const char *path, int status)
{
    if (out == NULL)
        return status;
    if (status == ATTN_OK && (fflush(out) != 0 || ferror(out)))
        status = ATTN_ERR(ATTN_EIO, "writing %s: %s", tmp != NULL ? tmp : "stdout",
                          strerror(errno));
    if (tmp == NULL)
        return status;
    if (fclose(out) != 0 && status == ATTN_OK)
        status = ATTN_ERR(ATTN_EIO, "closing %s: %s", tmp, strerror(errno));
    if (status == ATTN_OK && rename(tmp, path) != 0)
        status = ATTN_ERR(ATTN_EIO, "renaming %s to %s: %s", tmp, path, strerror(errno));
    if (status != ATTN_OK)
        unlink(tmp);
    free(tmp);
    return status;
}
