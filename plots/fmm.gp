# fmm.gp — the figures of experiments/configs/fmm.ini (the FMM family):
#   figures/fmm_error, fmm_spectrum      the overview (plots/overview.gp)
#   figures/fmm_scaling.{pdf,png}        apply time vs n on the longest input, bidirectional and
#       causal, every spec with its fitted log-log slope b; exact in black
#   figures/fmm_cost.{pdf,png}           error at matched cost: median ||O^ - O||_F / ||O||_F
#       against the analytic flops per query, at the largest n of each data label, one panel per
#       label (filled: bidirectional, open: causal)
#   figures/fmm_fast.{pdf,png}           FAST is its own attention function: its error against the
#       problem's softmax (solid) and against the softmax of its own normalised scores, i.e. the
#       Taylor truncation alone (dashed), vs n
#   figures/fmm_rank.{pdf,png}           near/far structure of the exact matrices ([blocks]): rank
#       of the off-diagonal b x b blocks against their distance from the diagonal (in tokens), one
#       curve per block size b, mean over heads and layers, at each label's largest n; top row the
#       rank relative to the block's own sigma_1, bottom row relative to ||A||_2 (tol 1e-3)
#   figures/fmm_farfield.{pdf,png}       rank of the far field A minus its band |i - j| <= k
#       against k (99% energy and tol ||A||_2), mean over heads and layers
# Inputs: results/fmm_agg.tsv, fmm_fit.tsv, fmm_spectrum.tsv (see overview.gp), fmm_offdiag.tsv and
# fmm_farfield.tsv (attn-h5cat --blocks offdiag | farfield).
# Run from the source directory:
#   gnuplot -e "results='<abs>/results'; figures='<abs>/figures'; fig='fmm'" plots/fmm.gp
sp_label = "ppocrv4-svtr-attn-n1024"
sp_layer = 1
sp_head = 3
sp_causal = 0
overview_time = 0
load 'plots/overview.gp'

offdiag = results . '/' . fig . '_offdiag.tsv'
farfield = results . '/' . fig . '_farfield.tsv'

# Colours by method (shades in the order of the specs list), exact black.
method_shades(m) = m eq "band" ? "#3182bd #6baed6" \
    : m eq "fmm_band_lowrank" ? "#a50f15 #de2d26 #fb6a4a #fc9272" \
    : m eq "fmm_multilevel" ? "#01665e #35978f #80cdc1" \
    : m eq "fast" ? "#7a0177 #c51b8a #f768a1" : "#000000"
method_count(sp, k, m, j) = j >= k ? 0 : (method_of(word(sp, j)) eq m) + method_count(sp, k, m, j + 1)
mcolor(sp, k) = word(method_shades(method_of(word(sp, k))), \
    method_count(sp, k, method_of(word(sp, k)), 1) % words(method_shades(method_of(word(sp, k)))) + 1)

# ---------------------------------------------------------------------------------------------
# Apply time against n on the longest input.
tl = tsv_awk(agg, '$c["n"] + 0 > m {m = $c["n"] + 0; l = $c["data_label"]} END {print l}')
tr = time_range(tl)
do for [ext in out_formats] {
    eval out_begin(fig . '_scaling', ext)
    set multiplot title "Apply time on " . tl . " (median of repeats; b: fitted log-log slope over n)" noenhanced
    do for [cz = 0:1] {
        eval panel_at(cz + 1, 1, 2, 0.08, 0.98, 0.1, 0.9, 0.08, 0.0)
        eval loglog
        set title causal_name(cz) font ",8"
        set xlabel "n (tokens)"
        set ylabel (cz == 0 ? "time of one apply (s)" : "")
        if (words(tr) == 2) {
            lo = floor(real(word(tr, 1)))
            hi = real(word(tr, 2))
            set yrange [10**lo : 10**(hi + 0.8 * (hi - lo))]
        }
        set key top left vertical samplen 2 spacing 0.8 font ",6" noenhanced
        slopes = ""
        do for [k = 1:nspecs] { slopes = slopes . slope_of(tl, word(specs, k), cz) . " " }
        plot for [k = 1:nspecs] agg \
                 using (pick(tl, word(specs, k), cz, "n")) \
                      :(pick(tl, word(specs, k), cz, "time_apply_s_med")) \
                 with linespoints lc rgb mcolor(specs, k) pt 7 ps 0.4 lw 1.2 \
                 title word(specs, k) . " (b = " . word(slopes, k) . ")"
    }
    eval out_end
}

