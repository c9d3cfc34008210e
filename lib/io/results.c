/* results.c — results files: the column table of lib/io/columns.def, appending points to /points,
 * spectra and block tables, and merging shards.
 *
 * Layout of a results file (format "attnlab-results-1"):
 *   /            provenance attributes: program, version, git_describe, configure_args, cc_version,
 *                blas_vendor, blas_threads, hostname, utc_time, command_line, config_text,
 *                config_hash, format
 *   /points/<c>  one extensible 1-D dataset per column of columns.def (int64, double or
 *                variable-length UTF-8 string), all of one length, with attributes units and
 *                description
 *   /spectra/<point_id>   singular values of a point's attention matrix
 *   /blocks/<name>        2-D double tables with a column_names attribute
 * A point is appended to every column and the file flushed before the next point starts.  The
 * point_id column is written last, so its length is the number of complete rows; a row cut short
 * by a killed run is dropped when the file is opened again.
 */
#include "config.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "attn_io.h"
#include "io/h5util.h"

#define RESULTS_FORMAT "attnlab-results-1"

/* ---------------------------------------------------------------------------------------------
 * The column table, expanded from columns.def.
 */
static const attn_column columns[] = {
#define ATTN_COLUMN_I64(name, unit, doc) { #name, ATTN_COL_I64, unit, doc },
#define ATTN_COLUMN_F64(name, unit, doc) { #name, ATTN_COL_F64, unit, doc },
#define ATTN_COLUMN_STR(name, unit, doc) { #name, ATTN_COL_STR, unit, doc },
#include "io/columns.def"
#undef ATTN_COLUMN_I64
#undef ATTN_COLUMN_F64
#undef ATTN_COLUMN_STR
};

/* Where each column lives in an attn_row. */
static const size_t offsets[] = {
#define ATTN_COLUMN_I64(name, unit, doc) offsetof(attn_row, name),
#define ATTN_COLUMN_F64(name, unit, doc) offsetof(attn_row, name),
#define ATTN_COLUMN_STR(name, unit, doc) offsetof(attn_row, name),
#include "io/columns.def"
#undef ATTN_COLUMN_I64
#undef ATTN_COLUMN_F64
#undef ATTN_COLUMN_STR
};

#define NCOLUMNS (sizeof columns / sizeof columns[0])

/* The point_id column is the first line of columns.def. */
#define POINT_ID 0

size_t attn_column_count(void)
{
    return NCOLUMNS;
}

const attn_column *attn_column_at(size_t index)
{
    return index < NCOLUMNS ? &columns[index] : NULL;
}

const attn_column *attn_column_find(const char *name)
{
    for (size_t c = 0; c < NCOLUMNS; c++)
        if (strcmp(columns[c].name, name) == 0)
            return &columns[c];
    return NULL;
}

void attn_row_init(attn_row *row)
{
    for (size_t c = 0; c < NCOLUMNS; c++) {
        char *field = (char *) row + offsets[c];
        if (columns[c].type == ATTN_COL_I64)
            *(int64_t *) field = -1;
        else if (columns[c].type == ATTN_COL_F64)
            *(double *) field = NAN;
        else
            *(const char **) field = "";
    }
}

/* Values of rows not yet written: the same as attn_row_init. */
static const int64_t fill_i64 = -1;
static const double fill_f64 = NAN;
static const char *const fill_str = "";

static const void *column_fill(size_t c)
{
    return columns[c].type == ATTN_COL_I64   ? (const void *) &fill_i64
           : columns[c].type == ATTN_COL_F64 ? (const void *) &fill_f64
                                             : (const void *) &fill_str;
}

static hid_t column_file_type(size_t c, hid_t str)
{
    return columns[c].type == ATTN_COL_I64 ? H5T_STD_I64LE
           : columns[c].type == ATTN_COL_F64 ? H5T_IEEE_F64LE : str;
}

static hid_t column_mem_type(size_t c, hid_t str)
{
    return columns[c].type == ATTN_COL_I64 ? H5T_NATIVE_INT64
           : columns[c].type == ATTN_COL_F64 ? H5T_NATIVE_DOUBLE : str;
}

/* ---------------------------------------------------------------------------------------------
 * Checking an existing file.
 */

/* Open path read-only and check it is a results file: /points and config_hash present.  *hash
 * receives the config_hash (caller frees); the file stays open in *file. */
