#!/usr/bin/env bash
# bench/instructions.sh: user-space instructions and cache misses per
# message, counted by callgrind - exact, where this host's timings swing by
# a third - for the in-process echo benchmarks (one EventLoop, server and
# client in one process, over loopback TCP):
#   * BM_StreamEcho/size:64 (net_echo_bench): examples/net/echo_server's raw
#     echo (Stream read(), the buffer written back), 64 bytes a round trip,
#     the client a plain Stream;
#   * BM_FramedEcho/size:64/arena:1 (net_echo_bench): one 64-byte message
#     echoed through FramedStream<LengthPrefixCodec> at both ends, one at a
#     time: the per-message path of a request/reply round trip;
#   * BM_SbmpEcho/size:64/batch:128 (net_sbmp_echo_bench): 128 SBMP frames
#     of 64 bytes a write, echoed by sbmp_echo_server's handler: the
#     per-frame cost of FramedStream<sbmp::Codec> when frames come in runs
#     (the client only writes and compares bytes);
#   * BM_SbmpEcho/size:64/batch:1: one frame at a time (ping-pong);
#   * BM_StreamEchoConns/conns:1000/size:64 and
#     BM_SbmpEchoConns/conns:1000/batch:16: the same echoes over 1000
#     connections, one 64-byte message (16 SBMP frames) on each in turn, as
#     the load generator's fixed-rate (pipelined) cells: each connection's
#     state, at both ends, has left the cache when its next message comes.
# Each runs twice under callgrind, for exactly N1 and N2 iterations
# (CORING_BENCH_ITERATIONS); the difference between the two counts over
# the difference in messages is what one more message costs, with start-up
# (dynamic linking, pools, the handshake, warm-up) cancelled out. The
# kernel's share is not counted: callgrind sees user space only.
# Callgrind also simulates the caches (32 KiB L1 data, and 512 KiB as the
# last level): a message's cache misses are the lines it needs from beyond
# 512 KiB. The size is fixed, not the host's L2 (512 KiB on the host it was
# chosen on, 2 MiB on a later one), so that counts compare between runs;
# callgrind sees none of the kernel's use of the cache between messages
# anyway, which a real L2 shares.
# Prints the commit, then a markdown table: instructions and cache misses
# per message in all, and the functions with the most of each (their own,
# inlined code included).
# Then the same for the server alone, in a process of its own, under the
# load generator (bench/loadgen) at a fixed rate (--rate, 4000 msgs/s) over
# 1000 connections, 64 B a message (a frame of 64 B for SBMP), beside the
# raw liburing baseline (bench/baselines/uring_echo): the fixed-rate cells of
# bench/run.sh, where a message finds its connection's state cold. coring's
# servers run their handlers on a Runtime's threads, which valgrind cannot
# follow (it runs one thread at a time, and a loop thread waiting in
# io_uring_enter keeps the others from running): bench/net/one_loop_server
# runs the same handlers on one loop on the main thread. The counts are of a
# 5-second window once the load is steady (callgrind_control zeroes and
# dumps them), over the messages offered in it: rate x its length, to about
# 1%. Server on CPU 0, load generator on CPU 1; the offered rate is checked
# to be kept, every echo verified.
# Needs valgrind (installed if missing) and the benchmarks built (bench/run.sh
# builds them; BUILD_ROOT as there). --iterations sets N1,N2 of the
# one-connection benchmarks (the 1000-connection ones run 10 and 30
# rounds).
#
#   bench/instructions.sh [--top=5] [--iterations=N1,N2] [--rate=4000]
set -euo pipefail
cd "$(dirname "$0")/.."
top=5 n1='' n2='' rate=4000
for arg in "$@"; do
  case $arg in
    --top=*) top=${arg#*=} ;;
    --rate=*) rate=${arg#*=} ;;
    --iterations=*) IFS=, read -r n1 n2 <<<"${arg#*=}" ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/instructions.sh: unknown argument $arg" >&2; exit 1 ;;
  esac
