#!/usr/bin/env bash
# The whole test suite, as README.md gives it and .ci/run calls it:
#   1. RelWithDebInfo build: every test, the benchmarks and examples compile;
#   2. AddressSanitizer + UndefinedBehaviorSanitizer build: every test again;
#   3. ThreadSanitizer build: the cross-thread tests of pool/ and core/;
#   4. clang 14 libFuzzer build: the fuzz targets, each for a bounded time.
# Exits non-zero if anything failed; ends with the summary of all passes.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
coring_ensure_packages || exit 1
export JOBS=${JOBS:-$(nproc)}
export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/coring-ccache}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
B=${BUILD_ROOT:-build}

failed_passes=()
summary=()
passed_total=0
failed_total=0

# run_pass NAME BUILD_DIR CTEST_ARGS... -- CMAKE_ARGS...
run_pass() {
  local name=$1 dir=$2; shift 2
  local ctest_args=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do ctest_args+=("$1"); shift; done
  shift
  echo "== [$name] build ($dir)"
  if ! coring_build "$dir" "$@"; then
    failed_passes+=("$name: build failed"); summary+=("$name: build failed"); return
  fi
  echo "== [$name] ctest"
  local log="$dir/ctest.log"
  ctest --test-dir "$dir" --output-on-failure --no-tests=error -j "$JOBS" "${ctest_args[@]}" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  local line; line=$(grep -E 'tests passed, [0-9]+ tests failed out of' "$log" | tail -1)
  local total failed
  total=$(sed -nE 's/.* out of ([0-9]+).*/\1/p' <<<"$line"); total=${total:-0}
  failed=$(sed -nE 's/.*, ([0-9]+) tests failed.*/\1/p' <<<"$line"); failed=${failed:-0}
  passed_total=$((passed_total + total - failed))
  failed_total=$((failed_total + failed))
  summary+=("$name: ${line:-no ctest summary}")
  [ "$rc" -eq 0 ] || failed_passes+=("$name: ctest exit $rc")
}

run_pass release "$B/release" -- \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo
run_pass asan-ubsan "$B/asan" -- \
  -DCMAKE_BUILD_TYPE=Debug -DCORING_SANITIZE=address,undefined -DCORING_BUILD_BENCH=OFF
BUILD_TARGETS="tests_pool tests_core" run_pass tsan "$B/tsan" -L 'pool|core' -- \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCORING_SANITIZE=thread -DCORING_BUILD_BENCH=OFF \
  -DCORING_BUILD_EXAMPLES=OFF
BUILD_TARGETS="fuzzers" run_pass fuzz "$B/fuzz" -L fuzz -- \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++-14 \
  -DCORING_SANITIZE=address,undefined -DCORING_BUILD_FUZZ=ON -DCORING_BUILD_TESTS=OFF \
  -DCORING_BUILD_BENCH=OFF -DCORING_BUILD_EXAMPLES=OFF -DCORING_FUZZ_SECONDS="$FUZZ_SECONDS"

echo
echo "== summary"
for s in "${summary[@]}"; do echo "   $s"; done
for f in "${failed_passes[@]}"; do echo "   FAILED $f"; done
echo "coring: $passed_total passed, $failed_total failed"
[ ${#failed_passes[@]} -eq 0 ]