static int results_check(const char *path, hid_t *file, char **hash)
{
    int status = attn_h5_open(file, path, H5F_ACC_RDONLY);
    *hash = NULL;
    if (status != ATTN_OK)
        return status;
    if (!attn_h5_exists(*file, "/points"))
        status = ATTN_ERR(ATTN_EFORMAT, "%s has no /points table: it is not an attnlab results "
                          "file", path);
    else if (!attn_h5_attr_exists(*file, "config_hash"))
        status = ATTN_ERR(ATTN_EFORMAT, "%s has no config_hash attribute: it is not an attnlab "
                          "results file", path);
    else if (attn_h5_attr_read_string(*file, "config_hash", hash) != ATTN_OK)
        status = attn_error_context(ATTN_EFORMAT, "%s", path);
    if (status != ATTN_OK) {
        H5Fclose(*file);
        *file = H5I_INVALID_HID;
    }
    return status;
}

/* 1 when the dataset's type class suits column c. */
static int column_type_ok(hid_t dset, size_t c)
{
    hid_t type = H5Dget_type(dset);
    H5T_class_t cls = type >= 0 ? H5Tget_class(type) : H5T_NO_CLASS;
    if (type >= 0)
        H5Tclose(type);
    return columns[c].type == ATTN_COL_I64   ? cls == H5T_INTEGER
           : columns[c].type == ATTN_COL_F64 ? cls == H5T_FLOAT || cls == H5T_INTEGER
                                             : cls == H5T_STRING;
}

/* ---------------------------------------------------------------------------------------------
 * Open results.
 */
struct attn_results {
    char *path;
    hid_t file;
    hid_t points;          /* the /points group */
    hid_t str;             /* variable-length UTF-8 string type */
    hid_t dset[NCOLUMNS];  /* one dataset per column */
    size_t rows;           /* complete rows */
    int64_t *ids;          /* point ids in the file, ascending */
    size_t *id_rows;       /* the row of each id */
    size_t nids;
    size_t cap;
};

/* Binary search: the index of id in r->ids, or -1. */
static long ids_find(const attn_results *r, int64_t id)
{
    size_t lo = 0, hi = r->nids;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->ids[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < r->nids && r->ids[lo] == id ? (long) lo : -1;
}

/* Insert (id, row) keeping ids ascending; sweeps append in increasing order, so the insertion
 * point is nearly always the end. */
static int ids_insert(attn_results *r, int64_t id, size_t row)
{
    size_t pos;
    if (r->nids == r->cap) {
        size_t cap = r->cap > 0 ? 2 * r->cap : 256;
        int64_t *ids;
        size_t *rows;
        if (cap > SIZE_MAX / sizeof *r->id_rows)
            return ATTN_ERR(ATTN_ENOMEM, "%zu point ids", cap);
        ids = realloc(r->ids, cap * sizeof *ids);
        if (ids == NULL)
            return ATTN_ERR(ATTN_ENOMEM, "%zu point ids", cap);
        r->ids = ids;
        rows = realloc(r->id_rows, cap * sizeof *rows);
        if (rows == NULL)
            return ATTN_ERR(ATTN_ENOMEM, "%zu point rows", cap);
        r->id_rows = rows;
        r->cap = cap;
    }
    pos = r->nids;
    while (pos > 0 && r->ids[pos - 1] > id)
        pos--;
    memmove(r->ids + pos + 1, r->ids + pos, (r->nids - pos) * sizeof *r->ids);
    memmove(r->id_rows + pos + 1, r->id_rows + pos, (r->nids - pos) * sizeof *r->id_rows);
    r->ids[pos] = id;
    r->id_rows[pos] = row;
    r->nids++;
    return ATTN_OK;
}

/* "2024-05-01T12:34:56Z" */
static void utc_now(char *buf, size_t len)
{
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm) == NULL || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, len, "unknown");
}

