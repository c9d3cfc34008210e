#!/bin/sh
# The programs end to end: a small sweep, rerun skipping, shards and merge, export, aggregation,
# and each bad input named in a clear message with a non-zero exit (TAP).
src="${ATTN_SRCDIR:-.}"
bld="${ATTN_BUILDDIR:-.}"
sweep="$bld/experiments/attn-sweep"
h5cat="$bld/analysis/attn-h5cat"
agg="$bld/analysis/attn-aggregate"
merge="$bld/analysis/attn-merge"
dir="$bld/tests/cli-work"
rm -rf "$dir" && mkdir -p "$dir"
t=0
ok() { t=$((t + 1)); echo "ok $t - $1"; }
fail() { t=$((t + 1)); echo "not ok $t - $1"; sed 's/^/# /' "$dir/err" 2>/dev/null; }
# expect_error NAME EXPECTED_TEXT COMMAND...: non-zero exit and EXPECTED_TEXT on stderr.
expect_error() {
    name=$1; text=$2; shift 2
    if "$@" >"$dir/out" 2>"$dir/err"; then fail "$name (exit 0)"; return; fi
    if grep -qF -- "$text" "$dir/err"; then ok "$name"; else fail "$name (message lacks '$text')"; fi
}
echo "1..20"

cat >"$dir/small.ini" <<EOT
[sweep]
data = $src/data/ppocrv4-svtr-attn.h5 gauss:n=64,d=8,heads=1
layers = all
heads = 0, 3
n = 32:64:x2
causal = 0, 1
repeats = 1
matrix_n_max = 64
rank_n_max = 32
[method exact]
[method band]
w = 2, 8
EOT
if "$sweep" -q "$dir/small.ini" -o "$dir/small.h5" 2>"$dir/err" && [ -s "$dir/small.h5" ]; then
    ok "small sweep runs"; else fail "small sweep runs"; fi
total=$("$sweep" --count "$dir/small.ini")
# ocr: 2 layers x 2 heads x 2 n x 2 causal x 3 specs = 48; gauss: 1 x 1 x 2 x 2 x 3 = 12
if [ "$total" = "60" ]; then ok "grid has 60 points"; else echo "# got '$total'"; fail "grid has 60 points"; fi
"$sweep" "$dir/small.ini" -o "$dir/small.h5" 2>"$dir/err"
if grep -q "0 points computed (0 failed, 0 of them not applicable to the method), 60 already present" "$dir/err"; then ok "rerun skips finished points"; else fail "rerun skips finished points"; fi
"$sweep" -q "$dir/small.ini" -o "$dir/shard.h5" --task 0/2 2>"$dir/err" &&
"$sweep" -q "$dir/small.ini" -o "$dir/shard.h5" --task 1/2 2>>"$dir/err" &&
"$merge" "$dir/merged.h5" "$dir/shard.task0of2.h5" "$dir/shard.task1of2.h5" 2>>"$dir/err"
"$h5cat" "$dir/merged.h5" --columns point_id,spec,err_out_rel_fro -o "$dir/merged.tsv" 2>>"$dir/err"
"$h5cat" "$dir/small.h5" --columns point_id,spec,err_out_rel_fro -o "$dir/small.tsv" 2>>"$dir/err"
if [ -s "$dir/merged.tsv" ] &&
   [ "$(grep -v '^#' "$dir/merged.tsv" | cut -f1,2 | sort)" = "$(grep -v '^#' "$dir/small.tsv" | cut -f1,2 | sort)" ]; then
    ok "two shards merge to the same points"; else fail "two shards merge to the same points"; fi
# Exact at its own points has zero error; band at w = 2 does not.
if awk -F'\t' '!/^#/ && $2 == "exact" && $3 != 0 { bad = 1 } END { exit bad }' "$dir/small.tsv" &&
   awk -F'\t' '!/^#/ && $2 == "band:w=2" && $3 > 1e-6 { seen = 1 } END { exit !seen }' "$dir/small.tsv"; then
    ok "errors: exact 0, band:w=2 positive"; else fail "errors: exact 0, band:w=2 positive"; fi