# ---------------------------------------------------------------------------------------------
# Error at matched cost: error against flops per query at each label's largest n.
largest_n(L) = tsv_awk(agg, '$c["data_label"] == "' . L . '" && $c["n"] + 0 > m {m = $c["n"] + 0} END {print m}')
at_n(L, nn, s, cz, col) = (strcol("data_label") eq L && strcol("config_spec") eq s && \
    column("causal") == cz && column("n") == nn) ? column(col) : NaN
do for [ext in out_formats] {
    eval out_begin(fig . '_cost', ext)
    set multiplot title "Error at matched cost: median output error against flops per query, at each input's largest n"
    do for [p = 1:nlabels] {
        L = word(labels, p)
        nn = real(largest_n(L))
        eval panel_at(p, panel_rows, panel_cols, 0.1, 0.98, key_top(nspecs + 1) + 0.09, 0.92, 0.1, 0.12)
        set logscale xy
        set format x '10^{%L}'
        set format y '10^{%L}'
        set title L . sprintf(", n = %d", nn) noenhanced offset 0, -0.5
        set xlabel (bottom_row(p) ? "flops per query (analytic)" : "")
        set ylabel "‖Ô − O‖_F / ‖O‖_F"
        unset key
        if (err_rows(L) == 0) {
            eval empty_panel("no approximate points")
        } else {
            plot for [k = 1:nspecs] for [cz = 0:1] agg \
                     using (method_of(word(specs, k)) eq "exact" ? NaN : at_n(L, nn, word(specs, k), cz, "flops_med") / nn) \
                          :(at_n(L, nn, word(specs, k), cz, "err_out_rel_fro_med")) \
                     with points lc rgb mcolor(specs, k) pt (cz ? 6 : 7) ps 0.9 notitle
        }
    }
    eval key_panel(0.02, 0.98, 0.01, key_top(nspecs + 1))
    set key samplen 1 width 2 maxrows (nspecs + 3) / 3 font ",7"
    plot for [k = 1:nspecs] NaN with points lc rgb mcolor(specs, k) pt 7 ps 0.9 \
             title (method_of(word(specs, k)) eq "exact" ? "" : word(specs, k)), \
         for [cz = 0:1] NaN with points lc rgb "#404040" pt (cz ? 6 : 7) ps 0.9 title causal_name(cz)
    eval out_end
}

# ---------------------------------------------------------------------------------------------
# FAST: replacement error (against the problem's softmax) and truncation error (against the
# softmax of its own normalised scores).
fast_specs = ""
do for [k = 1:nspecs] {
    if (method_of(word(specs, k)) eq "fast") { fast_specs = fast_specs . word(specs, k) . " " }
}
nfast = words(fast_specs)
fast_shade(j) = word("#54278f #9e9ac8 #de2d26 #fc9272", (j - 1) % 4 + 1)
if (nfast > 0) {
    do for [ext in out_formats] {
        eval out_begin(fig . '_fast', ext)
        set multiplot title "FAST against softmax (solid) and against its own target, the Taylor truncation alone (dashed)"
        do for [p = 1:nlabels] {
            L = word(labels, p)
            eval panel_at(p, panel_rows, panel_cols, 0.1, 0.98, 0.22, 0.92, 0.1, 0.12)
            @loglog
            set title L noenhanced offset 0, -0.5
            set xlabel (bottom_row(p) ? "n (tokens)" : "")
            set ylabel "relative error (Frobenius)"
            unset key
            plot for [j = 1:nfast] for [cz = 0:1] agg \
                     using (pick(L, word(fast_specs, j), cz, "n")) \
                          :(pick(L, word(fast_specs, j), cz, "err_out_rel_fro_med")) \
                     with linespoints lc rgb fast_shade(2 * (j - 1) + cz + 1) pt (cz ? 6 : 7) ps 0.6 dt 1 notitle, \
                 for [j = 1:nfast] for [cz = 0:1] agg \
                     using (pick(L, word(fast_specs, j), cz, "n")) \
                          :(pick(L, word(fast_specs, j), cz, "err_target_rel_fro_med")) \
                     with linespoints lc rgb fast_shade(2 * (j - 1) + cz + 1) pt (cz ? 6 : 7) ps 0.6 dt 2 notitle
        }
        eval key_panel(0.02, 0.98, 0.01, 0.1)
        set key samplen 3 width 2 maxrows 2
        plot for [j = 1:nfast] for [cz = 0:1] NaN with linespoints lc rgb fast_shade(2 * (j - 1) + cz + 1) \
                 pt (cz ? 6 : 7) ps 0.6 title word(fast_specs, j) . ", " . causal_name(cz), \
             NaN with lines lc rgb "#404040" dt 1 title "vs softmax", \
             NaN with lines lc rgb "#404040" dt 2 title "vs own target (truncation)"
        eval out_end
    }
}