static int write_provenance(hid_t file, const attn_provenance *prov)
{
    char blas[512], host[256], utc[64];
    int status = ATTN_OK;
    const char *names[] = { "program", "version", "git_describe", "configure_args", "cc_version",
                            "blas_vendor", "hostname", "utc_time", "command_line", "config_text",
                            "config_hash", "format" };
    const char *values[] = { prov->program, attn_version(), attn_git_describe(),
                             attn_configure_args(), attn_cc_version(),
                             attn_blas_info(blas, sizeof blas), host, utc, prov->command_line,
                             prov->config_text, prov->config_hash, RESULTS_FORMAT };
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "unknown");
    host[sizeof host - 1] = '\0';
    utc_now(utc, sizeof utc);
    for (size_t i = 0; i < sizeof names / sizeof names[0] && status == ATTN_OK; i++)
        status = attn_h5_attr_write_string(file, names[i], values[i] != NULL ? values[i] : "");
    if (status == ATTN_OK)
        status = attn_h5_attr_write_int(file, "blas_threads", attn_blas_threads());
    return status;
}

/* Create /points with every column at length rows. */
static int create_points(attn_results *r, size_t rows)
{
    r->points = H5Gcreate2(r->file, "/points", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (r->points < 0)
        return ATTN_ERR(ATTN_EIO, "cannot create the group /points");
    for (size_t c = 0; c < NCOLUMNS; c++) {
        int status = attn_h5_column_create(&r->dset[c], r->points, columns[c].name,
                                           column_file_type(c, r->str), column_mem_type(c, r->str),
                                           column_fill(c), rows, columns[c].unit, columns[c].doc);
        if (status != ATTN_OK)
            return status;
    }
    r->rows = rows;
    return ATTN_OK;
}

static attn_results *results_new(const char *path)
{
    attn_results *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->file = r->points = H5I_INVALID_HID;
    for (size_t c = 0; c < NCOLUMNS; c++)
        r->dset[c] = H5I_INVALID_HID;
    r->str = attn_h5_string_type();
    r->path = attn_io_dup_string(path);
    if (r->str < 0 || r->path == NULL) {
        attn_results_close(r);
        return NULL;
    }
    return r;
}

static int create_file(attn_results *r, const attn_provenance *prov)
{
    int status;
    r->file = H5Fcreate(r->path, H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT);
    if (r->file < 0)
        return ATTN_ERR(ATTN_EIO, "%s: cannot create it (does its directory exist, and is it "
                        "writable?)", r->path);
    status = write_provenance(r->file, prov);
    if (status == ATTN_OK)
        status = create_points(r, 0);
    if (status == ATTN_OK && H5Fflush(r->file, H5F_SCOPE_LOCAL) < 0)
        status = ATTN_ERR(ATTN_EIO, "cannot flush");
    if (status != ATTN_OK)
        return attn_error_context(status, "creating %s", r->path);
    return ATTN_OK;
}

/* Open the columns of an existing, already checked file for appending.  Columns added to
 * columns.def since the file was written are created (holding the fill value in old rows), and a
 * row cut short by a killed run is dropped. */
static int open_existing(attn_results *r)
{
    int status = attn_h5_open(&r->file, r->path, H5F_ACC_RDWR);
    int64_t *ids = NULL;
    if (status != ATTN_OK)
        return status;
    r->points = H5Gopen2(r->file, "/points", H5P_DEFAULT);
    if (r->points < 0)
        return ATTN_ERR(ATTN_EFORMAT, "%s: /points is not a group", r->path);

    status = attn_h5_dataset_open(&r->dset[POINT_ID], r->points, columns[POINT_ID].name);
    if (status == ATTN_OK)
        status = attn_h5_column_length(r->dset[POINT_ID], columns[POINT_ID].name, &r->rows);
    for (size_t c = 0; c < NCOLUMNS && status == ATTN_OK; c++) {
        size_t len;
        if (c != POINT_ID && attn_h5_exists(r->points, columns[c].name)) {
            status = attn_h5_dataset_open(&r->dset[c], r->points, columns[c].name);
            if (status == ATTN_OK)
                status = attn_h5_column_length(r->dset[c], columns[c].name, &len);
            if (status == ATTN_OK && len != r->rows)
                status = attn_h5_column_resize(r->dset[c], columns[c].name, r->rows);
        } else if (c != POINT_ID) {
            status = attn_h5_column_create(&r->dset[c], r->points, columns[c].name,
                                           column_file_type(c, r->str), column_mem_type(c, r->str),
                                           column_fill(c), r->rows, columns[c].unit,
                                           columns[c].doc);
        }
        if (status == ATTN_OK && !column_type_ok(r->dset[c], c))
            status = ATTN_ERR(ATTN_EFORMAT, "column /points/%s has the wrong type (expected %s)",
                              columns[c].name, columns[c].type == ATTN_COL_I64   ? "integers"
                                               : columns[c].type == ATTN_COL_F64 ? "numbers"
                                                                                 : "strings");
    }

    /* Load the point ids so attn_results_has() can skip finished points. */
    if (status == ATTN_OK) {
        ids = calloc(r->rows > 0 ? r->rows : 1, sizeof *ids);
        if (ids == NULL)
            status = ATTN_ERR(ATTN_ENOMEM, "%zu point ids", r->rows);
    }
    if (status == ATTN_OK)
        status = attn_h5_column_read(r->dset[POINT_ID], columns[POINT_ID].name, H5T_NATIVE_INT64,
                                     r->rows, ids);
    for (size_t i = 0; i < r->rows && status == ATTN_OK; i++)
        if (ids_find(r, ids[i]) < 0)
            status = ids_insert(r, ids[i], i);
    free(ids);
    if (status == ATTN_OK && H5Fflush(r->file, H5F_SCOPE_LOCAL) < 0)
        status = ATTN_ERR(ATTN_EIO, "cannot flush");
    if (status != ATTN_OK)
        return attn_error_context(status, "opening %s", r->path);
    return ATTN_OK;
}

int attn_results_open(attn_results **results, const char *path, const attn_provenance *prov)
{
    int status;
    attn_results *r;
    struct stat st;

    *results = NULL;
    attn_h5_init();
    if (prov == NULL || prov->config_hash == NULL || prov->config_hash[0] == '\0')
        return ATTN_ERR(ATTN_EINVAL, "opening %s: the provenance has no config_hash", path);
    r = results_new(path);
    if (r == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "results of %s", path);

    if (stat(path, &st) == 0) {
        /* Check read-only first, so a refused file is never touched. */
        hid_t file;
        char *hash;
        status = results_check(path, &file, &hash);
        if (status == ATTN_OK) {
            if (strcmp(hash, prov->config_hash) != 0)
                status = ATTN_ERR(ATTN_ECONFIG, "%s was written by a different config (hash %s, "
                                  "this sweep %s); refusing to mix them — use another -o or "
                                  "delete the file", path, hash, prov->config_hash);
            free(hash);
            H5Fclose(file);
        }
        if (status == ATTN_OK)
            status = open_existing(r);
    } else {
        status = create_file(r, prov);
    }
    if (status != ATTN_OK) {
        attn_results_close(r);
        return status;
    }
    *results = r;
    return ATTN_OK;
}

int attn_results_has(const attn_results *r, int64_t point_id)
{
    return r != NULL && ids_find(r, point_id) >= 0;
}

/* A spectrum written before its point was appended gets the point's method and spec now. */
static int tag_spectrum(attn_results *r, const attn_row *row)
{
    char name[64];
    int status = ATTN_OK;
    hid_t dset;
    snprintf(name, sizeof name, "/spectra/%lld", (long long) row->point_id);
    if (!attn_h5_exists(r->file, name))
        return ATTN_OK;
    dset = H5Dopen2(r->file, name, H5P_DEFAULT);
    if (dset < 0)
        return ATTN_ERR(ATTN_EIO, "cannot open %s", name);
    status = attn_h5_attr_write_string(dset, "method", row->method != NULL ? row->method : "");
    if (status == ATTN_OK)
        status = attn_h5_attr_write_string(dset, "spec", row->spec != NULL ? row->spec : "");
    H5Dclose(dset);
    return status;
}

int attn_results_append(attn_results *r, const attn_row *row)
{
    int status = ATTN_OK;
    if (ids_find(r, row->point_id) >= 0)
        return ATTN_ERR(ATTN_EINVAL, "appending to %s: point_id %lld is already in the file",
                        r->path, (long long) row->point_id);
    /* Every column but point_id, then point_id: its length counts the complete rows. */
    for (size_t t = 1; t <= NCOLUMNS && status == ATTN_OK; t++) {
        size_t c = t % NCOLUMNS;
        const char *field = (const char *) row + offsets[c];
        const char *text;
        const void *value = field;
        if (columns[c].type == ATTN_COL_STR) {
            text = *(const char *const *) field;
            if (text == NULL)
                text = "";
            value = &text;
        }
        status = attn_h5_column_append(r->dset[c], columns[c].name, column_mem_type(c, r->str),
                                       r->rows, value);
    }
    if (status == ATTN_OK)
        status = tag_spectrum(r, row);
    if (status == ATTN_OK && H5Fflush(r->file, H5F_SCOPE_LOCAL) < 0)
        status = ATTN_ERR(ATTN_EIO, "cannot flush");
    if (status != ATTN_OK) {
        /* Best effort: leave every column at the old length. */
        for (size_t c = 0; c < NCOLUMNS; c++)
            H5Dset_extent(r->dset[c], (hsize_t[1]){ (hsize_t) r->rows });
        return attn_error_context(status, "appending point %lld to %s",
                                  (long long) row->point_id, r->path);
    }
    r->rows++;
    return ids_insert(r, row->point_id, r->rows - 1);
}

/* Read the string of column c at row into a new string. */
static int read_string_at(attn_results *r, size_t c, size_t row, char **text)
{
    hsize_t start[1] = { (hsize_t) row }, one[1] = { 1 };
    hid_t fspace = H5Dget_space(r->dset[c]);
    hid_t mspace = H5Screate_simple(1, one, NULL);
    char *raw = NULL;
    int ok = fspace >= 0 && mspace >= 0
             && H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, one, NULL) >= 0
             && H5Dread(r->dset[c], r->str, mspace, fspace, H5P_DEFAULT, &raw) >= 0;
    *text = ok ? attn_io_dup_string(raw != NULL ? raw : "") : NULL;
    if (ok && raw != NULL)
        H5Dvlen_reclaim(r->str, mspace, H5P_DEFAULT, &raw);
    if (mspace >= 0)
        H5Sclose(mspace);
    if (fspace >= 0)
        H5Sclose(fspace);
    if (*text == NULL)
        return ATTN_ERR(ATTN_EIO, "cannot read /points/%s at row %zu", columns[c].name, row);
    return ATTN_OK;
}