done
[[ $top =~ ^[1-9][0-9]*$ ]] || { echo "bench/instructions.sh: --top wants a positive count, got '$top'" >&2; exit 1; }
[[ $rate =~ ^[1-9][0-9]*$ ]] || { echo "bench/instructions.sh: --rate wants messages per second, got '$rate'" >&2; exit 1; }
if [ -n "$n1$n2" ] && ! { [[ $n1 =~ ^[1-9][0-9]*$ && $n2 =~ ^[1-9][0-9]*$ ]] && ((n2 > n1)); }; then
  echo "bench/instructions.sh: --iterations wants N1,N2 with 0 < N1 < N2, got '${n1},${n2}'" >&2
  exit 1
fi
# shellcheck source=scripts/deps.sh
source scripts/deps.sh
CORING_PACKAGES+=(valgrind)
coring_ensure_packages
B=${BUILD_ROOT:-build}/bench/bench/net
baselines=${BUILD_ROOT:-build}/bench/bench/baselines
loadgen=${BUILD_ROOT:-build}/bench/bench/loadgen/loadgen
for bin in $B/net_echo_bench $B/net_sbmp_echo_bench $B/one_loop_server $baselines/uring_echo $loadgen; do
  [ -x "$bin" ] || { echo "bench/instructions.sh: no $bin (run bench/run.sh first)" >&2; exit 1; }
done
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# count BIN NAME ITERATIONS OUT: the callgrind profile (with the cache
# simulation) of exactly that many iterations of benchmark NAME, in OUT.
count() {
  local bin=$1 name=$2 iterations=$3 file=$4
  if ! CORING_BENCH_ITERATIONS=$iterations valgrind --tool=callgrind --cache-sim=yes \
    --D1=32768,8,64 --LL=524288,8,64 --callgrind-out-file="$file" \
    "$B/$bin" --benchmark_filter="^${name}(/|\$)" >"$work/run.out" 2>"$work/run.err" ||
    grep -q 'ERROR OCCURRED' "$work/run.out" || ! grep -q "^$name/iterations:$iterations " "$work/run.out"; then
    echo "bench/instructions.sh: $bin $name under callgrind failed:" >&2
    cat "$work/run.out" "$work/run.err" >&2
    return 1
  fi
}

# events FILE EVENTS: the profile's counts of EVENTS (callgrind's names,
# comma-separated: summed) per function, as "count function" lines (self
# cost; the first line "total").
events() {
  callgrind_annotate --threshold=100 --inclusive=no --show="$2" --sort="$2" "$1" 2>/dev/null | awk '
    # A count is "N (p%)", a bare "0", or "." (none).
    function counts(line,    n, sum, tok) {
      sum = 0
      for (n = 0; n < nevents; n++) {
        sub(/^ +/, "", line)
        if (match(line, /^[0-9,]+ \( *[0-9.]+%\)/) || match(line, /^[0-9,]+/) || match(line, /^\./)) {
          tok = substr(line, 1, RLENGTH); line = substr(line, RLENGTH + 1)
          sub(/ .*/, "", tok); gsub(",", "", tok); if (tok != ".") sum += tok
        } else return ""
      }
      rest = line
      return sum
    }
    /^Events shown:/ { nevents = split($0, e, " ") - 2; next }
    nevents && /PROGRAM TOTALS/ { print counts($0), "total"; next }
    nevents && /^ *([0-9,]+|\.) / {
      n = counts($0)
      if (n == "") next
      f = rest; sub(/^ +/, "", f); sub(/ \[[^]]*\]$/, "", f)
      sub(/^[^:]*:/, "", f)  # the source file
      print n, f
    }'
}

