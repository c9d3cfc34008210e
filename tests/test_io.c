/* test_io.c — lib/io: inputs (bundled real data, HDF5 fixtures, synthetic generators), results
 * files (append, reopen, spectra, tables, merge, read back) and every error path with its message.
 *
 * Malformed fixture files are written at run time with the HDF5 C API under
 * $ATTN_BUILDDIR/tests/fixtures-io/ (one file per test: Criterion runs tests in parallel).  The
 * bundled data is found under $ATTN_SRCDIR/data/.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <criterion/criterion.h>
#include <hdf5.h>

#include "attn.h"
#include "attn_io.h"

/* ---------------------------------------------------------------------------------------------
 * Helpers.
 */

/* Paths live in a small ring of static buffers: a test holds at most a few at once. */
static char *path_buffer(void)
{
    static char ring[8][1024];
    static size_t next;
    return ring[next++ % 8];
}

/* $ATTN_SRCDIR/relative (the source tree; "." by default). */
static char *src_path(const char *relative)
{
    const char *dir = getenv("ATTN_SRCDIR");
    char *path = path_buffer();
    snprintf(path, 1024, "%s/%s", dir != NULL ? dir : ".", relative);
    return path;
}

/* $ATTN_BUILDDIR/tests/fixtures-io/name, with the directories created and any old file removed. */
static char *fixture_path(const char *name)
{
    const char *dir = getenv("ATTN_BUILDDIR");
    char *path = path_buffer();
    snprintf(path, 1024, "%s/tests", dir != NULL ? dir : ".");
    cr_assert(mkdir(path, 0777) == 0 || errno == EEXIST, "mkdir %s: %s", path, strerror(errno));
    snprintf(path, 1024, "%s/tests/fixtures-io", dir != NULL ? dir : ".");
    cr_assert(mkdir(path, 0777) == 0 || errno == EEXIST, "mkdir %s: %s", path, strerror(errno));
    snprintf(path, 1024, "%s/tests/fixtures-io/%s", dir != NULL ? dir : ".", name);
    remove(path);
    return path;
}

/* Check the status and that the message names each of the NULL-terminated needles. */
static void expect_error(int status, int expected, ...)
{
    va_list ap;
    const char *needle;
    cr_assert_eq(status, expected, "status %s, expected %s; message: %s", attn_status_name(status),
                 attn_status_name(expected), attn_last_error());
    va_start(ap, expected);
    while ((needle = va_arg(ap, const char *)) != NULL)
        cr_assert(strstr(attn_last_error(), needle) != NULL, "message \"%s\" does not name \"%s\"",
                  attn_last_error(), needle);
    va_end(ap);
}

/* No HDF5 file or object left open by lib/io, on success or on failure. */
static void expect_nothing_open(void)
{
    ssize_t open_ids = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
    cr_assert_eq(open_ids, 0, "%zd HDF5 ids left open", open_ids);
}

/* The whole content of a file (caller frees). */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    *len = (size_t) ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = calloc(*len + 1, 1);
    cr_assert_not_null(buf);
    cr_assert_eq(fread(buf, 1, *len, f), *len);
    fclose(f);
    return buf;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "cannot create %s", path);
    fputs(text, f);
    fclose(f);
}

/* The value fixtures hold at flat index t of operand op in layer l: smooth, distinct, not round. */
static float fixture_value(size_t l, int op, size_t t)
{
    return (float) (2.385 * sin(0.37 * (double) t + 1.3 * op + 2.1 * (double) l));
}

/* Write a float32 dataset at path (intermediate groups created) with the fixture values of
 * (l, op), or with x when x is not NULL. */
static void put_dataset(hid_t file, const char *path, int rank, const hsize_t *dims, size_t l,
                        int op, const float *x)
{
    size_t count = 1;
    float *buf;
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t dset;
    for (int i = 0; i < rank; i++)
        count *= dims[i];
    buf = calloc(count > 0 ? count : 1, sizeof *buf);
    cr_assert_not_null(buf);
    for (size_t t = 0; t < count; t++)
        buf[t] = x != NULL ? x[t] : fixture_value(l, op, t);
    H5Pset_create_intermediate_group(lcpl, 1);
    dset = H5Dcreate2(file, path, H5T_IEEE_F32LE, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert_geq(dset, 0, "fixture dataset %s", path);
    cr_assert_geq(H5Dwrite(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf), 0);
    H5Dclose(dset);
    H5Sclose(space);
    H5Pclose(lcpl);
    free(buf);
}

static void put_attr(hid_t file, const char *obj, const char *name, hid_t ftype, hid_t mtype,
                     const void *value)
{
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate_by_name(file, obj, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT,
                                H5P_DEFAULT);
    cr_assert_geq(a, 0, "fixture attribute %s of %s", name, obj);
    cr_assert_geq(H5Awrite(a, mtype, value), 0);
    H5Aclose(a);
    H5Sclose(space);
}

/* Write layers group/layer0.. with q, k [heads, n, d] and v [heads, n, dv], and on each layer
 * group the attributes causal (int8) and scale (double). */
static void put_layers(hid_t file, const char *group, size_t layers, size_t heads, size_t n,
                       size_t d, size_t dv, int causal, double scale)
{
    for (size_t l = 0; l < layers; l++) {
        char path[256], layer[128];
        hsize_t dq[3] = { heads, n, d }, dvv[3] = { heads, n, dv };
        signed char c = (signed char) causal;
        snprintf(layer, sizeof layer, "%s/layer%zu", group, l);
        for (int op = 0; op < 3; op++) {
            snprintf(path, sizeof path, "%s/%s", layer, op == 0 ? "q" : op == 1 ? "k" : "v");
            put_dataset(file, path, 3, op == 2 ? dvv : dq, l, op, NULL);
        }
        put_attr(file, layer, "causal", H5T_STD_I8LE, H5T_NATIVE_SCHAR, &c);
        put_attr(file, layer, "scale", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &scale);
    }
}

static hid_t new_file(const char *path)
{
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert_geq(file, 0, "cannot create fixture %s", path);
    return file;
}

/* Overwrite one value of a rank-3 dataset. */
static void poke(const char *path, const char *dataset, size_t h, size_t i, size_t j, float value)
{
    hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t dset = H5Dopen2(file, dataset, H5P_DEFAULT);
    hid_t fspace = H5Dget_space(dset);
    hsize_t start[3] = { h, i, j }, one[3] = { 1, 1, 1 };
    hid_t mspace = H5Screate_simple(3, one, NULL);
    H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, one, NULL);
    cr_assert_geq(H5Dwrite(dset, H5T_NATIVE_FLOAT, mspace, fspace, H5P_DEFAULT, &value), 0);
    H5Sclose(mspace);
    H5Sclose(fspace);
    H5Dclose(dset);
    H5Fclose(file);
}

