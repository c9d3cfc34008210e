/* h5util.c — small HDF5 helpers shared by lib/io: opening files with a plain message, rank-3
 * hyperslab reads, typed attributes, extensible 1-D columns and variable-length UTF-8 strings.
 *
 * HDF5 keeps its own error stack; its automatic printing is switched off (attn_h5_init) and the
 * innermost HDF5 description is quoted in our messages where it helps ("HDF5: can't open file").
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/h5util.h"

/* Rows per chunk of a /points column: 512 doubles are 4 KiB, small enough that appending one row
 * rewrites little, large enough that a table of 10^5 points has a few hundred chunks. */
#define COLUMN_CHUNK 512

void attn_h5_init(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

/* The innermost description on HDF5's error stack (where the failure started), for messages. */
static herr_t first_error(unsigned n, const H5E_error2_t *err, void *data)
{
    char *buf = data;
    if (n == 0 && err->desc != NULL)
        snprintf(buf, 256, "%s", err->desc);
    return 0;
}

static const char *h5_reason(char buf[256])
{
    snprintf(buf, 256, "no detail");
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, first_error, buf);
    return buf;
}

/* The path of an object ("/layer0"), for messages; "?" when HDF5 cannot say. */
static const char *obj_name(hid_t obj, char *buf, size_t len)
{
    if (H5Iget_name(obj, buf, len) <= 0)
        snprintf(buf, len, "?");
    return buf;
}

/* Release an HDF5 id that a helper obtained (a dataspace, datatype, attribute, dataset or property
 * list).  A negative id, left by a call that failed, is skipped, so that every exit path can release
 * all of its ids the same way, one line each. */
static void close_id(hid_t id)
{
    if (id < 0)
        return;
    switch (H5Iget_type(id)) {
    case H5I_DATASPACE:
        H5Sclose(id);
        break;
    case H5I_DATATYPE:
        H5Tclose(id);
        break;
    case H5I_ATTR:
        H5Aclose(id);
        break;
    case H5I_DATASET:
        H5Dclose(id);
        break;
    case H5I_GENPROP_LST:
        H5Pclose(id);
        break;
    default:
        break;
    }
}

/* Move the hyperslab of count values from start of dataset dset (rank dimensions) between the file
 * and memory of type mtype: write it from src when src is not NULL, read it into dst otherwise.
 * An empty hyperslab (a count of 0) moves nothing and succeeds without asking HDF5.  Returns a
 * negative value on failure, with HDF5's reason in reason, which must be taken before the
 * dataspaces are closed because every HDF5 call clears the error stack.  The caller writes the
 * message, since only it knows what was being moved. */
static herr_t hyperslab_transfer(hid_t dset, int rank, const hsize_t *start, const hsize_t *count,
                                 hid_t mtype, const void *src, void *dst, char reason[256])
{
    for (int i = 0; i < rank; i++)
        if (count[i] == 0)
            return 0;
    herr_t result = -1;
    hid_t fspace = H5Dget_space(dset);
    hid_t mspace = H5Screate_simple(rank, count, NULL);
    if (fspace >= 0 && mspace >= 0
        && H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL) >= 0)
        result = src != NULL ? H5Dwrite(dset, mtype, mspace, fspace, H5P_DEFAULT, src)
                             : H5Dread(dset, mtype, mspace, fspace, H5P_DEFAULT, dst);
    if (result < 0)
        h5_reason(reason);
    close_id(mspace);
    close_id(fspace);
    return result;
}

char *attn_io_dup_string(const char *s)
{
    size_t len = strlen(s);
    char *t = calloc(len + 1, 1);
    if (t != NULL)
        memcpy(t, s, len);
    return t;
}

