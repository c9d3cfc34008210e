/* table.c — reading a results file back for analysis: every /points column in memory (numbers
 * as doubles, strings as strings), the root attributes as text, and single spectra.
 *
 * Columns come in the order of lib/io/columns.def, followed by any other 1-D dataset in /points
 * (written by a newer attnlab), in name order.  The table has as many rows as its shortest
 * column, which drops a row cut short by a killed run.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn_io.h"
#include "io/h5util.h"

void attn_table_destroy(attn_table *t)
{
    if (t == NULL)
        return;
    for (size_t c = 0; c < t->ncols; c++) {
        if (t->str != NULL && t->str[c] != NULL) {
            for (size_t i = 0; i < t->rows; i++)
                free(t->str[c][i]);
            free(t->str[c]);
        }
        if (t->num != NULL)
            free(t->num[c]);
        if (t->names != NULL)
            free(t->names[c]);
    }
    for (size_t a = 0; a < t->nattrs; a++) {
        free(t->attr_names[a]);
        free(t->attr_values[a]);
    }
    free(t->names);
    free(t->types);
    free(t->num);
    free(t->str);
    free(t->attr_names);
    free(t->attr_values);
    free(t);
}

/* The column type of a dataset from its HDF5 type class, or -1 for other classes. */
static int type_of(hid_t dset)
{
    hid_t type = H5Dget_type(dset);
    H5T_class_t cls = type >= 0 ? H5Tget_class(type) : H5T_NO_CLASS;
    if (type >= 0)
        H5Tclose(type);
    return cls == H5T_INTEGER ? ATTN_COL_I64
           : cls == H5T_FLOAT ? ATTN_COL_F64 : cls == H5T_STRING ? ATTN_COL_STR : -1;
}

/* The names of the columns to read: columns.def order, then the other 1-D datasets of /points. */
static int list_columns(hid_t points, attn_table *t, size_t nlinks)
{
    size_t cap = attn_column_count() + nlinks;
    t->names = calloc(cap > 0 ? cap : 1, sizeof *t->names);
    if (t->names == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "%zu column names", cap);
    for (size_t c = 0; c < attn_column_count(); c++) {
        const char *name = attn_column_at(c)->name;
        if (attn_h5_exists(points, name) && (t->names[t->ncols] = attn_io_dup_string(name)) != NULL)
            t->ncols++;
    }
    for (hsize_t i = 0; i < nlinks; i++) {
        char name[256];
        H5O_info_t info;
        if (H5Lget_name_by_idx(points, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name,
                               H5P_DEFAULT) < 0
            || attn_column_find(name) != NULL
            || H5Oget_info_by_name(points, name, &info, H5P_DEFAULT) < 0
            || info.type != H5O_TYPE_DATASET)
            continue;
        if ((t->names[t->ncols] = attn_io_dup_string(name)) != NULL)
            t->ncols++;
    }
    return ATTN_OK;
}