/* ---------------------------------------------------------------------------------------------
 * Inputs: the bundled real data.
 */

/* Expected values from `h5dump -m %.9g` of the float32 datasets; float32 has 24 bits, so
 * 1e-6 relative covers the 9 printed digits. */
static void expect_value(double got, double want, const char *what)
{
    cr_assert(fabs(got - want) <= 1e-6 * fabs(want), "%s = %.9g, expected %.9g", what, got, want);
}

Test(inputs, reads_the_short_ocr_file)
{
    attn_inputs *in = NULL;
    const double *q, *k, *v;
    int status = attn_inputs_read(&in, src_path("data/ppocrv4-svtr-attn.h5"), 0, 1);
    cr_assert_eq(status, ATTN_OK, "%s", attn_last_error());
    cr_assert_eq(in->layers, 2);
    cr_assert_eq(in->heads, 8);
    cr_assert_eq(in->n, 192);
    cr_assert_eq(in->d, 15);
    cr_assert_eq(in->dv, 15);
    cr_assert_eq(in->causal, 0);
    /* The stored scale is 1/sqrt(15) rounded to float32 (data/README.md). */
    cr_assert_eq(in->scale, 0.25819888710975647);
    cr_assert_str_eq(in->label, "ppocrv4-svtr-attn");
    attn_inputs_head(in, 0, 0, &q, &k, &v);
    expect_value(q[0], -1.97191119, "layer 0 head 0 q[0][0]");
    expect_value(q[1], 1.08503675, "layer 0 head 0 q[0][1]");
    expect_value(q[2], 0.646352828, "layer 0 head 0 q[0][2]");
    attn_inputs_head(in, 1, 7, &q, &k, &v);
    expect_value(v[191 * 15 + 12], 0.329002619, "layer 1 head 7 v[191][12]");
    expect_value(v[191 * 15 + 13], -2.75139093, "layer 1 head 7 v[191][13]");
    expect_value(v[191 * 15 + 14], 2.46557927, "layer 1 head 7 v[191][14]");
    attn_inputs_destroy(in);
    expect_nothing_open();
}

Test(inputs, reads_the_causal_language_model_file)
{
    attn_inputs *in = NULL;
    const double *q, *k, *v, *q2, *k2, *v2;
    int status = attn_inputs_read(&in, src_path("data/stories260k-attn.h5"), 0, 1);
    cr_assert_eq(status, ATTN_OK, "%s", attn_last_error());
    cr_assert_eq(in->layers, 5);
    cr_assert_eq(in->heads, 8);
    cr_assert_eq(in->n, 512);
    cr_assert_eq(in->d, 8);
    cr_assert_eq(in->causal, 1);
    cr_assert(fabs(in->scale - 1.0 / sqrt(8.0)) < 1e-15, "scale %.17g", in->scale);
    attn_inputs_head(in, 4, 5, &q, &k, &v);
    expect_value(k[511 * 8 + 0], -0.4097597, "layer 4 head 5 k[511][0]");
    expect_value(k[511 * 8 + 1], 0.480143011, "layer 4 head 5 k[511][1]");
    expect_value(k[511 * 8 + 2], -0.136319369, "layer 4 head 5 k[511][2]");
    /* Grouped-query attention: query heads 2j and 2j+1 share key/value head j (data/README.md). */
    attn_inputs_head(in, 2, 6, &q, &k, &v);
    attn_inputs_head(in, 2, 7, &q2, &k2, &v2);
    cr_assert_eq(memcmp(k, k2, 512 * 8 * sizeof *k), 0);
    cr_assert_eq(memcmp(v, v2, 512 * 8 * sizeof *v), 0);
    cr_assert_neq(memcmp(q, q2, 512 * 8 * sizeof *q), 0);
    attn_inputs_destroy(in);
}

Test(inputs, reads_the_bundled_n1024_extract)
{
    attn_inputs *in = NULL;
    const double *q, *k, *v;
    int status = attn_inputs_read(&in, src_path("data/ppocrv4-svtr-attn-n1024.h5"), 0, 1);
    cr_assert_eq(status, ATTN_OK, "%s", attn_last_error());
    cr_assert_eq(in->layers, 2);
    cr_assert_eq(in->heads, 8);
    cr_assert_eq(in->n, 1024);
    cr_assert_eq(in->d, 15);
    cr_assert_eq(in->causal, 0);
    cr_assert_eq(in->scale, 0.25819888710975647);
    cr_assert_str_eq(in->label, "ppocrv4-svtr-attn-n1024");
    attn_inputs_head(in, 1, 3, &q, &k, &v);
    expect_value(q[1023 * 15 + 14], 0.170359299, "layer 1 head 3 q[1023][14]");
    attn_inputs_destroy(in);
}

Test(inputs, a_prefix_read_is_the_first_rows_of_a_full_read)
{
    attn_inputs *full = NULL, *part = NULL;
    const char *path = src_path("data/stories260k-attn.h5");
    cr_assert_eq(attn_inputs_read(&full, path, 0, 1), ATTN_OK, "%s", attn_last_error());
    cr_assert_eq(attn_inputs_read(&part, path, 100, 1), ATTN_OK, "%s", attn_last_error());
    cr_assert_eq(part->n, 100);
    cr_assert_eq(part->layers, full->layers);
    for (size_t l = 0; l < full->layers; l++)
        for (size_t h = 0; h < full->heads; h++) {
            const double *q, *k, *v, *pq, *pk, *pv;
            attn_inputs_head(full, l, h, &q, &k, &v);
            attn_inputs_head(part, l, h, &pq, &pk, &pv);
            cr_assert_eq(memcmp(q, pq, 100 * 8 * sizeof *q), 0, "layer %zu head %zu q", l, h);
            cr_assert_eq(memcmp(k, pk, 100 * 8 * sizeof *k), 0, "layer %zu head %zu k", l, h);
            cr_assert_eq(memcmp(v, pv, 100 * 8 * sizeof *v), 0, "layer %zu head %zu v", l, h);
        }
    attn_inputs_destroy(full);
    attn_inputs_destroy(part);
}

/* ---------------------------------------------------------------------------------------------
 * Inputs: fixtures.
 */
