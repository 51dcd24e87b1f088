#!/usr/bin/env bash
# bench/run.sh: puts coring's echo servers next to the servers a user would
# pick instead, with one load generator for all (bench/loadgen/loadgen.c).
#
#   bench/run.sh            the full matrix (about an hour): writes bench/RESULTS.md,
#                           bench/results.json and bench/plots/*.png
#   bench/run.sh --quick    a reduced matrix in about a minute (results in
#                           build/bench/quick only; bench/RESULTS.md is left alone)
#   bench/run.sh --tls      TLS next to plain: coring and Asio (asio::ssl), each
#                           with and without TLS, 16 connections x {64 B, 1 KiB,
#                           16 KiB} x {ping-pong, 16 in flight, fixed rate}, and
#                           TLS handshakes/s (results in build/bench/tls-results only)
#
# Options: --rounds=N (3; 1 to 1000), --settle=N (0, off; up to 1000: a cell
#   where a target of the summary has a split verdict after --rounds - some
#   rounds missed it, some did not, neither firm by a sign test at 5% - gets
#   more rounds, run by the servers the targets compare, until every verdict
#   is firm either way or it has had N rounds), --seconds=S (measured window per run),
#   --warmup=S, --servers=a,b (of coring, coring_again, coring_sbmp, uring, uring_sbmp,
#   asio_uring, asio_epoll, epoll, epoll_sbmp - the default - asio_uring_sbmp,
#   asio_epoll_sbmp, coring_tls, coring_tls_sbmp, asio_tls, asio_tls_sbmp, coring_base,
#   coring_sbmp_base; coring_again is a second coring, the A/A control below)
#   --conns=1,16 (1 to 100000) --sizes=64,1024 (bytes, 1 to 1048576)
#   --modes=pingpong,pipe16,rate,handshakes (pipeN: N in flight, 1 to 4096),
#   --idle-conns=N (memory cell; 0: skip), --out=DIR (build/bench/results),
#   --no-results (do not touch bench/RESULTS.md etc.), --report-only (redo the
#   report of the last run in the output folder from its records, no runs),
#   --no-micro (skip the micro-benchmarks; --quick and --tls skip them too),
#   --steer-rx (root: for the run, loopback packets are processed on the CPU
#   of the socket that reads them - RPS/RFS on lo, as a NIC's would be -
#   instead of on the sender's; the settings are restored on exit. See "How
#   it measures" for why.)
#   --cc=NAME (root: the servers and the load generator run in a network
#   namespace of their own, whose loopback's TCP congestion control is NAME,
#   e.g. cubic or reno; the host's settings are left alone. Why: see "How it
#   measures". With --steer-rx, the namespace's loopback is steered; only
#   the flow table, which is the host's (net.core.rps_sock_flow_entries),
#   is set on the host for the run.)
# Environment: BUILD_ROOT, JOBS, BENCH_MAX_OTHER (5: % of host CPU busy outside
#   server and load generator that marks a run disturbed), BENCH_RETRIES (2),
#   BENCH_BASE (a folder holding an earlier build's echo_server and
#   sbmp_echo_server: servers coring_base and coring_sbmp_base run those, so a
#   change is measured side by side with what it changes).
#
# How it measures: the servers run one thread pinned to CPU 0 (taskset), the
# load generator on CPU 1. Per round every server is started once; for each
# cell the servers take turns (in an order rotated each round), so drift of
# the host hits them alike. The load generator verifies every byte and reads
# the server's CPU time (/proc/PID/task/*/schedstat) and RSS over its measured window,
# after a warm-up of --warmup or 1 s per 64 MiB in flight (at most 3 s), whichever is
# longer, and for --seconds or 2 s per 512 MiB in flight, whichever is longer; a
# run whose host had more than BENCH_MAX_OTHER % CPU busy elsewhere is
# flagged and repeated (at most BENCH_RETRIES times, then kept and counted as
# disturbed). Each cell reports the median over rounds, and each round's
# ratio to the raw liburing baseline (uring) with the median of those ratios.
# The A/A control: coring_again is the coring server again, the same binary
# and flags, a server of its own taking turns like the others. Any gap
# between it and coring is the host's, so its spread over the cells is the
# run's noise floor: the report counts a target's miss as beyond noise only
# when it is firm and past the target by more than that spread.
# Servers named *_tls (or *_tls_sbmp) speak TLS 1.3 with a self-signed
# certificate made for the run; the load generator then runs with --tls, and
# the mode "handshakes" (TLS servers only) counts full handshakes per second
# (reported as msgs/s, with server µs per handshake as µs/msg).
# On loopback a sender's CPU also does the receiving socket's protocol work.
# When a server falls behind the load generator (pipelined, large messages),
# the generator's writes wait for the server's receive window, and the
# server's own reads then push them through (and wake the generator): its CPU
# time includes the generator's transmits. Measured: the same uring_echo at
# 256 x 64 KiB pipelined spent 30% of its time in recv, raw, and 62% in SBMP
# mode, most of it sending the generator's queued bytes; a server just slower
# than the generator pays this and one just faster does not, so µs/msg there
# separates servers by more than their own costs. --steer-rx makes each side
# pay for its own receiving; fixed-rate cells (below every server's
# capacity) do not have the effect.
# A congestion control that paces (bbr) does so on loopback too: a send
# whose bytes leave as more than one TSO segment has the rest sent from a
# per-socket timer (tcp_pace_kick), and in a virtual machine each arming
# and firing of it costs a timer exit. How often depends on each
# connection's pacing state and on how its sends split into segments (a
# small last one waits), so it separates servers by their send pattern
# rather than their costs. Measured here (bbr), 64 KiB messages 16 in
# flight on 16 connections: sbmp_echo_server armed 0.2-0.4 pacing timers
# per frame (a 65552-byte frame leaves as 65483 + 69 bytes; frames of
# exactly one segment armed almost none), the raw echo_server 0.02-0.08 per
# message, and the first took 1.4-1.6x the second's CPU per message in
# single runs, 0.96-1.0x with reno (no pacing). Side by side over 5
# rounds, sbmp_echo_server ÷ echo_server µs/msg at 1 x 64 KiB pipelined:
# 1.52 (bbr), 0.70 (reno). The report states the congestion control of the
# run; --cc=cubic (Debian's default) or reno measures without pacing on a
# host whose default paces.
# After the matrix, the in-process micro-benchmarks behind the issue's other
# targets run pinned to CPU 0 (Google Benchmark, 5 repetitions interleaved):
# the SBMP header's encode + decode + validate (codec_bench) and the heap
# allocations per message of the echo paths (codec_bench, net_echo_bench,
# net_sbmp_echo_bench); their JSON goes to the output folder's micro/. Then
# bench/instructions.sh counts the echo paths' user-space instructions and cache misses per
# message with callgrind (exact, unlike timings here), in process and for the
# servers alone under the load generator: micro/instructions.md, which the
# report shows. And bench/profile.sh shows where a message's time goes at a
# fixed rate (50k msgs/s over 1000 connections, 64 B: the fixed-rate cells
# where coring's CPU per message is furthest from the raw server's): the
# kernel's work per message (tracepoints), the CPU time per message and its
# split into user space and kernel (perf samples): micro/profile.md.
# Servers that report their io_uring_enter count on SIGUSR1 (coring's with
# --stats, uring_echo) are asked before and after each run: messages per
# io_uring_enter per cell.
# Only processes this script started are ever signalled.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
source scripts/deps.sh

