# shellcheck shell=bash
# Sourced by scripts/test.sh and scripts/demo.sh: installs the Debian packages
# coring needs, only when one is missing, so a second run does nothing.
CORING_PACKAGES=(
  g++ cmake ninja-build pkg-config ccache git
  liburing-dev libabsl-dev libgtest-dev libgmock-dev googletest libbenchmark-dev
  clang-14 libclang-rt-14-dev
  libmimalloc-dev libjemalloc-dev libasio-dev libssl-dev openssl
  python3  # tests/tls: Python's ssl module as an outside TLS peer
)

coring_ensure_packages() {
  local missing=()
  for p in "${CORING_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "== installing Debian packages: ${missing[*]}"
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# coring_build DIR [cmake args...]: configure (Ninja, ccache) and build DIR;
# BUILD_TARGETS (space-separated) limits what is built. Run from the
# repository root: ccache's base directory is the current one, so a clone in
# another folder still finds what an earlier run compiled.
coring_build() {
  local dir=$1; shift
  export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}
  # A different compiler makes CMake delete its cache and also forget the -D
  # options of that very run (the build would use the defaults): start from a
  # clean cache instead. The compiler is passed as a full path, as cached.
  local arg cxx='' args=()
  for arg in "$@"; do
    case $arg in
      -DCMAKE_CXX_COMPILER=*)
        cxx=$(command -v "${arg#*=}") || cxx=${arg#*=}
        arg=-DCMAKE_CXX_COMPILER=$cxx ;;
    esac
    args+=("$arg")
  done
  if [ -n "$cxx" ] && [ -f "$dir/CMakeCache.txt" ] &&
    [ "$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$dir/CMakeCache.txt")" != "$cxx" ]; then
    echo "== $dir: compiler changed to $cxx; configuring from a clean cache"
    rm -rf "$dir/CMakeCache.txt" "$dir/CMakeFiles"
  fi
  cmake -S . -B "$dir" -G Ninja -DCMAKE_CXX_COMPILER_LAUNCHER=ccache "${args[@]}" >/dev/null ||
    return 1
  local targets=()
  for t in ${BUILD_TARGETS:-}; do targets+=(--target "$t"); done
  cmake --build "$dir" -j "${JOBS:-$(nproc)}" "${targets[@]}"
}