Test(inputs, a_group_source_reads_below_the_group)
{
    char *path = fixture_path("group.h5");
    char source[1024];
    attn_inputs *in = NULL;
    const double *q, *k, *v;
    hid_t file = new_file(path);
    put_layers(file, "/n12", 3, 2, 12, 4, 6, 1, 0.4375);
    H5Fclose(file);
    snprintf(source, sizeof source, "%s:/n12", path);
    cr_assert_eq(attn_inputs_read(&in, source, 0, 1), ATTN_OK, "%s", attn_last_error());
    cr_assert_eq(in->layers, 3);
    cr_assert_eq(in->heads, 2);
    cr_assert_eq(in->n, 12);
    cr_assert_eq(in->d, 4);
    cr_assert_eq(in->dv, 6);
    cr_assert_eq(in->causal, 1);
    cr_assert_eq(in->scale, 0.4375);
    cr_assert_str_eq(in->label, "group/n12");
    cr_assert_str_eq(in->source, source);
    /* Layer 2, head 1, row 5, column 3 of q is flat index (1 * 12 + 5) * 4 + 3 of the dataset. */
    attn_inputs_head(in, 2, 1, &q, &k, &v);
    cr_assert_eq(q[5 * 4 + 3], (double) fixture_value(2, 0, (1 * 12 + 5) * 4 + 3));
    cr_assert_eq(v[11 * 6 + 5], (double) fixture_value(2, 2, (1 * 12 + 11) * 6 + 5));
    attn_inputs_destroy(in);
}

Test(inputs, missing_file)
{
    attn_inputs *in = (attn_inputs *) 1;
    char *path = fixture_path("no-such-file.h5");
    expect_error(attn_inputs_read(&in, path, 0, 1), ATTN_EIO, path, "No such file", NULL);
    cr_assert_null(in);
}

Test(inputs, not_an_hdf5_file)
{
    attn_inputs *in = NULL;
    char *path = fixture_path("text.h5");
    write_text(path, "q,k,v\n1,2,3\n");
    expect_error(attn_inputs_read(&in, path, 0, 1), ATTN_EFORMAT, path, "is not an HDF5 file",
                 NULL);
}

Test(inputs, missing_dataset)
{
    attn_inputs *in = NULL;
    char *path = fixture_path("missing-v.h5");
    hid_t file = new_file(path);
    hsize_t dims[3] = { 2, 8, 4 };
    put_dataset(file, "/layer0/q", 3, dims, 0, 0, NULL);
    put_dataset(file, "/layer0/k", 3, dims, 0, 1, NULL);
    H5Fclose(file);
    expect_error(attn_inputs_read(&in, path, 0, 1), ATTN_EFORMAT, path,
                 "dataset /layer0/v is missing", NULL);
    expect_nothing_open();
}

Test(inputs, no_layers)
{
    attn_inputs *in = NULL;
    char *path = fixture_path("no-layers.h5");
    char source[1024];
    hid_t file = new_file(path);
    hsize_t dims[3] = { 2, 8, 4 };
    put_dataset(file, "/n8/other/q", 3, dims, 0, 0, NULL);
    H5Fclose(file);
    expect_error(attn_inputs_read(&in, path, 0, 1), ATTN_EFORMAT, path, "group / has no layers",
                 "/layer0", NULL);
    snprintf(source, sizeof source, "%s:/n8", path);
    expect_error(attn_inputs_read(&in, source, 0, 1), ATTN_EFORMAT, path,
                 "group /n8 has no layers", "/n8/layer0", NULL);
    snprintf(source, sizeof source, "%s:/n16", path);
    expect_error(attn_inputs_read(&in, source, 0, 1), ATTN_EFORMAT, path,
                 "group /n16 is missing", NULL);
    expect_nothing_open();
}

Test(inputs, wrong_rank)
{
    attn_inputs *in = NULL;
    char *path = fixture_path("rank2.h5");
    char want[1200];
    hid_t file = new_file(path);
    hsize_t dims2[2] = { 8, 4 }, dims3[3] = { 1, 8, 4 };
    put_dataset(file, "/layer0/q", 2, dims2, 0, 0, NULL);
    put_dataset(file, "/layer0/k", 3, dims3, 0, 1, NULL);
    put_dataset(file, "/layer0/v", 3, dims3, 0, 2, NULL);
    H5Fclose(file);
    snprintf(want, sizeof want, "reading %s: dataset /layer0/q: rank 2, expected 3 ([head, n, d])",
             path);
    expect_error(attn_inputs_read(&in, path, 0, 1), ATTN_ESHAPE, NULL);
    cr_assert_str_eq(attn_last_error(), want);
    expect_nothing_open();
}

Test(inputs, mismatched_q_and_k)
{
    attn_inputs *in = NULL;
    char *path = fixture_path("mismatch-qk.h5");
    hid_t file = new_file(path);
    hsize_t dq[3] = { 2, 8, 4 }, dk[3] = { 2, 8, 5 };
    put_dataset(file, "/layer0/q", 3, dq, 0, 0, NULL);
    put_dataset(file, "/layer0/k", 3, dk, 0, 1, NULL);
    put_dataset(file, "/layer0/v", 3, dq, 0, 2, NULL);
    H5Fclose(file);
    expect_error(attn_inputs_read(&in, path, 0, 1), ATTN_ESHAPE, path, "/layer0/k", "[2, 8, 5]",
                 "/layer0/q", "[2, 8, 4]", NULL);
    expect_nothing_open();
}

Test(inputs, mismatched_v)
{
    attn_inputs *in = NULL;
    char *path = fixture_path("mismatch-v.h5");
    hid_t file = new_file(path);
    hsize_t dq[3] = { 2, 8, 4 }, dv[3] = { 3, 8, 4 };
    put_dataset(file, "/layer0/q", 3, dq, 0, 0, NULL);
    put_dataset(file, "/layer0/k", 3, dq, 0, 1, NULL);
    put_dataset(file, "/layer0/v", 3, dv, 0, 2, NULL);
    H5Fclose(file);
    expect_error(attn_inputs_read(&in, path, 0, 1), ATTN_ESHAPE, path, "/layer0/v", "[3, 8, 4]",
                 "[2, 8, 4]", NULL);
    expect_nothing_open();
}

