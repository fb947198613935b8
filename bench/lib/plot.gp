# Bar chart of bench/nbd_compare.sh's CSV: for every job, the advantage over
# the baseline (nbdkit's cache filter; raw fio for the engine row) of
# ringcache and of no cache at all, with the target; log scale, higher is
# better. usage: gnuplot -e "csv='X.csv'; png='X.png'" bench/lib/plot.gp
set terminal pngcairo size 1200,650 noenhanced font ",10"
set output png
set datafile separator comma
set key autotitle columnhead top left
set title "ringcache and pass-through vs nbdkit cache filter (engine row: vs raw fio); ratio of figures, higher is better, log scale"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set logscale y 10
set yrange [0.1:*]
set ylabel "advantage over baseline (x, log scale)"
set grid ytics
set xtics rotate by -20 left
set bmargin 7
# columns: 1 job, 6 ratio, 7 target, 11 passthrough_ratio
plot csv using 6:xtic(1) title "ringcache", \
     ''  using 11 title "no cache (pass-through)", \
     ''  using 7 title "target"
