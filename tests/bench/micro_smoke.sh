#!/usr/bin/env bash
# micro_smoke.sh BENCH_BINARY [FILTER]: runs every benchmark of one
# micro-benchmark binary (or those FILTER, a --benchmark_filter, picks)
# briefly - 3 iterations where it reads CORING_BENCH_ITERATIONS, 1 ms
# otherwise - and fails when the binary fails (a crash, a sanitizer report)
# or a benchmark reports an error, but for a missing kernel or CPU feature.
# Timings mean nothing here: this shows that the benchmarks run to the end
# and tear down cleanly (in the AddressSanitizer pass too), which a full
# bench/run.sh would otherwise be the first to find out.
set -euo pipefail
bin=$1
filter=${2:-.}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
CORING_BENCH_ITERATIONS=3 "$bin" --benchmark_min_time=0.001 --benchmark_filter="$filter" \
  --benchmark_out="$out" --benchmark_out_format=json > /dev/null
ran=$(grep -c '"run_name"' "$out" || true)
if [ "$ran" -eq 0 ]; then
  echo "FAIL: $bin ran no benchmark" >&2
  exit 1
fi
# A feature this kernel or CPU lacks is a skip, not a failure.
environment='not supported|no PCLMULQDQ|no SSE4.2|RLIMIT_MEMLOCK|queue_init'
errors=$(grep '"error_message"' "$out" | grep -Ev "$environment" || true)
if [ -n "$errors" ]; then
  echo "FAIL: $bin reported errors:" >&2
  echo "$errors" >&2
  exit 1
fi
echo "ok: $ran benchmarks of $(basename "$bin")"
