#!/usr/bin/env bash
# bench.report: bench/report.awk's verdicts on the issue's targets, from
# made-up load generator records (no server runs): which cells
# bench/run.sh --settle runs again (a split verdict, below --settle rounds),
# and which misses the summary counts as firm (a sign test at 5%: 5 of 5,
# 9 of 10, not 8 of 10). A second.
#   report_test.sh REPO_ROOT
set -uo pipefail
root=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# record CELL ROUND SERVER MSGS_PER_SEC: one run, every other figure equal
# (but coring's records say how many TCP segments it sent and received per
# message, and uring's, as from a kernel without the counters, do not).
record() {
  local segs=
  [ "$3" = coring ] &&
    segs=',"server_segs_out_per_msg":1.25,"server_data_segs_out_per_msg":1.13,"server_segs_in_per_msg":1.5'
  printf '{"server":"%s","cell":"%s","round":%d,"attempts":1,"disturbed":0,"label":"x","msgs_per_sec":%s,"p50_us":10,"p99_us":20,"server_us_per_msg":1.0,"client_us_per_msg":1.0,"client_user_us_per_msg":0.25,"server_rss_kib":%d%s,"errors":0,"first_error":""}\n' \
    "$3" "$1" "$2" "$4" "$((1024 * $2))" "$segs"
}
# cell CELL ROUNDS MISSES: coring at 0.9x uring's msgs/s in the first
# MISSES rounds, at 1.1x in the rest.
cell() {
  local r
  for ((r = 1; r <= $2; ++r)); do
    record "$1" "$r" uring 1000
    record "$1" "$r" coring "$([ "$r" -le "$3" ] && echo 900 || echo 1100)"
  done
}
runs=$work/runs.jsonl
{
  cell pingpong:1:64 5 5    # every round missed: firm
  cell pingpong:16:64 5 0   # none missed: firm the other way
  cell pingpong:256:64 5 3  # split
  cell rate:16:64 5 0       # (at a fixed rate msgs/s must reach 0.99x)
  cell pipe16:16:64 3 3     # every round missed, but only 3: firm, yet not by the sign test
} >"$runs"
: >"$work/idle.jsonl"
unsettled() { awk -v list_unsettled=1 -v settle="$1" -f "$root/bench/report.awk" "$runs" | sort | tr '\n' ' '; }

got=$(unsettled 10)
[ "$got" = "pingpong:256:64 pipe16:16:64 " ] ||
  fail "--settle=10 after 5 rounds: runs again '$got', wanted pingpong:256:64 pipe16:16:64"
got=$(unsettled 5)
[ "$got" = "pipe16:16:64 " ] || fail "--settle=5 after 5 rounds: runs again '$got', wanted pipe16:16:64"

# report ROUNDS: RESULTS.md of the records, --rounds=ROUNDS.
report() {
  awk -v out="$work" -v cmdline=test -v host=test -v rounds="$1" -v seconds=1 -v max_other=5 \
    -v date=today -v commit=abc -f "$root/bench/report.awk" "$runs" "$work/idle.jsonl" ||
    fail "report.awk failed"
}
summary_row() { grep -F "| $1 | $2 |" "$work/RESULTS.md" | head -1; }
firm_counts() { sed -n 's/^Misses (firm) per column, left to right: \([^,]*\),.*/\1/p' "$work/RESULTS.md"; }

report 5
row=$(summary_row pingpong "1 × 64B")
[[ $row == *"0.90× ✗ 5/5"* ]] || fail "5 of 5 missed: row '$row'"
row=$(summary_row pingpong "256 × 64B")
[[ $row == *"0.90× ✗ 3/5"* ]] || fail "3 of 5 missed: row '$row'"
[ "$(firm_counts)" = "3 (2)" ] || fail "after 5 rounds: misses (firm) '$(firm_counts)', wanted 3 (2)"
grep -q "pinned to CPU 1. 5 round(s); each run" "$work/RESULTS.md" || fail "5 rounds: header"
# The segments per message, sent (with data) / received, in the details; "-"
# where the records have none.
row=$(grep -F "| 1 × 64B | coring |" "$work/RESULTS.md" | head -1)
[[ $row == *"| 1.25 (1.13) / 1.50 |"* ]] || fail "coring's segments: row '$row'"
row=$(grep -F "| 1 × 64B | uring |" "$work/RESULTS.md" | head -1)
[[ $row == *"| 1.000 | - | - | "* ]] || fail "uring's segments: row '$row'"
grep -q '"server":"coring","msgs_per_sec":[^}]*"server_segs_out_per_msg":1.25,"server_data_segs_out_per_msg":1.13,"server_segs_in_per_msg":1.5,' "$work/results.json" ||
  fail "results.json: coring's segments"
# The load generator's line: its CPU per message and the user-space share of
# it, next to the fastest raw server's (all equal here: level).
lg_line=$(grep -A1 "^Load generator in the pipelined 16 × 64B cell" "$work/RESULTS.md" | tr '\n' ' ')
[[ $lg_line == *"1.000 µs CPU per message (0.250 µs of it in user space) against the fastest raw server's 1.000 µs"*"level with it"*"the same TCP work per message"* ]] ||
  fail "load generator line: '$lg_line'"

