/* h5util.h — small HDF5 helpers shared by lib/io (internal; never included outside lib/io).
 *
 * Every helper returns an attn status and, on failure, sets a message naming the object (dataset,
 * attribute, group) and what was wrong.  The caller adds the file name as context
 * ("reading data/x.h5: " + message), so helpers never need to know which file they are in.
 * attn_h5_init() must be called by every public entry point of lib/io before any other HDF5 call:
 * it switches off HDF5's automatic printing of its error stack, so the library never prints.
 */
#ifndef ATTN_IO_H5UTIL_H
#define ATTN_IO_H5UTIL_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "attn.h"

/* A new copy of the string s (caller frees), or NULL when out of memory.  s must not be NULL.  It
 * lives here, although it knows nothing of HDF5, because every file of lib/io includes this header
 * and needs it. */
char *attn_io_dup_string(const char *s);

/* Switch off HDF5's automatic error printing for this thread (cheap; call it on every entry). */
void attn_h5_init(void);

/* Open an existing file: ATTN_EIO "x.h5: no such file" (with the system's reason) when it cannot be
 * read, ATTN_EFORMAT "x.h5 is not an HDF5 file" when it is something else.  flags: H5F_ACC_RDONLY
 * or H5F_ACC_RDWR.  The message names the file, so callers add no context to it. */
int attn_h5_open(hid_t *file, const char *path, unsigned flags);

/* 1 when path names a regular file that exists, 0 otherwise. */
int attn_h5_file_exists(const char *path);

/* 1 when every component of the absolute or relative link path exists below loc, 0 otherwise
 * (H5Lexists alone fails on a missing intermediate group). */
int attn_h5_exists(hid_t loc, const char *path);

/* Open a dataset: ATTN_EFORMAT "dataset /layer0/q is missing" when it is not there. */
int attn_h5_dataset_open(hid_t *dset, hid_t loc, const char *path);

/* The extent of a dataset: rank into *rank and up to maxrank dimensions into dims.  A rank above
 * maxrank is reported as it is (dims then holds the first maxrank). */
int attn_h5_dims(hid_t dset, int *rank, hsize_t *dims, int maxrank);

/* Format "[8, 192, 15]" into buf (len bytes); returns buf. */
const char *attn_h5_shape_text(char *buf, size_t len, const hsize_t *dims, int rank);

/* Read rows [0, rows) of every head of the rank-3 dataset dset [heads, n, d] as doubles into out,
 * which holds heads x rows x d values in that order (HDF5 converts float32 and decompresses).
 * name is the dataset's path, for messages. */
int attn_h5_read_rows3(hid_t dset, const char *name, const hsize_t dims[3], size_t rows,
                       double *out);

/* Attributes of object obj (a file, group or dataset id).  Readers return ATTN_EFORMAT naming the
 * attribute when it is missing or of the wrong kind (a string read as a number and so on). */
int attn_h5_attr_exists(hid_t obj, const char *name);
int attn_h5_attr_read_int(hid_t obj, const char *name, long long *value);
int attn_h5_attr_read_double(hid_t obj, const char *name, double *value);
/* A new string (caller frees) from a variable- or fixed-length string attribute. */
int attn_h5_attr_read_string(hid_t obj, const char *name, char **value);
/* Any attribute as text: strings as they are, numbers with %lld / %.17g, arrays comma separated.
 * A new string (caller frees). */
int attn_h5_attr_text(hid_t obj, const char *name, char **text);
/* Writers replace an attribute of the same name. */
int attn_h5_attr_write_string(hid_t obj, const char *name, const char *value);
int attn_h5_attr_write_int(hid_t obj, const char *name, long long value);
int attn_h5_attr_write_double(hid_t obj, const char *name, double value);
/* Copy every attribute of src onto dst (replacing attributes of the same name). */
int attn_h5_attrs_copy(hid_t src, hid_t dst);

/* A new variable-length UTF-8 string type (caller closes it with H5Tclose), or a negative id. */
hid_t attn_h5_string_type(void);

/* Extensible 1-D columns.  type is the file type (H5T_STD_I64LE, H5T_IEEE_F64LE or a string type);
 * fill is a pointer to the value new rows hold until written (in memory type mtype); rows is the
 * initial length.  The dataset gets the attributes units and description. */
int attn_h5_column_create(hid_t *dset, hid_t group, const char *name, hid_t type, hid_t mtype,
                          const void *fill, size_t rows, const char *unit, const char *doc);
/* The length of a 1-D dataset (ATTN_EFORMAT when it is not 1-D). */
int attn_h5_column_length(hid_t dset, const char *name, size_t *rows);
/* Set the length of a 1-D chunked dataset (grow or shrink). */
int attn_h5_column_resize(hid_t dset, const char *name, size_t rows);
/* Write count values (memory type mtype) at rows [first, first + count) of a 1-D dataset that is
 * already long enough. */
int attn_h5_column_write(hid_t dset, const char *name, hid_t mtype, size_t first, size_t count,
                         const void *values);
/* Append one value: grows the dataset from rows to rows + 1 and writes it. */
int attn_h5_column_append(hid_t dset, const char *name, hid_t mtype, size_t rows,
                          const void *value);
/* Read rows [0, count) of a 1-D numeric dataset converted to mtype (H5T_NATIVE_DOUBLE,
 * H5T_NATIVE_INT64) into values. */
int attn_h5_column_read(hid_t dset, const char *name, hid_t mtype, size_t count, void *values);
/* Read rows [0, count) of a 1-D string dataset (variable or fixed length) into strs: count new
 * strings (caller frees each and the array).  *strs is NULL on failure. */
int attn_h5_column_read_strings(hid_t dset, const char *name, size_t count, char ***strs);

/* Write a new dataset at loc/name holding rows x cols doubles (cols 0: 1-D of rows values),
 * replacing any object of that name; intermediate groups are created. */
int attn_h5_write_matrix(hid_t loc, const char *name, const double *x, size_t rows, size_t cols);

#endif /* ATTN_IO_H5UTIL_H */
