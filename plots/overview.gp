# overview.gp — the overview figures of a sweep: error, time and spectrum against n.  Loaded by
# plots/<fig>.gp (default.gp, combiner.gp, ...), which may first set sp_label, sp_layer, sp_head and
# sp_causal to choose the head of the spectrum figure.
#
#   figures/<fig>_error.{pdf,png}     median ||O^ - O||_F / ||O||_F vs n of every approximate spec,
#                                       with interquartile bars; one panel per data label
#   figures/<fig>_time.{pdf,png}      median apply time vs n of every spec (exact included), the
#                                       fitted log-log slope b of each curve in the panel's key, and
#                                       a line of slope 2 through the first point of exact; one
#                                       panel per data label
#   figures/<fig>_spectrum.{pdf,png}  sigma_k / sigma_1 of the attention matrices of exact and of
#                                       each approximation on one real head, at its largest n
# Colours follow the method family, symbols the spec within it; bidirectional curves are solid with
# filled symbols, causal ones dashed with open symbols (plots/style.gp).
#
# Inputs (results/; results/<fig>.tsv, every point, is made for readers but not needed here):
#   <fig>_agg.tsv       attn-aggregate --by data_label,method,config_spec,causal,n --of err_out_rel_fro,...
#   <fig>_fit.tsv       attn-aggregate --fit time_apply_s --by data_label,method,config_spec,causal
#   <fig>_spectrum.tsv  attn-h5cat --spectra
# Run from the source directory:
#   gnuplot -e "results='<abs>/results'; figures='<abs>/figures'; fig='<fig>'" plots/<fig>.gp

load 'plots/style.gp'

agg = results . '/' . fig . '_agg.tsv'
fits = results . '/' . fig . '_fit.tsv'
spectra = results . '/' . fig . '_spectrum.tsv'

labels = tsv_unique(agg, "data_label")
specs = tsv_unique_sorted(agg, "config_spec")
nlabels = words(labels)
nspecs = words(specs)
if (nlabels == 0) {
    print sprintf("overview.gp: error: %s has no rows", agg)
    exit status 1
}

# Panels: two columns, as many rows as needed, placed by hand (panel_at in style.gp).
panel_cols = nlabels > 1 ? 2 : 1
panel_rows = (nlabels + panel_cols - 1) / panel_cols
bottom_row(p) = p > nlabels - panel_cols

# The rows of one curve: data label, spec and causal flag.
is_curve(L, s, cz) = strcol("data_label") eq L && strcol("config_spec") eq s && column("causal") == cz
pick(L, s, cz, col) = is_curve(L, s, cz) ? column(col) : NaN
# Exact's error is zero or rounding: it is left out of the log-scale error figure.
pick_err(L, s, cz, col) = method_of(s) eq "exact" ? NaN : pick(L, s, cz, col)

# ---------------------------------------------------------------------------------------------
# Error vs n, one panel per data label, with one key for the figure in a band at the bottom: the
# approximate specs by colour, then the line styles of bidirectional and causal.
# Rows that the panel of label L can draw (a positive median error of an approximation).
err_rows(L) = int(tsv_awk(agg, sprintf('$c["data_label"] == "%s" && $c["method"] != "exact" && $c["err_out_rel_fro_med"] + 0 > 0 {m++} END {print m + 0}', L)))
# The shared key band below the panels, three entries to a row (gnuplot fits its columns to the
# longest title, so this is a safe estimate for specs of ordinary length).
key_top(entries) = 0.015 + 0.035 * ((entries + 2) / 3)
# Long lists of specs get a smaller key font, so that three entries fit in a row.
key_font = nspecs > 6 ? ",7" : ",9"

