# shellcheck shell=bash
# bench/option_checks.sh: tests of command-line values, shared by the
# benchmark scripts (bench/run.sh, profile.sh, idle_memory.sh), which check
# every value before they build or start anything and say what was wanted.
# Sourced; each test only returns its verdict.

# whole_in VALUE MIN MAX: a whole number (decimal digits only) in [MIN, MAX].
whole_in() {
  [[ $1 =~ ^[0-9]{1,9}$ ]] && [ $((10#$1)) -ge "$2" ] && [ $((10#$1)) -le "$3" ]
}

# seconds_in VALUE MIN MAX: a decimal number (12, 0.5, .5) in [MIN, MAX].
seconds_in() {
  [[ $1 =~ ^([0-9]{1,6}(\.[0-9]{0,6})?|\.[0-9]{1,6})$ ]] &&
    awk -v v="$1" -v lo="$2" -v hi="$3" 'BEGIN { exit !(v + 0 >= lo + 0 && v + 0 <= hi + 0) }'
}

# list_ok VALUE: a comma-separated list with no empty item.
list_ok() { [[ -n $1 && $1 != *, && $1 != ,* && $1 != *,,* ]]; }