/* Read the columns named in t->names. */
static int read_columns(hid_t points, attn_table *t)
{
    int status = ATTN_OK;
    hid_t *dset = calloc(t->ncols > 0 ? t->ncols : 1, sizeof *dset);

    t->types = calloc(t->ncols > 0 ? t->ncols : 1, sizeof *t->types);
    t->num = calloc(t->ncols > 0 ? t->ncols : 1, sizeof *t->num);
    t->str = calloc(t->ncols > 0 ? t->ncols : 1, sizeof *t->str);
    if (dset == NULL || t->types == NULL || t->num == NULL || t->str == NULL) {
        free(dset);
        return ATTN_ERR(ATTN_ENOMEM, "%zu columns", t->ncols);
    }

    /* Open every column; its length bounds the rows. */
    t->rows = (size_t) -1;
    for (size_t c = 0; c < t->ncols; c++) {
        size_t len;
        dset[c] = H5I_INVALID_HID;
        if (status == ATTN_OK)
            status = attn_h5_dataset_open(&dset[c], points, t->names[c]);
        if (status == ATTN_OK)
            status = attn_h5_column_length(dset[c], t->names[c], &len);
        if (status == ATTN_OK && (t->types[c] = type_of(dset[c])) < 0)
            status = ATTN_ERR(ATTN_EFORMAT, "column %s holds neither numbers nor strings",
                              t->names[c]);
        if (status == ATTN_OK && len < t->rows)
            t->rows = len;
    }
    if (t->ncols == 0 || status != ATTN_OK)
        t->rows = 0;

    for (size_t c = 0; c < t->ncols && status == ATTN_OK; c++) {
        if (t->types[c] == ATTN_COL_STR) {
            status = attn_h5_column_read_strings(dset[c], t->names[c], t->rows, &t->str[c]);
        } else {
            t->num[c] = calloc(t->rows > 0 ? t->rows : 1, sizeof *t->num[c]);
            if (t->num[c] == NULL)
                status = ATTN_ERR(ATTN_ENOMEM, "column %s: %zu values", t->names[c], t->rows);
            else
                status = attn_h5_column_read(dset[c], t->names[c], H5T_NATIVE_DOUBLE, t->rows,
                                             t->num[c]);
        }
    }
    for (size_t c = 0; c < t->ncols; c++)
        if (dset[c] >= 0)
            H5Dclose(dset[c]);
    free(dset);
    return status;
}

/* The root attributes as text. */
static int read_attrs(hid_t file, attn_table *t)
{
    H5O_info_t info;
    if (H5Oget_info(file, &info) < 0)
        return ATTN_ERR(ATTN_EFORMAT, "cannot list the root attributes");
    t->attr_names = calloc(info.num_attrs > 0 ? info.num_attrs : 1, sizeof *t->attr_names);
    t->attr_values = calloc(info.num_attrs > 0 ? info.num_attrs : 1, sizeof *t->attr_values);
    if (t->attr_names == NULL || t->attr_values == NULL)
        return ATTN_ERR(ATTN_ENOMEM, "%llu attributes", (unsigned long long) info.num_attrs);
    for (hsize_t a = 0; a < info.num_attrs; a++) {
        char name[256];
        int status;
        if (H5Aget_name_by_idx(file, ".", H5_INDEX_NAME, H5_ITER_INC, a, name, sizeof name,
                               H5P_DEFAULT) < 0)
            return ATTN_ERR(ATTN_EFORMAT, "cannot read the name of root attribute %llu",
                            (unsigned long long) a);
        t->attr_names[t->nattrs] = attn_io_dup_string(name);
        if (t->attr_names[t->nattrs] == NULL)
            return ATTN_ERR(ATTN_ENOMEM, "attribute name %s", name);
        status = attn_h5_attr_text(file, name, &t->attr_values[t->nattrs]);
        t->nattrs++;
        if (status != ATTN_OK)
            return status;
    }
    return ATTN_OK;
}

int attn_table_read(attn_table **table, const char *path)
{
    int status;
    hid_t file, points = H5I_INVALID_HID;
    H5G_info_t info;
    attn_table *t;

    *table = NULL;
    status = attn_h5_open(&file, path, H5F_ACC_RDONLY);
    if (status != ATTN_OK)
        return status;
    t = calloc(1, sizeof *t);
    if (t == NULL) {
        status = ATTN_ERR(ATTN_ENOMEM, "table header");
        goto done;
    }
    if (!attn_h5_exists(file, "/points")
        || (points = H5Gopen2(file, "/points", H5P_DEFAULT)) < 0
        || H5Gget_info(points, &info) < 0) {
        status = ATTN_ERR(ATTN_EFORMAT, "%s has no /points table: it is not an attnlab results "
                          "file", path);
        goto done;
    }
    status = list_columns(points, t, (size_t) info.nlinks);
    if (status == ATTN_OK)
        status = read_columns(points, t);
    if (status == ATTN_OK)
        status = read_attrs(file, t);
    if (status != ATTN_OK)
        status = attn_error_context(status, "reading %s", path);
done:
    if (points >= 0)
        H5Gclose(points);
    H5Fclose(file);
    if (status == ATTN_OK)
        *table = t;
    else
        attn_table_destroy(t);
    return status;
}

