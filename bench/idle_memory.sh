#!/usr/bin/env bash
# bench/idle_memory.sh: server memory per idle SBMP connection, and how much
# of it the server gives back once the connections are gone.
#
#   bench/idle_memory.sh SERVER [CONNS] [SETTLE_SECONDS]
#   bench/idle_memory.sh build/release/examples/net/sbmp_echo_server 10000 5
#
# Starts SERVER (--host=127.0.0.1 --port=0 --threads=1) pinned to CPU 0, has
# the load generator (bench/loadgen, built beside it in the same build
# folder) open CONNS idle SBMP connections (HELLO done) from CPU 1 and report
# the server's RSS per connection, then closes them, waits SETTLE_SECONDS
# (the server gives memory back on its idle sweep, once a second by default)
# and prints one line:
#   conns=10000 rss_start_kib=... rss_idle_kib=... per_conn_bytes=...
#   rss_closed_kib=... held_after_close_kib=...
# held_after_close_kib is rss_closed - rss_start. Only the server this script
# started is signalled. Needs RLIMIT_NOFILE above CONNS (it raises the soft
# limit as far as the hard one allows).
set -euo pipefail
server=${1:?usage: bench/idle_memory.sh SERVER [CONNS] [SETTLE_SECONDS]}
conns=${2:-10000}
settle=${3:-5}
[ -x "$server" ] || { echo "bench/idle_memory.sh: SERVER '$server' is not an executable" >&2; exit 1; }
# shellcheck source=bench/option_checks.sh
source "$(dirname "$0")/option_checks.sh"
whole_in "$conns" 1 100000 || {
  echo "bench/idle_memory.sh: CONNS wants a number of connections from 1 to 100000, got '$conns'" >&2
  exit 1
}
seconds_in "$settle" 0 999 ||
  { echo "bench/idle_memory.sh: SETTLE_SECONDS wants seconds (0 to 999), got '$settle'" >&2; exit 1; }
build=$(cd "$(dirname "$server")/../.." && pwd)
loadgen=$build/bench/loadgen/loadgen
[ -x "$loadgen" ] || { echo "bench/idle_memory.sh: no $loadgen (build target loadgen)" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

out=$(mktemp)
taskset -c 0 "$server" --host=127.0.0.1 --port=0 --threads=1 >"$out" 2>&1 &
pid=$!
cleanup() {
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -f "$out"
}
trap cleanup EXIT
for _ in $(seq 100); do grep -q '^listening on' "$out" && break; sleep 0.05; done
port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$out" | head -1)
[ -n "$port" ] || { echo "bench/idle_memory.sh: the server did not start" >&2; cat "$out" >&2; exit 1; }
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$pid/status"; }

start=$(rss)
line=$("$loadgen" --port="$port" --proto=sbmp --idle --conns="$conns" --cpu=1 \
  --server-pid="$pid" --label=idle)
idle=$(sed -n 's/.*"server_rss_kib":\([0-9]*\).*/\1/p' <<<"$line")
ready=$(sed -n 's/.*"ready":\([0-9]*\).*/\1/p' <<<"$line")
sleep "$settle"  # the load generator has exited: its connections are closed
closed=$(rss)
echo "conns=$ready rss_start_kib=$start rss_idle_kib=$idle" \
  "per_conn_bytes=$(((idle - start) * 1024 / (ready > 0 ? ready : 1)))" \
  "rss_closed_kib=$closed held_after_close_kib=$((closed - start))"