do for [ext in out_formats] {
    eval out_begin(fig . '_error', ext)
    set multiplot title "Output error against exact attention (median over heads and layers; bars: quartiles)"
    do for [p = 1:nlabels] {
        L = word(labels, p)
        eval panel_at(p, panel_rows, panel_cols, 0.1, 0.98, key_top(nspecs + 1) + 0.09, 0.92, 0.1, 0.1)
        @loglog
        set title L noenhanced offset 0, -0.5
        if (bottom_row(p)) { set xlabel "n (tokens)" } else { unset xlabel }
        set ylabel "‖Ô − O‖_F / ‖O‖_F"
        unset key
        if (err_rows(L) == 0) {
            eval empty_panel("no approximation with a positive error")
        } else {
            plot for [k = 1:nspecs] for [cz = 0:1] \
                     agg using (pick_err(L, word(specs, k), cz, "n")) \
                               :(pick_err(L, word(specs, k), cz, "err_out_rel_fro_med")) \
                               :"err_out_rel_fro_q25":"err_out_rel_fro_q75" \
                     with yerrorlines lc rgb spec_color(specs, k) pt spec_pt(specs, k, cz) \
                          ps 0.7 dt causal_dt(cz) notitle
        }
    }
    eval key_panel(0.02, 0.98, 0.01, key_top(nspecs + 1))
    set key samplen 3 width 2 maxcols 3 font key_font
    plot for [k = 1:nspecs] NaN with linespoints lc rgb spec_color(specs, k) \
             pt spec_pt(specs, k, 0) ps 0.7 \
             title (method_of(word(specs, k)) eq "exact" ? "" : word(specs, k)), \
         for [cz = 0:1] NaN with linespoints lc rgb "#404040" pt (cz ? 6 : 7) ps 0.7 \
             dt causal_dt(cz) title causal_name(cz)
    eval out_end
}

# ---------------------------------------------------------------------------------------------
# Apply time vs n, one panel per data label, with the fitted log-log slope b of each curve in the
# key (from the fit file) and a slope-2 line through exact's first point.
# (Built by concatenation: gnuplot's sprintf truncates results longer than about 256 characters,
# and specs can be long.)
slope_of(L, s, cz) = tsv_awk(fits, '$c["data_label"] == "' . L . '" && $c["config_spec"] == "' . s . \
    '" && $c["causal"] == ' . sprintf("%d", cz) . \
    ' {f = 1; if ($c["slope"] == "NaN") printf "n/a"; else printf "%.2f", $c["slope"]} END {if (!f) printf "n/a"}')
# Exact's first point (smallest n, bidirectional) in a panel: "n time", or "" when exact is absent.
exact_first(L) = tsv_awk(agg, sprintf('$c["data_label"] == "%s" && $c["method"] == "exact" && $c["causal"] == 0 && $c["time_apply_s_med"] != "NaN" {print $c["n"], $c["time_apply_s_med"]; exit}', L))

# log10 of the smallest and largest median apply time in a panel: "lo hi", or "" when none.
time_range(L) = tsv_awk(agg, sprintf('$c["data_label"] == "%s" && $c["time_apply_s_med"] + 0 > 0 {v = log($c["time_apply_s_med"]) / log(10); if (!m++ || v < lo) lo = v; if (m == 1 || v > hi) hi = v} END {if (m) print lo, hi}', L))

# Headroom for the slope key: the data keep the lower (1 - f) of the panel, f growing with the
# key's rows (one per spec plus its title).
key_frac = 0.08 * (nspecs + 1)
key_frac = key_frac > 0.6 ? 0.6 : key_frac