int attn_results_write_spectrum(attn_results *r, int64_t point_id, const double *sv, size_t k)
{
    char name[64];
    int status;
    hid_t dset;
    long at = ids_find(r, point_id);

    snprintf(name, sizeof name, "/spectra/%lld", (long long) point_id);
    status = attn_h5_write_matrix(r->file, name, sv, k, 0);
    if (status == ATTN_OK) {
        dset = H5Dopen2(r->file, name, H5P_DEFAULT);
        if (dset < 0) {
            status = ATTN_ERR(ATTN_EIO, "cannot reopen %s", name);
        } else {
            status = attn_h5_attr_write_int(dset, "point_id", point_id);
            /* The point's method and spec, when the point is already in /points. */
            for (size_t c = 0; c < NCOLUMNS && status == ATTN_OK && at >= 0; c++) {
                const char *col = columns[c].name;
                char *text;
                if (strcmp(col, "spec") != 0 && strcmp(col, "method") != 0)
                    continue;
                status = read_string_at(r, c, r->id_rows[at], &text);
                if (status == ATTN_OK)
                    status = attn_h5_attr_write_string(dset, col, text);
                free(text);
            }
            H5Dclose(dset);
        }
    }
    if (status == ATTN_OK && H5Fflush(r->file, H5F_SCOPE_LOCAL) < 0)
        status = ATTN_ERR(ATTN_EIO, "cannot flush");
    if (status != ATTN_OK)
        return attn_error_context(status, "writing the spectrum of point %lld to %s",
                                  (long long) point_id, r->path);
    return ATTN_OK;
}

