#!/bin/sh
# The README's library example builds and runs (TAP).
echo "1..1"
out=$("${ATTN_BUILDDIR:-.}/experiments/example" 2>&1)
status=$?
echo "# $out"
case "$out" in
  *"band:w=64 vs exact: relative error"*) [ $status -eq 0 ] && { echo "ok 1 - example runs"; exit 0; } ;;
esac
echo "not ok 1 - example failed (status $status)"
