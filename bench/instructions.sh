#!/usr/bin/env bash
# bench/instructions.sh: user-space instructions per message, counted by
# callgrind - exact, where this host's timings swing by a third - for the
# in-process echo benchmarks (one EventLoop, server and client in one
# process, over loopback TCP):
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
#   * BM_SbmpEcho/size:64/batch:1: one frame at a time (ping-pong).
# Each runs twice under callgrind, for exactly N1 and N2 iterations
# (CORING_BENCH_ITERATIONS); the difference between the two counts over
# the difference in messages is what one more message costs, with start-up
# (dynamic linking, pools, the handshake, warm-up) cancelled out. The
# kernel's share is not counted: callgrind sees user space only.
# Prints the commit, then a markdown table: instructions per message in all,
# and the functions with the most (their own instructions, inlined code
# included).
# Needs valgrind (installed if missing) and the benchmarks built (bench/run.sh
# builds them; BUILD_ROOT as there).
#
#   bench/instructions.sh [--top=5] [--iterations=N1,N2]
set -euo pipefail
cd "$(dirname "$0")/.."
top=5 n1='' n2=''
for arg in "$@"; do
  case $arg in
    --top=*) top=${arg#*=} ;;
    --iterations=*) IFS=, read -r n1 n2 <<<"${arg#*=}" ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/instructions.sh: unknown argument $arg" >&2; exit 1 ;;
  esac
done
[[ $top =~ ^[1-9][0-9]*$ ]] || { echo "bench/instructions.sh: --top wants a positive count, got '$top'" >&2; exit 1; }
if [ -n "$n1$n2" ] && ! { [[ $n1 =~ ^[1-9][0-9]*$ && $n2 =~ ^[1-9][0-9]*$ ]] && ((n2 > n1)); }; then
  echo "bench/instructions.sh: --iterations wants N1,N2 with 0 < N1 < N2, got '${n1},${n2}'" >&2
  exit 1
fi
# shellcheck source=scripts/deps.sh
source scripts/deps.sh
CORING_PACKAGES+=(valgrind)
coring_ensure_packages
B=${BUILD_ROOT:-build}/bench/bench/net
for bin in net_echo_bench net_sbmp_echo_bench; do
  [ -x "$B/$bin" ] || { echo "bench/instructions.sh: no $B/$bin (run bench/run.sh first)" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# count BIN NAME ITERATIONS: the callgrind profile of exactly that many
# iterations of benchmark NAME, as "instructions function" lines (self
# cost; the first line "total").
count() {
  local bin=$1 name=$2 iterations=$3 file=$work/cg.out
  if ! CORING_BENCH_ITERATIONS=$iterations valgrind --tool=callgrind --callgrind-out-file="$file" \
    "$B/$bin" --benchmark_filter="^${name}(/|\$)" >"$work/run.out" 2>"$work/run.err" ||
    grep -q 'ERROR OCCURRED' "$work/run.out" || ! grep -q "^$name/iterations:$iterations " "$work/run.out"; then
    echo "bench/instructions.sh: $bin $name under callgrind failed:" >&2
    cat "$work/run.out" "$work/run.err" >&2
    return 1
  fi
  callgrind_annotate --threshold=100 --inclusive=no "$file" 2>/dev/null | awk '
    /PROGRAM TOTALS/ { gsub(",", "", $1); print $1, "total"; next }
    /^ *[0-9,]+ +\(/ {
      n = $1; gsub(",", "", n)
      f = $0; sub(/^ *[0-9,]+ +\( *[0-9.]+%\) +/, "", f); sub(/ \[[^]]*\]$/, "", f)
      sub(/^[^:]*:/, "", f)  # the source file
      print n, f
    }'
  rm -f "$file"
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
echo "| benchmark (in process: server and client) | unit | instructions per message | where (instructions per message, own) |"
echo "|---|---|---|---|"
for spec in "net_echo_bench BM_StreamEcho/size:64 1 round trip (raw echo) 2000 6000" \
  "net_echo_bench BM_FramedEcho/size:64/arena:1 1 round trip (both ends framed) 2000 6000" \
  "net_sbmp_echo_bench BM_SbmpEcho/size:64/batch:128 128 frame 40 120" \
  "net_sbmp_echo_bench BM_SbmpEcho/size:64/batch:1 1 frame (ping-pong) 2000 6000"; do
  read -r bin name per_iteration rest <<<"$spec"
  read -r -a words <<<"$rest"
  a=${n1:-${words[-2]}} b=${n2:-${words[-1]}}
  unit=${rest% * *}
  count "$bin" "$name" "$a" | short_names >"$work/a"
  count "$bin" "$name" "$b" | short_names >"$work/b"
  awk -v msgs="$(((b - a) * per_iteration))" -v top="$top" -v name="$name" -v bin="$bin" -v unit="$unit" '
    FNR == NR { i = index($0, " "); before[substr($0, i + 1)] += substr($0, 1, i - 1); next }
    { i = index($0, " "); f = substr($0, i + 1); after[f] += substr($0, 1, i - 1) }
    END {
      total = (after["total"] - before["total"]) / msgs
      n = 0
      for (f in after) if (f != "total") { d[f] = (after[f] - before[f]) / msgs; names[++n] = f }
      # The top ones, by selection (awk has no portable sort).
      where = ""
      for (k = 1; k <= top && k <= n; k++) {
        best = 0
        for (j = 1; j <= n; j++) if (!(names[j] in taken) && (best == 0 || d[names[j]] > d[names[best]])) best = j
        if (best == 0 || d[names[best]] < 1) break
        taken[names[best]] = 1
        where = where (where == "" ? "" : ", ") sprintf("%s %.0f", names[best], d[names[best]])
      }
      printf "| %s %s | %s | %.0f | %s |\n", bin, name, unit, total, where
    }' "$work/a" "$work/b"
done