Test(inputs, mismatched_layers)
{
    attn_inputs *in = NULL;
    char *path = fixture_path("mismatch-layers.h5");
    hid_t file = new_file(path);
    hsize_t d1[3] = { 2, 6, 4 };
    put_layers(file, "", 1, 2, 8, 4, 4, 0, 0.5);
    put_dataset(file, "/layer1/q", 3, d1, 1, 0, NULL);
    put_dataset(file, "/layer1/k", 3, d1, 1, 1, NULL);
    put_dataset(file, "/layer1/v", 3, d1, 1, 2, NULL);
    H5Fclose(file);
    expect_error(attn_inputs_read(&in, path, 0, 1), ATTN_ESHAPE, path, "/layer1/q", "[2, 6, 4]",
                 "/layer0/q", "[2, 8, 4]", NULL);
    expect_nothing_open();
}

Test(inputs, nan_is_named_with_layer_head_operand_and_index)
{
    attn_inputs *in = NULL;
    char *path = fixture_path("nan.h5");
    hid_t file = new_file(path);
    put_layers(file, "", 2, 3, 10, 4, 4, 0, 0.5);
    H5Fclose(file);
    poke(path, "/layer1/q", 2, 7, 3, NAN);
    expect_error(attn_inputs_read(&in, path, 0, 1), ATTN_ENONFINITE, path, "layer 1, head 2",
                 "q: row 7, column 3 is nan", NULL);
    cr_assert_null(in);
    /* A prefix that stops before the bad row reads fine. */
    cr_assert_eq(attn_inputs_read(&in, path, 7, 1), ATTN_OK, "%s", attn_last_error());
    attn_inputs_destroy(in);
    expect_nothing_open();
}

Test(inputs, inf_is_named_with_layer_head_operand_and_index)
{
    attn_inputs *in = NULL;
    char *path = fixture_path("inf.h5");
    hid_t file = new_file(path);
    put_layers(file, "", 2, 3, 10, 4, 5, 0, 0.5);
    H5Fclose(file);
    poke(path, "/layer0/v", 1, 9, 4, -INFINITY);
    expect_error(attn_inputs_read(&in, path, 0, 1), ATTN_ENONFINITE, path, "layer 0, head 1",
                 "v: row 9, column 4 is -inf", NULL);
    expect_nothing_open();
}

Test(inputs, n_larger_than_the_data)
{
    attn_inputs *in = NULL;
    char *path = src_path("data/ppocrv4-svtr-attn.h5");
    expect_error(attn_inputs_read(&in, path, 1000, 1), ATTN_ESHAPE, path, "n = 1000 asked",
                 "n = 192", NULL);
    cr_assert_null(in);
    expect_nothing_open();
}

/* ---------------------------------------------------------------------------------------------
 * Inputs: synthetic generators.
 */
static size_t values_of(const attn_inputs *in)
{
    return in->layers * in->heads * in->n * in->d;
}

Test(synthetic, gauss_defaults_and_label)
{
    attn_inputs *in = NULL;
    cr_assert_eq(attn_inputs_read(&in, "gauss", 0, 1), ATTN_OK, "%s", attn_last_error());
    cr_assert_eq(in->n, 1024);
    cr_assert_eq(in->d, 64);
    cr_assert_eq(in->dv, 64);
    cr_assert_eq(in->heads, 1);
    cr_assert_eq(in->layers, 1);
    cr_assert_eq(in->causal, -1);
    cr_assert_eq(in->scale, 0.0);
    cr_assert_str_eq(in->label, "gauss");
    attn_inputs_destroy(in);
    cr_assert_eq(attn_inputs_read(&in, "gauss:n=64,d=8,dv=3,heads=2,layers=3,temp=2.5", 0, 1),
                 ATTN_OK, "%s", attn_last_error());
    cr_assert_eq(in->n, 64);
    cr_assert_eq(in->d, 8);
    cr_assert_eq(in->dv, 3);
    cr_assert_eq(in->heads, 2);
    cr_assert_eq(in->layers, 3);
    cr_assert_str_eq(in->label, "gauss-n64-d8-dv3-heads2-layers3-temp2.5");
    cr_assert_null(strchr(in->label, ','));
    attn_inputs_destroy(in);
}

Test(synthetic, gauss_is_standard_normal)
{
    attn_inputs *in = NULL;
    double sum = 0, sum2 = 0;
    size_t count;
    cr_assert_eq(attn_inputs_read(&in, "gauss:n=512,d=32", 0, 11), ATTN_OK, "%s",
                 attn_last_error());
    count = values_of(in);
    for (size_t t = 0; t < count; t++) {
        sum += in->k[t];
        sum2 += in->k[t] * in->k[t];
    }
    /* 16384 draws: the mean is within 5 standard errors (5 / 128) of 0, the variance within 5%. */
    cr_assert(fabs(sum / (double) count) < 5.0 / 128.0, "mean %g", sum / (double) count);
    cr_assert(fabs(sum2 / (double) count - 1.0) < 0.05, "variance %g", sum2 / (double) count);
    attn_inputs_destroy(in);
}

Test(synthetic, same_seed_same_bits_other_seed_other_bits)
{
    const char *sources[] = { "gauss:n=96,d=8,heads=2,layers=2", "local:n=96,d=16,heads=2" };
    for (size_t s = 0; s < 2; s++) {
        attn_inputs *a = NULL, *b = NULL, *c = NULL;
        cr_assert_eq(attn_inputs_read(&a, sources[s], 0, 42), ATTN_OK, "%s", attn_last_error());
        cr_assert_eq(attn_inputs_read(&b, sources[s], 0, 42), ATTN_OK, "%s", attn_last_error());
        cr_assert_eq(attn_inputs_read(&c, sources[s], 0, 43), ATTN_OK, "%s", attn_last_error());
        cr_assert_eq(memcmp(a->q, b->q, values_of(a) * sizeof *a->q), 0, "%s q", sources[s]);
        cr_assert_eq(memcmp(a->k, b->k, values_of(a) * sizeof *a->k), 0, "%s k", sources[s]);
        cr_assert_eq(memcmp(a->v, b->v, values_of(a) / a->d * a->dv * sizeof *a->v), 0, "%s v",
                     sources[s]);
        cr_assert_neq(memcmp(a->q, c->q, values_of(a) * sizeof *a->q), 0, "%s q", sources[s]);
        cr_assert_neq(memcmp(a->k, c->k, values_of(a) * sizeof *a->k), 0, "%s k", sources[s]);
        cr_assert_neq(memcmp(a->v, c->v, values_of(a) / a->d * a->dv * sizeof *a->v), 0, "%s v",
                      sources[s]);
        /* Heads and layers are different draws too. */
        cr_assert_neq(memcmp(a->k, a->k + a->n * a->d, a->n * a->d * sizeof *a->k), 0);
        attn_inputs_destroy(a);
        attn_inputs_destroy(b);
        attn_inputs_destroy(c);
    }
}

