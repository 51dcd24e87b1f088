#!/usr/bin/env bash
# The README's demo command: builds sbmp_echo_server and pingpong_client
# (Release) in a build folder of its own, ${BUILD_ROOT:-build}/demo, that no
# other command configures; starts the server on a free loopback port, runs
# the client against it for DEMO_SECONDS (10) with a progress line each
# second, prints the result table, then stops the server with SIGTERM and
# checks that both exit 0. The server is killed on any other way out of this
# script. Then it runs the comparison benchmark's reduced matrix,
# `bench/run.sh --quick` (about a minute; its own build folder,
# ${BUILD_ROOT:-build}/bench; DEMO_BENCH=0 skips it). scripts/test.sh runs
# the demo for 2 seconds, without the benchmark, as its last pass.
#
# Environment: DEMO_SECONDS, DEMO_CONNS (64), DEMO_DEPTH (4), DEMO_SIZE (64),
# DEMO_SERVER_THREADS (1), DEMO_CLIENT_THREADS (1), DEMO_BENCH (1), BUILD_ROOT, JOBS.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
coring_ensure_packages
export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/coring-ccache}
B=${BUILD_ROOT:-build}/demo
# Every coring option explicitly, whatever a cache in $B holds; no -Werror.
BUILD_TARGETS="sbmp_echo_server pingpong_client" coring_build "$B" \
  -DCMAKE_BUILD_TYPE=Release -DCORING_BUILD_EXAMPLES=ON -DCORING_BUILD_TESTS=OFF \
  -DCORING_BUILD_BENCH=OFF -DCORING_BUILD_FUZZ=OFF -DCORING_SANITIZE= -DCORING_WERROR=OFF

server=$B/examples/net/sbmp_echo_server
client=$B/examples/net/pingpong_client
work=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== demo: sbmp_echo_server on loopback, ${DEMO_SERVER_THREADS:-1} thread(s)"
"$server" --host=127.0.0.1 --port=0 --threads="${DEMO_SERVER_THREADS:-1}" --stats \
  >"$work/server.out" 2>&1 &
server_pid=$!
address=
for _ in $(seq 100); do  # up to 5 s for the first line
  address=$(sed -n '1s/^listening on //p' "$work/server.out")
  [ -n "$address" ] && break
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.05
done
if [ -z "$address" ]; then
  echo "demo: sbmp_echo_server did not start:" >&2
  cat "$work/server.out" >&2
  exit 1
fi
echo "== server listening on $address (pid $server_pid)"

seconds=${DEMO_SECONDS:-10}
echo "== demo: pingpong_client for ${seconds}s (progress each second)"
client_rc=0
"$client" --host="${address%:*}" --port="${address##*:}" --duration="${seconds}s" \
  --conns="${DEMO_CONNS:-64}" --depth="${DEMO_DEPTH:-4}" --size="${DEMO_SIZE:-64}" \
  --threads="${DEMO_CLIENT_THREADS:-1}" || client_rc=$?

echo "== demo: SIGTERM to the server"
kill -TERM "$server_pid"
for _ in $(seq 200); do  # its shutdown deadline is 5 s; allow 10
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.05
done
if kill -0 "$server_pid" 2>/dev/null; then
  echo "demo: sbmp_echo_server did not exit within 10 s of SIGTERM" >&2
  exit 1  # the trap kills it
fi
server_rc=0
wait "$server_pid" || server_rc=$?
server_pid=
echo "== server stats at exit:"
sed -n '2,$p' "$work/server.out"
echo "== demo: client exit $client_rc, server exit $server_rc"
[ "$client_rc" -eq 0 ] && [ "$server_rc" -eq 0 ] || exit 1

if [ "${DEMO_BENCH:-1}" != 0 ]; then
  echo "== demo: bench/run.sh --quick (coring next to liburing, epoll and Asio echo servers)"
  bash bench/run.sh --quick
fi
