# combiner.gp — the figures of experiments/configs/combiner.ini:
#   figures/combiner_error, combiner_spectrum   the overview (plots/overview.gp; its time figure is
#       replaced by combiner_scaling, which tells the many specs apart)
#   figures/combiner_scaling.{pdf,png} apply time vs n on the longest input with fitted slopes
#   figures/combiner_twins.{pdf,png}   each Combiner factorization against its sparse twin at the
#       same span: median ||O^ - O||_F / ||O||_F vs n, one column per data label, bidirectional on
#       the top row and causal below; a factorization and its twin share a colour, the Combiner
#       curve solid, the sparse twin dashed.
# Run from the source directory:
#   gnuplot -e "results='<abs>/results'; figures='<abs>/figures'; fig='combiner'" plots/combiner.gp
sp_label = "ppocrv4-svtr-attn-n1024"
sp_layer = 1
sp_head = 3
sp_causal = 0
overview_time = 0
load 'plots/overview.gp'

# Pairs: the factorization a spec belongs to (fixed, logsparse, axial, learnable) and its colour;
# axial variants and mixtures take shades of one colour.
pair_of(s) = strstrt(s, "fixed") ? "fixed" : strstrt(s, "logsparse") ? "logsparse" \
    : strstrt(s, "axial") ? "axial" : strstrt(s, "learnable") ? "learnable" : "other"
axial_shade(s) = strstrt(s, "mixture=average") ? "#74c476" : strstrt(s, "mixture=union") ? "#a1d99b" \
    : strstrt(s, "variant=row") ? "#00441b" : strstrt(s, "variant=mixed") ? "#238b45" : "#006d2c"
pair_color(s) = pair_of(s) eq "fixed" ? "#e6550d" : pair_of(s) eq "logsparse" ? "#3182bd" \
    : pair_of(s) eq "axial" ? axial_shade(s) : pair_of(s) eq "learnable" ? "#756bb1" : "#737373"
is_twin(s) = strstrt(s, "sparse_") == 1
# A short title: the method and the parameters that tell the variants apart.
short_title(s) = method_of(s) . (strstrt(s, "mixture=average") ? " (average)" \
    : strstrt(s, "mixture=union") ? " (union)" : strstrt(s, "variant=row") ? " (row)" \
    : strstrt(s, "variant=col") && method_of(s) eq "combiner_axial" ? " (col)" \
    : strstrt(s, "variant=mixed") ? " (mixed)" : "")

twin_specs = ""
do for [k = 1:nspecs] {
    s = word(specs, k)
    if (method_of(s) ne "exact" && pair_of(s) ne "other") { twin_specs = twin_specs . s . " " }
}
ntwin = words(twin_specs)

do for [ext in out_formats] {
    eval out_begin(fig . '_twins', ext)
    set multiplot title "Combiner (solid) against its sparse twin (dashed) at the same span: " . \
        "median output error over heads and layers"
    cols = nlabels
    do for [row = 0:1] {
        do for [p = 1:nlabels] {
            L = word(labels, p)
            eval panel_at(row * cols + p, 2, cols, 0.08, 0.98, 0.22, 0.88, 0.06, 0.1)
            eval loglog
            set tics font ",7"
            set title L . "\n" . causal_name(row) noenhanced font ",7"
            set xlabel (row == 1 ? "n (tokens)" : "")
            set ylabel (p == 1 ? "‖Ô − O‖_F / ‖O‖_F" : "")
            unset key
            if (err_rows(L) == 0) {
                eval empty_panel("no approximate points")
            } else {
                plot for [k = 1:ntwin] agg \
                    using (pick_err(L, word(twin_specs, k), row, "n")) \
                         :(pick_err(L, word(twin_specs, k), row, "err_out_rel_fro_med")) \
                    with linespoints lc rgb pair_color(word(twin_specs, k)) \
                         dt 1 + is_twin(word(twin_specs, k)) pt 7 ps 0.4 lw 1.2 notitle
            }
        }
    }
    eval key_panel(0.02, 0.98, 0.01, 0.14)
    set key maxrows 3 samplen 2.5 font ",8"
    plot for [k = 1:ntwin] NaN with linespoints lc rgb pair_color(word(twin_specs, k)) \
             dt 1 + is_twin(word(twin_specs, k)) pt 7 ps 0.5 lw 1.2 \
             title short_title(word(twin_specs, k))
    eval out_end
}

# ---------------------------------------------------------------------------------------------
# figures/combiner_scaling.{pdf,png}: apply time against n on the longest input (a synthetic one
# reaching n = 16384), bidirectional and causal side by side, every factorization and its twin
# with the fitted log-log slope b in its title, exact in black.
tl = tsv_awk(agg, '$c["n"] + 0 > m {m = $c["n"] + 0; l = $c["data_label"]} END {print l}')
time_specs = "exact " . twin_specs
ntime = words(time_specs)
tr = time_range(tl)
do for [ext in out_formats] {
    eval out_begin(fig . '_scaling', ext)
    set multiplot title "Apply time on " . tl . " (median; b: fitted log-log slope over n)" noenhanced
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
        plot for [k = 1:ntime] agg \
                 using (pick(tl, word(time_specs, k), cz, "n")) \
                      :(pick(tl, word(time_specs, k), cz, "time_apply_s_med")) \
                 with linespoints \
                 lc rgb (k == 1 ? "#000000" : pair_color(word(time_specs, k))) \
                 dt 1 + is_twin(word(time_specs, k)) pt 7 ps 0.4 lw 1.2 \
                 title (k == 1 ? "exact" : short_title(word(time_specs, k))) . \
                       " (b = " . slope_of(tl, word(time_specs, k), cz) . ")"
    }
    eval out_end
}