Test(synthetic, temp_scales_q_only)
{
    attn_inputs *a = NULL, *b = NULL;
    cr_assert_eq(attn_inputs_read(&a, "gauss:n=40,d=6", 0, 5), ATTN_OK, "%s", attn_last_error());
    cr_assert_eq(attn_inputs_read(&b, "gauss:n=40,d=6,temp=2.385", 0, 5), ATTN_OK, "%s",
                 attn_last_error());
    for (size_t t = 0; t < 240; t++) {
        cr_assert_eq(b->q[t], 2.385 * a->q[t], "q[%zu]", t);
        cr_assert_eq(b->k[t], a->k[t], "k[%zu]", t);
    }
    attn_inputs_destroy(a);
    attn_inputs_destroy(b);
}

Test(synthetic, a_prefix_is_the_first_rows)
{
    const char *sources[] = { "gauss:n=200,d=8,heads=2", "local:n=200,d=16,heads=2" };
    for (size_t s = 0; s < 2; s++) {
        attn_inputs *full = NULL, *part = NULL;
        cr_assert_eq(attn_inputs_read(&full, sources[s], 0, 9), ATTN_OK, "%s", attn_last_error());
        cr_assert_eq(attn_inputs_read(&part, sources[s], 77, 9), ATTN_OK, "%s", attn_last_error());
        cr_assert_eq(part->n, 77);
        for (size_t h = 0; h < 2; h++) {
            const double *q, *k, *v, *pq, *pk, *pv;
            attn_inputs_head(full, 0, h, &q, &k, &v);
            attn_inputs_head(part, 0, h, &pq, &pk, &pv);
            cr_assert_eq(memcmp(q, pq, 77 * full->d * sizeof *q), 0, "%s head %zu", sources[s], h);
            cr_assert_eq(memcmp(k, pk, 77 * full->d * sizeof *k), 0, "%s head %zu", sources[s], h);
            cr_assert_eq(memcmp(v, pv, 77 * full->dv * sizeof *v), 0, "%s head %zu", sources[s], h);
        }
        attn_inputs_destroy(full);
        attn_inputs_destroy(part);
    }
}

/* Mean over rows of the softmax(q k^T / sqrt(d)) mass within |i - j| <= w, computed here. */
static double near_mass(const attn_inputs *in, size_t w)
{
    size_t n = in->n, d = in->d;
    double s = 1.0 / sqrt((double) d), total = 0;
    double *row = calloc(n, sizeof *row);
    cr_assert_not_null(row);
    for (size_t i = 0; i < n; i++) {
        double mx = -INFINITY, sum = 0, near = 0;
        for (size_t j = 0; j < n; j++) {
            double dot = 0;
            for (size_t c = 0; c < d; c++)
                dot += in->q[i * d + c] * in->k[j * d + c];
            row[j] = s * dot;
            mx = fmax(mx, row[j]);
        }
        for (size_t j = 0; j < n; j++) {
            double e = exp(row[j] - mx);
            sum += e;
            if ((i > j ? i - j : j - i) <= w)
                near += e;
        }
        total += near / sum;
    }
    free(row);
    return total / (double) n;
}

/* Mean over rows of the share of positions within |i - j| <= w: a uniform row's near mass. */
static double near_share(size_t n, size_t w)
{
    double total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t lo = i > w ? i - w : 0, hi = i + w < n - 1 ? i + w : n - 1;
        total += (double) (hi - lo + 1) / (double) n;
    }
    return total / (double) n;
}

Test(synthetic, local_is_local_and_gauss_is_not)
{
    attn_inputs *in = NULL;
    double uniform = near_share(512, 8), local, gauss;
    cr_assert_eq(attn_inputs_read(&in, "local:n=512,d=64,width=8", 0, 3), ATTN_OK, "%s",
                 attn_last_error());
    local = near_mass(in, 8);
    attn_inputs_destroy(in);
    cr_assert_eq(attn_inputs_read(&in, "gauss:n=512,d=64", 0, 3), ATTN_OK, "%s",
                 attn_last_error());
    gauss = near_mass(in, 8);
    attn_inputs_destroy(in);
    cr_log_info("mass within 8 of the diagonal: local %.3f, gauss %.3f, uniform %.3f", local, gauss,
                uniform);
    cr_assert(local > 0.5 && local > 10 * uniform, "local: near mass %.3f, uniform %.3f", local,
              uniform);
    cr_assert(gauss < 3 * uniform, "gauss: near mass %.3f, uniform %.3f", gauss, uniform);
}

Test(synthetic, bad_parameters_are_named)
{
    attn_inputs *in = NULL;
    expect_error(attn_inputs_read(&in, "gauss:n=64,width=3", 0, 1), ATTN_EPARAM, "gauss",
                 "unknown parameter 'width'", "n, d, dv, heads, layers, temp", NULL);
    expect_error(attn_inputs_read(&in, "local:n=64,wdith=3", 0, 1), ATTN_EPARAM, "local",
                 "unknown parameter 'wdith'", NULL);
    expect_error(attn_inputs_read(&in, "gauss:n=abc", 0, 1), ATTN_EPARAM, "parameter n",
                 "'abc' is not a number", NULL);
    expect_error(attn_inputs_read(&in, "gauss:n=12.5", 0, 1), ATTN_EPARAM, "n = 12.5",
                 "integer", NULL);
    expect_error(attn_inputs_read(&in, "local:width=0", 0, 1), ATTN_EPARAM, "width = 0",
                 "out of range", NULL);
    expect_error(attn_inputs_read(&in, "gauss:n", 0, 1), ATTN_EPARAM, "'n' is not key=value",
                 NULL);
    expect_error(attn_inputs_read(&in, "gauss:d=8,d=9", 0, 1), ATTN_EPARAM, "d given twice",
                 NULL);
    expect_error(attn_inputs_read(&in, "gauss:n=64", 65, 1), ATTN_ESHAPE, "n = 65 asked",
                 "n = 64", NULL);
    cr_assert_null(in);
}

/* ---------------------------------------------------------------------------------------------
 * Results files.
 */
static attn_provenance prov_of(const char *hash, const char *command_line)
{
    attn_provenance prov = { .program = "test_io", .command_line = command_line,
                             .config_text = "[sweep]\ndata = gauss\n", .config_hash = hash };
    return prov;
}

