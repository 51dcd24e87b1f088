#!/usr/bin/env bash
# bench.loadgen: the benchmark's load generator against real servers, briefly:
# zero verification errors against the raw liburing baseline (raw and SBMP;
# the load on io_uring, the default, and on epoll),
# the epoll baseline's SBMP mode (frames split across reads: 64 KiB), coring's echo_server and sbmp_echo_server; and a mismatch (exit 1) against
# a server that flips one bit; a bad option value refused. With ASIO_TLS_ECHO (built when OpenSSL was
# found): the load generator's --tls against asio::ssl, verified against a
# certificate made here, a wrong server name refused, and --handshakes.
# No timing is asserted: figures belong to bench/run.sh.
#   loadgen_test.sh LOADGEN URING_ECHO EPOLL_ECHO ECHO_SERVER SBMP_ECHO_SERVER [ASIO_TLS_ECHO]
set -uo pipefail
loadgen=$1 uring=$2 epoll=$3 coring=$4 coring_sbmp=$5 asio_tls=${6:-}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

start() {  # start NAME CMD...: sets $port and $pid
  local name=$1; shift
  "$@" >"$work/$name.out" 2>&1 &
  pid=$!
  pids+=("$pid")
  port=
  for _ in $(seq 200); do
    port=$(sed -n '1s/.*listening on [^ ]*:\([0-9]*\).*/\1/p' "$work/$name.out" 2>/dev/null)
    [ -n "$port" ] && return 0
    sleep 0.025
  done
  fail "$name did not start: $(cat "$work/$name.out")"
  return 1
}
stop() {  # stop: SIGTERM to $pid, which must exit 0
  kill -TERM "$pid"
  local rc=0
  wait "$pid" || rc=$?
  [ "$rc" -eq 0 ] || fail "server pid $pid exited $rc after SIGTERM"
}
expect_clean() {  # expect_clean WHAT LOADGEN_ARGS...
  local what=$1; shift
  local line rc=0
  line=$("$loadgen" --port="$port" --server-pid="$pid" --duration=0.4 --warmup=0.1 "$@") || rc=$?
  echo "$what: $line"
  [ "$rc" -eq 0 ] || fail "$what: loadgen exit $rc"
  grep -q '"errors":0,' <<<"$line" || fail "$what: errors"
  if grep -q '"mismatches":[1-9]' <<<"$line"; then fail "$what: verification errors"; fi
  if grep -q '"msgs":0,' <<<"$line"; then fail "$what: no message echoed"; fi
  # The load runs on io_uring unless told otherwise (or TLS: OpenSSL's own reads).
  local engine=uring
  [[ " $* " == *" --engine=epoll "* || " $* " == *" --tls "* ]] && engine=epoll
  if [[ " $* " != *" --idle "* ]] && ! grep -q "\"engine\":\"$engine\"" <<<"$line"; then
    fail "$what: the load did not run on $engine"
  fi
  # The server's CPU time is read in ns (schedstat), not 10 ms ticks: a
  # server that echoed anything used some.
  if grep -Eq '"server_cpu_s":(0\.000|-),' <<<"$line"; then fail "$what: server CPU not measured"; fi
  # Its own CPU per message, and the user-space part of it (no more); the
  # server's TCP segments per message (the load generator's sockets'
  # counts, TCP_INFO): every echo came back in some, and every message went
  # out in some; those with data are at most all of them. Each found by its
  # name wherever it is in the line; the checks that fail are printed.
  local bad
  if [[ " $* " != *" --idle "* ]]; then
    bad=$(awk 'function field(name,  s) {
                 if (!match($0, "\"" name "\":[0-9.]+")) return ""
                 s = substr($0, RSTART, RLENGTH); sub(/.*:/, "", s); return s
               }
               { all = field("client_us_per_msg"); user = field("client_user_us_per_msg")
                 if (!(all != "" && user != "" && user + 0 <= all + 0))
                   print "client_us_per_msg and client_user_us_per_msg (at most the first)"
                 out = field("server_segs_out_per_msg"); data = field("server_data_segs_out_per_msg")
                 in_ = field("server_segs_in_per_msg")
                 if (!(out != "" && data != "" && in_ != "" && out + 0 > 0 && data + 0 > 0 &&
                       data + 0 <= out + 0 && in_ + 0 > 0))
                   print "server_segs_out_per_msg, server_data_segs_out_per_msg (> 0, at most the first), server_segs_in_per_msg" }' <<<"$line")
    [ -z "$bad" ] || fail "$what: $bad"
  fi
  return 0
}

start uring "$uring" --port=0 &&
  expect_clean "uring raw pipelined" --conns=8 --size=1000 --depth=8 &&
  expect_clean "uring raw ping-pong 64K" --conns=2 --size=65536 --depth=1 &&
  expect_clean "uring raw rate" --conns=4 --size=64 --rate=2000 &&
  expect_clean "uring raw pipelined, epoll engine" --engine=epoll --conns=8 --size=1000 --depth=8 &&
  expect_clean "uring raw pipelined 64K, epoll engine" --engine=epoll --conns=2 --size=65536 \
    --depth=4 &&
  expect_clean "uring raw rate, epoll engine" --engine=epoll --conns=4 --size=64 --rate=2000 &&
  stop