# Settling rounds 6..10 of the split cell: 8 of 10 missed is not firm, 9 is.
for misses in 8 9; do
  grep -v '"cell":"pingpong:256:64"' "$runs" >"$work/kept" && mv "$work/kept" "$runs"
  cell pingpong:256:64 10 "$misses" >>"$runs"
  got=$(unsettled 15)
  if [ "$misses" -eq 8 ]; then
    [ "$got" = "pingpong:256:64 pipe16:16:64 " ] ||
      fail "8 of 10, --settle=15: runs again '$got', wanted pingpong:256:64 pipe16:16:64"
  else
    [ "$got" = "pipe16:16:64 " ] || fail "9 of 10, --settle=15: runs again '$got', wanted pipe16:16:64"
  fi
  report 5
  want="3 ($((misses == 9 ? 3 : 2)))"
  [ "$(firm_counts)" = "$want" ] || fail "$misses of 10: misses (firm) '$(firm_counts)', wanted $want"
  row=$(summary_row pingpong "256 × 64B")
  [[ $row == *"✗ $misses/10"* ]] || fail "$misses of 10: row '$row'"
  grep -q "pinned to CPU 1. 5 round(s), and up to 10 for the 1$" "$work/RESULTS.md" ||
    fail "settled: header $(grep -F 'pinned to CPU 1' "$work/RESULTS.md")"
done
# RSS is the matrix rounds' (a settling round's fresh server has run fewer
# cells): here round r's record says r MiB: the median of rounds 1..5, not 1..10.
grep -qE "^\| 256 × 64B \| coring \|.*\| 3\.0 \|" "$work/RESULTS.md" ||
  fail "RSS of a settled cell: $(grep -E '^\| 256 × 64B \| coring \|' "$work/RESULTS.md")"

# The A/A control (coring_again, coring again): its spread over the cells
# is the noise floor, and a firm miss counts as beyond noise only past the
# target by more than that. Ten cells; the control's µs/msg is 1.00x to
# 1.09x of coring's (90% of the cells within 1.08x); coring's is 1.05x
# uring's in one cell and 1.20x in another, every round: two firm misses,
# one of them beyond the noise.
# usrec CELL ROUND SERVER US_PER_MSG: one run with that server µs/msg.
usrec() {
  printf '{"server":"%s","cell":"%s","round":%d,"attempts":1,"disturbed":0,"label":"x","msgs_per_sec":1000,"p50_us":10,"p99_us":20,"server_us_per_msg":%s,"client_us_per_msg":1.0,"client_user_us_per_msg":0.25,"server_rss_kib":1024,"errors":0,"first_error":""}\n' \
    "$3" "$1" "$2" "$4"
}
{
  for i in 0 1 2 3 4 5 6 7 8 9; do
    c=pingpong:$((i + 1)):64 coring_us=1.0
    [ "$i" -eq 3 ] && coring_us=1.05
    [ "$i" -eq 7 ] && coring_us=1.2
    for r in 1 2 3 4 5; do
      usrec "$c" "$r" uring 1.0
      usrec "$c" "$r" coring "$coring_us"
      usrec "$c" "$r" coring_again "$(awk -v u="$coring_us" -v i="$i" 'BEGIN { print u * (1 + i / 100) }')"
    done
  done
} >"$runs"
report 5
[ "$(sed -n 's/^Misses (firm) per column, left to right: [^,]*, \([^,]*\),.*/\1/p' "$work/RESULTS.md")" = "2 (2)" ] ||
  fail "control: misses (firm) $(grep '^Misses (firm)' "$work/RESULTS.md")"
grep -q "per column: 0, 1, 0, 0, 0\.$" "$work/RESULTS.md" ||
  fail "control: beyond noise $(grep 'beyond this run' "$work/RESULTS.md")"
aa_text=$(sed -n '/^A\/A control:/,/^Firm misses past/p' "$work/RESULTS.md" | tr '\n' ' ')
[[ $aa_text == *"came out 1.00× to 1.09× of coring's, 90% of the cells within 1.08× either way"* ]] ||
  fail "control: spread '$aa_text'"
# Cells 1..9 of the control are above coring in every round: firm, though
# the servers are the same (cell 0 is level: neither way).
[[ $aa_text == *"The sign test called 9 of the µs/msg cells firm either way (chance alone: about 0.6)"* ]] ||
  fail "control: firm cells '$aa_text'"
row=$(summary_row pingpong "8 × 64B")
[[ $row == *"| 1.20× ✗ 5/5 |"*"| 1.07× |" ]] || fail "control: row '$row'"
grep -q "Were every cell exactly on its target, chance alone would make about 0.3, 0.3, 0.0, 0.0, 0.0$" \
  "$work/RESULTS.md" || fail "chance: $(grep 'Were every cell' "$work/RESULTS.md")"
# A control that echoed nothing in a cell (msgs/s 0) leaves the report whole.
sed -i '/"server":"coring_again","cell":"pingpong:1:64"/s/"msgs_per_sec":1000/"msgs_per_sec":0/' "$runs"
report 5
grep -q "^A/A control:" "$work/RESULTS.md" || fail "control at 0 msgs/s: no control line"
# Without the control there is no spread to go by, and no such line.
grep -v coring_again "$runs" >"$work/kept" && mv "$work/kept" "$runs"
report 5
! grep -q "beyond this run's noise\|A/A control" "$work/RESULTS.md" || fail "no control: still a control line"

[ "$failures" -eq 0 ] && echo "bench.report: all passed"
exit $((failures > 0))