# short_names: each C++ symbol without namespaces, template or call arguments.
short_names() {
  awk '{
    line = $0; i = index(line, " "); n = substr(line, 1, i - 1); s = substr(line, i + 1)
    gsub(/\(anonymous namespace\)::/, "", s)
    coroutine = sub(/ \[clone \.actor\]$/, "", s)
    sub(/ \[clone [^]]*\]$/, "", s)
    out = ""; depth = 0
    for (k = 1; k <= length(s); k++) {
      c = substr(s, k, 1)
      if (c == "<" || c == "(") { if (depth++ == 0) out = out (c == "<" ? "<>" : "()") ; continue }
      if (c == ">" || c == ")") { if (depth > 0) depth--; continue }
      if (depth == 0) out = out c
    }
    gsub(/(coring|absl|debian3|std|net|sbmp|detail|internal)::/, "", out)
    print n, out (coroutine ? " (coroutine)" : "")
  }'
}

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- 2>/dev/null || commit+=", with uncommitted changes"
echo "Counted at commit $commit (the build in ${BUILD_ROOT:-build}/bench)."
echo
echo "| benchmark (in process: server and client) | unit | instructions per message | where (instructions per message, own) | cache misses per message | where (misses per message, own) |"
echo "|---|---|---|---|---|---|"
# per_message A B MSGS: the total and the top functions of the difference
# between two "count function" lists, per message.
per_message() {
  awk -v msgs="$3" -v top="$top" '
    FNR == NR { i = index($0, " "); before[substr($0, i + 1)] += substr($0, 1, i - 1); next }
    { i = index($0, " "); f = substr($0, i + 1); after[f] += substr($0, 1, i - 1) }
    END {
      total = (after["total"] - before["total"]) / msgs
      n = 0
      # (A profile dumped while running also gives the functions then on
      # the stack - main, the C start-up - the whole count as their own.)
      for (f in after) if (f != "total") {
        d[f] = (after[f] - before[f]) / msgs
        if (d[f] < 0.99 * total || total <= 0) names[++n] = f
      }
      # The top ones, by selection (awk has no portable sort); to one
      # decimal below 10 (misses), whole above.
      where = ""
      for (k = 1; k <= top && k <= n; k++) {
        best = 0
        for (j = 1; j <= n; j++) if (!(names[j] in taken) && (best == 0 || d[names[j]] > d[names[best]])) best = j
        if (best == 0 || d[names[best]] < (total < 100 ? 0.05 : 1)) break
        taken[names[best]] = 1
        where = where (where == "" ? "" : ", ") sprintf(total < 100 ? "%s %.1f" : "%s %.0f", names[best], d[names[best]])
      }
      printf(total < 100 ? "%.1f | %s" : "%.0f | %s", total, where == "" ? "-" : where)
    }' "$1" "$2"
}
for spec in "net_echo_bench BM_StreamEcho/size:64 1 round trip (raw echo) 2000 6000" \
  "net_echo_bench BM_FramedEcho/size:64/arena:1 1 round trip (both ends framed) 2000 6000" \
  "net_sbmp_echo_bench BM_SbmpEcho/size:64/batch:128 128 frame 40 120" \
  "net_sbmp_echo_bench BM_SbmpEcho/size:64/batch:1 1 frame (ping-pong) 2000 6000" \
  "net_echo_bench BM_StreamEchoConns/conns:1000/size:64 1000 round trip (raw echo, 1000 connections) 10 30" \
  "net_sbmp_echo_bench BM_SbmpEchoConns/conns:1000/batch:16 16000 frame (16 at a time, 1000 connections) 10 30"; do
  read -r bin name per_iteration rest <<<"$spec"
  read -r -a words <<<"$rest"
  a=${words[-2]} b=${words[-1]}
  [[ $name == *Conns* ]] || a=${n1:-$a} b=${n2:-$b}
  unit=${rest% * *}
  count "$bin" "$name" "$a" "$work/a.out"
  count "$bin" "$name" "$b" "$work/b.out"
  for e in Ir DLmr,DLmw; do
    events "$work/a.out" "$e" | short_names >"$work/a.$e"
    events "$work/b.out" "$e" | short_names >"$work/b.$e"
  done
  msgs=$(((b - a) * per_iteration))
  echo "| $bin $name | $unit | $(per_message "$work/a.Ir" "$work/b.Ir" "$msgs") | $(per_message "$work/a.DLmr,DLmw" "$work/b.DLmr,DLmw" "$msgs") |"
  rm -f "$work"/a.* "$work"/b.*
done