# A figure with its own time plot sets overview_time = 0 before loading this file.
if (!exists("overview_time")) overview_time = 1
if (overview_time) {
    do for [ext in out_formats] {
        eval out_begin(fig . '_time', ext)
        set multiplot title "Apply time (median over heads and layers); b: fitted log-log slope; grey: ∝ n² through exact"
        do for [p = 1:nlabels] {
            L = word(labels, p)
            eval panel_at(p, panel_rows, panel_cols, 0.1, 0.98, key_top(nspecs + 3) + 0.09, 0.92, 0.1, 0.1)
            @loglog
            set title L noenhanced offset 0, -0.5
            if (bottom_row(p)) { set xlabel "n (tokens)" } else { unset xlabel }
            set ylabel "time of one apply (s)"
            r = time_range(L)
            if (words(r) != 2) {
                unset key
                eval empty_panel("no positive apply time")
                continue
            }
            lo = floor(real(word(r, 1)))
            hi = real(word(r, 2))
            hi = hi < lo + 0.5 ? lo + 0.5 : hi
            set yrange [10**lo : 10**(lo + (hi - lo + 0.1) / (1 - key_frac))]
            # The panel's key: b of each curve, bidirectional in the first column, causal in the
            # second; colours and symbols are explained by the shared key below the panels.
            set key top left vertical maxrows nspecs samplen 1.2 spacing 0.85 font ",7" width -1 \
                title "b: bidirectional, causal" left
            e = exact_first(L)
            n0 = words(e) == 2 ? real(word(e, 1)) : NaN
            t0 = words(e) == 2 ? real(word(e, 2)) : NaN
            # The slopes are looked up before the plot command (one word per curve).
            slopes = ""
            do for [cz = 0:1] {
                do for [k = 1:nspecs] { slopes = slopes . slope_of(L, word(specs, k), cz) . " " }
            }
            plot for [cz = 0:1] for [k = 1:nspecs] \
                     agg using (pick(L, word(specs, k), cz, "n")) \
                               :(pick(L, word(specs, k), cz, "time_apply_s_med")) \
                     with linespoints lc rgb spec_color(specs, k) pt spec_pt(specs, k, cz) ps 0.7 \
                          dt causal_dt(cz) title word(slopes, cz * nspecs + k), \
                 (x >= n0 ? t0 * (x / n0)**2 : NaN) with lines lc rgb "#808080" dt (8, 6) lw 1 \
                     notitle
        }
        eval key_panel(0.02, 0.98, 0.01, key_top(nspecs + 3))
        set key samplen 3 width 2 maxcols 3 font key_font
        plot for [k = 1:nspecs] NaN with linespoints lc rgb spec_color(specs, k) \
                 pt spec_pt(specs, k, 0) ps 0.7 title word(specs, k), \
             for [cz = 0:1] NaN with linespoints lc rgb "#404040" pt (cz ? 6 : 7) ps 0.7 \
                 dt causal_dt(cz) title causal_name(cz), \
             NaN with lines lc rgb "#808080" dt (8, 6) lw 1 title "slope 2"
        eval out_end
    }
}

# ---------------------------------------------------------------------------------------------
# Singular values of one real head at the largest n it has.
if (!exists("sp_label")) sp_label = "ppocrv4-svtr-attn-n1024"
if (!exists("sp_layer")) sp_layer = 1
if (!exists("sp_head")) sp_head = 3
if (!exists("sp_causal")) sp_causal = 0
sp_cond = sprintf('$c["data_label"] == "%s" && $c["layer"] == %d && $c["head"] == %d && $c["causal"] == %d', \
                  sp_label, sp_layer, sp_head, sp_causal)
sp_n = tsv_awk(spectra, sp_cond . ' && $c["n"] + 0 > m {m = $c["n"] + 0} END {if (m > 0) print m}')
sp_specs = words(sp_n) > 0 \
    ? tsv_awk(spectra, sp_cond . sprintf(' && $c["n"] == %s && !($c["config_spec"] in s) {s[$c["config_spec"]] = 1; printf "%%s ", $c["config_spec"]}', sp_n)) \
    : ""
sp_data = words(sp_n) > 0 ? tsv_filter(spectra, sp_cond . ' && $c["n"] == ' . sp_n) : ""

sp_what = sprintf("%s, layer %d, head %d, %s", sp_label, sp_layer, sp_head, causal_name(sp_causal))
if (words(sp_specs) == 0) {
    print sprintf("overview.gp: warning: %s has no spectrum of %s", spectra, sp_what)
}

do for [ext in out_formats] {
    eval out_begin(fig . '_spectrum', ext)
    set logscale y 10
    set format y '10^{%L}'
    set mytics 10
    set xlabel "k (index of the singular value)"
    set ylabel "σ_k / σ_1"
    set key bottom left samplen 2 box lc rgb "#c0c0c0"
    if (words(sp_specs) == 0) {
        set title "Singular values of the attention matrix"
        unset key
        eval empty_panel(sprintf("no spectrum of %s", sp_what))
    } else {
        set title sprintf("Singular values of the attention matrix: %s, n = %s", sp_what, sp_n) \
            noenhanced
        set xrange [1:real(sp_n)]
        nsp = words(sp_specs)
        plot for [k = 1:nsp] sp_data \
            using "k":(strcol("config_spec") eq word(sp_specs, k) ? column("sigma_rel") : NaN) \
            with lines lw 1.5 lc rgb spec_color(sp_specs, k) title word(sp_specs, k)
    }
    eval out_end
}
