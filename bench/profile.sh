#!/usr/bin/env bash
# bench/profile.sh: where a server spends its time per message, for comparing
# coring with the raw liburing baseline. Run after bench/run.sh (it uses the
# binaries in ${BUILD_ROOT:-build}/bench). For each server, under the same
# load (default: 16 connections x 64 B, 16 in flight; or --rate msgs/s in
# all, as bench/run.sh's fixed-rate cells; server on CPU 0, load generator
# on CPU 1):
#   * system calls per message (perf's syscalls:sys_enter_* tracepoints on
#     the server's process): io_uring_enter, epoll_wait and plain I/O calls;
#   * the kernel's work per message (tracepoints on the server's threads):
#     io_uring submissions (SQEs) and completions (CQEs), requests punted to
#     io-wq worker threads, context switches away from the server (each time
#     it sleeps, or is preempted) and packets sent (net_dev_xmit; on loopback
#     the peer's receive runs in the sender's context too). Two servers with
#     equal counts ask the kernel for the same work: a gap in their CPU per
#     message is then the user-space code's and what it does to the caches;
#   * heap allocations per message (a perf uprobe on libc's malloc, added for
#     the run and removed after it);
#   * CPU time per message (all the server's threads' scheduler runtime,
#     /proc/PID/task/*/schedstat, over a second with no perf attached: its
#     tracepoints and sampling slow the server), split into user space (the
#     server's own code and libraries) and kernel by the share of perf's
#     cpu-clock samples in each. (In a virtual machine a sample the kernel
#     held off lands where interrupts come back on: some of the kernel's
#     time shows as the first user-space instruction after a system call,
#     such as liburing's io_uring_enter, a few percent of the samples.)
#   * where the user-space time goes: the top symbols of a perf record
#     (cpu-clock samples; this host has no hardware counters, and valgrind
#     stalls coring's multi-threaded runtime: bench/instructions.sh counts
#     instructions per message of the in-process echo benchmarks instead).
# Prints the commit, then a markdown table; the perf data files stay in the
# output folder.
# The three 1-second windows (CPU time; counts; samples) start --settle
# seconds after the load does (default 0.7): with hundreds of connections,
# raise it (2 for 1000) so that their warm-up - each connection's first
# buffers - is not counted as allocations per message. With --rounds=N the
# servers take turns N times, and each figure is the median of N.
#
#   bench/profile.sh [--servers=coring,uring,...] [--conns=16] [--size=64]
#                    [--depth=16 | --rate=MSGS_PER_S] [--seconds=4] [--settle=0.7]
#                    [--rounds=1] [--out=DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
servers=coring,uring,coring_sbmp,uring_sbmp,asio_uring
conns=16 size=64 depth=16 depth_given=0 offered='' rate_given=0 seconds=4 settle=0.7 rounds=1
out=${BUILD_ROOT:-build}/bench/profile
for arg in "$@"; do
  case $arg in
    --servers=*) servers=${arg#*=} ;;
    --conns=*) conns=${arg#*=} ;;
    --size=*) size=${arg#*=} ;;
    --depth=*) depth=${arg#*=} depth_given=1 ;;
    --rate=*) offered=${arg#*=} rate_given=1 ;;
    --seconds=*) seconds=${arg#*=} ;;
    --settle=*) settle=${arg#*=} ;;
    --rounds=*) rounds=${arg#*=} ;;
    --out=*) out=${arg#*=} ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/profile.sh: unknown argument $arg" >&2; exit 1 ;;
  esac
done
# (Checked before anything starts: a bad value is refused with what was wanted.)
source bench/option_checks.sh
bad_value() { echo "bench/profile.sh: $*" >&2; exit 1; }
whole_in "$conns" 1 100000 || bad_value "--conns wants a number of connections from 1 to 100000, got '$conns'"
whole_in "$size" 1 1048576 || bad_value "--size wants bytes from 1 to 1048576, got '$size'"
[ "$depth_given" -eq 0 ] || [ "$rate_given" -eq 0 ] ||
  bad_value "--depth and --rate: give one of them (messages in flight, or a fixed rate)"
[ "$rate_given" -eq 1 ] || whole_in "$depth" 1 4096 ||
  bad_value "--depth wants messages in flight from 1 to 4096, got '$depth'"
[ "$rate_given" -eq 0 ] || whole_in "$offered" 1 10000000 ||
  bad_value "--rate wants messages per second from 1 to 10000000, got '$offered'"
# (The load must outlast --settle and the three 1-second windows after it.)
seconds_in "$seconds" 3.5 3600 || bad_value "--seconds wants seconds from 3.5 to 3600, got '$seconds'"
seconds_in "$settle" 0 600 || bad_value "--settle wants seconds from 0 to 600, got '$settle'"
whole_in "$rounds" 1 100 || bad_value "--rounds wants a number of rounds from 1 to 100, got '$rounds'"
[ -n "$out" ] || bad_value "--out wants a folder, got nothing"
list_ok "$servers" ||
  bad_value "--servers wants a comma-separated list with no empty item, got '$servers'"
IFS=, read -r -a names <<<"$servers"
for name in "${names[@]}"; do
  case $name in
    coring | coring_sbmp | uring | uring_sbmp | asio_uring | asio_epoll | epoll) ;;
    *) bad_value "--servers: '$name' is not one of coring, coring_sbmp, uring, uring_sbmp, asio_uring, asio_epoll, epoll" ;;
  esac
