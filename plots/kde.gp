# kde.gp — the figures of experiments/configs/kde.ini (sampling and low-rank family):
#   figures/kde_budget.{pdf,png}   the KDEformer paper's single-layer experiment on our real data:
#       output error against budget (keys or features per query; see plots/budget.awk), mean over
#       heads, layers and 5 seeds with the interquartile band; top row ||O^ - O||_2 / ||O||_2, bottom
#       row the normalised ||O^ - O||_2 / (||A||_2 ||V||_2); one column per data label and mask, at
#       each label's largest n; elu+1 linear attention (no budget) as a dashed horizontal line;
#       errors below 1e-4 (a method at a budget where it is exact) are left off the axis
#   figures/kde_pareto.{pdf,png}   error against apply time (median over seeds) on the synthetic
#       input at n = 4096 and 16384, each method's budgets joined in order; exact's time dashed
# Input: results/kde_agg.tsv (attn-aggregate --by data_label,method,config_spec,causal,n, with means).
# Run from the source directory:
#   gnuplot -e "results='<abs>/results'; figures='<abs>/figures'; fig='kde'" plots/kde.gp
load 'plots/style.gp'

agg = results . '/' . fig . '_agg.tsv'
labels = tsv_unique(agg, "data_label")
if (words(labels) == 0) {
    print sprintf("kde.gp: error: %s has no rows", agg)
    exit status 1
}
methods = "kdeformer hyperattention performer nystrom band"
mcol(m) = m eq "kdeformer" ? "#54278f" : m eq "hyperattention" ? "#9e9ac8" \
    : m eq "performer" ? "#bf812d" : m eq "nystrom" ? "#8c510a" : m eq "band" ? "#3182bd" : "#737373"
mpt(m) = m eq "kdeformer" ? 7 : m eq "hyperattention" ? 9 : m eq "performer" ? 5 : m eq "nystrom" ? 13 : 11
curve(L, nn, cz, m, cols) = sprintf("< awk -F'\t' -v L='%s' -v N=%d -v CZ=%d -v M='%s' -v COLS='%s' -f plots/budget.awk '%s' | sort -g", \
    L, nn, cz, m, cols, agg)
largest_n(L) = int(real(tsv_awk(agg, '$c["data_label"] == "' . L . '" && $c["n"] + 0 > m {m = $c["n"] + 0} END {print m}')))
lookup(L, nn, cz, m, col) = tsv_awk(agg, '$c["data_label"] == "' . L . '" && $c["n"] == ' . sprintf("%d", nn) \
    . ' && $c["causal"] == ' . sprintf("%d", cz) . ' && $c["method"] == "' . m . '" {print $c["' . col . '"]; exit}')

# The real inputs: every label but the synthetic one (local-...), which the Pareto figure uses.
real_labels = ""
syn_label = ""
do for [L in labels] {
    if (strstrt(L, "local-") == 1 || strstrt(L, "gauss-") == 1) { syn_label = L } else { real_labels = real_labels . L . " " }
}
nreal = words(real_labels)
ncols = 2 * nreal