report_only=0 quick=0 tls=0 steer_rx=0 cc='' micro=1 rounds=3 settle=0 seconds=1.0 warmup=0.3 idle_conns=10000 write_results=1
servers=coring,coring_again,coring_sbmp,uring,uring_sbmp,asio_uring,asio_epoll,epoll,epoll_sbmp
conns_list=1,16,256,1000 sizes_list=64,1024,16384,65536 modes_list=pingpong,pipe16,rate
out=${BUILD_ROOT:-build}/bench/results
user_set=()
for arg in "$@"; do
  case $arg in
    --quick) quick=1 ;;
    --tls) tls=1 ;;
    --rounds=*) rounds=${arg#*=}; user_set+=(rounds) ;;
    --settle=*) settle=${arg#*=} ;;
    --seconds=*) seconds=${arg#*=}; user_set+=(seconds) ;;
    --warmup=*) warmup=${arg#*=}; user_set+=(warmup) ;;
    --servers=*) servers=${arg#*=}; user_set+=(servers) ;;
    --conns=*) conns_list=${arg#*=}; user_set+=(conns) ;;
    --sizes=*) sizes_list=${arg#*=}; user_set+=(sizes) ;;
    --modes=*) modes_list=${arg#*=}; user_set+=(modes) ;;
    --idle-conns=*) idle_conns=${arg#*=}; user_set+=(idle) ;;
    --out=*) out=${arg#*=}; user_set+=(out) ;;
    --no-results) write_results=0; user_set+=(no-results) ;;
    --no-micro) micro=0 ;;
    --report-only) report_only=1 ;;
    --steer-rx) steer_rx=1 ;;
    --cc=*)
      cc=${arg#*=}
      if [[ ! $cc =~ ^[a-z0-9_]+$ ]]; then
        echo "bench/run.sh: --cc needs a congestion control's name, e.g. --cc=reno (got '$cc')" >&2
        exit 1
      fi
      ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/run.sh: unknown argument $arg (see --help)" >&2; exit 1 ;;
  esac
done
is_set() { [[ " ${user_set[*]:-} " == *" $1 "* ]]; }
if [ "$quick" -eq 1 ]; then  # about a minute, build included when cached
  is_set seconds || seconds=0.25
  is_set warmup || warmup=0.1
  is_set conns || conns_list=16
  is_set sizes || sizes_list=64,16384
  is_set idle || idle_conns=1000
  write_results=0
  [[ " ${user_set[*]:-} " == *" out "* ]] || out=${BUILD_ROOT:-build}/bench/quick  # keeps a full run's records
  retries=${BENCH_RETRIES:-0}  # flagged, not repeated: a minute is a minute
  micro=0
fi
if [ "$tls" -eq 1 ]; then
  is_set servers || servers=coring,coring_tls,asio_epoll,asio_tls,uring
  is_set conns || conns_list=16
  is_set sizes || sizes_list=64,1024,16384
  is_set modes || modes_list=pingpong,pipe16,rate,handshakes
  is_set idle || idle_conns=0
  micro=0
  write_results=0
  is_set out || out=${BUILD_ROOT:-build}/bench/tls-results
fi
# Every value is checked here, before anything is installed or built: a bad
# one is refused with what was wanted, instead of a run that measures
# nothing (--rounds=0 would have replaced bench/RESULTS.md with an empty
# report), runs a cell that is not one (--modes=pipe, --conns=0), or fails
# half-way (--sizes=1.5).
source bench/option_checks.sh
bad_value() { echo "bench/run.sh: $* (see --help)" >&2; exit 1; }
known_servers=(coring coring_again coring_sbmp coring_base coring_sbmp_base uring uring_sbmp asio_uring
  asio_uring_sbmp asio_epoll asio_epoll_sbmp coring_tls coring_tls_sbmp asio_tls asio_tls_sbmp
  epoll epoll_sbmp)
server_known() { [[ " ${known_servers[*]} " == *" $1 "* && $1 =~ ^[a-z_]+$ ]]; }
conns_ok() { whole_in "$1" 1 100000; }
size_ok() { whole_in "$1" 1 1048576; }  # (the load generator's largest message: 1 MiB)
mode_ok() {
  [[ $1 == pingpong || $1 == rate || $1 == handshakes ]] ||
    { [[ $1 == pipe* ]] && whole_in "${1#pipe}" 1 4096; }
}
check_list() {  # check_list OPTION VALUE CHECK WANTED: every item passes CHECK, none twice
  local option=$1 value=$2 check=$3 wanted=$4 item seen=' ' items
  list_ok "$value" || bad_value "$option wants a comma-separated list with no empty item, got '$value'"
  IFS=, read -r -a items <<<"$value"
  for item in "${items[@]}"; do
    "$check" "$item" || bad_value "$option: '$item' is not $wanted"
    [[ $seen != *" $item "* ]] || bad_value "$option names '$item' twice"
    seen+="$item "
  done
}
whole_in "$rounds" 1 1000 || bad_value "--rounds wants a whole number from 1 to 1000, got '$rounds'"
whole_in "$settle" 0 1000 || bad_value "--settle wants a whole number from 0 to 1000, got '$settle'"
seconds_in "$seconds" 0.01 3600 ||
  bad_value "--seconds wants seconds from 0.01 to 3600, got '$seconds'"
seconds_in "$warmup" 0 600 || bad_value "--warmup wants seconds from 0 to 600, got '$warmup'"
whole_in "$idle_conns" 0 100000 ||
  bad_value "--idle-conns wants a whole number from 0 to 100000, got '$idle_conns'"
[ -n "$out" ] || bad_value "--out wants a folder, got nothing"
check_list --servers "$servers" server_known "a server this script runs (${known_servers[*]})"
check_list --conns "$conns_list" conns_ok "a number of connections from 1 to 100000"
check_list --sizes "$sizes_list" size_ok "a message size in bytes from 1 to 1048576"
check_list --modes "$modes_list" mode_ok \
  "a mode: pingpong, pipeN (N in flight a connection, 1 to 4096), rate or handshakes"
if [ "$report_only" -eq 0 ]; then  # (servers coring_base, coring_sbmp_base: an earlier build's)
  for pair in coring_base:echo_server coring_sbmp_base:sbmp_echo_server; do
    [[ ",$servers," == *",${pair%%:*},"* ]] || continue
    [ -n "${BENCH_BASE:-}" ] ||
      bad_value "server ${pair%%:*} runs \$BENCH_BASE/${pair#*:}: set BENCH_BASE"
    [ -x "$BENCH_BASE/${pair#*:}" ] || bad_value "server ${pair%%:*}: no $BENCH_BASE/${pair#*:}"
  done
fi
if [ -n "$cc" ] && [ "$report_only" -eq 0 ] && [ -z "${CORING_BENCH_NETNS:-}" ]; then
  # (Checked before building: a namespace other than the host's may only
  # take a congestion control the host allows.)
  allowed=$(cat /proc/sys/net/ipv4/tcp_allowed_congestion_control 2>/dev/null || true)
  if [ "$(id -u)" -ne 0 ]; then
    echo "bench/run.sh: --cc makes a network namespace: run as root" >&2
    exit 1
  elif [[ " $allowed " != *" $cc "* ]]; then
    echo "bench/run.sh: --cc=$cc: this host lets a network namespace choose one of: ${allowed:-none} (net.ipv4.tcp_allowed_congestion_control)" >&2
    exit 1
  fi
fi
max_other=${BENCH_MAX_OTHER:-5}
[ -n "${retries:-}" ] || retries=${BENCH_RETRIES:-2}
seconds_in "$max_other" 0 100 ||
  bad_value "BENCH_MAX_OTHER wants a share of the host's CPU in % (0 to 100), got '$max_other'"
whole_in "$retries" 0 100 || bad_value "BENCH_RETRIES wants a whole number from 0 to 100, got '$retries'"
command_line="${BENCH_RETRIES:+BENCH_RETRIES=$BENCH_RETRIES }${BENCH_MAX_OTHER:+BENCH_MAX_OTHER=$BENCH_MAX_OTHER }bench/run.sh${*:+ $*}"
run_date=$(date -u '+%Y-%m-%d %H:%M UTC')
run_commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)