rc=0
out=$("$loadgen" --port=1 --engine=kqueue 2>&1) || rc=$?
if [ "$rc" -ne 1 ] || ! grep -q "engine must be uring or epoll" <<<"$out"; then
  fail "--engine=kqueue: exit $rc, '$out'"
fi
start uring_sbmp "$uring" --port=0 --sbmp &&
  expect_clean "uring sbmp pipelined" --proto=sbmp --conns=8 --size=3000 --depth=8 && stop
start epoll_sbmp "$epoll" --port=0 --sbmp &&
  expect_clean "epoll sbmp pipelined 64K" --proto=sbmp --conns=8 --size=65536 --depth=8 &&
  expect_clean "epoll sbmp ping-pong" --proto=sbmp --conns=4 --size=100 --depth=1 && stop
start coring "$coring" --host=127.0.0.1 --port=0 --threads=1 &&
  expect_clean "coring echo_server" --conns=8 --size=1000 --depth=8 && stop
start coring_sbmp "$coring_sbmp" --host=127.0.0.1 --port=0 --threads=1 &&
  expect_clean "coring sbmp_echo_server" --proto=sbmp --conns=8 --size=1000 --depth=8 &&
  expect_clean "coring sbmp_echo_server idle" --proto=sbmp --conns=50 --idle && stop

# A bad number is refused whole, naming the option (strtoul and atof took
# "-1" connections for 4294967295, "abc" for 0, "10x" for 10).
for bad in --conns=-1 --conns=10x --conns=abc --conns=1.5 --size=0 --size=1048577 --depth=0 \
  --rate=-1 --rate=abc --duration=0 --duration=nan --warmup=-1 --cpu=99999 --server-pid=abc \
  --max-outstanding=0 --hold=-1; do
  rc=0
  out=$("$loadgen" --port=1 "$bad" 2>&1) || rc=$?
  if [ "$rc" -ne 1 ] || ! grep -qF -- "loadgen: ${bad%%=*} wants a" <<<"$out"; then
    fail "loadgen $bad: exit $rc, $out"
  fi
done
# refused WANT PROGRAM ARGS...: exit 1, and WANT on its output.
refused() {
  local want=$1 rc=0 out; shift
  out=$(timeout 10 "$@" 2>&1 </dev/null) || rc=$?
  if [ "$rc" -ne 1 ] || ! grep -qF -- "$want" <<<"$out"; then fail "$*: exit $rc, $out"; fi
}
refused "loadgen: --port wants a whole number from 1 to 65535" "$loadgen" --port=99999
# The baselines too (a port of 99999 was 34463).
refused "uring_echo: --port wants a whole number from 0 to 65535" "$uring" --port=99999
refused "uring_echo: --buffer-size wants a whole number" "$uring" --port=0 --buffer-size=0
refused "uring_echo: --buffers must be a power of two" "$uring" --port=0 --buffers=3
refused "epoll_echo: --port wants a whole number" "$epoll" --port=abc
refused "epoll_echo: --mangle-after wants a whole number" "$epoll" --port=0 --mangle-after=-3

# A server that flips one bit at byte 5000 of every connection's echo: the
# load generator must report mismatches and exit 1, on either engine.
for engine in uring epoll; do
  start mangler "$epoll" --port=0 --mangle-after=5000 || continue
  rc=0
  line=$("$loadgen" --port="$port" --engine="$engine" --conns=2 --size=1000 --depth=4 \
    --duration=0.3 --warmup=0) || rc=$?
  echo "mangling server ($engine): $line"
  [ "$rc" -eq 1 ] || fail "mangling server ($engine): loadgen exit $rc, want 1"
  grep -q '"mismatches":2,' <<<"$line" || fail "mangling server ($engine): want 2 mismatches"
  grep -q 'differs in message 5 near byte 0' <<<"$line" ||
    fail "mangling server ($engine): wrong place"
  stop
done
if [ -n "$asio_tls" ]; then
  if openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost -keyout "$work/key.pem" \
    -out "$work/cert.pem" 2>"$work/openssl.err"; then
    tls=(--tls --tls-ca="$work/cert.pem")
    start asio_tls "$asio_tls" --port=0 --tls_cert="$work/cert.pem" --tls_key="$work/key.pem" &&
      expect_clean "asio_tls raw pipelined" "${tls[@]}" --conns=4 --size=20000 --depth=8 &&
      expect_clean "asio_tls raw ping-pong" "${tls[@]}" --conns=4 --size=64 --depth=1 && {
      rc=0
      line=$("$loadgen" --port="$port" "${tls[@]}" --handshakes --conns=4 --duration=0.3 \
        --warmup=0.1) || rc=$?
      echo "asio_tls handshakes: $line"
      [ "$rc" -eq 0 ] || fail "handshakes: loadgen exit $rc"
      grep -q '"handshakes":[1-9]' <<<"$line" || fail "handshakes: none counted"
      rc=0
      line=$("$loadgen" --port="$port" "${tls[@]}" --tls-server-name=wrong.example --conns=1 \
        --duration=0.2 --warmup=0) || rc=$?
      echo "asio_tls wrong name: $line"
      [ "$rc" -eq 1 ] || fail "wrong server name: loadgen exit $rc, want 1"
      grep -q 'hostname mismatch' <<<"$line" || fail "wrong server name: not reported"
      stop
    }
  else
    fail "openssl req: $(cat "$work/openssl.err")"
  fi
fi
echo "$failures failure(s)"
[ "$failures" -eq 0 ]