int attn_results_write_table(attn_results *r, const char *name, const double *x, size_t rows,
                             size_t cols, const char *column_names)
{
    char path[512];
    size_t named = 1;
    int status;
    hid_t dset;

    if (name == NULL || name[0] == '\0' || name[0] == '/' || strstr(name, "..") != NULL
        || strlen(name) > 400)
        return ATTN_ERR(ATTN_EINVAL, "writing a table to %s: name '%s' is not a plain relative "
                        "name", r->path, name != NULL ? name : "(null)");
    if (cols == 0)
        return ATTN_ERR(ATTN_ESHAPE, "writing table %s to %s: cols = 0, expected >= 1", name,
                        r->path);
    for (const char *s = column_names != NULL ? column_names : ""; *s != '\0'; s++)
        named += *s == ',';
    if (column_names == NULL || named != cols)
        return ATTN_ERR(ATTN_ESHAPE, "writing table %s to %s: column_names '%s' names %zu columns, "
                        "the table has %zu", name, r->path,
                        column_names != NULL ? column_names : "(null)",
                        column_names != NULL ? named : 0, cols);
    snprintf(path, sizeof path, "/blocks/%s", name);
    status = attn_h5_write_matrix(r->file, path, x, rows, cols);
    if (status == ATTN_OK) {
        dset = H5Dopen2(r->file, path, H5P_DEFAULT);
        if (dset < 0) {
            status = ATTN_ERR(ATTN_EIO, "cannot reopen %s", path);
        } else {
            status = attn_h5_attr_write_string(dset, "column_names", column_names);
            H5Dclose(dset);
        }
    }
    if (status == ATTN_OK && H5Fflush(r->file, H5F_SCOPE_LOCAL) < 0)
        status = ATTN_ERR(ATTN_EIO, "cannot flush");
    if (status != ATTN_OK)
        return attn_error_context(status, "writing table %s to %s", name, r->path);
    return ATTN_OK;
}

