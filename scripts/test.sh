#!/usr/bin/env bash
# The whole test suite, as README.md gives it and .ci/run calls it:
#   1. release:       g++ Release build of everything; every test runs;
#   2. asan-ubsan:    AddressSanitizer + UndefinedBehaviorSanitizer: every test again
#                     (benchmarks, baselines and load generator built and run too);
#   3. tsan:          ThreadSanitizer: the cross-thread tests of pool/ and core/;
#   4. fuzz:          clang 14 libFuzzer: the fuzz targets, each for a bounded time;
#   5. clang-release: clang 14 Release build of everything (build only);
#   6. demo:          scripts/demo.sh for a couple of seconds (the README's first command),
#                     without its benchmark part (DEMO_BENCH=0).
# Every pass has a build folder of its own and sets every coring option
# explicitly, so a cache left by another command (scripts/demo.sh, a build by
# hand) cannot change what it builds; -Werror (CORING_WERROR) is on in all.
# Exits non-zero if anything failed; ends with the summary of all passes and a
# total line that counts only the tests that ran and names every failed pass.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
source scripts/deps.sh
coring_ensure_packages || exit 1
export JOBS=${JOBS:-$(nproc)}
export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/coring-ccache}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
B=${BUILD_ROOT:-build}

failed_passes=()
summary=()
passes=0
passed_total=0
failed_total=0

# The summary line of a pass, with the time it took (SECONDS since pass_start).
pass_start=$SECONDS
note_pass() {  # note_pass NAME TEXT
  local t=$((SECONDS - pass_start))
  summary+=("$1 ($((t / 60))m$((t % 60))s): $2")
}
fail_pass() {  # fail_pass NAME REASON [DETAIL]: REASON goes into the total line too
  failed_passes+=("$1: $2")
  note_pass "$1" "FAILED, $2${3:+; $3}"
}

# run_pass NAME BUILD_DIR CTEST_ARGS... -- CMAKE_ARGS...
# With CTEST_ARGS "--build-only" the pass builds and runs no tests.
run_pass() {
  local name=$1 dir=$2; shift 2
  local ctest_args=() build_only=0
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    if [ "$1" = "--build-only" ]; then build_only=1; else ctest_args+=("$1"); fi
    shift
  done
  shift
  passes=$((passes + 1))
  pass_start=$SECONDS
  echo "== [$name] build ($dir)"
  if ! coring_build "$dir" "$@"; then
    fail_pass "$name" "build failed"
    return
  fi
  if [ "$build_only" -eq 1 ]; then
    note_pass "$name" "built (no tests run)"
    return
  fi
  echo "== [$name] ctest"
  local log="$dir/ctest.log"
  ctest --test-dir "$dir" --output-on-failure --no-tests=error -j "$JOBS" "${ctest_args[@]}" 2>&1 |
    tee "$log"
  local rc=${PIPESTATUS[0]}
  local line; line=$(grep -E '[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -1)
  if [ -z "$line" ]; then
    fail_pass "$name" "no ctest summary (ctest exit $rc)"
    return
  fi
  local total failed
  total=$(sed -nE 's/.* out of ([0-9]+).*/\1/p' <<<"$line")
  failed=$(sed -nE 's/.*, ([0-9]+) tests? failed.*/\1/p' <<<"$line")
  passed_total=$((passed_total + total - failed))
  failed_total=$((failed_total + failed))
  if [ "$rc" -ne 0 ]; then
    fail_pass "$name" "ctest exit $rc" "$line"
  elif [ "$total" -eq 0 ]; then
    fail_pass "$name" "no tests ran"
  else
    note_pass "$name" "$line"
  fi
}

# Every coring option, so that no pass depends on a cache it did not write.
options() {  # options TESTS EXAMPLES BENCH FUZZ SANITIZE
  echo "-DCORING_BUILD_TESTS=$1" "-DCORING_BUILD_EXAMPLES=$2" "-DCORING_BUILD_BENCH=$3" \
    "-DCORING_BUILD_FUZZ=$4" "-DCORING_SANITIZE=$5" -DCORING_WERROR=ON
}

# shellcheck disable=SC2046  # options() is meant to split into words
run_pass release "$B/release" -- \
  -DCMAKE_CXX_COMPILER=g++ -DCMAKE_BUILD_TYPE=Release $(options ON ON ON OFF "")
# shellcheck disable=SC2046
run_pass asan-ubsan "$B/asan" -- \
  -DCMAKE_CXX_COMPILER=g++ -DCMAKE_BUILD_TYPE=Debug $(options ON ON ON OFF address,undefined)
# shellcheck disable=SC2046
BUILD_TARGETS="tests_pool tests_core tests_channel" run_pass tsan "$B/tsan" -L 'pool|core|channel' -- \
  -DCMAKE_CXX_COMPILER=g++ -DCMAKE_BUILD_TYPE=RelWithDebInfo $(options ON OFF OFF OFF thread)
# shellcheck disable=SC2046
BUILD_TARGETS="fuzzers" run_pass fuzz "$B/fuzz" -L fuzz -- \
  -DCMAKE_CXX_COMPILER=clang++-14 -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  $(options OFF OFF OFF ON address,undefined) -DCORING_FUZZ_SECONDS="$FUZZ_SECONDS"
# shellcheck disable=SC2046
run_pass clang-release "$B/clang-release" --build-only -- \
  -DCMAKE_CXX_COMPILER=clang++-14 -DCMAKE_C_COMPILER=clang-14 -DCMAKE_BUILD_TYPE=Release \
  $(options ON ON ON OFF "")

# The README's first command, briefly: its own build folder ($B/demo).
passes=$((passes + 1))
pass_start=$SECONDS
echo "== [demo] scripts/demo.sh, 2 s of load"
demo_rc=0
DEMO_SECONDS=2 DEMO_CONNS=8 DEMO_BENCH=0 BUILD_ROOT="$B" bash scripts/demo.sh || demo_rc=$?
if [ "$demo_rc" -eq 0 ]; then
  note_pass demo "ok (server and client exit 0)"
else
  fail_pass demo "scripts/demo.sh exit $demo_rc"
fi

echo
echo "== summary ($((SECONDS / 60))m$((SECONDS % 60))s)"
for s in "${summary[@]}"; do echo "   $s"; done
total_line="coring: $passed_total passed, $failed_total failed"
if [ ${#failed_passes[@]} -eq 0 ]; then
  echo "$total_line, all $passes passes ok"
  exit 0
fi
reasons=$(printf '%s; ' "${failed_passes[@]}")
n=${#failed_passes[@]}
echo "$total_line, $n $([ "$n" -eq 1 ] && echo pass || echo passes) FAILED (${reasons%; })"
exit 1
