# bench/report.awk: turns the load generator's records (runs.jsonl: one flat
# JSON object per run, written by bench/run.sh) into RESULTS.md, results.json
# and the data files bench/plots.gp draws. Plain POSIX awk (mawk or gawk).
#
# Every figure is a median over rounds; every ratio is the median of the
# per-round ratios (each round's servers ran side by side), never a ratio of
# medians.

function parse(line, rec,    n, parts, i, kv, k, v) {
  delete rec
  gsub(/^[ \t]*\{|\}[ \t]*$/, "", line)
  n = split(line, parts, ",")
  for (i = 1; i <= n; ++i) {
    if (split(parts[i], kv, ":") < 2) continue
    k = kv[1]; gsub(/"/, "", k)
    v = substr(parts[i], length(kv[1]) + 2); gsub(/"/, "", v)
    rec[k] = v
  }
}

# The numbers of the space-separated list, ascending, into a[1..n]; n.
function sorted(list, a,    n, i, j, t) {
  n = split(list, a, " ")
  for (i = 2; i <= n; ++i) {  # insertion sort: a handful of values
    t = a[i] + 0
    for (j = i - 1; j >= 1 && a[j] + 0 > t; --j) a[j + 1] = a[j]
    a[j + 1] = t
  }
  return n
}

function median(list,    a, n) {
  n = sorted(list, a)
  if (n == 0) return ""
  if (n % 2) return a[(n + 1) / 2] + 0
  return (a[n / 2] + a[n / 2 + 1]) / 2
}

# Median over rounds of metric m of server s in cell c. RSS over the
# matrix's rounds only: a settling round (run.sh --settle) starts the servers
# afresh for a few cells, where a round's earlier cells have grown it.
function med(c, s, m,    r, last, list) {
  list = ""
  last = (m == "server_rss_kib" && rounds + 0 > 0 && rounds + 0 < nrounds) ? rounds + 0 : nrounds
  for (r = 1; r <= last; ++r) {
    if ((c, s, r, m) in val && val[c, s, r, m] != "" && val[c, s, r, m] >= 0) list = list " " val[c, s, r, m]
  }
  return median(list)
}

# Per-round ratios of metric m of server a to that of server b in cell c
# (the rounds that have both), space-separated.
function ratios(c, a, b, m,    r, list, x, y) {
  list = ""
  for (r = 1; r <= nrounds; ++r) {
    if (!((c, a, r, m) in val) || !((c, b, r, m) in val)) continue
    x = val[c, a, r, m]; y = val[c, b, r, m]
    if (x == "" || y == "" || x < 0 || y <= 0) continue
    list = list " " (x / y)
  }
  return list
}

# Their median.
function ratio(c, a, b, m) { return median(ratios(c, a, b, m)) }

# The fewest of n rounds that must miss a target for the miss to be firm:
# so many that chance alone (a fair coin per round) does it less than 5% of
# the time, a one-sided sign test - 5 of 5, 9 of 10, 12 of 15. With fewer
# than 5 rounds no count is that rare: n + 1.
function kfirm(n,    k, c, tail, best) {
  best = n + 1; c = 1; tail = 0  # c = C(n, k)
  for (k = n; k >= 1; --k) {
    tail += c / 2 ^ n
    if (tail >= 0.05) break
    best = k
    c = c * k / (n - k + 1)
  }
  return best
}

# The chance that a fair coin per round makes a cell of n rounds a firm miss
# (mark()): the sign test's tail from kfirm(n), or every round below 5.
function pfirm(n,    k, c, p) {
  if (n < 5) return 1 / 2 ^ n
  p = 0; c = 1  # c = C(n, k)
  for (k = n; k >= kfirm(n); --k) { p += c / 2 ^ n; c = c * k / (n - k + 1) }
  return p
}

# At a fixed rate msgs/s is the load offered, the same for every server:
# it only says whether a server kept up, and is no coin toss.
function offered(c, m) { return m == "msgs_per_sec" && c ~ /^rate:/ }

# The A/A control (run.sh: coring_again, coring again): its ratio x to
# coring as a deviation from 1 either way, x or 1/x (a control that echoed
# nothing, x = 0: no bound at all).
function dev(x) { return x >= 1 ? x : (x > 0 ? 1 / x : 1e9) }
# The control's spread of metric m: the deviation that 90% of its cells'
# median ratios stay within (msgs/s: not at a fixed rate, where every server
# gets the load offered). Sets aa_lo[m], aa_hi[m] (the extremes), aa_n[m]
# (cells), aa_firm[m] (cells the sign test calls firm either way) and
# aa_chance[m] (how many chance alone would).
function control_spread(m,    i, c, x, list, n, a, kn, kb, f) {
  list = ""; n = 0; aa_lo[m] = ""; aa_hi[m] = ""; aa_firm[m] = 0; aa_chance[m] = 0
  for (i = 1; i <= ncells; ++i) {
    c = cells[i]
    if (offered(c, m)) continue
    x = ratio(c, control, "coring", m)
    if (x == "") continue
    ++n; list = list " " dev(x)
    if (aa_lo[m] == "" || x < aa_lo[m]) aa_lo[m] = x
    if (aa_hi[m] == "" || x > aa_hi[m]) aa_hi[m] = x
    # (Rounds above 1, then below: a round level with coring is neither.)
    split(misses(c, control, "coring", m, 1, 0), kn, " ")
    split(misses(c, control, "coring", m, 1, 1), kb, " ")
    if (kn[2] > 0) {
      f = kfirm(kn[2] + 0)
      if (kn[1] == kn[2] || kn[1] + 0 >= f || kb[1] == kn[2] || kb[1] + 0 >= f) ++aa_firm[m]
      aa_chance[m] += 2 * pfirm(kn[2] + 0)
    }
  }
  aa_n[m] = n
  if (n == 0) return ""
  sorted(list, a)
  return a[int(0.9 * n + 0.999999)] + 0
}

# The rounds of cell c in which a's metric m over b's missed lim (from below
# if up, else from above), as "k n".
function misses(c, a, b, m, lim, up,    q, n, i, k) {
  n = split(ratios(c, a, b, m), q, " ")
  k = 0
  for (i = 1; i <= n; ++i) if (up ? q[i] + 0 < lim : q[i] + 0 > lim) ++k
  return k " " n
}

# " ✗ k/n" after ratio x when it missed its target lim: in k of the n rounds
# the cell missed it. Counts misses in missed[col], firm ones (kfirm(); with
# fewer than 5 rounds, a miss in every round) in firm[col].
# With the A/A control (noise[m] set: its spread), counts in beyond[col]
# the firm misses past the target by more than that. In chance[col]: how
# many firm misses a column of cells sitting exactly on their targets would
# show by chance alone (a coin per round).
function mark(col, x, c, a, b, m, lim, up,    kn, f, w) {
  split(misses(c, a, b, m, lim, up), kn, " ")
  if (kn[2] > 0 && !offered(c, m)) chance[col] += pfirm(kn[2] + 0)
  if (x == "" || (up ? x >= lim : x <= lim)) return ""
  ++missed[col]
  f = (kn[1] == kn[2] || kn[1] + 0 >= kfirm(kn[2] + 0))
  if (f) ++firm[col]
  w = (m in noise) && !offered(c, m) ? noise[m] : 1
  if (f && (up ? x < lim / w : x > lim * w)) ++beyond[col]
  return " ✗ " kn[1] "/" kn[2]
}

# The issue's targets, the summary's columns: t_a[t]'s metric t_m[t] over
# t_b[t]'s, at most (t_up[t] == 0) or at least t_lim[t]. At a fixed rate
# every server is offered the same load: msgs/s only shows whether it kept
# up (within 1%).
function set_targets() {
  ntargets = 5
  t_a[1] = "coring"; t_b[1] = ref; t_m[1] = "msgs_per_sec"; t_lim[1] = 1; t_up[1] = 1
  t_a[2] = "coring"; t_b[2] = ref; t_m[2] = "server_us_per_msg"; t_lim[2] = 1; t_up[2] = 0
  t_a[3] = "coring"; t_b[3] = "asio_uring"; t_m[3] = "server_us_per_msg"; t_lim[3] = 0.85; t_up[3] = 0
  t_a[4] = "coring_sbmp"; t_b[4] = "coring"; t_m[4] = "server_us_per_msg"; t_lim[4] = 1.15; t_up[4] = 0
  t_a[5] = "coring_sbmp"; t_b[5] = "uring_sbmp"; t_m[5] = "msgs_per_sec"; t_lim[5] = 1; t_up[5] = 1
}
function target_lim(t, c,    p) {
  split(c, p, ":")
  return (t_m[t] == "msgs_per_sec" && p[1] == "rate") ? 0.99 : t_lim[t]
}
function target_ratio(t, c) {
  return has(t_a[t]) && has(t_b[t]) ? ratio(c, t_a[t], t_b[t], t_m[t]) : ""
}
# Cell c has a target whose verdict is split - neither its misses nor its
# passes firm by the sign test (so, below 5 rounds, any) - and fewer than
# `settle` rounds: run.sh --settle gives it another round.
function unsettled(c,    t, kn, f) {
  for (t = 1; t <= ntargets; ++t) {
    if (!has(t_a[t]) || !has(t_b[t])) continue
    split(misses(c, t_a[t], t_b[t], t_m[t], target_lim(t, c), t_up[t]), kn, " ")
    if (kn[2] == 0 || kn[2] >= settle + 0) continue
    f = kfirm(kn[2] + 0)
    if (kn[1] + 0 < f && kn[2] - kn[1] < f) return 1
  }
  return 0
}

function fmt_rate(x) {
  if (x == "") return "-"
  if (x >= 1e6) return sprintf("%.2fM", x / 1e6)
  if (x >= 1e3) return sprintf("%.1fk", x / 1e3)
  return sprintf("%.0f", x)
}
function fmt(x, f) { return x == "" ? "-" : sprintf(f, x) }
function fmt_ratio(x) { return x == "" ? "-" : sprintf("%.2f×", x) }
# The TCP segments per message server s sent (with data: in parentheses)
# and received in cell c, medians over rounds: "1.31 (1.13) / 1.57".
function segs(c, s,    o, d, i) {
  o = med(c, s, "server_segs_out_per_msg"); d = med(c, s, "server_data_segs_out_per_msg")
  i = med(c, s, "server_segs_in_per_msg")
  if (o == "" || i == "") return "-"
  return sprintf("%.2f", o) (d == "" ? "" : sprintf(" (%.2f)", d)) sprintf(" / %.2f", i)
}
function size_name(z) {
  if (z >= 1024 && z % 1024 == 0) return (z / 1024) "KiB"
  return z "B"
}
function cell_name(c,    p) {
  split(c, p, ":")
  return p[2] " × " size_name(p[3])
}
function mode_name(m) {
  if (m == "pingpong") return "ping-pong (1 in flight per connection)"
  if (m ~ /^pipe/) return "pipelined (" substr(m, 5) " in flight per connection)"
  if (m == "rate") return "fixed rate (open loop; the same offered load for every server)"
  if (m == "handshakes") return "TLS handshakes (connect, full TLS 1.3 handshake, close; msgs/s = handshakes/s, µs/msg = server µs per handshake)"
  return m
}
function has(s) { return s in server_seen }
# The values of micro-benchmark counter k, one per repetition ("" if none).
function mvals(b, n, k) { return ((b, n, k) in micro_val) ? micro_val[b, n, k] : "" }
function ns(seconds) { return seconds == "" ? "" : seconds * 1e9 }
function mmax(list,    a, n, i, m) {
  n = split(list, a, " ")
  m = ""
  for (i = 1; i <= n; ++i) if (m == "" || a[i] + 0 > m) m = a[i] + 0
  return m
}
# Median of the per-repetition ratios of counter k, a over b (their
# repetitions interleaved: the i-th of each ran close together).
function mratio(ba, na, bb, nb, k,    x, y, nx, ny, i, list) {
  nx = split(mvals(ba, na, k), x, " "); ny = split(mvals(bb, nb, k), y, " ")
  list = ""
  for (i = 1; i <= nx && i <= ny; ++i) if (y[i] > 0) list = list " " x[i] / y[i]
  return median(list)
}
# The most allocations per message of benchmark i in any repetition, from
# the heap or (prefix "slab_") the SlabPool; "" if it does not count them.
function mallocs(i, prefix,    n, k, v) {
  for (n = split("allocs_per_frame allocs_per_iter allocs_per_call", k, " "); n > 0; --n) {
    v = mvals(micro_bin[i], micro_name[i], prefix k[n])
    if (v != "") return mmax(v)
  }
  return ""
}
function micro_report(    i, j, o, t, tb, tl, rv, reps, heap, slab) {
  for (i = 1; i <= nmicro; ++i) {  # micro_order: the benchmarks by micro_key
    for (j = i - 1; j >= 1 && micro_key[micro_order[j]] > micro_key[i]; --j) micro_order[j + 1] = micro_order[j]
    micro_order[j + 1] = i
  }
  printf "## Micro-benchmarks (in process, one thread on CPU 0)\n\n" > md
  reps = split(mvals(micro_bin[1], micro_name[1], "cpu_time"), rv, " ")
  printf "Google Benchmark, %d repetitions interleaved (bench/codec/codec_bench.cc, bench/net/echo_bench.cc,\n", reps > md
  printf "bench/net/sbmp_echo_bench.cc); a time is the median of the repetitions, an allocation count the\n" > md
  printf "highest of any repetition, a ratio the median of per-repetition ratios.\n\n" > md
  t = median(mvals("codec_bench", "BM_HeaderBatch", "time_per_header"))
  if (t != "") {
    tb = median(mvals("codec_bench", "BM_HeaderBatch_Bytewise", "time_per_header"))
    printf "SBMP header encode + decode + validate, per header (BM_HeaderBatch: 64 different headers a\n" > md
    printf "time): **%.2f ns**%s (target ≤5 ns)", ns(t), (ns(t) > 5 ? " ✗" : "") > md
    if (tb != "")
      printf "; the header code as first committed (BM_HeaderBatch_Bytewise), side by side: %.2f ns\n(new ÷ first committed %.2f×)", \
        ns(tb), mratio("codec_bench", "BM_HeaderBatch", "codec_bench", "BM_HeaderBatch_Bytewise", "time_per_header") > md
    printf ".\n" > md
    t = median(mvals("codec_bench", "BM_HeaderEncodeDecode", "cpu_time"))
    tb = median(mvals("codec_bench", "BM_HeaderEncodeDecode_Bytewise", "cpu_time"))
    tl = median(mvals("codec_bench", "BM_HeaderEncodeDecode_LoopOnly", "cpu_time"))
    if (t != "" && tb != "" && tl != "" && micro_unit["codec_bench", "BM_HeaderEncodeDecode"] == "ns")
      printf "One header at a time, each encoded from the last one decoded (BM_HeaderEncodeDecode: latency,\nnot throughput): %.2f ns (first committed: %.2f ns), of which the benchmark's loop %.2f ns.\n", \
        t, tb, tl > md
    printf "\n" > md
  }
  printf "| benchmark | heap allocations per message (target 0) | SlabPool allocations per message |\n" > md
  printf "|---|---|---|\n" > md
  for (o = 1; o <= nmicro; ++o) {
    i = micro_order[o]
    if ((heap = mallocs(i, "")) == "") continue
    slab = mallocs(i, "slab_")
    if (slab == "") slab = "-"
    printf "| %s %s | %s%s | %s |\n", micro_bin[i], micro_name[i], heap, (heap > 0 ? " ✗" : ""), slab > md
  }
  printf "\nA message is the benchmark's own unit: a frame (allocs_per_frame), an echoed message\n" > md
  printf "(allocs_per_iter) or a call. SlabPool allocations are coroutine frames and send chunks from the\n" > md
  printf "thread's own slabs, not the heap.\n\n" > md
}
function jnum(x) { return x == "" ? "null" : x }

# Google Benchmark's JSON (micro/BINARY.json), a key per line: each
# repetition's counters, per binary and benchmark (listed in the binary's
# own order: the repetitions ran interleaved).
FILENAME ~ /\/micro\/[^\/]*\.json$/ {
  if (FILENAME != micro_file) { micro_file = FILENAME; ++micro_files }
  if ($0 ~ /^ *"run_name": /) { mname = $0; sub(/^ *"run_name": "/, "", mname); sub(/",?$/, "", mname) }
  else if ($0 ~ /^ *"run_type": /) miter = ($0 ~ /"iteration"/)
  else if ($0 ~ /^ *"time_unit": /) { munit = $0; sub(/^ *"time_unit": "/, "", munit); sub(/",?$/, "", munit) }
  else if ($0 ~ /^ *"[a-z_]+": [-+0-9.e]+,?$/) {
    k = $0; sub(/^ *"/, "", k); v = k; sub(/".*/, "", k); sub(/^[a-z_]+": /, "", v); sub(/,$/, "", v)
    mrec[k] = v
  } else if ($0 ~ /^    }/) {
    if (miter && mname != "") {
      b = FILENAME; sub(/.*\//, "", b); sub(/\.json$/, "", b)
      if (!((b, mname) in micro_seen)) {
        micro_seen[b, mname] = 1; ++nmicro; micro_bin[nmicro] = b; micro_name[nmicro] = mname
        micro_unit[b, mname] = munit
        micro_key[nmicro] = micro_files * 1e6 + mrec["family_index"] * 1e3 + mrec["per_family_instance_index"]
      }
      for (k in mrec) micro_val[b, mname, k] = micro_val[b, mname, k] " " mrec[k]
    }
    delete mrec; mname = ""; miter = 0
  }
  next
}
FILENAME ~ /idle/ {
  parse($0, rec)
  ++nidle
  idle_server[nidle] = rec["server"]
  idle_conns[nidle] = rec["conns"]
  idle_ready[nidle] = rec["ready"]
  idle_before[nidle] = rec["server_rss_before_kib"]
  idle_after[nidle] = rec["server_rss_kib"]
  idle_per[nidle] = rec["rss_per_conn_bytes"]
  idle_err[nidle] = rec["errors"]
  next
}
{
  parse($0, rec)
  c = rec["cell"]; s = rec["server"]; r = rec["round"] + 0
  if (!(c in cell_seen)) { cell_seen[c] = 1; cells[++ncells] = c }
  if (!(s in server_seen)) { server_seen[s] = 1; servers[++nservers] = s }
  if (r > nrounds) nrounds = r
  if (rounds + 0 > 0 && r > rounds + 0 && !(c in settled)) { settled[c] = 1; ++nsettled }  # --settle
  split(c, p, ":")
  if (!(p[1] in mode_seen)) { mode_seen[p[1]] = 1; modes[++nmodes] = p[1] }
  if (!(p[2] in conns_seen)) { conns_seen[p[2]] = 1; conns_v[++nconns] = p[2] }
  if (!(p[3] in size_seen)) { size_seen[p[3]] = 1; sizes_v[++nsizes] = p[3] }
  nm = split("msgs_per_sec p50_us p99_us server_us_per_msg client_us_per_msg client_user_us_per_msg server_rss_kib late rate msgs_per_enter server_segs_out_per_msg server_data_segs_out_per_msg server_segs_in_per_msg", ms, " ")
  for (i = 1; i <= nm; ++i) val[c, s, r, ms[i]] = (ms[i] in rec) ? rec[ms[i]] : ""
  errors[c, s] += rec["errors"] + 0
  total_errors += rec["errors"] + 0
  if (rec["first_error"] != "" && first_err == "") first_err = s " " c ": " rec["first_error"]
  disturbed[c, s] += rec["disturbed"] + 0
  total_disturbed += rec["disturbed"] + 0
  retried += rec["attempts"] - 1
  ++nruns
}

END {
  ref = "uring"
  control = "coring_again"
  set_targets()
  if (list_unsettled) {  # run.sh --settle: the cells to run again, one a line
    for (i = 1; i <= ncells; ++i) if (unsettled(cells[i])) print cells[i]
    exit
  }
  md = out "/RESULTS.md"
  printf "# coring benchmark results\n\n" > md
  printf "Generated by `%s` on %s (commit %s); never edited by hand.\n", cmdline, date, commit > md
  printf "Host: %s. Server: one thread pinned to CPU 0; load generator (`bench/loadgen`, C, io_uring\n", host > md
  printf "(epoll with TLS), one thread, every byte verified) pinned to CPU 1. %d round(s)", (nsettled > 0 ? rounds : nrounds) > md
  if (nsettled > 0) {
    printf ", and up to %d for the %d\ncells where a target's verdict was split after them (--settle: more rounds until it is firm\n", nrounds, nsettled > md
    printf "either way, run by the servers the targets compare)" > md
  }
  printf "; each run measures %ss after a\n", seconds > md
  printf "warm-up; the servers take turns within each cell, in an order rotated every round.\n" > md
  printf "Every figure is the median over rounds; every ratio (×) is the median of the per-round\n" > md
  printf "ratios. `uring` (hand-written liburing echo, `bench/baselines/uring_echo.c`) is the\n" > md
  printf "reference: ratios of msgs/s above 1 and of latency or µs/msg below 1 are better than it.\n\n" > md
  printf "Runs: %d; disturbed (host CPU busy outside server and load generator > %s%%, after\n", nruns, max_other > md
  printf "retries): %d; retries: %d; verification errors: %d%s.\n\n", total_disturbed, retried, total_errors, \
    (first_err != "" ? " (first: " first_err ")" : "") > md
  printf "Servers: `coring` = examples/net/echo_server, `coring_sbmp` = sbmp_echo_server (both\n" > md
  printf "--threads=1); `uring`/`uring_sbmp` = bench/baselines/uring_echo [--sbmp]; `asio_uring`,\n" > md
  printf "`asio_epoll` = standalone Asio 1.22 with C++20 coroutines on its io_uring / epoll backend;\n" > md
  printf "`epoll`/`epoll_sbmp` = bench/baselines/epoll_echo.c [--sbmp]. The SBMP servers speak SBMP frames (HELLO first,\n" > md
  printf "16-byte header per message), so their msgs/s are not the raw servers' msgs/s. uring_echo and\n" > md
  printf "Asio read up to 16 KiB + 512 B per recv, as much as coring's receive buffers hold\n" > md
  printf "(NetOptions::recv_buffer_size); epoll_echo reads up to 256 KiB.%s\n\n", \
    (has(control) ? " `" control "` = `coring` again: the A/A control (see the summary)." : "") > md

  # ---- Summary: the issue's targets ----
  printf "## Summary\n\n" > md
  if (has("coring") && has(ref)) {
    aa = has(control)
    if (aa) {
      x = control_spread("server_us_per_msg"); if (x != "") noise["server_us_per_msg"] = x
      x = control_spread("msgs_per_sec"); if (x != "") noise["msgs_per_sec"] = x
    }
    printf "Targets of issue #11, per cell (median of per-round ratios):\n\n" > md
    printf "| mode | cell | coring ÷ uring msgs/s (≥1) | coring ÷ uring µs/msg (≤1) | coring ÷ asio_uring µs/msg (≤0.85) | coring_sbmp ÷ coring µs/msg (≤1.15) | coring_sbmp ÷ uring_sbmp msgs/s (≥1) |%s\n", \
      (aa ? " A/A control: " control " ÷ coring µs/msg (1 but for noise) |" : "") > md
    printf "|---|---|---|---|---|---|---|%s\n", (aa ? "---|" : "") > md
    for (i = 1; i <= ncells; ++i) {
      c = cells[i]; split(c, p, ":")
      printf "| %s | %s |", p[1], cell_name(c) > md
      for (t = 1; t <= ntargets; ++t) {
        x = target_ratio(t, c)
        printf " %s%s |", fmt_ratio(x), mark(t, x, c, t_a[t], t_b[t], t_m[t], target_lim(t, c), t_up[t]) > md
      }
      if (aa) printf " %s |", fmt_ratio(ratio(c, control, "coring", "server_us_per_msg")) > md
      printf "\n" > md
      # (At a fixed rate msgs/s counts toward nothing: see set_targets().)
      a = target_ratio(1, c); b = target_ratio(2, c)
      if (a != "" && p[1] != "rate") { ++na; if (a >= 1) ++wa }
      if (b != "") { ++nb; if (b <= 1) ++wb }
    }
    printf "\n✗ marks a missed target (in the fixed-rate mode, msgs/s below 0.99×: the server did not keep\n" > md
    printf "up); k/n after it: the rounds (k of n) in which that cell missed it. This host swings by up\n" > md
    printf "to 1.5× within minutes, so a miss in some rounds only may be the host's. A miss is firm when\n" > md
    printf "so many rounds missed that chance alone (a fair coin per round) would do it less than 5%% of\n" > md
    printf "the time: 5 of 5, 9 of 10, 12 of 15 (every round, below 5 rounds).\n" > md
    printf "Misses (firm) per column, left to right: %d (%d), %d (%d), %d (%d), %d (%d), %d (%d).\n", \
      missed[1], firm[1], missed[2], firm[2], missed[3], firm[3], missed[4], firm[4], missed[5], firm[5] > md
    # (Many cells, each tested at 5%: some firm misses come by chance.)
    printf "Were every cell exactly on its target, chance alone would make about %.1f, %.1f, %.1f, %.1f, %.1f\n", \
      chance[1], chance[2], chance[3], chance[4], chance[5] > md
    printf "of them firm misses (each cell's rounds a coin toss; the sign test at 5%% per cell).\n" > md
    if (aa) {
      printf "\nA/A control: `%s` is `coring` again (the same binary and flags, a server of its own taking\n", control > md
      printf "turns like the others), so any gap between the two is the host's. Over the %d cells its µs/msg\n", aa_n["server_us_per_msg"] > md
      printf "came out %.2f× to %.2f× of coring's, 90%% of the cells within %.2f× either way", \
        aa_lo["server_us_per_msg"], aa_hi["server_us_per_msg"], noise["server_us_per_msg"] > md
      if ("msgs_per_sec" in noise)
        printf "; its msgs/s %.2f× to %.2f×\n(90%% within %.2f×) over the %d ping-pong and pipelined cells", \
          aa_lo["msgs_per_sec"], aa_hi["msgs_per_sec"], noise["msgs_per_sec"], aa_n["msgs_per_sec"] > md
      printf ". The sign test called %d of the µs/msg cells firm either way (chance alone: about %.1f)", \
        aa_firm["server_us_per_msg"], aa_chance["server_us_per_msg"] > md
      if ("msgs_per_sec" in noise)
        printf " and %d of the msgs/s cells (about %.1f)", aa_firm["msgs_per_sec"], aa_chance["msgs_per_sec"] > md
      printf ", with no difference to find.\n" > md
      printf "Firm misses past their target by more than that spread (beyond this run's noise), per column: %d, %d, %d, %d, %d.\n", \
        beyond[1], beyond[2], beyond[3], beyond[4], beyond[5] > md
    }
    printf "coring reaches ≥1.0× uring msgs/s in %d of %d ping-pong and pipelined cells, and\n", wa, na > md
    printf "≤1.0× uring's server CPU per message in %d of %d cells.\n\n", wb, nb > md
    # The same, per mode: the fixed rate is the fair comparison of CPU cost.
    for (mi = 1; mi <= nmodes; ++mi) {
      m = modes[mi]; n1 = 0; w1 = 0; lst = ""
      for (i = 1; i <= ncells; ++i) {
        split(cells[i], p, ":"); if (p[1] != m) continue
        b = ratio(cells[i], "coring", ref, "server_us_per_msg"); if (b == "") continue
        ++n1; if (b <= 1) ++w1; lst = lst " " b
      }
      if (n1 > 0) printf "* %s: coring ÷ uring server µs/msg, median over its %d cells %.2f× (≤1.0× in %d).\n", m, n1, median(lst), w1 > md
    }
    printf "\n" > md
  }
  # The load generator must cost less per message than the fastest server.
  lc = ""
  for (i = 1; i <= ncells; ++i) if (cells[i] == "pipe16:16:64") lc = cells[i]
  if (lc != "") {
    best = ""; bests = ""
    for (j = 1; j <= nservers; ++j) {
      if (servers[j] ~ /sbmp/ || servers[j] == control) continue
      x = med(lc, servers[j], "server_us_per_msg")
      if (x != "" && (best == "" || x < best)) { best = x; bests = servers[j] }
    }
    lg = ""; lu = ""
    if (bests != "") { lg = med(lc, bests, "client_us_per_msg"); lu = med(lc, bests, "client_user_us_per_msg") }
    # (Its user space, from getrusage: the rest is the kernel's TCP work,
    # per byte the same as an echo server's.)
    printf "Load generator in the pipelined 16 × 64B cell: %s µs CPU per message%s against the fastest\n", fmt(lg, "%.3f"), \
      (lu != "" ? sprintf(" (%.3f µs of it in user space)", lu) : "") > md
    printf "raw server's %s µs (%s)%s.\n\n", fmt(best, "%.3f"), bests, \
      (lg != "" && best != "" ? (lg < best * 0.97 ? ": it is not the bottleneck" : \
        (lg <= best * 1.03 ? ": level with it (within 3%): both do the same TCP work per message, a recv and a send per 16 messages, so this cell cannot show a server much faster than the load generator" : \
        ": NOT below it, the load generator may limit this cell")) : "") > md
  }
  # TLS next to plain (bench/run.sh --tls): what TLS costs each framework.
  if (has("coring_tls") || has("asio_tls")) {
    printf "## TLS\n\n" > md
    printf "Per cell, median of per-round ratios. TLS ÷ plain is what TLS costs a framework (msgs/s: below 1\n" > md
    printf "is slower; µs/msg: above 1 is more CPU); coring_tls ÷ asio_tls µs/msg below 1 means coring's TLS\n" > md
    printf "server spends less CPU per message (or per handshake) than the asio::ssl one.\n\n" > md
    printf "| mode | cell | coring_tls msgs/s | asio_tls msgs/s | coring_tls ÷ coring msgs/s | coring_tls ÷ coring µs/msg | asio_tls ÷ asio_epoll msgs/s | asio_tls ÷ asio_epoll µs/msg | coring_tls ÷ asio_tls µs/msg |\n" > md
    printf "|---|---|---|---|---|---|---|---|---|\n" > md
    for (i = 1; i <= ncells; ++i) {
      c = cells[i]; split(c, p, ":")
      cn = p[1] == "handshakes" ? p[2] " connections" : cell_name(c)
      printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", p[1], cn, \
        fmt_rate(med(c, "coring_tls", "msgs_per_sec")), fmt_rate(med(c, "asio_tls", "msgs_per_sec")), \
        fmt_ratio(ratio(c, "coring_tls", "coring", "msgs_per_sec")), \
        fmt_ratio(ratio(c, "coring_tls", "coring", "server_us_per_msg")), \
        fmt_ratio(ratio(c, "asio_tls", "asio_epoll", "msgs_per_sec")), \
        fmt_ratio(ratio(c, "asio_tls", "asio_epoll", "server_us_per_msg")), \
        fmt_ratio(ratio(c, "coring_tls", "asio_tls", "server_us_per_msg")) > md
    }
    printf "\n" > md
  }
  if (nidle > 0) {
    printf "## Memory: idle SBMP connections (HELLO done)\n\n" > md
    printf "| server | connections | ready | RSS before | RSS with connections | RSS per connection (target ≤4 KiB) |\n" > md
    printf "|---|---|---|---|---|---|\n" > md
    for (i = 1; i <= nidle; ++i) {
      printf "| %s | %s | %s | %.1f MiB | %.1f MiB | %.0f B%s |\n", idle_server[i], idle_conns[i], idle_ready[i], \
        idle_before[i] / 1024, idle_after[i] / 1024, idle_per[i], \
        (idle_server[i] ~ /^coring/ && idle_per[i] > 4096 ? " ✗" : "") > md
    }
    printf "\n" > md
  }

  if (nmicro > 0) micro_report()

  # ---- Details ----
  printf "## Details\n\n" > md
  printf "msgs/s and RTT are what the load generator saw; server µs/msg is the server's CPU time\n" > md
  printf "(all its threads' runtime in ns, /proc/PID/task/*/schedstat) over the measured window divided by the\n" > md
  printf "messages echoed in it; RSS is the server's at the end of the run (it grows with earlier\n" > md
  printf "cells of the round). \"dist\" counts disturbed rounds, \"late\" (fixed rate) messages the\n" > md
  printf "load generator could not send because 64 were already outstanding on the connection.\n" > md
  printf "\"msgs/enter\" is messages per io_uring_enter over the run, for the servers that report their\n" > md
  printf "count on SIGUSR1 (coring: submit calls, with --stats; uring_echo: enters).\n" > md
  printf "\"segs out/in\" are the TCP segments per message the server sent (its echoes and its\n" > md
  printf "acknowledgements alone; of them, those with data in parentheses) and received, as the load\n" > md
  printf "generator's sockets counted them (TCP_INFO): on loopback each segment costs both ends a pass\n" > md
  printf "through the network stack, so a server that sends the same bytes in fewer segments spends\n" > md
  printf "less time in the kernel.\n\n" > md
  for (mi = 1; mi <= nmodes; ++mi) {
    m = modes[mi]
    printf "### %s\n\n", mode_name(m) > md
    printf "| conns × size | server | msgs/s | × | p50 µs | × | p99 µs | × | server µs/msg | × | loadgen µs/msg | msgs/enter | segs out/in | RSS MiB | errors | dist | late |\n" > md
    printf "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n" > md
    for (i = 1; i <= ncells; ++i) {
      c = cells[i]; split(c, p, ":")
      if (p[1] != m) continue
      for (j = 1; j <= nservers; ++j) {
        s = servers[j]
        printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d | %d | %s |\n", \
          cell_name(c), s, fmt_rate(med(c, s, "msgs_per_sec")), fmt_ratio(ratio(c, s, ref, "msgs_per_sec")), \
          fmt(med(c, s, "p50_us"), "%.1f"), fmt_ratio(ratio(c, s, ref, "p50_us")), \
          fmt(med(c, s, "p99_us"), "%.1f"), fmt_ratio(ratio(c, s, ref, "p99_us")), \
          fmt(med(c, s, "server_us_per_msg"), "%.3f"), fmt_ratio(ratio(c, s, ref, "server_us_per_msg")), \
          fmt(med(c, s, "client_us_per_msg"), "%.3f"), fmt(med(c, s, "msgs_per_enter"), "%.1f"), \
          segs(c, s), fmt(med(c, s, "server_rss_kib") / 1024, "%.1f"), \
          errors[c, s], disturbed[c, s], (m == "rate" ? med(c, s, "late") : "-") > md
      }
    }
    printf "\n" > md
  }

  # ---- JSON ----
  js = out "/results.json"
  printf "{\"command\":\"%s\",\"date\":\"%s\",\"commit\":\"%s\",\"host\":\"%s\",\"rounds\":%d,\"seconds\":%s,\n", \
    cmdline, date, commit, host, nrounds, seconds > js
  printf " \"runs\":%d,\"disturbed\":%d,\"errors\":%d,\"reference\":\"%s\",\n \"cells\":[\n", nruns, total_disturbed, total_errors, ref > js
  first = 1
  for (i = 1; i <= ncells; ++i) {
    c = cells[i]; split(c, p, ":")
    for (j = 1; j <= nservers; ++j) {
      s = servers[j]
      printf "%s  {\"mode\":\"%s\",\"conns\":%s,\"size\":%s,\"server\":\"%s\",\"msgs_per_sec\":%s,\"p50_us\":%s,\"p99_us\":%s,\"server_us_per_msg\":%s,\"client_us_per_msg\":%s,\"server_rss_kib\":%s,\"msgs_per_enter\":%s,\"server_segs_out_per_msg\":%s,\"server_data_segs_out_per_msg\":%s,\"server_segs_in_per_msg\":%s,\"errors\":%d,\"disturbed\":%d,\"vs_ref_msgs_per_sec\":%s,\"vs_ref_p99_us\":%s,\"vs_ref_server_us_per_msg\":%s}", \
        (first ? "" : ",\n"), p[1], p[2], p[3], s, jnum(med(c, s, "msgs_per_sec")), jnum(med(c, s, "p50_us")), \
        jnum(med(c, s, "p99_us")), jnum(med(c, s, "server_us_per_msg")), jnum(med(c, s, "client_us_per_msg")), \
        jnum(med(c, s, "server_rss_kib")), jnum(med(c, s, "msgs_per_enter")), \
        jnum(med(c, s, "server_segs_out_per_msg")), jnum(med(c, s, "server_data_segs_out_per_msg")), \
        jnum(med(c, s, "server_segs_in_per_msg")), errors[c, s], disturbed[c, s], jnum(ratio(c, s, ref, "msgs_per_sec")), \
        jnum(ratio(c, s, ref, "p99_us")), jnum(ratio(c, s, ref, "server_us_per_msg")) > js
      first = 0
    }
  }
  printf "\n ],\n \"idle\":[" > js
  for (i = 1; i <= nidle; ++i) {
    printf "%s\n  {\"server\":\"%s\",\"conns\":%s,\"ready\":%s,\"server_rss_before_kib\":%s,\"server_rss_kib\":%s,\"rss_per_conn_bytes\":%s}", \
      (i > 1 ? "," : ""), idle_server[i], idle_conns[i], idle_ready[i], idle_before[i], idle_after[i], idle_per[i] > js
  }
  printf "\n ],\n \"micro\":[" > js
  for (o = 1; o <= nmicro; ++o) {
    i = micro_order[o]
    printf "%s\n  {\"binary\":\"%s\",\"benchmark\":\"%s\",\"cpu_time\":%s,\"time_unit\":\"%s\",\"time_per_header_ns\":%s,\"heap_allocs_per_msg\":%s,\"slab_allocs_per_msg\":%s}", \
      (o > 1 ? "," : ""), micro_bin[i], micro_name[i], jnum(median(mvals(micro_bin[i], micro_name[i], "cpu_time"))), \
      micro_unit[micro_bin[i], micro_name[i]], jnum(ns(median(mvals(micro_bin[i], micro_name[i], "time_per_header")))), \
      jnum(mallocs(i, "")), jnum(mallocs(i, "slab_")) > js
  }
  printf "\n ]\n}\n" > js

  # ---- Plot data: one column per server ----
  pm = ""; for (i = 1; i <= nmodes; ++i) if (modes[i] == "pipe16") pm = "pipe16"
  if (pm == "") pm = modes[1]
  pc = conns_v[1]; for (i = 1; i <= nconns; ++i) if (conns_v[i] == 16) pc = 16
  pz = sizes_v[1]; for (i = 1; i <= nsizes; ++i) if (sizes_v[i] == 64) pz = 64
  rm = ""; for (i = 1; i <= nmodes; ++i) if (modes[i] == "rate") rm = "rate"
  if (rm == "") rm = modes[1]
  pp = ""; for (i = 1; i <= nmodes; ++i) if (modes[i] == "pingpong") pp = "pingpong"
  if (pp == "") pp = modes[1]
  f1 = out "/throughput_vs_size.dat"; f2 = out "/p99_vs_conns.dat"; f3 = out "/us_per_msg.dat"
  printf "size" > f1; printf "conns" > f2; printf "size" > f3
  for (j = 1; j <= nservers; ++j) { printf " %s", servers[j] > f1; printf " %s", servers[j] > f2; printf " %s", servers[j] > f3 }
  printf "\n" > f1; printf "\n" > f2; printf "\n" > f3
  for (i = 1; i <= nsizes; ++i) {
    printf "%s", sizes_v[i] > f1; printf "%s", sizes_v[i] > f3
    for (j = 1; j <= nservers; ++j) {
      x = med(pm ":" pc ":" sizes_v[i], servers[j], "msgs_per_sec"); printf " %s", (x == "" ? "?" : x) > f1
      x = med(rm ":" pc ":" sizes_v[i], servers[j], "server_us_per_msg"); printf " %s", (x == "" ? "?" : x) > f3
    }
    printf "\n" > f1; printf "\n" > f3
  }
  for (i = 1; i <= nconns; ++i) {
    printf "%s", conns_v[i] > f2
    for (j = 1; j <= nservers; ++j) {
      x = med(pp ":" conns_v[i] ":" pz, servers[j], "p99_us"); printf " %s", (x == "" ? "?" : x) > f2
    }
    printf "\n" > f2
  }
  t = out "/plots.titles"
  printf "t1 = 'msgs/s vs payload, %s, %s connections'\n", pm, pc > t
  printf "t2 = 'p99 RTT vs connections, %s, %s'\n", pp, size_name(pz) > t
  printf "t3 = 'server CPU per message, %s, %s connections'\n", rm, pc > t
  printf "nservers = %d\n", nservers > t
}
