# fmm_grid.gp — the figure of experiments/configs/fmm_grid.ini:
#   figures/fmm_grid.{pdf,png}   heat maps of fmm_band_lowrank's median output error
#       ||O^ - O||_F / ||O||_F over the bandwidth k (|i - j| <= k) and the number r of far-field
#       feature maps, at each data label's largest n; columns: data label x mask; top row the fixed
#       blend (1/2, 1/2), bottom row the oracle least-squares blend; the row "near" is the window
#       alone (part = near) at the same k.  Colour: log10 of the error, one scale for all panels.
# Input: results/fmm_grid_agg.tsv (attn-aggregate --by data_label,method,config_spec,causal,n).
# Run from the source directory:
#   gnuplot -e "results='<abs>/results'; figures='<abs>/figures'; fig='fmm_grid'" plots/fmm_grid.gp
load 'plots/style.gp'

agg = results . '/' . fig . '_agg.tsv'
labels = tsv_unique(agg, "data_label")
nlabels = words(labels)
if (nlabels == 0) {
    print sprintf("fmm_grid.gp: error: %s has no rows", agg)
    exit status 1
}

# Cells: x = position of k in the list 0, 1, 2, 4, ...; y = r (1..3), or 0 for the window alone.
kx(k) = k < 1 ? 0 : 1 + log(k) / log(2)
is_near(s) = param_s(s, "part") eq "near"
blend_of(s) = param_s(s, "blend") eq "" ? "fixed" : param_s(s, "blend")
largest_n(L) = tsv_awk(agg, '$c["data_label"] == "' . L . '" && $c["n"] + 0 > m {m = $c["n"] + 0} END {print m}')
cell(L, nn, cz, b, col) = (strcol("data_label") eq L && column("n") == nn && column("causal") == cz \
    && strcol("method") eq "fmm_band_lowrank" && (is_near(strcol("config_spec")) \
    || blend_of(strcol("config_spec")) eq b)) ? column(col) : NaN
ycell(s) = is_near(s) ? 0 : param(s, "r")

# One colour scale for every panel: log10 of the smallest and largest median error.
er = tsv_awk(agg, '$c["err_out_rel_fro_med"] + 0 > 0 {v = log($c["err_out_rel_fro_med"]) / log(10); if (!m++ || v < lo) lo = v; if (m == 1 || v > hi) hi = v} END {if (m) print lo, hi}')
kmax = real(tsv_awk(agg, '{split($c["config_spec"], a, /[:,]k=/); split(a[2], b, ","); if (b[1] + 0 > m) m = b[1] + 0} END {print m}'))

do for [ext in out_formats] {
    eval out_begin(fig, ext)
    set multiplot title "fmm\\_band\\_lowrank: median output error over bandwidth k and far-field maps r (log_{10}, shared colour scale)"
    set palette defined (0 "#ffffcc", 1 "#fd8d3c", 2 "#bd0026", 3 "#49006a")
    if (words(er) == 2) { set cbrange [real(word(er, 1)):real(word(er, 2))] }
    ncols = 2 * nlabels
    do for [row = 0:1] {
        b = row == 0 ? "fixed" : "oracle"
        do for [p = 1:nlabels] {
            L = word(labels, p)
            nn = real(largest_n(L))
            do for [cz = 0:1] {
                q = 2 * (p - 1) + cz + 1
                eval panel_at(row * ncols + q, 2, ncols, 0.07, 0.88, 0.1, 0.88, 0.03, 0.1)
                set title (row == 0 ? L . "\n" . sprintf("n = %d, ", nn) . causal_name(cz) : "blend = oracle") noenhanced font ",6"
                set xrange [-0.5:kx(kmax) + 0.5]
                set yrange [-0.5:3.5]
                set xtics ("0" 0, "1" 1, "2" 2, "4" 3, "8" 4, "16" 5, "32" 6, "64" 7, "128" 8, "256" 9, "512" 10) font ",6"
                set ytics ("near" 0, "1" 1, "2" 2, "3" 3) font ",6"
                set xlabel (row == 1 ? "k" : "") font ",7"
                set ylabel (q == 1 ? (row == 0 ? "r (blend 1/2, 1/2)" : "r (oracle blend)") : "") font ",7"
                unset grid
                unset key
                if (q == ncols) { set colorbox user origin 0.9, 0.15 size 0.015, 0.7; set cbtics font ",6"; set cblabel "log_{10} error" font ",7" } else { unset colorbox }
                # Rows of other panels get x = NaN (a point with only its colour undefined would
                # still be drawn, over the panel's own).
                plot agg using (cell(L, nn, cz, b, "err_out_rel_fro_med") > 0 \
                                ? kx(param(strcol("config_spec"), "k")) : NaN) \
                         :(ycell(strcol("config_spec"))) \
                         :(log10(cell(L, nn, cz, b, "err_out_rel_fro_med"))) \
                         with points pt 5 ps 2.6 lc palette notitle
            }
        }
    }
    eval out_end
}
