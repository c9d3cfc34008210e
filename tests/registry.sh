#!/bin/sh
# Guard: every method file in lib/methods/ defines methods registered in lib/methods.def, and
# every registered id has a definition (TAP).
src="${ATTN_SRCDIR:-.}"
echo "1..2"
missing=""
for f in "$src"/lib/methods/*.c; do
    # *_common.c files hold helpers shared by a family and define no method.
    case "$f" in *_common.c) continue ;; esac
    ids=$(sed -n 's/^const attn_method attn_method_\([a-z0-9_]*\) = {.*/\1/p' "$f")
    [ -n "$ids" ] || missing="$missing $(basename "$f")(defines no method)"
    for id in $ids; do
        grep -q "^ATTN_METHOD($id)" "$src/lib/methods.def" || missing="$missing $id($(basename "$f"))"
        grep -q "lib/methods/$(basename "$f")" "$src/Makefile.am" || missing="$missing $(basename "$f")(not in Makefile.am)"
    done
done
if [ -z "$missing" ]; then echo "ok 1 - every method file is registered"; else echo "not ok 1 - not registered:$missing"; fi
undefined=""
for id in $(sed -n 's/^ATTN_METHOD(\([a-z0-9_]*\))/\1/p' "$src/lib/methods.def"); do
    grep -q "^const attn_method attn_method_$id = {" "$src"/lib/methods/*.c || undefined="$undefined $id"
done
if [ -z "$undefined" ]; then echo "ok 2 - every registered id is defined"; else echo "not ok 2 - registered but undefined:$undefined"; fi