# gnuplot draws the plots, valgrind counts instructions (bench/instructions.sh,
# with the micro-benchmarks) and perf profiles (bench/profile.sh): needed by
# this script only, not by the tests.
# (--report-only redraws a run's report: without one, it stops before
# installing or creating anything.)
if [ "$report_only" -eq 1 ] && [ ! -f "$out/run.conf" ]; then
  echo "bench/run.sh: no run in $out (no run.conf there)" >&2
  exit 1
fi
CORING_PACKAGES+=(gnuplot-nox)
[ -z "$cc" ] || CORING_PACKAGES+=(iproute2 util-linux)  # ip, unshare
[ "$micro" -eq 0 ] || [ "$report_only" -eq 1 ] || CORING_PACKAGES+=(valgrind linux-perf)
coring_ensure_packages
mkdir -p "$out"
if [ "$report_only" -eq 1 ]; then
  # shellcheck source=/dev/null  # written by the run below
  source "$out/run.conf" || { echo "bench/run.sh: cannot read $out/run.conf" >&2; exit 1; }
  ! is_set no-results || write_results=0  # the run's own setting, unless told
else
  printf 'command_line=%q\nrounds=%q\nseconds=%q\nwrite_results=%q\nrun_date=%q\nrun_commit=%q\n' \
    "$command_line" "$rounds" "$seconds" "$write_results" "$run_date" "$run_commit" >"$out/run.conf"