/* A row with distinct values derived from id. */
static void fill_row(attn_row *row, int64_t id, const char *method)
{
    attn_row_init(row);
    row->point_id = id;
    row->data_source = "gauss:n=64";
    row->data_label = "gauss-n64";
    row->n = 64 + id;
    row->method = method;
    row->spec = "band:w=8";
    row->err_out_rel_fro = 0.001 * (double) id + 2.385e-7;
    row->status = 0;
}

static void append_rows(const char *path, const char *hash, const int64_t *ids, size_t count)
{
    attn_results *r = NULL;
    attn_provenance prov = prov_of(hash, "append");
    attn_row row;
    cr_assert_eq(attn_results_open(&r, path, &prov), ATTN_OK, "%s", attn_last_error());
    for (size_t i = 0; i < count; i++) {
        fill_row(&row, ids[i], "band");
        cr_assert_eq(attn_results_append(r, &row), ATTN_OK, "%s", attn_last_error());
    }
    cr_assert_eq(attn_results_close(r), ATTN_OK, "%s", attn_last_error());
}

static size_t rows_of(const char *path)
{
    attn_table *t = NULL;
    size_t rows;
    cr_assert_eq(attn_table_read(&t, path), ATTN_OK, "%s", attn_last_error());
    rows = t->rows;
    attn_table_destroy(t);
    return rows;
}

static const char *attr_of(const attn_table *t, const char *name)
{
    for (size_t a = 0; a < t->nattrs; a++)
        if (strcmp(t->attr_names[a], name) == 0)
            return t->attr_values[a];
    return NULL;
}

Test(results, column_table_and_row_init)
{
    attn_row row;
    const attn_column *c;
    cr_assert_gt(attn_column_count(), 30);
    cr_assert_str_eq(attn_column_at(0)->name, "point_id");
    cr_assert_null(attn_column_at(attn_column_count()));
    c = attn_column_find("time_apply_s");
    cr_assert_not_null(c);
    cr_assert_eq(c->type, ATTN_COL_F64);
    cr_assert_str_eq(c->unit, "s");
    cr_assert_eq(attn_column_find("spec")->type, ATTN_COL_STR);
    cr_assert_eq(attn_column_find("n")->type, ATTN_COL_I64);
    cr_assert_null(attn_column_find("no_such_column"));
    attn_row_init(&row);
    cr_assert_eq(row.point_id, -1);
    cr_assert(isnan(row.budget));
    cr_assert_str_eq(row.method, "");
}

Test(results, round_trip)
{
    char *path = fixture_path("round-trip.h5");
    attn_results *r = NULL;
    attn_provenance prov = prov_of("c0ffee", "attn-sweep x.ini");
    attn_table *t = NULL;
    attn_row row;
    const int64_t ids[] = { 5, 2, 9 };
    long col;

    append_rows(path, "c0ffee", ids, 3);

    /* Reopen: the points are there, and appending goes on. */
    cr_assert_eq(attn_results_open(&r, path, &prov), ATTN_OK, "%s", attn_last_error());
    cr_assert(attn_results_has(r, 5) && attn_results_has(r, 2) && attn_results_has(r, 9));
    cr_assert(!attn_results_has(r, 3));
    fill_row(&row, 9, "band");
    expect_error(attn_results_append(r, &row), ATTN_EINVAL, "point_id 9 is already", path, NULL);
    fill_row(&row, 12, "exact");
    row.message = NULL; /* NULL strings are written as "" */
    cr_assert_eq(attn_results_append(r, &row), ATTN_OK, "%s", attn_last_error());
    cr_assert(attn_results_has(r, 12));
    cr_assert_eq(attn_results_close(r), ATTN_OK, "%s", attn_last_error());

    cr_assert_eq(attn_table_read(&t, path), ATTN_OK, "%s", attn_last_error());
    cr_assert_eq(t->rows, 4);
    cr_assert_eq(t->ncols, attn_column_count());
    col = attn_table_column(t, "point_id");
    cr_assert_geq(col, 0);
    cr_assert_eq(t->num[col][0], 5.0);
    cr_assert_eq(t->num[col][1], 2.0);
    cr_assert_eq(t->num[col][2], 9.0);
    cr_assert_eq(t->num[col][3], 12.0);
    col = attn_table_column(t, "err_out_rel_fro");
    cr_assert_eq(t->types[col], ATTN_COL_F64);
    cr_assert_eq(t->num[col][1], 0.002 + 2.385e-7);
    cr_assert(isnan(t->num[attn_table_column(t, "time_apply_s")][0]));
    cr_assert_eq(t->num[attn_table_column(t, "layer")][3], -1.0);
    cr_assert_eq(t->num[attn_table_column(t, "n")][3], 76.0);
    col = attn_table_column(t, "method");
    cr_assert_eq(t->types[col], ATTN_COL_STR);
    cr_assert_null(t->num[col]);
    cr_assert_str_eq(t->str[col][0], "band");
    cr_assert_str_eq(t->str[col][3], "exact");
    cr_assert_str_eq(t->str[attn_table_column(t, "message")][3], "");
    cr_assert_str_eq(t->str[attn_table_column(t, "data_label")][2], "gauss-n64");
    cr_assert_str_eq(attr_of(t, "format"), "attnlab-results-1");
    cr_assert_str_eq(attr_of(t, "config_hash"), "c0ffee");
    cr_assert_str_eq(attr_of(t, "program"), "test_io");
    cr_assert_str_eq(attr_of(t, "command_line"), "append");
    cr_assert_str_eq(attr_of(t, "version"), attn_version());
    cr_assert_not_null(attr_of(t, "blas_vendor"));
    cr_assert_not_null(attr_of(t, "blas_threads"));
    cr_assert_not_null(attr_of(t, "hostname"));
    cr_assert_eq(strlen(attr_of(t, "utc_time")), 20, "utc_time %s", attr_of(t, "utc_time"));
    cr_assert_eq(attn_table_column(t, "no_such_column"), -1);
    expect_error(ATTN_EINVAL, ATTN_EINVAL, "no column 'no_such_column'", "point_id", NULL);
    attn_table_destroy(t);
    expect_nothing_open();
}