do for [ext in out_formats] {
    eval out_begin(fig . '_budget', ext)
    set multiplot title "Output error against budget (mean over heads, layers and seeds; band: interquartile range)"
    do for [row = 0:1] {
        col = row == 0 ? "err_out_rel_spec" : "err_out_kde_norm"
        do for [p = 1:nreal] {
            L = word(real_labels, p)
            nn = largest_n(L)
            do for [cz = 0:1] {
                q = 2 * (p - 1) + cz + 1
                eval panel_at(row * ncols + q, 2, ncols, 0.07, 0.98, 0.16, 0.9, 0.035, 0.08)
                set logscale x 2
                set logscale y 10
                set format x '%.0f'
                set format y '10^{%L}'
                set tics font ",6"
                # Budgets at which a method is exact (block >= n) would stretch the axis to 1e-16.
                set yrange [1e-4:*]
                set title (row == 0 ? L . "\n" . sprintf("n = %d, ", nn) . causal_name(cz) : "") noenhanced font ",6"
                set xlabel (row == 1 ? "budget (keys or features per query)" : "") font ",6"
                set ylabel (q == 1 ? (row == 0 ? "‖Ô − O‖₂ / ‖O‖₂" : "‖Ô − O‖₂ / (‖A‖₂ ‖V‖₂)") : "") font ",7"
                unset key
                lin = lookup(L, nn, cz, "linear_elu", col . "_mean")
                lin = words(lin) > 0 ? real(lin) : NaN
                plot for [m in methods] curve(L, nn, cz, m, col . "_q25 " . col . "_q75") \
                         using 1:2:3 with filledcurves lc rgb mcol(m) fs transparent solid 0.15 noborder notitle, \
                     for [m in methods] curve(L, nn, cz, m, col . "_mean") \
                         using 1:2 with linespoints lc rgb mcol(m) pt mpt(m) ps 0.5 lw 1.2 notitle, \
                     lin with lines lc rgb "#737373" dt 2 notitle
            }
        }
    }
    eval key_panel(0.02, 0.98, 0.01, 0.07)
    set key samplen 2 width 1 maxrows 1 font ",7"
    plot for [m in methods] NaN with linespoints lc rgb mcol(m) pt mpt(m) ps 0.6 lw 1.2 title m, \
         NaN with lines lc rgb "#737373" dt 2 title "linear_elu (no budget)"
    eval out_end
}

if (strlen(syn_label) > 0) {
    pareto_ns = tsv_awk(agg, '$c["data_label"] == "' . syn_label . '" && $c["n"] + 0 >= 4096 && !($c["n"] in s) {s[$c["n"]] = 1; printf "%s ", $c["n"]}')
    np = words(pareto_ns)
    do for [ext in out_formats] {
        eval out_begin(fig . '_pareto', ext)
        set multiplot title "Error against apply time on " . syn_label . " (mean error over seeds, median time; grey: exact)" noenhanced
        do for [j = 1:np] {
            nn = int(real(word(pareto_ns, j)))
            do for [cz = 0:1] {
                eval panel_at(2 * (j - 1) + cz + 1, 1, 2 * np, 0.07, 0.98, 0.2, 0.88, 0.035, 0.0)
                set logscale xy
                set format x '10^{%L}'
                set format y '10^{%L}'
                set tics font ",6"
                set title sprintf("n = %d, ", nn) . causal_name(cz) font ",7"
                set xlabel "apply time (s)" font ",7"
                set ylabel (j == 1 && cz == 0 ? "‖Ô − O‖₂ / ‖O‖₂" : "") font ",7"
                unset key
                te = lookup(syn_label, nn, cz, "exact", "time_apply_s_med")
                te = words(te) > 0 ? real(te) : NaN
                # Exact's time may lie beyond every approximation's: keep it in the panel.
                if (te == te) { set xrange [*:te * 1.5] } else { set autoscale x }
                set arrow 1 from te, graph 0 to te, graph 1 nohead lc rgb "#808080" dt 2
                lin_t = lookup(syn_label, nn, cz, "linear_elu", "time_apply_s_med")
                lin_e = lookup(syn_label, nn, cz, "linear_elu", "err_out_rel_spec_mean")
                lin_t = words(lin_t) > 0 ? real(lin_t) : NaN
                lin_e = words(lin_e) > 0 ? real(lin_e) : NaN
                set label 2 "" at lin_t, lin_e point pt 3 ps 0.8 lc rgb "#737373"
                plot for [m in methods] curve(syn_label, nn, cz, m, "time_apply_s_med err_out_rel_spec_mean") \
                         using 2:3 with linespoints lc rgb mcol(m) pt mpt(m) ps 0.5 lw 1.2 notitle
                unset arrow 1
                unset label 2
            }
        }
        eval key_panel(0.02, 0.98, 0.01, 0.08)
        set key samplen 2 width 1 maxrows 1 font ",7"
        plot for [m in methods] NaN with linespoints lc rgb mcol(m) pt mpt(m) ps 0.6 lw 1.2 title m, \
             NaN with points pt 3 lc rgb "#737373" title "linear_elu", \
             NaN with lines lc rgb "#808080" dt 2 title "exact"
        eval out_end
    }
}