fi
export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/coring-ccache}
B=${BUILD_ROOT:-build}/bench
# (--cc: built once, before the run goes into its namespace.)
built=${CORING_BENCH_BUILT:-0}
[ "$report_only" -eq 1 ] || [ "$built" = 1 ] || echo "== bench: building (Release) in $B"
[ "$report_only" -eq 1 ] || [ "$built" = 1 ] || BUILD_TARGETS="loadgen uring_echo epoll_echo asio_uring_echo asio_epoll_echo asio_tls_echo echo_server sbmp_echo_server codec_bench net_echo_bench net_sbmp_echo_bench one_loop_server" \
  coring_build "$B" -DCMAKE_BUILD_TYPE=Release -DCORING_BUILD_EXAMPLES=ON -DCORING_BUILD_TESTS=OFF \
  -DCORING_BUILD_BENCH=ON -DCORING_BUILD_FUZZ=OFF -DCORING_SANITIZE= -DCORING_WERROR=OFF >/dev/null

lo_queue=/sys/class/net/lo/queues/rx-0  # (--steer-rx steers it)
# --cc: the rest of the run, in a network namespace of its own (built and
# installed above, which may need the host's network).
if [ -n "$cc" ] && [ "$report_only" -eq 0 ]; then
  if [ -z "${CORING_BENCH_NETNS:-}" ]; then
    # (The namespace is set up by the command unshare runs in it, so the
    # settings are only ever written there.)
    # shellcheck disable=SC2016  # expanded by that shell
    netns_setup='ip link set lo up && echo "$1" >/proc/sys/net/ipv4/tcp_congestion_control'
    netns=(--net)
    if [ "$steer_rx" -eq 1 ]; then
      # The namespace's lo is steered, seen through a sysfs of its own (so
      # in a mount namespace of its own too); flow steering's table is the
      # host's, sized here for the run and put back after it.
      steer_saved=("$(cat /proc/sys/net/core/rps_sock_flow_entries)")
      trap 'echo "${steer_saved[0]}" >/proc/sys/net/core/rps_sock_flow_entries' EXIT
      trap 'exit 130' INT TERM
      echo 32768 >/proc/sys/net/core/rps_sock_flow_entries
      netns+=(--mount)
      # (That sysfs hides the host's tracefs, which bench/profile.sh's
      # tracepoints need: mounted again inside, where the kernel has one.)
      netns_setup="mount -t sysfs sysfs /sys && { mount -t tracefs nodev /sys/kernel/tracing || true; }"' && '"$netns_setup && echo 3 >$lo_queue/rps_cpus"
      netns_setup+=" && echo 32768 >$lo_queue/rps_flow_cnt"
    fi
    # shellcheck disable=SC2016  # expanded by that shell
    unshare "${netns[@]}" -- sh -c "$netns_setup"' && shift && exec "$@"' \
      sh "$cc" env CORING_BENCH_NETNS=1 CORING_BENCH_BUILT=1 "$root/bench/run.sh" "$@"
    exit
  fi
  if [ "$(cat /proc/sys/net/ipv4/tcp_congestion_control)" != "$cc" ]; then  # (the variable set by hand)
    echo "bench/run.sh: CORING_BENCH_NETNS is set, but the congestion control here is not $cc" >&2
    exit 1
  fi
fi

loadgen=$B/bench/loadgen/loadgen
tls_dir=  # the run's certificate, made when a TLS server is asked for
tls_flags() { echo "--tls_cert=$tls_dir/cert.pem --tls_key=$tls_dir/key.pem"; }
server_cmd() {  # server_cmd NAME: prints the command line (after taskset)
  case $1 in
    coring | coring_again) echo "$B/examples/net/echo_server --host=127.0.0.1 --port=0 --threads=1 --stats" ;;
    coring_sbmp) echo "$B/examples/net/sbmp_echo_server --host=127.0.0.1 --port=0 --threads=1 --stats" ;;
    coring_base) echo "${BENCH_BASE:?coring_base needs BENCH_BASE}/echo_server --host=127.0.0.1 --port=0 --threads=1" ;;
    coring_sbmp_base) echo "${BENCH_BASE:?coring_sbmp_base needs BENCH_BASE}/sbmp_echo_server --host=127.0.0.1 --port=0 --threads=1 --stats" ;;
    uring) echo "$B/bench/baselines/uring_echo --port=0" ;;
    uring_sbmp) echo "$B/bench/baselines/uring_echo --port=0 --sbmp" ;;
    asio_uring) echo "$B/bench/baselines/asio_uring_echo --port=0" ;;
    asio_uring_sbmp) echo "$B/bench/baselines/asio_uring_echo --port=0 --sbmp" ;;
    asio_epoll) echo "$B/bench/baselines/asio_epoll_echo --port=0" ;;
    asio_epoll_sbmp) echo "$B/bench/baselines/asio_epoll_echo --port=0 --sbmp" ;;
    coring_tls) echo "$B/examples/net/echo_server --host=127.0.0.1 --port=0 --threads=1 $(tls_flags)" ;;
    coring_tls_sbmp) echo "$B/examples/net/sbmp_echo_server --host=127.0.0.1 --port=0 --threads=1 $(tls_flags)" ;;
    asio_tls) echo "$B/bench/baselines/asio_tls_echo --port=0 $(tls_flags)" ;;
    asio_tls_sbmp) echo "$B/bench/baselines/asio_tls_echo --port=0 --sbmp $(tls_flags)" ;;
    epoll) echo "$B/bench/baselines/epoll_echo --port=0" ;;
    epoll_sbmp) echo "$B/bench/baselines/epoll_echo --port=0 --sbmp" ;;
    *) echo "bench/run.sh: unknown server $1" >&2; return 1 ;;
  esac
}
server_proto() { [[ $1 == *sbmp* ]] && echo sbmp || echo raw; }
server_tls() { [[ $1 == *_tls || $1 == *_tls_sbmp ]]; }
rate_for_size() {  # the offered load of the fixed-rate mode, msgs/s in total
  if [ "$1" -le 1024 ]; then echo 50000; elif [ "$1" -le 16384 ]; then echo 20000; else echo 5000; fi
}