Test(results, columns_carry_units_and_description)
{
    char *path = fixture_path("units.h5");
    const int64_t ids[] = { 1 };
    char units[64] = "", *desc = NULL;
    hid_t file, dset, a, type;
    append_rows(path, "abc", ids, 1);
    file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    dset = H5Dopen2(file, "/points/time_apply_s", H5P_DEFAULT);
    cr_assert_geq(dset, 0);
    type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, H5T_VARIABLE);
    H5Tset_cset(type, H5T_CSET_UTF8);
    a = H5Aopen(dset, "units", H5P_DEFAULT);
    cr_assert_geq(a, 0);
    {
        char *s = NULL;
        H5Aread(a, type, &s);
        snprintf(units, sizeof units, "%s", s);
        H5free_memory(s);
    }
    H5Aclose(a);
    a = H5Aopen(dset, "description", H5P_DEFAULT);
    cr_assert_geq(a, 0);
    H5Aread(a, type, &desc);
    cr_assert_str_eq(units, "s");
    cr_assert_str_eq(desc, attn_column_find("time_apply_s")->doc);
    H5free_memory(desc);
    H5Aclose(a);
    H5Tclose(type);
    H5Dclose(dset);
    H5Fclose(file);
}

Test(results, spectra_and_tables)
{
    char *path = fixture_path("spectra.h5");
    attn_results *r = NULL;
    attn_provenance prov = prov_of("abc", "spectra");
    attn_row row;
    double sv[4] = { 3.5, 1.25, 0.5, 2.385e-9 };
    double table[6] = { 1, 2, 3, 4, 5, 6 };
    double *back = NULL;
    size_t k = 0;

    cr_assert_eq(attn_results_open(&r, path, &prov), ATTN_OK, "%s", attn_last_error());
    fill_row(&row, 7, "band");
    cr_assert_eq(attn_results_append(r, &row), ATTN_OK, "%s", attn_last_error());
    cr_assert_eq(attn_results_write_spectrum(r, 7, sv, 4), ATTN_OK, "%s", attn_last_error());
    /* A spectrum may also come before its point (the sweep writes it first). */
    cr_assert_eq(attn_results_write_spectrum(r, 8, sv, 2), ATTN_OK, "%s", attn_last_error());
    fill_row(&row, 8, "band");
    cr_assert_eq(attn_results_append(r, &row), ATTN_OK, "%s", attn_last_error());
    cr_assert_eq(attn_results_write_table(r, "rank_by_distance", table, 3, 2, "distance,rank"),
                 ATTN_OK, "%s", attn_last_error());
    expect_error(attn_results_write_table(r, "bad", table, 3, 2, "distance"), ATTN_ESHAPE,
                 "names 1 columns", "has 2", NULL);
    cr_assert_eq(attn_results_close(r), ATTN_OK, "%s", attn_last_error());

    cr_assert_eq(attn_results_read_spectrum(path, 7, &back, &k), ATTN_OK, "%s", attn_last_error());
    cr_assert_eq(k, 4);
    cr_assert_eq(memcmp(back, sv, sizeof sv), 0);
    free(back);
    expect_error(attn_results_read_spectrum(path, 77, &back, &k), ATTN_EFORMAT, path,
                 "/spectra/77", NULL);
    cr_assert_null(back);

    /* The table and its column names, read with the HDF5 API. */
    {
        hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        hid_t dset = H5Dopen2(file, "/blocks/rank_by_distance", H5P_DEFAULT);
        hid_t space = H5Dget_space(dset);
        hsize_t dims[2];
        double x[6];
        cr_assert_eq(H5Sget_simple_extent_dims(space, dims, NULL), 2);
        cr_assert(dims[0] == 3 && dims[1] == 2);
        H5Dread(dset, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
        cr_assert_eq(memcmp(x, table, sizeof x), 0);
        cr_assert_gt(H5Aexists(dset, "column_names"), 0);
        H5Sclose(space);
        H5Dclose(dset);
        /* Both spectra name their point's method and spec. */
        for (int id = 7; id <= 8; id++) {
            char name[32], *spec = NULL;
            hid_t type = H5Tcopy(H5T_C_S1), a;
            H5Tset_size(type, H5T_VARIABLE);
            H5Tset_cset(type, H5T_CSET_UTF8);
            snprintf(name, sizeof name, "/spectra/%d", id);
            dset = H5Dopen2(file, name, H5P_DEFAULT);
            cr_assert_gt(H5Aexists(dset, "method"), 0, "%s has no method", name);
            a = H5Aopen(dset, "spec", H5P_DEFAULT);
            cr_assert_geq(a, 0, "%s has no spec", name);
            H5Aread(a, type, &spec);
            cr_assert_str_eq(spec, "band:w=8");
            H5free_memory(spec);
            H5Aclose(a);
            H5Tclose(type);
            H5Dclose(dset);
        }
        H5Fclose(file);
    }
    expect_nothing_open();
}

Test(results, a_row_cut_short_by_a_kill_is_dropped)
{
    char *path = fixture_path("killed.h5");
    const int64_t ids[] = { 0, 1 };
    attn_results *r = NULL;
    attn_provenance prov = prov_of("abc", "killed");
    attn_table *t = NULL;
    attn_row row;
    hid_t file, dset;
    hsize_t three[1] = { 3 };

    append_rows(path, "abc", ids, 2);
    /* A run killed inside an append: one column already one row longer than point_id. */
    file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    dset = H5Dopen2(file, "/points/err_out_rel_fro", H5P_DEFAULT);
    cr_assert_geq(H5Dset_extent(dset, three), 0);
    H5Dclose(dset);
    H5Fclose(file);

    cr_assert_eq(attn_results_open(&r, path, &prov), ATTN_OK, "%s", attn_last_error());
    cr_assert(attn_results_has(r, 0) && attn_results_has(r, 1) && !attn_results_has(r, 2));
    fill_row(&row, 2, "band");
    row.err_out_rel_fro = 0.125;
    cr_assert_eq(attn_results_append(r, &row), ATTN_OK, "%s", attn_last_error());
    cr_assert_eq(attn_results_close(r), ATTN_OK, "%s", attn_last_error());
    cr_assert_eq(attn_table_read(&t, path), ATTN_OK, "%s", attn_last_error());
    cr_assert_eq(t->rows, 3);
    cr_assert_eq(t->num[attn_table_column(t, "err_out_rel_fro")][2], 0.125);
    attn_table_destroy(t);
    expect_nothing_open();
}

Test(results, a_different_config_is_refused_and_the_file_untouched)
{
    char *path = fixture_path("other-config.h5");
    const int64_t ids[] = { 0, 1 };
    attn_results *r = (attn_results *) 1;
    attn_provenance prov = prov_of("hash-b", "other");
    char *before, *after;
    size_t len_before, len_after;

    append_rows(path, "hash-a", ids, 2);
    before = slurp(path, &len_before);
    expect_error(attn_results_open(&r, path, &prov), ATTN_ECONFIG, path,
                 "was written by a different config (hash hash-a, this sweep hash-b)",
                 "refusing to mix them", NULL);
    cr_assert_null(r);
    after = slurp(path, &len_after);
    cr_assert_eq(len_after, len_before);
    cr_assert_eq(memcmp(before, after, len_before), 0, "the refused file was modified");
    cr_assert_eq(rows_of(path), 2);
    free(before);
    free(after);
    expect_nothing_open();
}

Test(results, not_an_hdf5_file_is_refused_and_untouched)
{
    char *path = fixture_path("results-text.h5");
    attn_results *r = NULL;
    attn_provenance prov = prov_of("abc", "text");
    attn_table *t = NULL;
    char *after;
    size_t len;
    write_text(path, "point_id\tn\n0\t64\n");
    expect_error(attn_results_open(&r, path, &prov), ATTN_EFORMAT, path, "is not an HDF5 file",
                 NULL);
    cr_assert_null(r);
    after = slurp(path, &len);
    cr_assert_str_eq(after, "point_id\tn\n0\t64\n");
    free(after);
    expect_error(attn_table_read(&t, path), ATTN_EFORMAT, path, "is not an HDF5 file", NULL);
    cr_assert_null(t);
    expect_nothing_open();
}

Test(results, hdf5_without_points_is_refused)
{
    char *path = fixture_path("results-inputs.h5");
    attn_results *r = NULL;
    attn_table *t = NULL;
    attn_provenance prov = prov_of("abc", "inputs");
    hid_t file = new_file(path);
    put_layers(file, "", 1, 1, 4, 2, 2, 0, 0.5);
    H5Fclose(file);
    expect_error(attn_results_open(&r, path, &prov), ATTN_EFORMAT, path, "no /points", NULL);
    expect_error(attn_table_read(&t, path), ATTN_EFORMAT, path, "no /points", NULL);
    /* /points but no config_hash. */
    file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    H5Gclose(H5Gcreate2(file, "/points", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    H5Fclose(file);
    expect_error(attn_results_open(&r, path, &prov), ATTN_EFORMAT, path, "no config_hash", NULL);
    expect_nothing_open();
}

Test(results, merge_sorts_skips_duplicates_and_copies_spectra)
{
    char *a = fixture_path("shard-a.h5"), *b = fixture_path("shard-b.h5");
    char *out = fixture_path("merged.h5");
    const char *shards[2] = { a, b };
    attn_results *r = NULL;
    attn_provenance pa = prov_of("same", "shard-a"), pb = prov_of("same", "shard-b");
    attn_table *t = NULL;
    attn_row row;
    double sv[3] = { 2.0, 1.0, 0.25 }, *back = NULL;
    size_t k;
    const int64_t ids_a[] = { 0, 4, 2 }, ids_b[] = { 1, 3, 4 };
    long col;

    cr_assert_eq(attn_results_open(&r, a, &pa), ATTN_OK, "%s", attn_last_error());
    for (size_t i = 0; i < 3; i++) {
        fill_row(&row, ids_a[i], "band");
        cr_assert_eq(attn_results_append(r, &row), ATTN_OK, "%s", attn_last_error());
    }
    cr_assert_eq(attn_results_write_spectrum(r, 2, sv, 3), ATTN_OK, "%s", attn_last_error());
    cr_assert_eq(attn_results_write_table(r, "near_far", sv, 3, 1, "rank"), ATTN_OK, "%s",
                 attn_last_error());
    cr_assert_eq(attn_results_close(r), ATTN_OK);
    cr_assert_eq(attn_results_open(&r, b, &pb), ATTN_OK, "%s", attn_last_error());
    for (size_t i = 0; i < 3; i++) {
        fill_row(&row, ids_b[i], "exact");
        cr_assert_eq(attn_results_append(r, &row), ATTN_OK, "%s", attn_last_error());
    }
    cr_assert_eq(attn_results_close(r), ATTN_OK);

    cr_assert_eq(attn_results_merge(out, shards, 2), ATTN_OK, "%s", attn_last_error());
    cr_assert_eq(attn_table_read(&t, out), ATTN_OK, "%s", attn_last_error());
    cr_assert_eq(t->rows, 5);
    col = attn_table_column(t, "point_id");
    for (size_t i = 0; i < 5; i++)
        cr_assert_eq(t->num[col][i], (double) i);
    /* Point 4 is in both shards: the first shard's row is kept. */
    col = attn_table_column(t, "method");
    cr_assert_str_eq(t->str[col][4], "band");
    cr_assert_str_eq(t->str[col][3], "exact");
    cr_assert_str_eq(attr_of(t, "command_line"), "shard-a");
    cr_assert_str_eq(attr_of(t, "config_hash"), "same");
    cr_assert_not_null(attr_of(t, "merged_from"));
    attn_table_destroy(t);
    cr_assert_eq(attn_results_read_spectrum(out, 2, &back, &k), ATTN_OK, "%s", attn_last_error());
    cr_assert_eq(k, 3);
    cr_assert_eq(memcmp(back, sv, sizeof sv), 0);
    free(back);
    {
        hid_t file = H5Fopen(out, H5F_ACC_RDONLY, H5P_DEFAULT);
        cr_assert_gt(H5Lexists(file, "/blocks", H5P_DEFAULT), 0);
        cr_assert_gt(H5Lexists(file, "/blocks/near_far", H5P_DEFAULT), 0);
        H5Fclose(file);
    }

    /* The merged file is a results file of the same config: a sweep can go on appending to it. */
    cr_assert_eq(attn_results_open(&r, out, &pa), ATTN_OK, "%s", attn_last_error());
    cr_assert(attn_results_has(r, 3));
    cr_assert_eq(attn_results_close(r), ATTN_OK);

    /* An existing output is never overwritten. */
    expect_error(attn_results_merge(out, shards, 2), ATTN_EIO, out, "refusing to overwrite",
                 NULL);
    expect_nothing_open();
}

Test(results, merge_refuses_shards_of_different_configs)
{
    char *a = fixture_path("shard-c1.h5"), *b = fixture_path("shard-c2.h5");
    char *out = fixture_path("merged-mixed.h5");
    const char *shards[2] = { a, b };
    const int64_t ids_a[] = { 0 }, ids_b[] = { 1 };
    struct stat st;
    append_rows(a, "hash-one", ids_a, 1);
    append_rows(b, "hash-two", ids_b, 1);
    expect_error(attn_results_merge(out, shards, 2), ATTN_ECONFIG, a, b, "hash-one", "hash-two",
                 "different configs", NULL);
    cr_assert_neq(stat(out, &st), 0, "a refused merge left %s behind", out);
    expect_nothing_open();
}
