#!/usr/bin/env bash
# bench.baseline_buffers: the hand-written baselines read as much per recv
# as coring's servers by default (NetOptions::recv_buffer_size, as
# echo_server --helpfull shows it); bench/baselines/uring_echo.c says what a
# smaller buffer cost them. Starts no server.
#   baseline_buffers_test.sh ECHO_SERVER URING_ECHO [ASIO_ECHO...]
set -uo pipefail
echo_server=$1 uring_echo=$2
shift 2
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

coring=$("$echo_server" --helpfull 2>&1 |
  sed -n 's/.*--recv_buffer_size (.*default: \([0-9][0-9]*\);.*/\1/p')
if [ -z "$coring" ]; then
  fail "echo_server --helpfull shows no default for --recv_buffer_size"
else
  echo "coring's receive buffers: $coring bytes"
  uring=$("$uring_echo" --help 2>&1 | sed -n 's/.*--buffer-size=N (\([0-9][0-9]*\)).*/\1/p')
  [ "$uring" = "$coring" ] || fail "uring_echo's buffers are '$uring' bytes, not $coring"
  for asio in "$@"; do
    got=$("$asio" --help 2>&1 | sed -n 's/^(reads up to \([0-9][0-9]*\) bytes at a time)$/\1/p')
    [ "$got" = "$coring" ] || fail "$(basename "$asio") reads '$got' bytes at a time, not $coring"
  done
fi
[ "$failures" -eq 0 ] && echo "PASS" && exit 0
exit 1