int attn_results_close(attn_results *r)
{
    int status = ATTN_OK;
    if (r == NULL)
        return ATTN_OK;
    for (size_t c = 0; c < NCOLUMNS; c++)
        if (r->dset[c] >= 0)
            H5Dclose(r->dset[c]);
    if (r->points >= 0)
        H5Gclose(r->points);
    if (r->str >= 0)
        H5Tclose(r->str);
    if (r->file >= 0 && H5Fclose(r->file) < 0)
        status = ATTN_ERR(ATTN_EIO, "closing %s failed", r->path);
    free(r->path);
    free(r->ids);
    free(r->id_rows);
    free(r);
    return status;
}

/* ---------------------------------------------------------------------------------------------
 * Merging shards.
 */

/* One shard's /points in memory: per column an int64_t, double or char * array of rows values. */
typedef struct shard {
    const char *path;
    size_t rows;
    void *col[NCOLUMNS];
} shard;

static void shard_free(shard *s)
{
    for (size_t c = 0; c < NCOLUMNS; c++) {
        if (columns[c].type == ATTN_COL_STR && s->col[c] != NULL)
            for (size_t i = 0; i < s->rows; i++)
                free(((char **) s->col[c])[i]);
        free(s->col[c]);
        s->col[c] = NULL;
    }
}

/* Load every column of /points (rows = the length of point_id; missing values are fills). */
static int shard_load(hid_t file, shard *s)
{
    int status;
    hid_t dset;
    status = attn_h5_dataset_open(&dset, file, "/points/point_id");
    if (status == ATTN_OK) {
        status = attn_h5_column_length(dset, "point_id", &s->rows);
        H5Dclose(dset);
    }
    for (size_t c = 0; c < NCOLUMNS && status == ATTN_OK; c++) {
        char name[128];
        size_t len = 0, n = s->rows > 0 ? s->rows : 1;
        s->col[c] = columns[c].type == ATTN_COL_I64   ? calloc(n, sizeof(int64_t))
                    : columns[c].type == ATTN_COL_F64 ? calloc(n, sizeof(double))
                                                      : calloc(n, sizeof(char *));
        if (s->col[c] == NULL)
            return ATTN_ERR(ATTN_ENOMEM, "column %s: %zu values", columns[c].name, s->rows);
        snprintf(name, sizeof name, "/points/%s", columns[c].name);
        dset = H5I_INVALID_HID;
        if (attn_h5_exists(file, name)) {
            status = attn_h5_dataset_open(&dset, file, name);
            if (status == ATTN_OK)
                status = attn_h5_column_length(dset, name, &len);
            if (len > s->rows)
                len = s->rows;
        }
        if (status == ATTN_OK && columns[c].type == ATTN_COL_STR) {
            char **strs = NULL, **out = s->col[c];
            if (dset >= 0)
                status = attn_h5_column_read_strings(dset, name, len, &strs);
            for (size_t i = 0; i < s->rows && status == ATTN_OK; i++) {
                out[i] = i < len ? strs[i] : attn_io_dup_string("");
                if (out[i] == NULL)
                    status = ATTN_ERR(ATTN_ENOMEM, "column %s", name);
            }
            if (status != ATTN_OK && strs != NULL)
                for (size_t i = 0; i < len; i++)
                    if (i >= s->rows || out[i] != strs[i])
                        free(strs[i]);
            free(strs);
        } else if (status == ATTN_OK) {
            int64_t *xi = s->col[c];
            double *xf = s->col[c];
            if (dset >= 0)
                status = attn_h5_column_read(dset, name, column_mem_type(c, -1), len, s->col[c]);
            for (size_t i = len; i < s->rows; i++) {
                if (columns[c].type == ATTN_COL_I64)
                    xi[i] = fill_i64;
                else
                    xf[i] = fill_f64;
            }
        }
        if (dset >= 0)
            H5Dclose(dset);
    }
    return status;
}