mkdir -p "$out"
work=$(mktemp -d)
runs=$out/runs.jsonl
[ "$report_only" -eq 1 ] || : >"$runs"
declare -A pid_of port_of
started=()
cleanup() {
  for p in "${started[@]}"; do
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$work"
  steer_rx_restore
}
# --steer-rx: receive packet/flow steering on lo, undone by cleanup().
steer_saved=()
steer_rx_on() {
  if [ "$(id -u)" -ne 0 ] || [ ! -w "$lo_queue/rps_cpus" ]; then
    echo "bench/run.sh: --steer-rx writes $lo_queue and net.core.rps_sock_flow_entries: run as root" >&2
    exit 1
  fi
  steer_saved=("$(cat /proc/sys/net/core/rps_sock_flow_entries)" "$(cat "$lo_queue/rps_flow_cnt")"
    "$(cat "$lo_queue/rps_cpus")")
  echo 32768 >/proc/sys/net/core/rps_sock_flow_entries
  echo 32768 >"$lo_queue/rps_flow_cnt"
  echo 3 >"$lo_queue/rps_cpus"  # CPUs 0 and 1: the server's and the load generator's
}
steer_rx_restore() {
  [ "${#steer_saved[@]}" -eq 3 ] || return 0
  echo "${steer_saved[0]}" >/proc/sys/net/core/rps_sock_flow_entries || true
  echo "${steer_saved[1]}" >"$lo_queue/rps_flow_cnt" || true
  echo "${steer_saved[2]}" >"$lo_queue/rps_cpus" || true
  steer_saved=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# (With --cc, the namespace's loopback was steered as it was made.)
[ "$steer_rx" -eq 0 ] || [ "$report_only" -eq 1 ] || [ -n "$cc" ] || steer_rx_on

start_server() {  # start_server NAME: sets pid_of[NAME], port_of[NAME]
  local name=$1 cmd
  cmd=$(server_cmd "$name")
  # shellcheck disable=SC2086  # the command is meant to split into words
  taskset -c 0 $cmd >"$work/$name.out" 2>&1 &
  local pid=$!
  started+=("$pid")
  local address=
  for _ in $(seq 200); do
    # The background job may not have created the file yet: sed then fails,
    # which must not end the script (set -e).
    address=$(sed -n '1s/.*listening on \([^ ]*\).*/\1/p' "$work/$name.out" 2>/dev/null || true)
    [ -n "$address" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.025
  done
  if [ -z "$address" ]; then
    echo "bench: $name did not start:" >&2
    cat "$work/$name.out" >&2
    exit 1
  fi
  pid_of[$name]=$pid
  port_of[$name]=${address##*:}
}

stop_server() {  # stop_server NAME: SIGTERM, wait; keeps its output in $out/logs
  local name=$1 pid=${pid_of[$1]}
  kill -TERM "$pid" 2>/dev/null || true
  local rc=0
  for _ in $(seq 400); do kill -0 "$pid" 2>/dev/null || break; sleep 0.025; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || rc=$?
  mkdir -p "$out/logs"
  cp "$work/$name.out" "$out/logs/$name.round$round.log"
  [ "$rc" -eq 0 ] || echo "bench: $name exited $rc" >&2
  local keep=()
  for p in "${started[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
  started=("${keep[@]}")
}

IFS=, read -r -a server_names <<<"$servers"
IFS=, read -r -a conns_values <<<"$conns_list"
IFS=, read -r -a size_values <<<"$sizes_list"
IFS=, read -r -a mode_values <<<"$modes_list"
for s in "${server_names[@]}"; do
  server_cmd "$s" >/dev/null
  if server_tls "$s" && [ -z "$tls_dir" ]; then
    tls_dir=$work/tls
    mkdir -p "$tls_dir"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
      -subj /CN=localhost -addext subjectAltName=DNS:localhost -keyout "$tls_dir/key.pem" \
      -out "$tls_dir/cert.pem" 2>/dev/null || { echo "bench: openssl req failed" >&2; exit 1; }
  fi
done
cells=()
for m in "${mode_values[@]}"; do
  for c in "${conns_values[@]}"; do
    if [ "$m" = handshakes ]; then cells+=("$m:$c:0"); continue; fi  # no payload
    for z in "${size_values[@]}"; do cells+=("$m:$c:$z"); done
  done
done
total=$((rounds * ${#cells[@]} * ${#server_names[@]}))
done_runs=0 disturbed_runs=0 error_runs=0
tty=0
[ -t 2 ] && tty=1
start_time=$SECONDS
progress() {  # progress TEXT
  local el=$((SECONDS - start_time)) eta=0
  [ "$done_runs" -gt 0 ] && eta=$(((total - done_runs) * el / done_runs))
  local line
  line=$(printf '[%d/%d %dm%02ds, ~%dm%02ds left] %s' "$done_runs" "$total" $((el / 60)) \
    $((el % 60)) $((eta / 60)) $((eta % 60)) "$1")
  if [ "$tty" -eq 1 ]; then
    printf '\r\033[K%s' "$line" >&2
  elif [ $((done_runs % 10)) -eq 0 ] || [ "$done_runs" -eq "$total" ]; then
    echo "$line" >&2
  fi
}

# The io_uring_enter calls the server made so far, as it reports them on
# SIGUSR1 (coring: "submit_calls=N" of its ring counters, with --stats;
# uring_echo: "enters=N"); empty for servers that do not tell.
enter_counts() {  # enter_counts FILE: every count the server printed, in order
  sed -n 's/.*submit_calls=\([0-9]*\).*/\1/p; s/^uring_echo: enters=\([0-9]*\)$/\1/p' "$1"
}
server_enters() {  # server_enters NAME
  case $1 in coring | coring_again | coring_sbmp | coring_sbmp_base | uring | uring_sbmp) ;; *) return 0 ;; esac
  local f=$work/$1.out n0 n
  n0=$(enter_counts "$f" | wc -l)
  kill -USR1 "${pid_of[$1]}" 2>/dev/null || return 0
  for _ in $(seq 100); do
    n=$(enter_counts "$f" | wc -l)
    [ "$n" -gt "$n0" ] && break
    sleep 0.005
  done
  [ "${n:-0}" -gt "$n0" ] && enter_counts "$f" | tail -1
  return 0
}

# one_run NAME MODE CONNS SIZE: runs the load generator, appends a record.
one_run() {
  local name=$1 mode=$2 conns=$3 size=$4 args=() attempt line other
  case $mode in
    pingpong) args=(--depth=1) ;;
    pipe*) args=(--depth="${mode#pipe}") ;;
    rate) args=(--rate="$(rate_for_size "$size")") ;;
    handshakes)
      server_tls "$name" || return 0  # a plain server has no handshakes to count
      args=(--handshakes) ;;
  esac
  server_tls "$name" && args+=(--tls --tls-ca="$tls_dir/cert.pem")
  # A deep pipeline of big messages (1000 x 16 x 64 KiB is 1 GiB in flight)
  # needs time to fill and to turn over: at least 2 s of measuring per 512
  # MiB in flight. And a server that holds what is in flight in memory of
  # its own (coring_sbmp: a frame buffer per frame under way) first has to
  # get it from the system: 1000 x 64 KiB ping-pong ran at half speed for
  # its first second. So the warm-up is 1 s per 64 MiB in flight (at most
  # 3 s): the cell measures the steady state.
  local depth=1 dur warm
  [[ $mode == pipe* ]] && depth=${mode#pipe}
  read -r warm dur < <(awk -v b=$((conns * depth * size)) -v w="$warmup" -v d="$seconds" \
    'BEGIN { t = b / 536870912; u = b / 67108864; if (u > 3) u = 3
             printf "%.2f %.2f\n", (w > u ? w : u), (d > 2 * t ? d : 2 * t) }')
  local enters0 enters1 per_enter=
  for attempt in $(seq 0 "$retries"); do
    enters0=$(server_enters "$name")
    line=$("$loadgen" --port="${port_of[$name]}" --proto="$(server_proto "$name")" \
      --conns="$conns" --size="$size" "${args[@]}" --duration="$dur" --warmup="$warm" \
      --cpu=1 --server-pid="${pid_of[$name]}" --label="$mode" 2>>"$work/loadgen.err") || true
    enters1=$(server_enters "$name")
    if [ -z "$line" ]; then
      line='{"label":"'$mode'","errors":1,"first_error":"loadgen printed nothing"}'
    fi
    # Handshakes go into the columns of messages.
    [ "$mode" = handshakes ] && line=$(sed -e 's/"handshakes_per_sec"/"msgs_per_sec"/' \
      -e 's/_us_per_handshake"/_us_per_msg"/g' <<<"$line")
    other=$(sed -n 's/.*"host_other_pct":\([0-9.]*\).*/\1/p' <<<"$line")
    if awk -v o="${other:-0}" -v m="$max_other" 'BEGIN { exit !(o <= m) }'; then
      break
    fi
  done
  # Messages per io_uring_enter over the whole run (warm-up included: the
  # counts bracket it), from the measured rate.
  local rate_now
  rate_now=$(sed -n 's/.*"msgs_per_sec":\([0-9.]*\).*/\1/p' <<<"$line")
  if [ -n "$enters0" ] && [ -n "$enters1" ] && [ -n "$rate_now" ]; then
    per_enter=$(awk -v r="$rate_now" -v w="$warm" -v u="$dur" -v d=$((enters1 - enters0)) \
      'BEGIN { if (d > 0) printf "%.1f", r * (w + u) / d }')
  fi
  [ -z "$per_enter" ] || line="${line%\}},\"msgs_per_enter\":$per_enter}"
  local disturbed=0
  awk -v o="${other:-0}" -v m="$max_other" 'BEGIN { exit !(o > m) }' && disturbed=1
  disturbed_runs=$((disturbed_runs + disturbed))
  grep -q '"errors":0,' <<<"$line" || error_runs=$((error_runs + 1))
  echo "{\"server\":\"$name\",\"cell\":\"$mode:$conns:$size\",\"round\":$round,\"attempts\":$((attempt + 1)),\"disturbed\":$disturbed,${line#\{}" >>"$runs"
  done_runs=$((done_runs + 1))
  local rate
  rate=$(sed -n 's/.*"msgs_per_sec":\([0-9]*\).*/\1/p' <<<"$line")
  progress "round $round/$rounds_shown $mode ${conns}x${size}B $name: ${rate:-?} msgs/s"
}

matrix_rounds=$rounds  # (the report's: rounds past them are settling rounds)
if [ "$report_only" -eq 1 ]; then
  rounds=0 idle_conns=0
else
  settling=''
  [ "$settle" -le "$rounds" ] || settling=" (cells with a split verdict: up to $settle)"
  echo "== bench: ${#server_names[@]} servers x ${#cells[@]} cells x $rounds rounds$settling," \
    "${seconds}s each (+${warmup}s warm-up); server on CPU 0, load generator on CPU 1"
fi
rounds_shown=$rounds
for round in $(seq 1 "$rounds"); do
  for s in "${server_names[@]}"; do start_server "$s"; done
  n=${#server_names[@]}
  for cell in "${cells[@]}"; do
    IFS=: read -r mode conns size <<<"$cell"
    for i in $(seq 0 $((n - 1))); do  # the order rotates each round
      one_run "${server_names[$(((i + round - 1) % n))]}" "$mode" "$conns" "$size"
    done
  done
  for s in "${server_names[@]}"; do stop_server "$s"; done
done
# Settling (--settle): the cells whose verdict on a target is split get
# another round, by the servers the targets compare, taking turns as above,
# until none is split (bench/report.awk lists them) or they had --settle
# rounds.
settle_servers=()
for s in coring coring_again uring asio_uring coring_sbmp uring_sbmp; do  # (the control: its rounds too)
  [[ " ${server_names[*]} " != *" $s "* ]] || settle_servers+=("$s")
done
rounds_shown=$settle
while [ "$report_only" -eq 0 ] && [ "$round" -lt "$settle" ] && [ "${#settle_servers[@]}" -gt 1 ]; do
  mapfile -t split_cells < <(awk -v list_unsettled=1 -v settle="$settle" -f bench/report.awk "$runs")
  [ "${#split_cells[@]}" -gt 0 ] || break
  round=$((round + 1))
  n=${#settle_servers[@]}
  total=$((done_runs + ${#split_cells[@]} * n))  # (this round's: whether more follow is not known)
  for s in "${settle_servers[@]}"; do start_server "$s"; done
  for cell in "${split_cells[@]}"; do
    IFS=: read -r mode conns size <<<"$cell"
    for i in $(seq 0 $((n - 1))); do
      one_run "${settle_servers[$(((i + round - 1) % n))]}" "$mode" "$conns" "$size"
    done
  done
  for s in "${settle_servers[@]}"; do stop_server "$s"; done
done
[ "$tty" -eq 1 ] && echo >&2

# Memory: idle SBMP connections (HELLO done), a fresh server each.
idle_file=$out/idle.jsonl
[ "$report_only" -eq 1 ] || : >"$idle_file"
if [ "$idle_conns" -gt 0 ]; then
  round=idle
  for s in coring_sbmp asio_uring_sbmp asio_epoll_sbmp uring_sbmp epoll_sbmp; do
    echo "== bench: memory, $idle_conns idle SBMP connections to $s" >&2
    start_server "$s"
    line=$("$loadgen" --port="${port_of[$s]}" --proto=sbmp --idle --conns="$idle_conns" \
      --cpu=1 --server-pid="${pid_of[$s]}" --label=idle 2>>"$work/loadgen.err") || true
    echo "{\"server\":\"$s\",${line#\{}" >>"$idle_file"
    stop_server "$s"
  done
fi

# Micro-benchmarks, in process on CPU 0: the header's time side by side with
# the code as first committed, and the allocation counters.
micro_dir=$out/micro
# bench/profile.sh's load (the report names it).
profile_load=(--rate=50000 --conns=1000 --size=64 --rounds=3)
if [ "$report_only" -eq 0 ]; then
  rm -rf "$micro_dir"
  if [ "$micro" -eq 1 ]; then
    mkdir -p "$micro_dir"
    for spec in "codec/codec_bench:^BM_Header(Batch|EncodeDecode)|^BM_CodecEcho" "net/net_echo_bench:." \
      "net/net_sbmp_echo_bench:."; do
      bin=${spec%%:*}
      echo "== bench: micro-benchmarks, ${bin#*/}" >&2
      # A failure is reported and counted, and the report is still written.
      taskset -c 0 "$B/bench/$bin" --benchmark_filter="${spec#*:}" --benchmark_repetitions=5 \
        --benchmark_enable_random_interleaving=true --benchmark_out_format=json \
        --benchmark_out="$micro_dir/${bin#*/}.json" >/dev/null 2>"$work/micro.err" || {
        echo "bench: ${bin#*/} failed (left out of the report):" >&2
        cat "$work/micro.err" >&2
        rm -f "$micro_dir/${bin#*/}.json"
        error_runs=$((error_runs + 1))
      }
    done
    echo "== bench: instructions per message (callgrind)" >&2
    BUILD_ROOT=${BUILD_ROOT:-build} bench/instructions.sh >"$micro_dir/instructions.md" || {
      echo "bench: bench/instructions.sh failed (left out of the report)" >&2
      rm -f "$micro_dir/instructions.md"
      error_runs=$((error_runs + 1))
    }
    echo "== bench: user and kernel time per message at a fixed rate (perf)" >&2
    BUILD_ROOT=${BUILD_ROOT:-build} bench/profile.sh --servers=coring,uring,coring_sbmp,uring_sbmp \
      "${profile_load[@]}" --settle=2 --seconds=5 --out="$micro_dir/profile" >"$micro_dir/profile.md" || {
      echo "bench: bench/profile.sh failed (left out of the report)" >&2
      rm -f "$micro_dir/profile.md"
      error_runs=$((error_runs + 1))
    }
  fi
fi
micro_files=()
[ ! -d "$micro_dir" ] || mapfile -t micro_files < <(find "$micro_dir" -name '*.json' | sort)

# Report: markdown, JSON, plot data (bench/report.awk), then gnuplot.
host="$(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), kernel $(uname -r)"
[[ " $command_line " != *" --steer-rx "* ]] || host+="; loopback receive steering on (--steer-rx)"
if [[ " $command_line " == *" --cc="* ]]; then
  run_cc=${command_line##* --cc=}  # (the last one: it is the one in effect)
  host+="; TCP congestion control ${run_cc%% *}, in a network namespace of its own (--cc)"
else
  host+="; TCP congestion control $(cat /proc/sys/net/ipv4/tcp_congestion_control 2>/dev/null || echo unknown)"
fi
awk -v out="$out" -v cmdline="$command_line" -v host="$host" -v rounds="$matrix_rounds" \
  -v seconds="$seconds" -v max_other="$max_other" -v date="$run_date" -v commit="$run_commit" \
  -f bench/report.awk "$runs" "$idle_file" "${micro_files[@]}"
# Instructions per message (bench/instructions.sh) and where the time goes
# at a fixed rate (bench/profile.sh), at the end of the micro-benchmarks'
# section.
if [ -f "$micro_dir/instructions.md" ] || [ -f "$micro_dir/profile.md" ]; then
  # (The simulated cache is fixed, so that counts compare between runs; the
  # host's own L2 is said beside it: hosts differ, and this one changed.)
  l2=$(cat /sys/devices/system/cpu/cpu0/cache/index2/size 2>/dev/null || true)
  awk -v instructions="$micro_dir/instructions.md" -v profile="$micro_dir/profile.md" \
    -v profile_load="${profile_load[*]}" -v l2="${l2:-unknown}" '
    /^## Details/ {
      if ((getline line < instructions) > 0) {
        print "User-space instructions and cache misses per message, counted by callgrind (bench/instructions.sh:"
        print "first the in-process echoes, server and client in one process, from the difference between two"
        print "runs of fixed iteration counts; then each server alone under the load generator at a fixed rate;"
        print "a miss is a line from beyond a simulated 512 KiB cache, the same size on every host so that counts compare;"
        print "this host'"'"'s L2 per core: " l2 "):"
        print ""
        do print line; while ((getline line < instructions) > 0)
        print ""
      }
      if ((getline line < profile) > 0) {
        print "Where a message'"'"'s time goes at a fixed rate (bench/profile.sh " profile_load ":"
        print "each server alone under the load generator, taking turns; medians of the rounds). Per message: system calls and the"
        print "kernel'"'"'s work (tracepoints: io_uring submissions and completions, requests punted to io-wq, context switches"
        print "away from the server, packets sent); CPU time (scheduler runtime over a second with nothing attached), split"
        print "into user space and kernel by the share of perf'"'"'s samples in each. (Seconds, not the matrix'"'"'s rounds: the"
        print "fixed-rate cells above compare CPU per message; this says where it goes.)"
        print ""
        do print line; while ((getline line < profile) > 0)
        print ""
      }
    }
    { print }' "$out/RESULTS.md" >"$work/results.md" && mv "$work/results.md" "$out/RESULTS.md"
fi
# Ring counters the servers print when they stop (whole rounds, all cells).
{
  echo
  echo "## Ring counters at exit (whole round, every cell; round 1)"
  echo
  echo '```'
  for f in "$out"/logs/uring.round1.log "$out"/logs/uring_sbmp.round1.log; do
    [ -f "$f" ] && grep -h 'io_uring_enter' "$f"
  done
  [ -f "$out/logs/coring_sbmp.round1.log" ] &&
    grep -h -A1 '^thread 0' "$out/logs/coring_sbmp.round1.log" | grep 'ring:' |
    sed 's/^ */sbmp_echo_server: /' | tail -1
  echo '```'
} >>"$out/RESULTS.md"
if command -v gnuplot >/dev/null; then
  (cd "$out" && gnuplot "$root/bench/plots.gp") || echo "bench: gnuplot failed" >&2
fi
if [ "$write_results" -eq 1 ]; then
  cp "$out/RESULTS.md" bench/RESULTS.md
  cp "$out/results.json" bench/results.json
  mkdir -p bench/plots
  cp "$out"/*.png bench/plots/ 2>/dev/null || true
  echo "== bench: wrote bench/RESULTS.md, bench/results.json, bench/plots/"
fi
echo
sed -n '/^## Summary/,/^## Details/p' "$out/RESULTS.md" | sed '$d'
[ "$report_only" -eq 1 ] && error_runs=0
echo "== bench: $done_runs runs, $disturbed_runs disturbed, $error_runs with errors;" \
  "report in $out/RESULTS.md ($((SECONDS / 60))m$((SECONDS % 60))s)"
[ "$error_runs" -eq 0 ]
