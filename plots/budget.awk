# budget.awk — rows of an attn-aggregate table (results/<fig>_agg.tsv) for one curve, with the
# budget of each spec in front: keys or features a query touches (block + samples for kdeformer
# and hyperattention, features for performer, landmarks for nystrom, 2 w + 1 for band, the k of
# fmm_band_lowrank's band, block for the others that have one).  Used by plots/kde.gp as
#     < awk -F'\t' -v L=label -v N=n -v CZ=causal -v M=method -v COLS="c1 c2" -f plots/budget.awk FILE | sort -g
# Output: budget c1 c2 ... (tab separated, as every attnlab TSV; no header), one line per spec of method M.
function par(s, k,    v) {
    if (match(s, "[:,]" k "=[^,]*")) {
        v = substr(s, RSTART + length(k) + 2, RLENGTH - length(k) - 2)
        return v + 0
    }
    return -1
}
function budget(m, s) {
    if (m == "kdeformer" || m == "hyperattention") return par(s, "block") + par(s, "samples")
    if (m == "performer") return par(s, "features")
    if (m == "nystrom") return par(s, "landmarks")
    if (m == "band") return 2 * par(s, "w") + 1
    return par(s, "block")
}
/^#/ { next }
!h { for (i = 1; i <= NF; i++) c[$i] = i; h = 1; ncols = split(COLS, want, " "); next }
$c["data_label"] == L && $c["n"] == N && $c["causal"] == CZ && $c["method"] == M {
    line = budget(M, $c["config_spec"])
    for (i = 1; i <= ncols; i++) line = line "\t" $c[want[i]]
    print line
}