typedef struct entry {
    int64_t id;
    size_t shard;
    size_t row;
} entry;

static int entry_cmp(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    if (x->shard != y->shard)
        return x->shard < y->shard ? -1 : 1;
    return x->row < y->row ? -1 : x->row > y->row;
}

/* Copy /spectra/<id> of every kept point and the /blocks tables the output lacks from shard s. */
static int copy_objects(hid_t in, hid_t out, const entry *keep, size_t nkeep, size_t s)
{
    int status = ATTN_OK;
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    char name[64];
    if (lcpl < 0 || H5Pset_create_intermediate_group(lcpl, 1) < 0)
        return ATTN_ERR(ATTN_EIO, "cannot set up object copies");
    for (size_t i = 0; i < nkeep && status == ATTN_OK; i++) {
        if (keep[i].shard != s)
            continue;
        snprintf(name, sizeof name, "/spectra/%lld", (long long) keep[i].id);
        if (attn_h5_exists(in, name) && !attn_h5_exists(out, name)
            && H5Ocopy(in, name, out, name, H5P_DEFAULT, lcpl) < 0)
            status = ATTN_ERR(ATTN_EIO, "cannot copy %s", name);
    }
    if (status == ATTN_OK && attn_h5_exists(in, "/blocks")) {
        hid_t g = H5Gopen2(in, "/blocks", H5P_DEFAULT);
        H5G_info_t info;
        if (g < 0 || H5Gget_info(g, &info) < 0)
            status = ATTN_ERR(ATTN_EFORMAT, "/blocks is not a group");
        for (hsize_t i = 0; status == ATTN_OK && i < info.nlinks; i++) {
            char link[256], path[300];
            if (H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, link, sizeof link,
                                   H5P_DEFAULT) < 0) {
                status = ATTN_ERR(ATTN_EFORMAT, "cannot list /blocks");
                break;
            }
            snprintf(path, sizeof path, "/blocks/%s", link);
            if (!attn_h5_exists(out, path) && H5Ocopy(in, path, out, path, H5P_DEFAULT, lcpl) < 0)
                status = ATTN_ERR(ATTN_EIO, "cannot copy %s", path);
        }
        if (g >= 0)
            H5Gclose(g);
    }
    H5Pclose(lcpl);
    return status;
}

/* Write the merged file: provenance of the first shard, the kept rows, spectra and blocks. */
static int merge_write(const char *out, const char *const *paths, size_t nshards,
                       const shard *shards, const entry *keep, size_t nkeep)
{
    int status = ATTN_OK;
    attn_results *r = results_new(out);
    hid_t first = H5I_INVALID_HID;
    char utc[64], *from = NULL;
    size_t fromlen = 1;

    if (r == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "results of %s", out);
    r->file = H5Fcreate(out, H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT);
    if (r->file < 0) {
        status = ATTN_ERR(ATTN_EIO, "%s: cannot create it (does its directory exist, and is it "
                          "writable?)", out);
        goto done;
    }
    status = attn_h5_open(&first, paths[0], H5F_ACC_RDONLY);
    if (status == ATTN_OK)
        status = attn_h5_attrs_copy(first, r->file);
    if (first >= 0)
        H5Fclose(first);

    /* Where the rows came from: the shard paths, one per line. */
    for (size_t s = 0; s < nshards; s++)
        fromlen += strlen(paths[s]) + 1;
    from = calloc(fromlen, 1);
    if (status == ATTN_OK && from == NULL)
        status = ATTN_ERR(ATTN_ENOMEM, "list of shards");
    for (size_t s = 0; s < nshards && status == ATTN_OK; s++) {
        strcat(from, paths[s]);
        strcat(from, s + 1 < nshards ? "\n" : "");
    }
    utc_now(utc, sizeof utc);
    if (status == ATTN_OK)
        status = attn_h5_attr_write_string(r->file, "merged_from", from);
    if (status == ATTN_OK)
        status = attn_h5_attr_write_string(r->file, "merged_utc_time", utc);
    if (status == ATTN_OK)
        status = create_points(r, nkeep);

    /* One gather and one write per column. */
    for (size_t c = 0; c < NCOLUMNS && status == ATTN_OK; c++) {
        size_t size = columns[c].type == ATTN_COL_STR ? sizeof(char *) : 8;
        char *buf = calloc(nkeep > 0 ? nkeep : 1, size);
        if (buf == NULL) {
            status = ATTN_ERR(ATTN_ENOMEM, "column %s: %zu values", columns[c].name, nkeep);
            break;
        }
        for (size_t i = 0; i < nkeep; i++)
            memcpy(buf + i * size, (const char *) shards[keep[i].shard].col[c] + keep[i].row * size,
                   size);
        status = attn_h5_column_write(r->dset[c], columns[c].name, column_mem_type(c, r->str), 0,
                                      nkeep, buf);
        free(buf);
    }

    for (size_t s = 0; s < nshards && status == ATTN_OK; s++) {
        hid_t in;
        status = attn_h5_open(&in, paths[s], H5F_ACC_RDONLY);
        if (status == ATTN_OK) {
            status = copy_objects(in, r->file, keep, nkeep, s);
            if (status != ATTN_OK)
                status = attn_error_context(status, "copying from %s", paths[s]);
            H5Fclose(in);
        }
    }
done:
    free(from);
    if (attn_results_close(r) != ATTN_OK && status == ATTN_OK)
        status = ATTN_EIO;
    return status;
}

