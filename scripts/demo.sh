#!/usr/bin/env bash
# The README's demo command: builds coring (Release) and runs the best real
# program there is on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
coring_ensure_packages
export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/coring-ccache}
B=${BUILD_ROOT:-build}/release
BUILD_TARGETS="${DEMO_TARGETS:-all}" coring_build "$B" -DCMAKE_BUILD_TYPE=Release \
  -DCORING_BUILD_TESTS=OFF
echo "== demo: nothing to run yet beyond the build"