# ---------------------------------------------------------------------------------------------
# Near/far structure of the exact matrices.
have_blocks = system("test -s '" . offdiag . "' && echo 1 || echo 0") + 0
if (have_blocks) {
    blabels = tsv_unique(offdiag, "data_label")
    nbl = words(blabels)
    bsizes = tsv_unique_sorted(offdiag, "block")
    nbs = words(bsizes)
    blargest(L) = tsv_awk(offdiag, '$c["data_label"] == "' . L . '" && $c["n"] + 0 > m {m = $c["n"] + 0} END {print m}')
    bshade(j) = word("#08519c #3182bd #6baed6 #9ecae1 #c6dbef", (j - 1) % 5 + 1)
    # The rows of one curve, passed through awk so that `smooth unique` (the mean over heads and
    # layers at each x) sees only them.
    curve(file, L, nn, cz, extra) = tsv_filter(file, '$c["data_label"] == "' . L . '" && $c["n"] == ' \
        . sprintf("%d", nn) . ' && $c["causal"] == ' . sprintf("%d", cz) . extra)
    do for [ext in out_formats] {
        eval out_begin(fig . '_rank', ext)
        set multiplot title "Rank of off-diagonal blocks of exact attention against their distance (mean over heads and layers)"
        do for [row = 0:1] {
            col = row == 0 ? "rank_rel_mean" : "rank_abs_mean"
            do for [p = 1:nbl] {
                L = word(blabels, p)
                nn = int(real(blargest(L)))
                eval panel_at(row * nbl + p, 2, nbl, 0.08, 0.98, 0.17, 0.9, 0.06, 0.1)
                set logscale x 2
                set format x '%.0f'
                set title (row == 0 ? L . sprintf(", n = %d", nn) : "") noenhanced font ",7"
                set xlabel (row == 1 ? "distance from the diagonal (tokens)" : "")
                set ylabel (p == 1 ? (row == 0 ? "rank at 10^{-3} σ_1(block)" : "rank at 10^{-3} ‖A‖_2") : "")
                set tics font ",7"
                unset key
                plot for [j = 1:nbs] for [cz = 0:1] \
                         curve(offdiag, L, nn, cz, ' && $c["block"] == ' . word(bsizes, j)) \
                         using (column("distance") * column("block")):(column(col)) smooth unique \
                         with linespoints lc rgb bshade(j) pt (cz ? 6 : 7) dt causal_dt(cz) ps 0.4 notitle
            }
        }
        eval key_panel(0.02, 0.98, 0.01, 0.08)
        set key samplen 2 width 2 maxrows 1
        plot for [j = 1:nbs] NaN with lines lc rgb bshade(j) lw 2 title "block " . word(bsizes, j), \
             for [cz = 0:1] NaN with linespoints lc rgb "#404040" pt (cz ? 6 : 7) dt causal_dt(cz) title causal_name(cz)
        eval out_end
    }
    do for [ext in out_formats] {
        eval out_begin(fig . '_farfield', ext)
        set multiplot title "Far field A − band_k(A) of exact attention: rank against the band half-width k (mean over heads and layers)"
        do for [p = 1:nbl] {
            L = word(blabels, p)
            nn = int(real(blargest(L)))
            eval panel_at(p, 1, nbl, 0.08, 0.98, 0.2, 0.88, 0.06, 0.0)
            set logscale x 2
            set format x '%.0f'
            set title L . sprintf(", n = %d", nn) noenhanced font ",7"
            set xlabel "k + 1"
            set ylabel (p == 1 ? "rank" : "")
            set tics font ",7"
            unset key
            plot for [cz = 0:1] curve(farfield, L, nn, cz, ' && $c["band"] >= 0') \
                     using (column("band") + 1):"energy99" \
                     smooth unique with linespoints lc rgb "#a50f15" pt (cz ? 6 : 7) dt causal_dt(cz) ps 0.5 notitle, \
                 for [cz = 0:1] curve(farfield, L, nn, cz, ' && $c["band"] >= 0') \
                     using (column("band") + 1):"rank_abs" \
                     smooth unique with linespoints lc rgb "#3182bd" pt (cz ? 6 : 7) dt causal_dt(cz) ps 0.5 notitle
        }
        eval key_panel(0.02, 0.98, 0.01, 0.1)
        set key samplen 3 width 2 maxrows 2
        plot NaN with lines lc rgb "#a50f15" lw 2 title "99% energy rank", \
             NaN with lines lc rgb "#3182bd" lw 2 title "rank at 10⁻³ ‖A‖₂", \
             for [cz = 0:1] NaN with linespoints lc rgb "#404040" pt (cz ? 6 : 7) dt causal_dt(cz) title causal_name(cz)
        eval out_end
    }
}