int attn_results_merge(const char *out, const char *const *paths, size_t nshards)
{
    int status = ATTN_OK;
    shard *shards = NULL;
    entry *all = NULL;
    char *hash0 = NULL;
    size_t total = 0, nkeep = 0;
    struct stat st;

    attn_h5_init();
    if (nshards == 0)
        return ATTN_ERR(ATTN_EINVAL, "merging into %s: no shards given", out);
    if (stat(out, &st) == 0)
        return ATTN_ERR(ATTN_EIO, "merging into %s: it exists; refusing to overwrite it (delete it "
                        "or choose another output)", out);
    shards = calloc(nshards, sizeof *shards);
    if (shards == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "%zu shards", nshards);

    for (size_t s = 0; s < nshards && status == ATTN_OK; s++) {
        hid_t file;
        char *hash;
        shards[s].path = paths[s];
        status = results_check(paths[s], &file, &hash);
        if (status != ATTN_OK)
            break;
        if (s == 0) {
            hash0 = hash;
        } else {
            if (strcmp(hash, hash0) != 0)
                status = ATTN_ERR(ATTN_ECONFIG, "%s (config_hash %s) and %s (config_hash %s) were "
                                  "written by different configs; refusing to merge them",
                                  paths[0], hash0, paths[s], hash);
            free(hash);
        }
        if (status == ATTN_OK) {
            status = shard_load(file, &shards[s]);
            if (status != ATTN_OK)
                status = attn_error_context(status, "reading %s", paths[s]);
        }
        H5Fclose(file);
        total += shards[s].rows;
    }

    /* Sort all rows by point_id (ties by shard order) and keep the first of each id. */
    if (status == ATTN_OK) {
        all = calloc(total > 0 ? total : 1, sizeof *all);
        if (all == NULL)
            status = ATTN_ERR(ATTN_ENOMEM, "%zu rows", total);
    }
    if (status == ATTN_OK) {
        size_t t = 0;
        for (size_t s = 0; s < nshards; s++)
            for (size_t i = 0; i < shards[s].rows; i++)
                all[t++] = (entry){ .id = ((int64_t *) shards[s].col[POINT_ID])[i], .shard = s,
                                    .row = i };
        qsort(all, total, sizeof *all, entry_cmp);
        for (size_t i = 0; i < total; i++)
            if (nkeep == 0 || all[i].id != all[nkeep - 1].id)
                all[nkeep++] = all[i];
        status = merge_write(out, paths, nshards, shards, all, nkeep);
        if (status != ATTN_OK) {
            status = attn_error_context(status, "merging into %s", out);
            remove(out);
        }
    }

    for (size_t s = 0; s < nshards; s++)
        shard_free(&shards[s]);
    free(shards);
    free(all);
    free(hash0);
    return status;
}
