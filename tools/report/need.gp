# need.gp — one panel per label: what each warmup pass needed, per rank,
# against its tokens; the table's estimates with their margins; passes
# that ran out of memory or never ended; the constant guess.
#
# Data files (in the folder gnuplot runs in; K is this panel, R a rank index):
#   need-LK-RR.dat     tokens, need bytes            completed passes
#   band-LK-RR.dat     tokens, model, published      rank R's own estimate
#   cont-LK-RR.dat     tokens, published             rank R above its own range
#   band-LK-any.dat    tokens, model, published      the any-rank estimate
#   oom-LK-RR.dat      tokens, need reached, "text"  passes out of memory
#   aborted-LK-RR.dat  tokens, need reached, "text"  passes that never ended
# The band of an estimate runs from the model alone (without margin) up to
# the published estimate (model x (1 + relative margin) + absolute margin),
# over the token range it was calibrated on.
#
# A rank that ran out of memory during calibration ends its own range
# early. Above it, the gate estimates that rank's passes from the any-rank
# entry (grey band, calibrated as far as any rank got), never below the
# rank's own estimate at the top of its range: cont-LK-RR.dat holds what the
# gate then uses, drawn dashed in the rank's colour from the end of its band.
#
# The constant guess is PER_TOKEN x tokens from zero, for every pass: no
# minimum token count below which it would not apply.

K = @K@
LABEL = @LABEL@
NEED_SERIES = "@NEED_SERIES@"        # rank indexes with completed passes
BAND_SERIES = "@BAND_SERIES@"        # rank indexes with their own estimate
CONT_SERIES = "@CONT_SERIES@"        # rank indexes served by the any-rank entry above their range
OOM_SERIES = "@OOM_SERIES@"
ABORTED_SERIES = "@ABORTED_SERIES@"
HAVE_ANY = @HAVE_ANY@                # 1: the table has an any-rank estimate
PER_TOKEN = @PER_TOKEN@              # the constant guess, bytes per token; 0: none
PER_TOKEN_TITLE = @PER_TOKEN_TITLE@
UNIT = @UNIT_BYTES@                  # bytes per unit of the y axis
UNIT_NAME = @UNIT_NAME@
LOG_TOKENS = @LOG_TOKENS@

set title sprintf("%s passes: memory needed per pass, by rank", LABEL) font ",13"
set xlabel "tokens in the pass"
set ylabel sprintf("need (%s)", UNIT_NAME)
unset label
unset arrow
if (LOG_TOKENS) {
    set logscale x 2
    set xtics 1, 4 format "%.0f"   # at 1, 4, 16, ...: powers of two as passes are sized
    set mxtics default
} else {
    unset logscale x
    set xtics autofreq format "%.0f"
    set mxtics default
}
set yrange [0:*]
set ytics autofreq format "%g"
set xrange [*:*]
set offsets graph 0.02, graph 0.02, graph 0.05, 0

# The j-th rank index of a list, and its file. gnuplot opens the file of a
# clause even when the clause's iteration is empty (a list without words),
# though it draws nothing from it: none.dat, one harmless row, stands in then.
series(list, j) = j <= words(list) ? word(list, j) + 0 : 1
file(kind, list, j) = j <= words(list) ? sprintf("%s-L%d-R%d.dat", kind, K, series(list, j)) : "none.dat"
any_file = HAVE_ANY ? sprintf("band-L%d-any.dat", K) : "none.dat"

# Drawn in this order, each over the ones before: the any-rank band (grey),
# the ranks' bands (their colours, see-through) and their continuations
# above their ranges, the constant guess, the measured passes, then the
# failed ones. The sizes asked by the allocations
# that failed are written downwards from their crosses: below a failed pass
# lies what the rank's smaller passes needed, to its left and lower, and the
# other ranks' points at the same tokens lie above it.
plot \
    for [a=1:HAVE_ANY] any_file \
        using 1:($2/UNIT):($3/UNIT) with filledcurves lc rgb ANY_BAND_COLOUR \
        title "any rank estimate (band: margin)", \
    for [a=1:HAVE_ANY] any_file \
        using 1:($3/UNIT) with lines lw 1.5 dt 2 lc rgb ANY_COLOUR notitle, \
    for [j=1:words(BAND_SERIES)] file("band", BAND_SERIES, j) \
        using 1:($2/UNIT):($3/UNIT) with filledcurves \
        lc rgb rank_colour(series(BAND_SERIES, j)) \
        title sprintf("rank %s estimate (band: margin)", rank_name(series(BAND_SERIES, j))), \
    for [j=1:words(BAND_SERIES)] file("band", BAND_SERIES, j) \
        using 1:($3/UNIT) with lines lw 1 dt 2 lc rgb rank_colour(series(BAND_SERIES, j)) notitle, \
    for [j=1:words(CONT_SERIES)] file("cont", CONT_SERIES, j) \
        using 1:($2/UNIT) with lines lw 2 dt (2,3) lc rgb rank_colour(series(CONT_SERIES, j)) \
        title sprintf("rank %s above its range (any-rank)", rank_name(series(CONT_SERIES, j))), \
    for [c=1:(PER_TOKEN > 0)] PER_TOKEN * x / UNIT with lines lw 2 dt (6,4) lc rgb CONSTANT_COLOUR \
        title PER_TOKEN_TITLE, \
    for [j=1:words(NEED_SERIES)] file("need", NEED_SERIES, j) \
        using 1:($2/UNIT) with linespoints lw 1.5 ps 0.9 \
        lc rgb rank_colour(series(NEED_SERIES, j)) pt rank_point(series(NEED_SERIES, j)) \
        title sprintf("rank %s measured", rank_name(series(NEED_SERIES, j))), \
    for [j=1:words(OOM_SERIES)] file("oom", OOM_SERIES, j) \
        using 1:($2/UNIT) with points pt OOM_POINT ps FAILED_SIZE lw 2.5 \
        lc rgb rank_colour(series(OOM_SERIES, j)) \
        title sprintf("rank %s out of memory (size asked)", rank_name(series(OOM_SERIES, j))), \
    for [j=1:words(OOM_SERIES)] file("oom", OOM_SERIES, j) \
        using 1:($2/UNIT):3 with labels rotate by -90 left offset 0, -1.3 font ",9" \
        tc rgb rank_colour(series(OOM_SERIES, j)) notitle, \
    for [j=1:words(ABORTED_SERIES)] file("aborted", ABORTED_SERIES, j) \
        using 1:($2/UNIT) with points pt ABORTED_POINT ps FAILED_SIZE lw 2.5 \
        lc rgb rank_colour(series(ABORTED_SERIES, j)) \
        title sprintf("rank %s never ended", rank_name(series(ABORTED_SERIES, j)))
