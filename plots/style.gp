# style.gp — the shared look of attnlab figures, loaded by every plots/<fig>.gp.
#
# Scripts run from the source directory with three variables set on the command line:
#     cd <srcdir> && gnuplot -e "results='<abs>/results'; figures='<abs>/figures'; fig='<fig>'" \
#         plots/<fig>.gp
# and read only TSV files written by attn-h5cat and attn-aggregate (`# ` comment lines, then a
# header of column names, then tab-separated rows), always referring to columns by name.
#
# What this file provides:
#   out_formats, out_begin(name, ext), out_end   write each figure as PDF (papers) and PNG:
#       do for [ext in out_formats] {
#           eval out_begin(fig.'_error', ext)
#           ... set, plot or multiplot ...
#           eval out_end
#       }
#   tsv_awk(file, prog)      run an awk program over the data rows of a TSV, with c["name"] the
#                            index of column name (so awk also refers to columns by name)
#   tsv_unique(file, col)    the distinct values of a column, space separated, in file order
#   tsv_unique_sorted(file, col)   the same in natural order (band:w=8 before band:w=32)
#   tsv_filter(file, cond)   a "< awk ..." data source: the header and the rows where cond holds
#   method_of(spec), family_of(method), param(spec, key), param_s(spec, key)
#   spec_color(specs, k), spec_pt(specs, k, causal), causal_dt(causal), causal_name(causal)
#                            colour by method family (shades within a family, in the order of the
#                            specs list), point shape by position in the family, filled symbols and
#                            solid lines for bidirectional, open symbols and dashed lines for causal
#   panel_at(p, rows, cols, x0, x1, y0, y1, gx, gy), key_panel(x0, x1, y0, y1)
#                            multiplot panels placed by hand, and a band that shows only a key
#   empty_panel(msg)         a panel that says why it has no data (instead of a gnuplot error)
#   @loglog                  log-log axes with n on a base-2 axis
#
# Strings from the data (specs, labels) contain '_', ':', ',' and '='; print them with
# `noenhanced` so that '_' is not read as a subscript.

if (!exists("results")) results = 'results'
if (!exists("figures")) figures = 'figures'
if (!exists("fig")) fig = 'default'

# Settings every figure starts from (out_begin resets to them, so that one figure's keys, ranges
# and margins never leak into the next).
style_settings = "set datafile separator '\t'; set datafile commentschars '#'; " . \
    "set grid xtics ytics mxtics mytics lc rgb '#dddddd' lw 0.6, lc rgb '#f0f0f0' lw 0.4; " . \
    "set border 3 lw 0.8; set tics nomirror out scale 0.6; set key noenhanced; set samples 200"
eval style_settings

# ---------------------------------------------------------------------------------------------
# Output: the same commands drawn once per terminal.  The PNG has 150 pixels per inch of the PDF
# page, with fonts scaled to match, so that the two files look alike.
out_formats = "pdf png"
out_font = "Sans,9"
out_width_in = 7.0
out_height_in = 5.0
out_term(ext) = ext eq "pdf" \
    ? sprintf("set terminal pdfcairo enhanced color font '%s' size %.2fin,%.2fin linewidth 1.0 pointscale 0.45", \
              out_font, out_width_in, out_height_in) \
    : sprintf("set terminal pngcairo enhanced color font '%s' fontscale 1.45 size %d,%d linewidth 1.6", \
              out_font, int(out_width_in * 150), int(out_height_in * 150))
out_begin(name, ext) = "reset; " . style_settings . "; " . out_term(ext) . \
    "; set output '" . figures . "/" . name . "." . ext . "'"
out_end = "unset multiplot; unset output"

# ---------------------------------------------------------------------------------------------
# Panels placed by hand (inside `set multiplot`): panel p (1, 2, ... row by row) of a rows x cols
# grid filling the screen box [x0, x1] x [y0, y1], with gaps gx, gy between panels (all screen
# fractions).  Use: eval panel_at(p, rows, cols, x0, x1, y0, y1, gx, gy).
panel_w(cols, x0, x1, gx) = (x1 - x0 - (cols - 1) * gx) / cols
panel_h(rows, y0, y1, gy) = (y1 - y0 - (rows - 1) * gy) / rows
panel_left(p, cols, x0, x1, gx) = x0 + ((p - 1) % cols) * (panel_w(cols, x0, x1, gx) + gx)
panel_top(p, rows, cols, y0, y1, gy) = y1 - ((p - 1) / cols) * (panel_h(rows, y0, y1, gy) + gy)
panel_at(p, rows, cols, x0, x1, y0, y1, gx, gy) = sprintf( \
    "set lmargin at screen %.4f; set rmargin at screen %.4f; set tmargin at screen %.4f; set bmargin at screen %.4f", \
    panel_left(p, cols, x0, x1, gx), panel_left(p, cols, x0, x1, gx) + panel_w(cols, x0, x1, gx), \
    panel_top(p, rows, cols, y0, y1, gy), \
    panel_top(p, rows, cols, y0, y1, gy) - panel_h(rows, y0, y1, gy))
# An empty panel over [x0, x1] x [y0, y1] that only shows the key of the next plot command (plot
# the key entries with NaN).
key_panel(x0, x1, y0, y1) = sprintf( \
    "set lmargin at screen %.4f; set rmargin at screen %.4f; set bmargin at screen %.4f; set tmargin at screen %.4f; ", \
    x0, x1, y0, y1) . \
    "unset title; unset xlabel; unset ylabel; unset border; unset tics; unset grid; unset logscale; " . \
    "set xrange [0:1]; set yrange [0:1]; set key default; set key noenhanced center center horizontal"

