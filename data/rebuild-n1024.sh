#!/bin/sh
# rebuild-n1024.sh — make data/ppocrv4-svtr-attn-n1024.h5 from the /n1024 group of the long OCR file.
#
#   sh data/rebuild-n1024.sh LONG.h5 OUT.h5
#
# The groups /n1024/layer0, /n1024/layer1 and /n1024/input (datasets, chunking, filters and
# attributes unchanged) are copied to /layer0, /layer1 and /input of OUT with h5copy (hdf5-tools).
# No HDF5 command-line tool copies attributes onto the root group, so a few lines of C (compiled
# here against the serial HDF5 library) copy the root attributes of LONG and the attributes of
# /n1024 onto the root of OUT, and add `extracted_from` saying where the file came from.
# Needs: hdf5-tools, libhdf5-dev, a C compiler and pkg-config.  Ends by comparing OUT with LONG.
set -eu

long=${1:?usage: rebuild-n1024.sh LONG.h5 OUT.h5}
out=${2:?usage: rebuild-n1024.sh LONG.h5 OUT.h5}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

rm -f "$out"
for g in layer0 layer1 input; do
    h5copy -i "$long" -o "$out" -s "/n1024/$g" -d "/$g"
done

cat > "$tmp/copyattrs.c" <<'EOF'
/* Copy every attribute of object SRCOBJ in SRC onto object DSTOBJ of DST; with a sixth argument,
 * also write it as the string attribute `extracted_from` of DSTOBJ. */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static hid_t dst_obj;

static herr_t copy_one(hid_t obj, const char *name, const H5A_info_t *info, void *data)
{
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t ftype = H5Aget_type(a), mtype = H5Tget_native_type(ftype, H5T_DIR_DEFAULT);
    hid_t space = H5Aget_space(a);
    size_t count = (size_t) H5Sget_simple_extent_npoints(space);
    void *buf = calloc(count ? count : 1, H5Tget_size(mtype));
    hid_t b;
    herr_t status = -1;
    if (buf != NULL && H5Aread(a, mtype, buf) >= 0) {
        b = H5Acreate2(dst_obj, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT);
        if (b >= 0 && H5Awrite(b, mtype, buf) >= 0)
            status = 0;
        if (b >= 0)
            H5Aclose(b);
        H5Dvlen_reclaim(mtype, space, H5P_DEFAULT, buf);
    }
    if (status < 0)
        fprintf(stderr, "copyattrs: cannot copy attribute %s\n", name);
    free(buf);
    H5Sclose(space);
    H5Tclose(mtype);
    H5Tclose(ftype);
    H5Aclose(a);
    return status;
}

int main(int argc, char **argv)
{
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: copyattrs SRC SRCOBJ DST DSTOBJ [EXTRACTED_FROM]\n");
        return 2;
    }
    hid_t src = H5Fopen(argv[1], H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t dst = H5Fopen(argv[3], H5F_ACC_RDWR, H5P_DEFAULT);
    if (src < 0 || dst < 0)
        return 1;
    hid_t src_obj = H5Oopen(src, argv[2], H5P_DEFAULT);
    dst_obj = H5Oopen(dst, argv[4], H5P_DEFAULT);
    if (src_obj < 0 || dst_obj < 0)
        return 1;
    hsize_t idx = 0;
    if (H5Aiterate2(src_obj, H5_INDEX_NAME, H5_ITER_INC, &idx, copy_one, NULL) < 0)
        return 1;
    if (argc == 6) {
        hid_t type = H5Tcopy(H5T_C_S1);
        H5Tset_size(type, H5T_VARIABLE);
        H5Tset_cset(type, H5T_CSET_UTF8);
        hid_t space = H5Screate(H5S_SCALAR);
        hid_t a = H5Acreate2(dst_obj, "extracted_from", type, space, H5P_DEFAULT, H5P_DEFAULT);
        const char *text = argv[5];
        if (a < 0 || H5Awrite(a, type, &text) < 0)
            return 1;
        H5Aclose(a);
        H5Sclose(space);
        H5Tclose(type);
    }
    H5Oclose(src_obj);
    H5Oclose(dst_obj);
    H5Fclose(src);
    return H5Fclose(dst) < 0;
}
EOF
cc -o "$tmp/copyattrs" "$tmp/copyattrs.c" $(pkg-config --cflags --libs hdf5-serial)

"$tmp/copyattrs" "$long" / "$out" /
"$tmp/copyattrs" "$long" /n1024 "$out" / \
    "the /n1024 group of ppocrv4-svtr-attn-long.h5 (sha256 $(sha256sum "$long" | cut -d' ' -f1)): its layer0, layer1 and input groups moved to the root, unchanged; the root carries the long file's root attributes (its layout and lengths attributes describe the long file) and the /n1024 group's attributes"

# Verify: every copied object equals its source, values and attributes (h5diff exits 1 on a difference).
for g in layer0 layer1 input; do
    h5diff -c "$out" "$long" "/$g" "/n1024/$g"
done
echo "rebuild-n1024.sh: $out matches /n1024 of $long"
