#!/usr/bin/env bash
# bench/compare.sh: the micro-benchmarks (Google Benchmark) of this checkout
# next to those of an earlier commit, run in turns on one CPU, so that a
# change that makes a hot path slower is seen before it lands.
#
#   bench/compare.sh BASE                  e.g. bench/compare.sh HEAD~5
#   bench/compare.sh BASE --filter=Decode --rounds=5 --benches=codec_bench
#
# BASE is built in a git worktree (build/compare/<commit>, Release, ccache;
# kept for the next run: rm -rf build/compare && git worktree prune), this
# checkout in build/bench (as bench/run.sh). For every benchmark binary
# both have (--benches: codec_bench core_ring_bench core_task_bench
# pool_bench net_echo_bench net_sbmp_echo_bench by default), the two run in
# turns --rounds times (3), pinned to --cpu (0), and each benchmark's
# real_time is the median over rounds. Output: one line per benchmark, base
# and this checkout in its time unit, the ratio, and "slower"/"faster" past
# --threshold (1.10; this host is noisy: repeat before believing one line).
# Exit status 0 unless a build or run fails; informational, never a test.
#
# Why: a change in codec/decoder.cc (67848f9) undid an earlier fix and made
# every decoded frame 2.4x as slow (codec_bench DecodeStream/64 13.7 ->
# 32.4 ns); nothing compared, and it stayed for two days.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/deps.sh disable=SC1091
. scripts/deps.sh

usage() {
  if [ "$1" -eq 0 ]; then
    sed -n '2,/^# Exit status/p' "$0" | sed 's/^# \{0,1\}//'
  else
    echo "usage: bench/compare.sh BASE [--rounds=N] [--cpu=N] [--threshold=R] [--filter=RE] [--benches=a,b]" >&2
  fi
  exit "$1"
}

base='' rounds=3 cpu=0 threshold=1.10 filter=. benches=''
for arg in "$@"; do
  case $arg in
    --rounds=*) rounds=${arg#*=} ;;
    --cpu=*) cpu=${arg#*=} ;;
    --threshold=*) threshold=${arg#*=} ;;
    --filter=*) filter=${arg#*=} ;;
    --benches=*) benches=${arg#*=} ;;
    -h | --help) usage 0 ;;
    -*) echo "compare.sh: unknown option $arg" >&2; usage 2 ;;
    *)
      [ -z "$base" ] || { echo "compare.sh: one BASE commit only" >&2; usage 2; }
      base=$arg ;;
  esac
done
[ -n "$base" ] || { echo "compare.sh: which commit to compare with? (BASE)" >&2; usage 2; }
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "compare.sh: --rounds must be a positive integer" >&2; exit 2; }
if ! [[ $cpu =~ ^[0-9]+$ ]] || [ "$cpu" -ge "$(nproc)" ]; then
  echo "compare.sh: --cpu must be a CPU of this host (0..$(($(nproc) - 1)))" >&2
  exit 2
fi
if ! [[ $threshold =~ ^[0-9]+(\.[0-9]+)?$ ]] || ! awk -v t="$threshold" 'BEGIN { exit !(t > 1) }'; then
  echo "compare.sh: --threshold must be a ratio above 1, such as 1.10" >&2
  exit 2
fi
commit=$(git rev-parse --verify --quiet "$base^{commit}") ||
  { echo "compare.sh: $base is not a commit of this repository" >&2; exit 2; }
benches=${benches:-codec_bench core_ring_bench core_task_bench pool_bench net_echo_bench net_sbmp_echo_bench}
benches=${benches//,/ }

coring_ensure_packages
tree=build/compare/${commit:0:12}
if [ ! -d "$tree/src" ]; then
  mkdir -p "$tree"
  git worktree add --detach -f "$tree/src" "$commit" >/dev/null 2>&1 ||
    { echo "compare.sh: git worktree add $tree/src failed" >&2; exit 1; }
fi
echo "== building $base (${commit:0:12}) in $tree"
base_build() {
  (cd "$tree/src" && BUILD_TARGETS=$1 coring_build ../build -DCMAKE_BUILD_TYPE=Release \
    -DCORING_BUILD_TESTS=OFF -DCORING_BUILD_FUZZ=OFF >/dev/null 2>&1)
}
# A target BASE does not have fails the whole build: then one at a time.
base_build "$benches" || for b in $benches; do base_build "$b" || true; done
echo "== building this checkout in build/bench"
BUILD_TARGETS=$benches coring_build build/bench -DCMAKE_BUILD_TYPE=Release \
  -DCORING_BUILD_TESTS=OFF -DCORING_BUILD_FUZZ=OFF >/dev/null

pairs=()
for b in $benches; do
  new=$(find build/bench/bench -type f -name "$b" -perm -u+x | head -1)
  old=$(find "$tree/build/bench" -type f -name "$b" -perm -u+x 2>/dev/null | head -1)
  if [ -z "$new" ]; then
    echo "compare.sh: no benchmark $b in this checkout" >&2
    exit 2
  fi
  [ -n "$old" ] || { echo "== $b: not built at $base (new since, or its build failed)"; continue; }
  pairs+=("$b" "$old" "$new")
done

python3 - "$rounds" "$cpu" "$threshold" "$filter" "${pairs[@]}" <<'EOF'
import json, statistics, subprocess, sys

rounds, cpu, threshold, flt = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), sys.argv[4]
args = sys.argv[5:]
slower = faster = 0
for i in range(0, len(args), 3):
    name, binaries = args[i], {"base": args[i + 1], "head": args[i + 2]}
    times, units, order = {"base": {}, "head": {}}, {}, []
    for r in range(rounds):
        for side in ("base", "head") if r % 2 == 0 else ("head", "base"):
            out = subprocess.run(
                ["taskset", "-c", cpu, binaries[side], f"--benchmark_filter={flt}",
                 "--benchmark_min_time=0.2", "--benchmark_format=json"],
                capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(f"compare.sh: {binaries[side]} failed:\n{out.stderr[-2000:]}")
            for bm in json.loads(out.stdout).get("benchmarks", []):
                if bm.get("run_type") == "aggregate" or bm.get("error_occurred"):
                    continue
                n = bm["name"]
                if n not in order:
                    order.append(n)
                times[side].setdefault(n, []).append(float(bm["real_time"]))
                units[n] = bm.get("time_unit", "ns")
    print(f"== {name}: median real time of {rounds} round(s), base / this checkout")
    for n in order:
        if n not in times["base"] or n not in times["head"]:
            print(f"  {n:58s} {'(only in ' + ('base' if n in times['base'] else 'this checkout') + ')':>24s}")
            continue
        b, h = statistics.median(times["base"][n]), statistics.median(times["head"][n])
        ratio = h / b if b > 0 else float("inf")
        mark = ""
        if ratio >= threshold:
            mark, slower = "  slower", slower + 1
        elif ratio <= 1 / threshold:
            mark, faster = "  faster", faster + 1
        print(f"  {n:58s} {b:11.1f} {h:11.1f} {units[n]:2s} {ratio:5.2f}x{mark}")
print(f"== {slower} slower and {faster} faster past {threshold}x (noisy host: repeat a line before believing it)")
EOF