# serve_count NAME PROTO OUT SERVER...: SERVER (which prints "listening on
# HOST:PORT" first) under callgrind on CPU 0, the load generator on CPU 1;
# the profile of the window in OUT, and the messages offered in it in
# OUT.msgs.
settle=4 window=5
serve_count() {
  local name=$1 proto=$2 file=$3 port='' i t0 t1
  shift 3
  taskset -c 0 valgrind --tool=callgrind --cache-sim=yes --D1=32768,8,64 --LL=524288,8,64 \
    --callgrind-out-file="$work/$name.cg" "$@" --port=0 >"$work/$name.out" 2>"$work/$name.err" &
  local server=$!
  pids+=("$server")
  for ((i = 0; i < 300 && ${#port} == 0; i++)); do
    sleep 0.1
    port=$(sed -n '1s/.*listening on [^ ]*:\([0-9][0-9]*\).*/\1/p' "$work/$name.out")
  done
  if [ -z "$port" ]; then
    echo "bench/instructions.sh: $name under callgrind did not start listening:" >&2
    cat "$work/$name.out" "$work/$name.err" >&2
    return 1
  fi
  "$loadgen" --port="$port" --proto="$proto" --conns=1000 --size=64 --rate="$rate" \
    --duration=$((settle + window + 2)) --warmup=0 --cpu=1 >"$work/$name.load" 2>&1 &
  local load=$!
  pids+=("$load")
  sleep "$settle"
  # (callgrind_control says what it sends on stderr: kept out of the table.)
  callgrind_control -z "$server" >"$work/$name.ctl" 2>&1 || { cat "$work/$name.ctl" >&2; return 1; }
  t0=$(date +%s.%N)
  sleep "$window"
  callgrind_control -d "$server" >"$work/$name.ctl" 2>&1 || { cat "$work/$name.ctl" >&2; return 1; }
  t1=$(date +%s.%N)
  wait "$load" || true
  kill -KILL "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  # Both reaped: their pids may be reused, and cleanup() must not kill those.
  pids=()
  # The load kept its rate, every echo verified, or the window means nothing.
  if ! grep -q '"errors":0,"mismatches":0' "$work/$name.load" ||
    ! awk -v r="$rate" 'match($0, /"msgs_per_sec":[0-9.]+/) { n = substr($0, RSTART + 15, RLENGTH - 15) + 0; exit !(n >= 0.99 * r) } END { if (!RSTART) exit 1 }' "$work/$name.load" ||
    [ ! -s "$work/$name.cg.1" ]; then
    echo "bench/instructions.sh: $name under the load generator at $rate msgs/s failed:" >&2
    cat "$work/$name.load" "$work/$name.err" >&2
    return 1
  fi
  mv "$work/$name.cg.1" "$file"
  awk -v a="$t0" -v b="$t1" -v r="$rate" 'BEGIN { printf "%.0f\n", (b - a) * r }' >"$file.msgs"
}

echo
echo "The server alone, under the load generator: $rate msgs/s over 1000 connections, 64 B a message, for ${window} s (coring: bench/net/one_loop_server):"
echo
echo "| server | unit | instructions per message | where (instructions per message, own) | cache misses per message | where (misses per message, own) |"
echo "|---|---|---|---|---|---|"
echo "0 total" >"$work/none"
for spec in "coring raw message (raw echo)|$B/one_loop_server" \
  "uring raw message (raw echo)|$baselines/uring_echo" \
  "coring_sbmp sbmp frame (SBMP echo)|$B/one_loop_server --sbmp" \
  "uring_sbmp sbmp frame (SBMP echo)|$baselines/uring_echo --sbmp"; do
  read -r name proto unit <<<"${spec%%|*}"
  read -r -a server <<<"${spec#*|}"
  serve_count "$name" "$proto" "$work/s.out" "${server[@]}"
  msgs=$(cat "$work/s.out.msgs")
  for e in Ir DLmr,DLmw; do events "$work/s.out" "$e" | short_names >"$work/s.$e"; done
  echo "| $name | $unit | $(per_message "$work/none" "$work/s.Ir" "$msgs") | $(per_message "$work/none" "$work/s.DLmr,DLmw" "$msgs") |"
  rm -f "$work"/s.*
done
