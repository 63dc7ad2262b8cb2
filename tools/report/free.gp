# free.gp — device free memory at the begin of every pass, per rank, all
# labels together: a rank that starts with less than the others (rank
# skew) stands apart at a glance, and memory that shrinks pass after pass
# shows as a falling line.
#
# Data files: free-RR.dat: tokens, free bytes at the pass's begin, outcome
# (0 ok, 1 out of memory, 2 never ended), sorted by tokens.

FREE_SERIES = "@FREE_SERIES@"        # rank indexes with sampled free memory
FREE_MIN = "@FREE_MIN@"              # per word of FREE_SERIES: its lowest free bytes
FREE_OOM_SERIES = "@FREE_OOM_SERIES@"  # rank indexes with passes out of memory
UNIT = @UNIT_BYTES@
UNIT_NAME = @UNIT_NAME@
LOG_TOKENS = @LOG_TOKENS@

set title "device free memory at each pass's begin, by rank" font ",13"
set xlabel "tokens in the pass"
set ylabel sprintf("free (%s)", UNIT_NAME)
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
# From zero, so that the gap between ranks is seen in proportion.
set yrange [0:*]
set ytics autofreq format "%g"
set xrange [*:*]
set offsets graph 0.02, graph 0.02, graph 0.08, 0

# The j-th rank index of a list, and its file (none.dat: see need.gp).
series(list, j) = j <= words(list) ? word(list, j) + 0 : 1
file(list, j) = j <= words(list) ? sprintf("free-R%d.dat", series(list, j)) : "none.dat"
lowest(j) = j <= words(FREE_MIN) ? real(word(FREE_MIN, j)) / UNIT : 0

plot \
    for [j=1:words(FREE_SERIES)] file(FREE_SERIES, j) \
        using 1:($2/UNIT) with linespoints lw 1.5 ps 0.8 \
        lc rgb rank_colour(series(FREE_SERIES, j)) pt rank_point(series(FREE_SERIES, j)) \
        title sprintf("rank %s, lowest %.2f %s", rank_name(series(FREE_SERIES, j)), lowest(j), UNIT_NAME), \
    for [j=1:words(FREE_OOM_SERIES)] file(FREE_OOM_SERIES, j) \
        using 1:($3 == 1 ? $2/UNIT : NaN) with points pt OOM_POINT ps FAILED_SIZE lw 2.5 \
        lc rgb rank_colour(series(FREE_OOM_SERIES, j)) \
        title sprintf("rank %s out of memory", rank_name(series(FREE_OOM_SERIES, j)))
