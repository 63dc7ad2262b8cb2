# style.gp — the look shared by every panel of `warmcal report`.
#
# `warmcal report` writes one gnuplot script from the templates in this
# folder: this file first, then picture.gp around the panels (need.gp, one
# per label, and free.gp). Words between @ signs are filled in by the
# command; everything else is plain gnuplot 5.4, meant to be changed here.
# To try a change without rebuilding, point the command at a copy:
#   WARMCAL_REPORT_TEMPLATES=my-templates warmcal report traces/*.h5 -o r.png

# One colour and one point type per rank, in the order of the ranks
# (rank index 1 is the lowest rank). Okabe-Ito colours: told apart by
# colour-blind readers too; the point types tell them apart in grey.
RANK_COLOURS = "#0072b2 #d55e00 #009e73 #cc79a7 #e69f00 #56b4e9 #8c564b #666666"
RANK_POINTS = "7 5 9 11 13 15 6 4"
# Ranks, by index: "0 1 2 3"
RANK_NAMES = "@RANK_NAMES@"
rank_colour(i) = word(RANK_COLOURS, (int(i) - 1) % words(RANK_COLOURS) + 1)
rank_point(i) = int(word(RANK_POINTS, (int(i) - 1) % words(RANK_POINTS) + 1))
rank_name(i) = word(RANK_NAMES, int(i))

# The any-rank estimate (rank -1 in the table) and the constant guess.
ANY_COLOUR = "#000000"
ANY_BAND_COLOUR = "#b0b0b0"
CONSTANT_COLOUR = "#333333"
# Markers of passes that failed, drawn in the rank's colour.
OOM_POINT = 2        # a cross: ran out of memory
ABORTED_POINT = 3    # a star: never ended
FAILED_SIZE = 1.8

# Token axes (need.gp, free.gp): logarithmic, base 2, when the tokens of a
# panel span more than a factor 64 (LOG_TOKENS), as warmup passes double.

set grid xtics ytics mxtics lc "#dddddd" lw 1 dt solid
set border 3 lw 1
set tics nomirror out scale 0.6
# The key stands right of the plot area, never over it.
set key at screen 0.705, graph 1 left top vertical Left reverse noautotitle spacing 1.15 samplen 2.5
set style fill transparent solid 0.18 noborder
set datafile commentschars "#"
# Plot areas line up from panel to panel; the key has the right quarter.
set lmargin at screen 0.075
set rmargin at screen 0.69