if "$agg" "$dir/small.h5" --by method,spec,causal,n --of err_out_rel_fro -o "$dir/agg.tsv" 2>"$dir/err" &&
   head -n 20 "$dir/agg.tsv" | grep -q "err_out_rel_fro_med" &&
   # The mean of each group equals the mean of its rows in the point table.
   "$h5cat" "$dir/small.h5" -o "$dir/full.tsv" 2>>"$dir/err" &&
   awk -F'\t' 'FNR == 1 {f++} /^#/ {next} f == 1 && !h1 {for (i = 1; i <= NF; i++) a[$i] = i; h1 = 1; next}
        f == 2 && !h2 {for (i = 1; i <= NF; i++) b[$i] = i; h2 = 1; next}
        f == 1 && $a["spec"] == "band:w=2" && $a["causal"] == 1 && $a["n"] == 64 {s += $a["err_out_rel_fro"]; k++}
        f == 2 && $b["spec"] == "band:w=2" && $b["causal"] == 1 && $b["n"] == 64 {m = $b["err_out_rel_fro_mean"]}
        END {d = m - s / k; exit !(k > 0 && d < 1e-12 && d > -1e-12)}' "$dir/full.tsv" "$dir/agg.tsv"; then
    ok "aggregate writes medians and means"; else fail "aggregate writes medians and means"; fi

# Bad inputs.
printf '[sweep]\ndata = x.h5\nn = 8\nthis line is wrong\n[method exact]\n' >"$dir/syntax.ini"
expect_error "INI syntax error names the line" "syntax.ini:4: syntax error" "$sweep" "$dir/syntax.ini" -o "$dir/x.h5"
printf '[sweep]\ndata = gauss:n=16\nn = 8\n[method bandd]\nw = 2\n' >"$dir/method.ini"
expect_error "unknown method named" "unknown method 'bandd'" "$sweep" "$dir/method.ini" -o "$dir/x.h5"
printf '[sweep]\ndata = gauss:n=16\nn = 8\n[method band]\nwidth = 2\n' >"$dir/param.ini"
expect_error "unknown parameter named" "band: unknown parameter 'width' (parameters: w)" "$sweep" "$dir/param.ini" -o "$dir/x.h5"
printf '[sweep]\ndata = gauss:n=16\nn = 8\n[method band]\nw = -3\n' >"$dir/range.ini"
expect_error "out-of-range parameter named" "parameter w = -3 is out of range" "$sweep" "$dir/range.ini" -o "$dir/x.h5"
printf '[sweep]\ndata = %s/data/nosuch.h5\nn = 8\n[method exact]\n' "$src" >"$dir/missing.ini"
expect_error "missing data file named" "nosuch.h5" "$sweep" "$dir/missing.ini" -o "$dir/x.h5"
expect_error "--set of a bad value named" "[sweep] n: 'abc' is not a number" "$sweep" "$dir/small.ini" --set n=abc -o "$dir/x.h5"
cp "$dir/small.h5" "$dir/before.h5"
expect_error "results of a different config refused" "different config" "$sweep" -q "$dir/small.ini" --set band.w=4 -o "$dir/small.h5"
if cmp -s "$dir/small.h5" "$dir/before.h5"; then ok "refused results file unchanged"; else fail "refused results file unchanged"; fi
echo "not an hdf5 file" >"$dir/text.h5"
expect_error "results file that is not HDF5 named" "is not an HDF5 file" "$sweep" -q "$dir/small.ini" -o "$dir/text.h5"
expect_error "h5cat unknown column named" "unknown column 'nosuch'" "$h5cat" "$dir/small.h5" --columns nosuch
expect_error "bad --task refused" "--task '3/2'" "$sweep" "$dir/small.ini" --task 3/2

# [blocks]: structure tables joined with /points by attn-h5cat --blocks.
cat >"$dir/blocks.ini" <<EOT
[sweep]
data = $src/data/ppocrv4-svtr-attn.h5
layers = 0
heads = 0, 1
n = 64
repeats = 1
rank_n_max = 64
[blocks]
sizes = 8, 16
bands = 0, 4
[method band]
w = 4
EOT
"$sweep" -q "$dir/blocks.ini" -o "$dir/blocks.h5" 2>"$dir/err"
"$h5cat" "$dir/blocks.h5" --blocks offdiag --where block=16 -o "$dir/offdiag.tsv" 2>>"$dir/err"
# 2 heads x distances 1..3 at block 16, each row labelled with its input.
rows=$(grep -v '^#' "$dir/offdiag.tsv" | grep -c '^ppocrv4-svtr-attn	')
if [ "$rows" = 6 ] && grep -v '^#' "$dir/offdiag.tsv" | head -1 | grep -q '^data_label	data_source	point_id'; then
    ok "h5cat --blocks joins the structure tables with /points"
else
    fail "h5cat --blocks joins the structure tables with /points ($rows rows)"
fi
expect_error "h5cat --blocks of a missing table named" "no /blocks/nosuch_<point_id> tables" "$h5cat" "$dir/blocks.h5" --blocks nosuch
expect_error "h5cat --spectra with --blocks refused" "exclude each other" "$h5cat" "$dir/blocks.h5" --blocks offdiag --spectra
