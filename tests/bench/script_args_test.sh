#!/usr/bin/env bash
# bench.script_args: the benchmark scripts refuse a bad option value with a
# message that names the option, before they install, build or start
# anything: bench/run.sh (the matrix: --rounds=0 once replaced
# bench/RESULTS.md with an empty report, --modes=bogus ran a mode that is
# not one, --sizes=1.5 failed after the build), bench/profile.sh and
# bench/idle_memory.sh. And the values the scripts' documented commands use
# are accepted (bench/run.sh --report-only gets as far as looking for the
# run's records). Runs nothing on the network; a few seconds.
#   script_args_test.sh REPO_ROOT
set -uo pipefail
root=$1
work=$(mktemp -d)
# (Should a check be lost, the script goes on to build under $work: whatever
# runs with $work in its command line is this test's.)
trap 'pkill -KILL -f -- "$work" 2>/dev/null; rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# refused SCRIPT EXPECTED_TEXT ARGS...: exit 1 within 20 s, EXPECTED_TEXT on
# stderr, nothing built (the build folder is not even created).
refused() {
  local script=$1 want=$2; shift 2
  local build=$work/build rc=0
  rm -rf "$build"
  BUILD_ROOT=$build timeout 20 "$root/$script" "$@" >"$work/out" 2>"$work/err" || rc=$?
  if [ "$rc" -ne 1 ]; then
    fail "$script $*: exit $rc, wanted 1 (stderr: $(head -c 300 "$work/err"))"
  elif ! grep -qF -- "$want" "$work/err"; then
    fail "$script $*: stderr does not say '$want': $(head -c 300 "$work/err")"
  elif [ -e "$build" ]; then
    fail "$script $*: started building before refusing"
  fi
}

run=bench/run.sh
refused $run "--rounds wants a whole number" --rounds=0
refused $run "--rounds wants a whole number" --rounds=abc
refused $run "--rounds wants a whole number" --rounds=1001
refused $run "--settle wants a whole number" --settle=-1
refused $run "--settle wants a whole number" --settle=1001
refused $run "--settle wants a whole number" --settle=x
refused $run "--seconds wants seconds" --seconds=0
refused $run "--seconds wants seconds" --seconds=-1
refused $run "--warmup wants seconds" --warmup=x
refused $run "--idle-conns wants a whole number" --idle-conns=-5
refused $run "--out wants a folder" --out=
refused $run "--servers: 'foo' is not a server" --servers=coring,foo
refused $run "--servers names 'coring' twice" --servers=coring,uring,coring
refused $run "--servers wants a comma-separated list" --servers=
refused $run "--conns: '0' is not a number of connections" --conns=0
refused $run "--conns wants a comma-separated list with no empty item" --conns=16,,256
refused $run "--conns wants a comma-separated list with no empty item" --conns=16,
refused $run "--sizes: '1.5' is not a message size" --sizes=64,1.5
refused $run "--sizes: '2097152' is not a message size" --sizes=2097152
refused $run "--modes: 'bogus' is not a mode" --modes=pingpong,bogus
refused $run "--modes: 'pipe' is not a mode" --modes=pipe
refused $run "--modes: 'pipe0' is not a mode" --modes=pipe0
refused $run "--cc needs a congestion control's name" '--cc=re no'
refused $run "unknown argument --round=3" --round=3
BENCH_RETRIES=x refused $run "BENCH_RETRIES wants a whole number"
BENCH_MAX_OTHER=101 refused $run "BENCH_MAX_OTHER wants a share of the host's CPU"
BENCH_BASE='' refused $run "server coring_base runs \$BENCH_BASE/echo_server: set BENCH_BASE" \
  --servers=coring,coring_base
BENCH_BASE=$work refused $run "server coring_sbmp_base: no $work/sbmp_echo_server" \
  --servers=coring_sbmp,coring_sbmp_base

profile=bench/profile.sh
refused $profile "--conns wants a number of connections" --conns=0
refused $profile "--size wants bytes" --size=1.5
refused $profile "--depth wants messages in flight" --depth=0
refused $profile "--rate wants messages per second" --rate=0
refused $profile "--rate wants messages per second" --rate=
refused $profile "--depth and --rate: give one of them" --depth=4 --rate=1000
refused $profile "--seconds wants seconds" --seconds=0
refused $profile "--seconds wants seconds from 3.5" --seconds=3
refused $profile "--settle wants seconds" --settle=-1
refused $profile "--rounds wants a number of rounds" --rounds=0
refused $profile "--servers: 'foo' is not one of" --servers=coring,foo
refused $profile "--servers wants a comma-separated list" --servers=coring,,uring

idle=bench/idle_memory.sh
refused $idle "SERVER '$work/none' is not an executable" "$work/none"
refused $idle "CONNS wants a number of connections" /bin/true 0
refused $idle "CONNS wants a number of connections" /bin/true 100001
refused $idle "SETTLE_SECONDS wants seconds" /bin/true 10 -1

# Accepted: the widest values the checks allow, and the documented ones.
# --report-only then stops at the missing records (exit 1, "no run in", one
# line), leaving no folder behind.
accepted() {
  local rc=0
  BUILD_ROOT=$work/build timeout 20 "$root/$run" --report-only --out="$work/none" "$@" \
    >"$work/out" 2>"$work/err" || rc=$?
  if ! grep -q "bench/run.sh: no run in $work/none" "$work/err"; then
    fail "$run --report-only $*: refused or went on (exit $rc): $(head -c 300 "$work/err")"
  elif [ "$(wc -l <"$work/err")" -ne 1 ]; then
    fail "$run --report-only $*: more than the one line on stderr: $(head -c 300 "$work/err")"
  elif [ -e "$work/none" ]; then
    fail "$run --report-only $*: created the folder of a run that is not there"
  fi
}
accepted
accepted --quick
accepted --tls
accepted --rounds=1000 --seconds=0.01 --warmup=0 --idle-conns=100000 --conns=1,100000 \
  --sizes=1,1048576 --modes=pingpong,pipe1,pipe4096,rate,handshakes \
  --servers=coring,coring_sbmp,coring_base,coring_sbmp_base,uring,uring_sbmp,asio_uring,asio_uring_sbmp,asio_epoll,asio_epoll_sbmp,coring_tls,coring_tls_sbmp,asio_tls,asio_tls_sbmp,epoll,epoll_sbmp
accepted --rounds=5 --settle=15 --seconds=3600 --warmup=600 --conns=16 --sizes=64 --modes=pipe16 --cc=reno
"$root/$run" --help >/dev/null || fail "$run --help: exit $?"

if [ "$failures" -ne 0 ]; then
  echo "$failures failure(s)"
  exit 1
fi
echo "ok"
