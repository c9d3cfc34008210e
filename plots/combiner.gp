# combiner.gp — the figures of experiments/configs/combiner.ini:
#   figures/combiner_error, combiner_time, combiner_spectrum   the overview (plots/overview.gp)
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
