# bench/plots.gp: draws the PNG plots of a bench/run.sh report; run in the
# output folder (the .dat files and plots.titles come from bench/report.awk).
load 'plots.titles'
set terminal pngcairo size 900,560 noenhanced font ',10'
set key outside right top
set grid
set datafile missing '?'
# (gnuplot's own colours repeat from the ninth server on)
set linetype 9 lc rgb '#8c564b'
set linetype 10 lc rgb '#7f7f7f'

set output 'throughput_vs_size.png'
set title t1
set logscale x 2
set xlabel 'payload bytes'
set ylabel 'msgs/s'
set format y '%.0s%c'
plot for [i=2:nservers+1] 'throughput_vs_size.dat' using 1:i with linespoints title columnheader(i)

set output 'p99_vs_conns.png'
set title t2
set logscale x 10
set xlabel 'connections'
set ylabel 'p99 RTT, µs'
set format y '%g'
plot for [i=2:nservers+1] 'p99_vs_conns.dat' using 1:i with linespoints title columnheader(i)

set output 'us_per_msg.png'
set title t3
unset logscale x
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set xlabel 'payload bytes'
set ylabel 'server CPU µs per message'
set yrange [0:*]
plot for [i=2:nservers+1] 'us_per_msg.dat' using i:xtic(1) title columnheader(i)
