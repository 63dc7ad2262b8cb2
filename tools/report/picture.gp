# picture.gp — one output file holding ROWS panels stacked from top to
# bottom: the PNG or SVG picture (every panel), or one SVG of the HTML
# page (one panel each). The panels' scripts are pasted in below.
# Text is plain (noenhanced): labels and model names may hold _ or ^, which
# gnuplot's "enhanced" mode would turn into sub- and superscripts.

set terminal @TERMINAL@ size @WIDTH@,@HEIGHT@ font "sans-serif,11" noenhanced
set output @OUTPUT@
set multiplot layout @ROWS@,1
@PANELS@
unset multiplot
set output