int attn_h5_file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int attn_h5_open(hid_t *file, const char *path, unsigned flags)
{
    struct stat st;
    char reason[256];
    htri_t is_hdf5;

    *file = H5I_INVALID_HID;
    attn_h5_init();
    if (stat(path, &st) != 0)
        return ATTN_ERR(ATTN_EIO, "%s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return ATTN_ERR(ATTN_EIO, "%s is not a regular file", path);
    if (access(path, flags == H5F_ACC_RDWR ? R_OK | W_OK : R_OK) != 0)
        return ATTN_ERR(ATTN_EIO, "%s: %s", path, strerror(errno));
    is_hdf5 = H5Fis_hdf5(path);
    if (is_hdf5 <= 0)
        return ATTN_ERR(ATTN_EFORMAT, "%s is not an HDF5 file", path);
    *file = H5Fopen(path, flags, H5P_DEFAULT);
    if (*file < 0)
        return ATTN_ERR(ATTN_EIO, "%s: cannot open it%s (HDF5: %s; another program writing it "
                        "holds HDF5's file lock)", path,
                        flags == H5F_ACC_RDWR ? " for writing" : "", h5_reason(reason));
    return ATTN_OK;
}

int attn_h5_exists(hid_t loc, const char *path)
{
    /* Check each prefix "/a", "/a/b", ... in turn: H5Lexists fails when a parent is missing. */
    size_t len = strlen(path);
    char *buf = calloc(len + 1, 1);
    int found = 1;
    if (buf == NULL)
        return 0;
    memcpy(buf, path, len);
    for (size_t i = 1; i <= len && found; i++) {
        if ((i == len || buf[i] == '/') && buf[i - 1] != '/') {
            char saved = buf[i];
            buf[i] = '\0';
            found = H5Lexists(loc, buf, H5P_DEFAULT) > 0;
            buf[i] = saved;
        }
    }
    free(buf);
    return found;
}

int attn_h5_dataset_open(hid_t *dset, hid_t loc, const char *path)
{
    H5O_info_t info;
    *dset = H5I_INVALID_HID;
    if (!attn_h5_exists(loc, path))
        return ATTN_ERR(ATTN_EFORMAT, "dataset %s is missing", path);
    if (H5Oget_info_by_name(loc, path, &info, H5P_DEFAULT) < 0 || info.type != H5O_TYPE_DATASET)
        return ATTN_ERR(ATTN_EFORMAT, "%s is not a dataset", path);
    *dset = H5Dopen2(loc, path, H5P_DEFAULT);
    if (*dset < 0) {
        char reason[256];
        return ATTN_ERR(ATTN_EFORMAT, "dataset %s: cannot open it (HDF5: %s)", path,
                        h5_reason(reason));
    }
    return ATTN_OK;
}

int attn_h5_dims(hid_t dset, int *rank, hsize_t *dims, int maxrank)
{
    hsize_t all[H5S_MAX_RANK];
    char name[256];
    hid_t space = H5Dget_space(dset);
    int r = space >= 0 ? H5Sget_simple_extent_dims(space, all, NULL) : -1;
    close_id(space);
    if (r < 0)
        return ATTN_ERR(ATTN_EFORMAT, "dataset %s: cannot read its shape",
                        obj_name(dset, name, sizeof name));
    *rank = r;
    for (int i = 0; i < r && i < maxrank; i++)
        dims[i] = all[i];
    return ATTN_OK;
}

const char *attn_h5_shape_text(char *buf, size_t len, const hsize_t *dims, int rank)
{
    size_t used = 0;
    if (len == 0)
        return buf;
    buf[0] = '\0';
    used += (size_t) snprintf(buf, len, "[");
    for (int i = 0; i < rank && used < len; i++)
        used += (size_t) snprintf(buf + used, len - used, "%s%llu", i > 0 ? ", " : "",
                                  (unsigned long long) dims[i]);
    if (used < len)
        snprintf(buf + used, len - used, "]");
    return buf;
}

int attn_h5_read_rows3(hid_t dset, const char *name, const hsize_t dims[3], size_t rows,
                       double *out)
{
    hsize_t start[3] = { 0, 0, 0 };
    hsize_t count[3] = { dims[0], (hsize_t) rows, dims[2] };
    hid_t type = H5Dget_type(dset);
    H5T_class_t cls = type >= 0 ? H5Tget_class(type) : H5T_NO_CLASS;
    char reason[256];

    close_id(type);
    if (cls != H5T_FLOAT && cls != H5T_INTEGER)
        return ATTN_ERR(ATTN_EFORMAT, "dataset %s does not hold numbers (HDF5 type class %d), "
                        "expected float32 or float64", name, (int) cls);
    if (rows > dims[1])
        return ATTN_ERR(ATTN_ESHAPE, "dataset %s: %zu rows asked, %llu available", name, rows,
                        (unsigned long long) dims[1]);
    if (hyperslab_transfer(dset, 3, start, count, H5T_NATIVE_DOUBLE, NULL, out, reason) < 0)
        return ATTN_ERR(ATTN_EIO, "dataset %s: reading %llu x %zu x %llu values failed "
                        "(HDF5: %s)", name, (unsigned long long) dims[0], rows,
                        (unsigned long long) dims[2], reason);
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Attributes.
 */
int attn_h5_attr_exists(hid_t obj, const char *name)
{
    return H5Aexists(obj, name) > 0;
}

/* Open attribute name of obj, checking that its type class is one of cls1, cls2 (H5T_NO_CLASS:
 * unused) and, when scalar_only, that it holds one value. */
static int attr_open(hid_t obj, const char *name, H5T_class_t cls1, H5T_class_t cls2,
                     const char *expected, int scalar_only, hid_t *attr)
{
    char where[256];
    hid_t a, type, space;
    H5T_class_t cls;
    hssize_t npoints;

    *attr = H5I_INVALID_HID;
    if (H5Aexists(obj, name) <= 0)
        return ATTN_ERR(ATTN_EFORMAT, "attribute %s of %s is missing", name,
                        obj_name(obj, where, sizeof where));
    a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0)
        return ATTN_ERR(ATTN_EFORMAT, "attribute %s of %s cannot be opened", name,
                        obj_name(obj, where, sizeof where));
    type = H5Aget_type(a);
    space = H5Aget_space(a);
    cls = type >= 0 ? H5Tget_class(type) : H5T_NO_CLASS;
    npoints = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    close_id(type);
    close_id(space);
    if (cls != cls1 && (cls2 == H5T_NO_CLASS || cls != cls2)) {
        H5Aclose(a);
        return ATTN_ERR(ATTN_EFORMAT, "attribute %s of %s is not %s", name,
                        obj_name(obj, where, sizeof where), expected);
    }
    if (scalar_only && npoints != 1) {
        H5Aclose(a);
        return ATTN_ERR(ATTN_EFORMAT, "attribute %s of %s holds %lld values, expected one", name,
                        obj_name(obj, where, sizeof where), (long long) npoints);
    }
    *attr = a;
    return ATTN_OK;
}

/* Read the scalar attribute name of obj, of type class cls1 or cls2 (see attr_open), converted to
 * the memory type mtype into value; expected names the kind for messages ("an integer"). */
static int attr_read_scalar(hid_t obj, const char *name, H5T_class_t cls1, H5T_class_t cls2,
                            const char *expected, hid_t mtype, void *value)
{
    hid_t a;
    int status = attr_open(obj, name, cls1, cls2, expected, 1, &a);
    if (status != ATTN_OK)
        return status;
    if (H5Aread(a, mtype, value) < 0)
        status = ATTN_ERR(ATTN_EFORMAT, "attribute %s cannot be read as %s", name, expected);
    H5Aclose(a);
    return status;
}

int attn_h5_attr_read_int(hid_t obj, const char *name, long long *value)
{
    return attr_read_scalar(obj, name, H5T_INTEGER, H5T_NO_CLASS, "an integer", H5T_NATIVE_LLONG,
                            value);
}

int attn_h5_attr_read_double(hid_t obj, const char *name, double *value)
{
    return attr_read_scalar(obj, name, H5T_FLOAT, H5T_INTEGER, "a number", H5T_NATIVE_DOUBLE,
                            value);
}

/* Read the string attribute a (scalar) into a new string. */
static int attr_string(hid_t a, const char *name, char **value)
{
    int status = ATTN_OK;
    hid_t ftype = H5Aget_type(a);
    hid_t mtype = ftype >= 0 ? H5Tcopy(ftype) : H5I_INVALID_HID;
    hid_t space = H5Aget_space(a);

    *value = NULL;
    if (ftype < 0 || mtype < 0 || space < 0) {
        status = ATTN_ERR(ATTN_EFORMAT, "attribute %s: cannot read its type", name);
    } else if (H5Tis_variable_str(ftype) > 0) {
        char *s = NULL;
        if (H5Aread(a, mtype, &s) < 0)
            status = ATTN_ERR(ATTN_EFORMAT, "attribute %s cannot be read as a string", name);
        else if ((*value = attn_io_dup_string(s != NULL ? s : "")) == NULL)
            status = ATTN_ERR(ATTN_ENOMEM, "attribute %s: copy of its string", name);
        if (s != NULL)
            H5Dvlen_reclaim(mtype, space, H5P_DEFAULT, &s);
    } else {
        size_t size = H5Tget_size(ftype);
        char *s = calloc(size + 1, 1);
        if (s == NULL)
            status = ATTN_ERR(ATTN_ENOMEM, "attribute %s: %zu bytes", name, size + 1);
        else if (H5Aread(a, mtype, s) < 0)
            status = ATTN_ERR(ATTN_EFORMAT, "attribute %s cannot be read as a string", name);
        if (status == ATTN_OK)
            *value = s;
        else
            free(s);
    }
    close_id(space);
    close_id(mtype);
    close_id(ftype);
    return status;
}

int attn_h5_attr_read_string(hid_t obj, const char *name, char **value)
{
    hid_t a;
    int status = attr_open(obj, name, H5T_STRING, H5T_NO_CLASS, "a string", 1, &a);
    *value = NULL;
    if (status != ATTN_OK)
        return status;
    status = attr_string(a, name, value);
    H5Aclose(a);
    return status;
}

/* A growing text buffer; .failed records an allocation failure. */
typedef struct textbuf {
    char *s;
    size_t len;
    size_t cap;
    int failed;
} textbuf;

static void text_add(textbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_add(textbuf *b, const char *fmt, ...)
{
    va_list ap;
    int need;
    if (b->failed)
        return;
    va_start(ap, fmt);
    need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (need < 0) {
        b->failed = 1;
        return;
    }
    if (b->len + (size_t) need + 1 > b->cap) {
        size_t cap = 2 * (b->len + (size_t) need + 1);
        char *s = realloc(b->s, cap);
        if (s == NULL) {
            b->failed = 1;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t) need;
}

int attn_h5_attr_text(hid_t obj, const char *name, char **text)
{
    int status = ATTN_OK;
    textbuf b = { 0 };
    hid_t a, type, space;
    H5T_class_t cls;
    hssize_t npoints;

    *text = NULL;
    a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0)
        return ATTN_ERR(ATTN_EFORMAT, "attribute %s cannot be opened", name);
    type = H5Aget_type(a);
    space = H5Aget_space(a);
    cls = H5Tget_class(type);
    npoints = H5Sget_simple_extent_npoints(space);
    if (cls == H5T_STRING && npoints == 1) {
        status = attr_string(a, name, text);
    } else if ((cls == H5T_INTEGER || cls == H5T_FLOAT) && npoints >= 0) {
        size_t count = (size_t) npoints;
        double *x = cls == H5T_FLOAT ? calloc(count + 1, sizeof *x) : NULL;
        long long *y = cls == H5T_INTEGER ? calloc(count + 1, sizeof *y) : NULL;
        if (x == NULL && y == NULL) {
            status = ATTN_ERR(ATTN_ENOMEM, "attribute %s: %zu values", name, count);
        } else if (H5Aread(a, x != NULL ? H5T_NATIVE_DOUBLE : H5T_NATIVE_LLONG,
                           x != NULL ? (void *) x : (void *) y) < 0) {
            status = ATTN_ERR(ATTN_EFORMAT, "attribute %s cannot be read", name);
        } else {
            text_add(&b, "%s", "");
            for (size_t i = 0; i < count; i++) {
                if (x != NULL)
                    text_add(&b, "%s%.17g", i > 0 ? ", " : "", x[i]);
                else
                    text_add(&b, "%s%lld", i > 0 ? ", " : "", y[i]);
            }
            if (b.failed)
                status = ATTN_ERR(ATTN_ENOMEM, "attribute %s: its text", name);
            else
                *text = b.s;
        }
        free(x);
        free(y);
    } else {
        text_add(&b, "(%lld values of HDF5 type class %d)", (long long) npoints, (int) cls);
        if (b.failed)
            status = ATTN_ERR(ATTN_ENOMEM, "attribute %s: its text", name);
        else
            *text = b.s;
    }
    if (status != ATTN_OK || *text != b.s)
        free(b.s);
    H5Sclose(space);
    H5Tclose(type);
    H5Aclose(a);
    return status;
}

/* Create attribute name of obj with the given type, replacing any attribute of that name, and
 * write the value (memory type mtype). */
static int attr_write(hid_t obj, const char *name, hid_t ftype, hid_t mtype, const void *value)
{
    char where[256];
    int status = ATTN_OK;
    hid_t space, a;
    if (H5Aexists(obj, name) > 0 && H5Adelete(obj, name) < 0)
        return ATTN_ERR(ATTN_EIO, "attribute %s of %s cannot be replaced", name,
                        obj_name(obj, where, sizeof where));
    space = H5Screate(H5S_SCALAR);
    a = space >= 0 ? H5Acreate2(obj, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT) : -1;
    if (a < 0 || H5Awrite(a, mtype, value) < 0) {
        char reason[256];
        status = ATTN_ERR(ATTN_EIO, "attribute %s of %s cannot be written (HDF5: %s)", name,
                          obj_name(obj, where, sizeof where), h5_reason(reason));
    }
    close_id(a);
    close_id(space);
    return status;
}

hid_t attn_h5_string_type(void)
{
    hid_t type = H5Tcopy(H5T_C_S1);
    if (type < 0)
        return type;
    if (H5Tset_size(type, H5T_VARIABLE) < 0 || H5Tset_cset(type, H5T_CSET_UTF8) < 0) {
        H5Tclose(type);
        return H5I_INVALID_HID;
    }
    return type;
}

int attn_h5_attr_write_string(hid_t obj, const char *name, const char *value)
{
    int status;
    hid_t type = attn_h5_string_type();
    if (type < 0)
        return ATTN_ERR(ATTN_EIO, "attribute %s: cannot make a string type", name);
    if (value == NULL)
        value = "";
    status = attr_write(obj, name, type, type, &value);
    H5Tclose(type);
    return status;
}

int attn_h5_attr_write_int(hid_t obj, const char *name, long long value)
{
    return attr_write(obj, name, H5T_STD_I64LE, H5T_NATIVE_LLONG, &value);
}

int attn_h5_attr_write_double(hid_t obj, const char *name, double value)
{
    return attr_write(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value);
}

/* H5Aiterate2 callback of attn_h5_attrs_copy: data points at the destination id. */
static herr_t copy_attr(hid_t src, const char *name, const H5A_info_t *info, void *data)
{
    hid_t dst = *(hid_t *) data;
    hid_t a = H5Aopen(src, name, H5P_DEFAULT);
    hid_t ftype = a >= 0 ? H5Aget_type(a) : H5I_INVALID_HID;
    hid_t mtype = ftype >= 0 ? H5Tget_native_type(ftype, H5T_DIR_DEFAULT) : H5I_INVALID_HID;
    hid_t space = a >= 0 ? H5Aget_space(a) : H5I_INVALID_HID;
    hssize_t npoints = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    size_t size = mtype >= 0 ? H5Tget_size(mtype) : 0;
    void *buf = NULL;
    hid_t b = H5I_INVALID_HID;
    herr_t result = -1;

    if (npoints >= 0 && size > 0)
        buf = calloc(npoints > 0 ? (size_t) npoints : 1, size);
    if (buf != NULL && H5Aread(a, mtype, buf) >= 0) {
        if (H5Aexists(dst, name) > 0)
            H5Adelete(dst, name);
        b = H5Acreate2(dst, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT);
        if (b >= 0 && H5Awrite(b, mtype, buf) >= 0)
            result = 0;
        H5Dvlen_reclaim(mtype, space, H5P_DEFAULT, buf);
    }
    if (result < 0)
        ATTN_ERR(ATTN_EIO, "attribute %s cannot be copied", name);
    free(buf);
    close_id(b);
    close_id(space);
    close_id(mtype);
    close_id(ftype);
    close_id(a);
    return result;
}

int attn_h5_attrs_copy(hid_t src, hid_t dst)
{
    hsize_t idx = 0;
    attn_error_clear();
    if (H5Aiterate2(src, H5_INDEX_NAME, H5_ITER_INC, &idx, copy_attr, &dst) < 0) {
        if (attn_last_error()[0] == '\0')
            return ATTN_ERR(ATTN_EIO, "cannot list the attributes to copy");
        return ATTN_EIO;
    }
    return ATTN_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Extensible 1-D columns.
 */
int attn_h5_column_create(hid_t *dset, hid_t group, const char *name, hid_t type, hid_t mtype,
                          const void *fill, size_t rows, const char *unit, const char *doc)
{
    int status = ATTN_OK;
    hsize_t dims[1] = { (hsize_t) rows };
    hsize_t maxdims[1] = { H5S_UNLIMITED };
    hsize_t chunk[1] = { COLUMN_CHUNK };
    hid_t space = H5Screate_simple(1, dims, maxdims);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    char reason[256];

    *dset = H5I_INVALID_HID;
    if (space < 0 || dcpl < 0 || H5Pset_chunk(dcpl, 1, chunk) < 0
        || H5Pset_fill_value(dcpl, mtype, fill) < 0)
        status = ATTN_ERR(ATTN_EIO, "column %s: cannot set up its dataset (HDF5: %s)", name,
                          h5_reason(reason));
    if (status == ATTN_OK) {
        *dset = H5Dcreate2(group, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        if (*dset < 0)
            status = ATTN_ERR(ATTN_EIO, "column %s: cannot create its dataset (HDF5: %s)", name,
                              h5_reason(reason));
    }
    if (status == ATTN_OK)
        status = attn_h5_attr_write_string(*dset, "units", unit);
    if (status == ATTN_OK)
        status = attn_h5_attr_write_string(*dset, "description", doc);
    if (status != ATTN_OK && *dset >= 0) {
        H5Dclose(*dset);
        *dset = H5I_INVALID_HID;
    }
    close_id(dcpl);
    close_id(space);
    return status;
}

int attn_h5_column_length(hid_t dset, const char *name, size_t *rows)
{
    hsize_t dims[1];
    int rank;
    int status = attn_h5_dims(dset, &rank, dims, 1);
    if (status != ATTN_OK)
        return status;
    if (rank != 1)
        return ATTN_ERR(ATTN_EFORMAT, "column %s has rank %d, expected 1", name, rank);
    *rows = (size_t) dims[0];
    return ATTN_OK;
}

int attn_h5_column_resize(hid_t dset, const char *name, size_t rows)
{
    hsize_t dims[1] = { (hsize_t) rows };
    char reason[256];
    if (H5Dset_extent(dset, dims) < 0)
        return ATTN_ERR(ATTN_EIO, "column %s: cannot set its length to %zu (HDF5: %s)", name,
                        rows, h5_reason(reason));
    return ATTN_OK;
}

int attn_h5_column_write(hid_t dset, const char *name, hid_t mtype, size_t first, size_t count,
                         const void *values)
{
    hsize_t start[1] = { (hsize_t) first };
    hsize_t n[1] = { (hsize_t) count };
    char reason[256];
    if (hyperslab_transfer(dset, 1, start, n, mtype, values, NULL, reason) < 0)
        return ATTN_ERR(ATTN_EIO, "column %s: cannot write rows %zu..%zu (HDF5: %s)", name,
                        first, first + count - 1, reason);
    return ATTN_OK;
}

int attn_h5_column_append(hid_t dset, const char *name, hid_t mtype, size_t rows,
                          const void *value)
{
    int status = attn_h5_column_resize(dset, name, rows + 1);
    if (status == ATTN_OK)
        status = attn_h5_column_write(dset, name, mtype, rows, 1, value);
    return status;
}

int attn_h5_column_read(hid_t dset, const char *name, hid_t mtype, size_t count, void *values)
{
    hsize_t start[1] = { 0 };
    hsize_t n[1] = { (hsize_t) count };
    char reason[256];
    if (hyperslab_transfer(dset, 1, start, n, mtype, NULL, values, reason) < 0)
        return ATTN_ERR(ATTN_EFORMAT, "column %s: cannot read %zu values (HDF5: %s)", name,
                        count, reason);
    return ATTN_OK;
}

int attn_h5_column_read_strings(hid_t dset, const char *name, size_t count, char ***strs)
{
    int status = ATTN_OK;
    hid_t ftype = H5Dget_type(dset);
    hid_t mtype = ftype >= 0 ? H5Tcopy(ftype) : H5I_INVALID_HID;
    hsize_t n[1] = { (hsize_t) (count > 0 ? count : 1) };
    hid_t mspace = H5Screate_simple(1, n, NULL);
    char **out = calloc(count > 0 ? count : 1, sizeof *out);
    int vlen = ftype >= 0 && H5Tis_variable_str(ftype) > 0;
    size_t size = ftype >= 0 ? H5Tget_size(ftype) : 0;

    *strs = NULL;
    if (ftype < 0 || mtype < 0 || mspace < 0 || H5Tget_class(ftype) != H5T_STRING) {
        status = ATTN_ERR(ATTN_EFORMAT, "column %s does not hold strings", name);
    } else if (out == NULL) {
        status = ATTN_ERR(ATTN_ENOMEM, "column %s: %zu strings", name, count);
    } else if (vlen) {
        char **raw = calloc(count > 0 ? count : 1, sizeof *raw);
        if (raw == NULL)
            status = ATTN_ERR(ATTN_ENOMEM, "column %s: %zu strings", name, count);
        if (status == ATTN_OK)
            status = attn_h5_column_read(dset, name, mtype, count, raw);
        for (size_t i = 0; status == ATTN_OK && i < count; i++)
            if ((out[i] = attn_io_dup_string(raw[i] != NULL ? raw[i] : "")) == NULL)
                status = ATTN_ERR(ATTN_ENOMEM, "column %s: string %zu", name, i);
        if (raw != NULL && count > 0)
            H5Dvlen_reclaim(mtype, mspace, H5P_DEFAULT, raw);
        free(raw);
    } else {
        char *raw = calloc(count > 0 ? count : 1, size);
        if (raw == NULL)
            status = ATTN_ERR(ATTN_ENOMEM, "column %s: %zu strings of %zu bytes", name, count,
                              size);
        if (status == ATTN_OK)
            status = attn_h5_column_read(dset, name, mtype, count, raw);
        for (size_t i = 0; status == ATTN_OK && i < count; i++) {
            out[i] = calloc(size + 1, 1);
            if (out[i] == NULL)
                status = ATTN_ERR(ATTN_ENOMEM, "column %s: string %zu", name, i);
            else
                memcpy(out[i], raw + i * size, size);
        }
        free(raw);
    }
    if (status == ATTN_OK) {
        *strs = out;
    } else if (out != NULL) {
        for (size_t i = 0; i < count; i++)
            free(out[i]);
        free(out);
    }
    close_id(mspace);
    close_id(mtype);
    close_id(ftype);
    return status;
}

int attn_h5_write_matrix(hid_t loc, const char *name, const double *x, size_t rows, size_t cols)
{
    int status = ATTN_OK;
    hsize_t dims[2] = { (hsize_t) rows, (hsize_t) cols };
    hid_t space = H5Screate_simple(cols > 0 ? 2 : 1, dims, NULL);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    hid_t dset = H5I_INVALID_HID;
    char reason[256];

    if (attn_h5_exists(loc, name) && H5Ldelete(loc, name, H5P_DEFAULT) < 0)
        status = ATTN_ERR(ATTN_EIO, "%s exists and cannot be replaced (HDF5: %s)", name,
                          h5_reason(reason));
    if (status == ATTN_OK
        && (space < 0 || lcpl < 0 || H5Pset_create_intermediate_group(lcpl, 1) < 0))
        status = ATTN_ERR(ATTN_EIO, "%s: cannot set up the dataset", name);
    if (status == ATTN_OK) {
        dset = H5Dcreate2(loc, name, H5T_IEEE_F64LE, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
        if (dset < 0)
            status = ATTN_ERR(ATTN_EIO, "%s: cannot create the dataset (HDF5: %s)", name,
                              h5_reason(reason));
    }
    if (status == ATTN_OK && rows > 0 && x != NULL
        && H5Dwrite(dset, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0)
        status = ATTN_ERR(ATTN_EIO, "%s: cannot write %zu x %zu values (HDF5: %s)", name, rows,
                          cols, h5_reason(reason));
    close_id(dset);
    close_id(lcpl);
    close_id(space);
    return status;
}