long attn_table_column(const attn_table *t, const char *name)
{
    char list[1024];
    size_t used = 0;
    for (size_t c = 0; c < t->ncols; c++)
        if (strcmp(t->names[c], name) == 0)
            return (long) c;
    list[0] = '\0';
    for (size_t c = 0; c < t->ncols && used < sizeof list; c++)
        used += (size_t) snprintf(list + used, sizeof list - used, "%s%s", c > 0 ? ", " : "",
                                  t->names[c]);
    ATTN_ERR(ATTN_EINVAL, "no column '%s' (the table has: %s)", name, list);
    return -1;
}

int attn_results_read_spectrum(const char *path, int64_t point_id, double **sv, size_t *k)
{
    char name[64];
    hid_t file, dset = H5I_INVALID_HID;
    int status;

    *sv = NULL;
    *k = 0;
    status = attn_h5_open(&file, path, H5F_ACC_RDONLY);
    if (status != ATTN_OK)
        return status;
    snprintf(name, sizeof name, "/spectra/%lld", (long long) point_id);
    status = attn_h5_dataset_open(&dset, file, name);
    if (status == ATTN_OK)
        status = attn_h5_column_length(dset, name, k);
    if (status == ATTN_OK) {
        *sv = calloc(*k > 0 ? *k : 1, sizeof **sv);
        if (*sv == NULL)
            status = ATTN_ERR(ATTN_ENOMEM, "%s: %zu values", name, *k);
    }
    if (status == ATTN_OK)
        status = attn_h5_column_read(dset, name, H5T_NATIVE_DOUBLE, *k, *sv);
    if (status != ATTN_OK) {
        free(*sv);
        *sv = NULL;
        *k = 0;
        status = attn_error_context(status, "reading %s", path);
    }
    if (dset >= 0)
        H5Dclose(dset);
    H5Fclose(file);
    return status;
}

int attn_results_read_table(const char *path, const char *name, double **x, size_t *rows,
                            size_t *cols, char **column_names)
{
    char full[512];
    hid_t file, dset = H5I_INVALID_HID;
    hsize_t dims[2] = { 0, 0 };
    int rank = 0, status;

    attn_h5_init();
    *x = NULL;
    *rows = *cols = 0;
    *column_names = NULL;
    status = attn_h5_open(&file, path, H5F_ACC_RDONLY);
    if (status != ATTN_OK)
        return status;
    snprintf(full, sizeof full, "/blocks/%s", name);
    status = attn_h5_dataset_open(&dset, file, full);
    if (status == ATTN_OK)
        status = attn_h5_dims(dset, &rank, dims, 2);
    if (status == ATTN_OK && rank != 2)
        status = ATTN_ERR(ATTN_EFORMAT, "%s has rank %d, expected a 2-D table", full, rank);
    if (status == ATTN_OK)
        status = attn_h5_attr_read_string(dset, "column_names", column_names);
    if (status == ATTN_OK) {
        *rows = (size_t) dims[0];
        *cols = (size_t) dims[1];
        *x = calloc(*rows * *cols + 1, sizeof **x);
        if (*x == NULL)
            status = ATTN_ERR(ATTN_ENOMEM, "%s: %zu x %zu values", full, *rows, *cols);
    }
    if (status == ATTN_OK && *rows > 0
        && H5Dread(dset, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, *x) < 0)
        status = ATTN_ERR(ATTN_EIO, "%s: cannot read %zu x %zu values", full, *rows, *cols);
    if (status != ATTN_OK) {
        free(*x);
        free(*column_names);
        *x = NULL;
        *column_names = NULL;
        *rows = *cols = 0;
        status = attn_error_context(status, "reading %s", path);
    }
    if (dset >= 0)
        H5Dclose(dset);
    H5Fclose(file);
    return status;
}