done
B=${BUILD_ROOT:-build}/bench
loadgen=$B/bench/loadgen/loadgen
[ -x "$loadgen" ] || { echo "bench/profile.sh: run bench/run.sh first (no $loadgen)" >&2; exit 1; }
command -v perf >/dev/null || { echo "bench/profile.sh: needs perf (linux-perf)" >&2; exit 1; }
mkdir -p "$out"
work=$(mktemp -d)
pids=()
libc=$(ldd "$loadgen" | awk '/libc\.so/ { print $3 }')
added_probe=0
malloc_event=
if perf probe -l 2>/dev/null | grep -q 'probe_libc:malloc '; then
  malloc_event=probe_libc:malloc
elif [ -n "$libc" ] && perf probe -q -x "$libc" -a malloc >/dev/null 2>&1; then
  malloc_event=probe_libc:malloc
  added_probe=1
fi
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  [ "$added_probe" -eq 0 ] || perf probe -q -d probe_libc:malloc >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

server_cmd() {
  case $1 in
    coring) echo "$B/examples/net/echo_server --host=127.0.0.1 --port=0 --threads=1" ;;
    coring_sbmp) echo "$B/examples/net/sbmp_echo_server --host=127.0.0.1 --port=0 --threads=1" ;;
    uring) echo "$B/bench/baselines/uring_echo --port=0" ;;
    uring_sbmp) echo "$B/bench/baselines/uring_echo --port=0 --sbmp" ;;
    asio_uring) echo "$B/bench/baselines/asio_uring_echo --port=0" ;;
    asio_epoll) echo "$B/bench/baselines/asio_epoll_echo --port=0" ;;
    epoll) echo "$B/bench/baselines/epoll_echo --port=0" ;;
    *) echo "bench/profile.sh: unknown server $1" >&2; return 1 ;;
  esac
}
proto() { [[ $1 == *sbmp ]] && echo sbmp || echo raw; }