# ---------------------------------------------------------------------------------------------
# Reading TSV by column name with awk (for lists of values, filters and single lookups).
tsv_awk(file, prog) = system("awk -F'\t' '/^#/ {next} !h {for (i = 1; i <= NF; i++) c[$i] = i; h = 1; next} " \
                             . prog . "' '" . file . "'")
tsv_unique(file, col) = tsv_awk(file, sprintf('!($c["%s"] in s) {s[$c["%s"]] = 1; printf "%%s ", $c["%s"]}', \
                                              col, col, col))
# The same in natural order (sort -V: band:w=8 before band:w=32 before band:w=128).
tsv_unique_sorted(file, col) = system("awk -F'\t' '/^#/ {next} !h {for (i = 1; i <= NF; i++) c[$i] = i; h = 1; next} " \
    . sprintf('!($c["%s"] in s) {s[$c["%s"]] = 1; print $c["%s"]}', col, col, col) \
    . "' '" . file . "' | sort -V | tr '\n' ' '")
# A filter for `plot '< ...'`: the header line and the data rows for which cond (awk) holds.
tsv_filter(file, cond) = "< awk -F'\t' '/^#/ {next} !h {for (i = 1; i <= NF; i++) c[$i] = i; h = 1; print; next} " \
                         . cond . "' '" . file . "'"

# The value of parameter key in a spec ("method:k=4,r=2,blend=oracle"): param_s gives the text
# ("" when the spec does not give it), param the number (NaN when not given).
param_pos(s, key) = strstrt(s, ":" . key . "=") > 0 ? strstrt(s, ":" . key . "=") : strstrt(s, "," . key . "=")
param_rest(s, key) = s[param_pos(s, key) + strlen(key) + 2:]
param_cut(r) = strstrt(r, ",") > 0 ? r[1:strstrt(r, ",") - 1] : r
param_s(s, key) = param_pos(s, key) > 0 ? param_cut(param_rest(s, key)) : ""
param(s, key) = param_pos(s, key) > 0 ? real(param_s(s, key)) : NaN

# ---------------------------------------------------------------------------------------------
# Method families and their colours.  A spec is "method" or "method:key=value,...".
method_of(spec) = strstrt(spec, ":") > 0 ? spec[1:strstrt(spec, ":") - 1] : spec
family_of(m) = m eq "exact" ? "exact" \
    : m eq "band" ? "band" \
    : strstrt(m, "sparse_") == 1 ? "sparse" \
    : strstrt(m, "combiner_") == 1 ? "combiner" \
    : m eq "fmm_multilevel" ? "multilevel" \
    : m eq "fast" ? "fast" \
    : strstrt(m, "fmm_") == 1 ? "fmm" \
    : (m eq "kdeformer" || m eq "hyperattention") ? "sampling" \
    : (m eq "linear_elu" || m eq "performer" || m eq "nystrom") ? "lowrank" \
    : "other"
# Four shades per family, darkest first (ColorBrewer sequential palettes).
family_shades(f) = f eq "exact" ? "#000000 #404040 #707070 #a0a0a0" \
    : f eq "band" ? "#08519c #3182bd #6baed6 #9ecae1" \
    : f eq "sparse" ? "#006d2c #31a354 #74c476 #a1d99b" \
    : f eq "combiner" ? "#a63603 #e6550d #fd8d3c #fdae6b" \
    : f eq "fmm" ? "#a50f15 #de2d26 #fb6a4a #fc9272" \
    : f eq "multilevel" ? "#01665e #35978f #80cdc1 #5ab4ac" \
    : f eq "fast" ? "#7a0177 #c51b8a #f768a1 #dd3497" \
    : f eq "sampling" ? "#54278f #756bb1 #9e9ac8 #bcbddc" \
    : f eq "lowrank" ? "#8c510a #bf812d #dfc27d #c7a76c" \
    : "#525252 #737373 #969696 #bdbdbd"
spec_family(specs, k) = family_of(method_of(word(specs, k)))
# Position (1, 2, ...) of the k-th spec of the list among the specs of its family.
family_count(specs, k, f, j) = j >= k ? 0 : (spec_family(specs, j) eq f) + family_count(specs, k, f, j + 1)
spec_rank(specs, k) = family_count(specs, k, spec_family(specs, k), 1) + 1
spec_color(specs, k) = word(family_shades(spec_family(specs, k)), (spec_rank(specs, k) - 1) % 4 + 1)
# Filled circle, square, triangle, diamond, inverted triangle; the open shape is one less.
spec_pt(specs, k, causal) = int(word("7 5 9 13 11", (spec_rank(specs, k) - 1) % 5 + 1)) - (causal ? 1 : 0)
causal_dt(causal) = causal ? 2 : 1
causal_name(causal) = causal ? "causal" : "bidirectional"

# A panel with no data (a plot of nothing would stop gnuplot with "x range is invalid"): the
# message in its middle, fixed ranges.  Use: eval empty_panel("no data").
empty_panel(msg) = "set label 99 '" . msg . "' at graph 0.5, 0.5 center front noenhanced; " . \
    "set xrange [128:4096]; set yrange [0.001:1]; plot NaN notitle; unset label 99; " . \
    "set autoscale x; set autoscale y"

# ---------------------------------------------------------------------------------------------
# Axes.
loglog = "set logscale x 2; set logscale y 10; set format x '%.0f'; set format y '10^{%L}'; set mxtics default; set mytics 10"
