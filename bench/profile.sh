#!/usr/bin/env bash
# bench/profile.sh: where a server spends its time per message, for comparing
# coring with the raw liburing baseline. Run after bench/run.sh (it uses the
# binaries in ${BUILD_ROOT:-build}/bench). For each server, under the same
# load (default: 16 connections x 64 B, 16 in flight; server on CPU 0, load
# generator on CPU 1):
#   * system calls per message (perf's syscalls:sys_enter_* tracepoints on
#     the server's process): io_uring_enter, epoll_wait and plain I/O calls;
#   * user-space instructions per message (valgrind --tool=callgrind, counters
#     zeroed after the warm-up and dumped after the measured window) and the
#     functions that execute most of them.
# Prints a markdown table; the callgrind files stay in the output folder.
#
#   bench/profile.sh [--servers=coring,uring,...] [--conns=16] [--size=64] [--depth=16]
#                    [--seconds=2] [--out=DIR] [--no-callgrind]
set -euo pipefail
cd "$(dirname "$0")/.."
servers=coring,uring,coring_sbmp,uring_sbmp,asio_uring
conns=16 size=64 depth=16 seconds=2 callgrind=1
out=${BUILD_ROOT:-build}/bench/profile
for arg in "$@"; do
  case $arg in
    --servers=*) servers=${arg#*=} ;;
    --conns=*) conns=${arg#*=} ;;
    --size=*) size=${arg#*=} ;;
    --depth=*) depth=${arg#*=} ;;
    --seconds=*) seconds=${arg#*=} ;;
    --out=*) out=${arg#*=} ;;
    --no-callgrind) callgrind=0 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/profile.sh: unknown argument $arg" >&2; exit 1 ;;
  esac
done
B=${BUILD_ROOT:-build}/bench
loadgen=$B/bench/loadgen/loadgen
[ -x "$loadgen" ] || { echo "bench/profile.sh: run bench/run.sh first (no $loadgen)" >&2; exit 1; }
command -v perf >/dev/null || { echo "bench/profile.sh: needs perf (linux-perf)" >&2; exit 1; }
[ "$callgrind" -eq 0 ] || command -v valgrind >/dev/null ||
  { echo "bench/profile.sh: needs valgrind (or --no-callgrind)" >&2; exit 1; }
mkdir -p "$out"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
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
  for _ in $(seq 800); do  # valgrind starts slowly
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

IFS=, read -r -a names <<<"$servers"
echo "| server | msgs/s | io_uring_enter /msg | epoll_wait /msg | other syscalls /msg | user instructions /msg (callgrind) | top functions (share of instructions) |"
echo "|---|---|---|---|---|---|---|"
for name in "${names[@]}"; do
  # 1. System calls, counted over 1 s in the middle of the measured window.
  start "$name"
  "$loadgen" --port="$port" --proto="$(proto "$name")" --conns="$conns" --size="$size" \
    --depth="$depth" --warmup=0.5 --duration="$seconds" --cpu=1 --server-pid="$pid" \
    >"$work/lg.json" 2>/dev/null &
  lg=$!
  sleep 0.7
  perf stat -x, -e syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_epoll_wait \
    -e syscalls:sys_enter_read,syscalls:sys_enter_write,syscalls:sys_enter_recvfrom \
    -e syscalls:sys_enter_sendto,syscalls:sys_enter_sendmsg,syscalls:sys_enter_recvmsg \
    -e syscalls:sys_enter_writev,syscalls:sys_enter_readv \
    -p "$pid" -o "$work/perf.csv" -- sleep 1 || true
  wait "$lg" || true
  stop
  line=$(cat "$work/lg.json")
  rate=$(field msgs_per_sec "$line")
  count() { awk -F, -v e="$1" '$3 ~ e { s += $1 } END { print s + 0 }' "$work/perf.csv"; }
  per() { awk -v n="$1" -v r="$rate" 'BEGIN { if (r > 0) printf "%.3f", n / r; else print "-" }'; }
  enters=$(count 'io_uring_enter$')
  waits=$(count 'epoll_wait$')
  others=$(count 'sys_enter_(read|write|recvfrom|sendto|sendmsg|recvmsg|writev|readv)$')

  # 2. User-space instructions (callgrind), counters zeroed after warm-up.
  ipm=- top=-
  if [ "$callgrind" -eq 1 ]; then
    cg=$out/callgrind.$name
    rm -f "$cg".*
    start "$name" valgrind --tool=callgrind --callgrind-out-file="$cg.%p"
    "$loadgen" --port="$port" --proto="$(proto "$name")" --conns="$conns" --size="$size" \
      --depth="$depth" --warmup=1 --duration="$seconds" --cpu=1 >"$work/lg.json" 2>/dev/null &
    lg=$!
    sleep 1
    callgrind_control -z "$pid" >/dev/null 2>&1 || true
    t0=$(date +%s.%N)
    sleep "$seconds"
    callgrind_control -d "$pid" >/dev/null 2>&1 || true
    t1=$(date +%s.%N)
    wait "$lg" || true
    stop
    line=$(cat "$work/lg.json")
    cg_rate=$(field msgs_per_sec "$line")
    dump=$(ls -t "$cg".* 2>/dev/null | grep -v '\.txt$' | head -1)
    if [ -n "$dump" ]; then
      callgrind_annotate --inclusive=no "$dump" 2>/dev/null >"$cg.txt" || true
      ir=$(sed -n 's/^ *\([0-9,]*\) *(100.0%) *PROGRAM TOTALS.*/\1/p' "$cg.txt" | tr -d ,)
      ipm=$(awk -v ir="${ir:-0}" -v r="$cg_rate" -v t0="$t0" -v t1="$t1" \
        'BEGIN { n = r * (t1 - t0); if (n > 0 && ir > 0) printf "%.0f", ir / n; else print "-" }')
      top=$(awk '/^-+$/ { sep++; next } sep >= 3 && /%\)/ && NF >= 3 {
               pct = $2; gsub(/[()]/, "", pct); fn = $3; sub(/^.*:/, "", fn);
               sub(/\(.*$/, "", fn); if (fn == "" || fn ~ /^\?/) next;
               printf "%s%s %s", (n++ ? ", " : ""), fn, pct; if (n == 4) exit }' "$cg.txt")
    fi
  fi
  echo "| $name | $rate | $(per "$enters") | $(per "$waits") | $(per "$others") | $ipm | ${top:--} |"
done