start() {  # start NAME PREFIX...: sets pid, port
  local name=$1; shift
  # shellcheck disable=SC2046
  taskset -c 0 "$@" $(server_cmd "$name") >"$work/$name.out" 2>&1 &
  pid=$!
  pids+=("$pid")
  port=
  for _ in $(seq 400); do
    port=$(sed -n 's/.*listening on [^ ]*:\([0-9]*\).*/\1/p' "$work/$name.out" 2>/dev/null | head -1)
    [ -n "$port" ] && return 0
    sleep 0.025
  done
  echo "bench/profile.sh: $name did not start" >&2
  cat "$work/$name.out" >&2
  exit 1
}
stop() { kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
field() { sed -n "s/.*\"$1\":\\([0-9.]*\\).*/\\1/p" <<<"$2"; }

# The kernel's work: the tracepoints this kernel has (perf stat refuses an
# unknown one, and would count nothing).
# (In the table's column order.)
tracepoints=(io_uring:io_uring_submit_req io_uring:io_uring_complete
  io_uring:io_uring_queue_async_work sched:sched_switch net:net_dev_xmit)
kernel_events=()
for event in "${tracepoints[@]}"; do
  [ -d "/sys/kernel/tracing/events/${event/://}" ] || [ -d "/sys/kernel/debug/tracing/events/${event/://}" ] &&
    kernel_events+=(-e "$event")
done
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- 2>/dev/null || commit+=", with uncommitted changes"
echo "Measured at commit $commit (the build in $B)."
echo
load_args=(--depth="$depth")
[ "$rate_given" -eq 0 ] || load_args=(--rate="$offered")
# runtime_ns PID: the CPU time of all the process's threads so far, in ns.
runtime_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f", s }'; }
# Each round runs every server in turn; a row's figures are the medians of
# its rounds' (the host's speed swings: no server gets only a slow phase).
: >"$work/rows"
for ((round = 1; round <= rounds; round++)); do
  for name in "${names[@]}"; do
    start "$name"
    "$loadgen" --port="$port" --proto="$(proto "$name")" --conns="$conns" --size="$size" \
      "${load_args[@]}" --warmup=0.5 --duration="$(awk -v s="$seconds" -v t="$settle" 'BEGIN { print s + t - 0.7 }')" \
      --cpu=1 --server-pid="$pid" \
      >"$work/lg.json" 2>/dev/null &
    lg=$!
    sleep "$settle"
    # 1. CPU time over 1 s, nothing attached.
    t0=$(date +%s%N) c0=$(runtime_ns "$pid")
    sleep 1
    t1=$(date +%s%N) c1=$(runtime_ns "$pid")
    # 2. System calls and the kernel's work over 1 s.
    rm -f "$work/perf.csv"  # (not the last round's, should perf fail)
    perf stat -x, -e syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_epoll_wait \
      -e syscalls:sys_enter_read,syscalls:sys_enter_write,syscalls:sys_enter_recvfrom \
      -e syscalls:sys_enter_sendto,syscalls:sys_enter_sendmsg,syscalls:sys_enter_recvmsg \
      -e syscalls:sys_enter_writev,syscalls:sys_enter_readv ${malloc_event:+-e $malloc_event} \
      "${kernel_events[@]}" \
      -p "$pid" -o "$work/perf.csv" -- sleep 1 || true
    # 3. Where the time goes, over the next second.
    perf record -q -e cpu-clock -F 4999 -p "$pid" -o "$out/perf.$name.data" -- sleep 1 \
      >/dev/null 2>&1 || true
    wait "$lg" || true
    stop
    line=$(cat "$work/lg.json")
    rate=$(field msgs_per_sec "$line")
    rate=${rate:--}  # (no result: every figure of the round is "-", and the medians skip it)
    # (An event perf did not count - refused, "<not counted>", or perf
    # failed altogether - is "-", not 0.)
    count() { awk -F, -v e="$1" '$3 ~ e && $1 ~ /^[0-9]+$/ { s += $1; n++ } END { if (n) print s; else print "-" }' "$work/perf.csv" 2>/dev/null || echo -; }
    per() { awk -v n="$1" -v r="$rate" 'BEGIN { if (n != "-" && r > 0) printf "%.3f", n / r; else print "-" }'; }
    cpu=$(awk -v c=$((c1 - c0)) -v t=$((t1 - t0)) -v r="$rate" \
      'BEGIN { if (r > 0 && t > 0) printf "%.3f", c / 1e3 / (r * t / 1e9); else print "-" }')
    row="$name $rate $(per "$(count 'io_uring_enter$')") $(per "$(count 'epoll_wait$')")"
    row+=" $(per "$(count 'sys_enter_(read|write|recvfrom|sendto|sendmsg|recvmsg|writev|readv)$')")"
    for event in "${tracepoints[@]}"; do
      if [[ " ${kernel_events[*]} " == *" $event "* ]]; then
        row+=" $(per "$(count "$event\$")")"
      else
        row+=" -"
      fi
    done
    if [ -n "$malloc_event" ]; then row+=" $(per "$(count 'malloc$')")"; else row+=" -"; fi
    user=$(perf report -i "$out/perf.$name.data" --no-children --sort dso --stdio 2>/dev/null |
      awk '/^ +[0-9.]+%/ && $0 !~ /kernel/ { s += $1; n++ } END { if (n) printf "%.1f", s; else print "-" }' || true)
    row+=" $cpu $(awk -v c="$cpu" -v u="${user:--}" 'BEGIN {
      if (c == "-" || u == "-" || u == "") print "- - -"; else printf "%.3f %.3f %s", c * u / 100, c * (1 - u / 100), u }')"
    echo "$row" >>"$work/rows"
    # The last round's top symbols.
    perf report -i "$out/perf.$name.data" --no-children --sort dso,sym --stdio 2>/dev/null |
      awk '/^ +[0-9.]+%/ && $0 !~ /\[k\]/ && $0 !~ /kernel/ {
             sym = $0; sub(/^.*\[\.\] /, "", sym); sub(/ +$/, "", sym);
             if (length(sym) > 40) sym = substr(sym, 1, 40) "…";
             printf "%s%s %s", (n++ ? ", " : ""), sym, $1; if (n == 4) exit }' >"$work/top.$name" || true
  done
done
echo "| server | msgs/s | io_uring_enter /msg | epoll_wait /msg | other syscalls /msg | SQEs /msg | CQEs /msg | io-wq /msg | switches /msg | packets /msg | malloc /msg | CPU µs/msg | user µs/msg | kernel µs/msg | top user-space symbols (share of the samples; last round) |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for name in "${names[@]}"; do
  awk -v name="$name" -v top="$(cat "$work/top.$name" 2>/dev/null)" '
    $1 == name { n++; for (i = 2; i <= NF; i++) v[i, n] = $i; nf = NF }
    function median(i,   k, m, a, j, t) {
      m = 0
      for (k = 1; k <= n; k++) if (v[i, k] != "-") a[++m] = v[i, k] + 0
      if (m == 0) return "-"
      for (k = 2; k <= m; k++) for (j = k; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
      return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
    }
    END {
      line = "| " name
      for (i = 2; i < nf; i++) {
        x = median(i)
        line = line " | " (x == "-" ? x : (i == 2 ? sprintf("%.0f", x) : sprintf("%.3f", x)))
      }
      u = median(nf)
      printf "%s | user %s: %s |\n", line, (u == "-" ? "-" : sprintf("%.1f%%", u)), (top == "" ? "-" : top)
    }' "$work/rows"
done
