#!/usr/bin/env bash
# Change-feed measurements (issue 12, "Measure it"). Each part is an ignored test in
# crates/grantd/tests/it/feed_bench.rs or feed_chaos.rs that starts grantd and the emulator and
# prints `BENCH …` lines; this script runs them one after the other and collects those lines in
# bench/out/feed-<timestamp>/. Results go to bench/RESULTS.md by hand, with the build profile.
#
#   bench/feed/run.sh                  # all parts, dev profile
#   PROFILE=release bench/feed/run.sh  # release profile (cargo test --release)
#   bench/feed/run.sh lag big          # some parts: lag big idle chaos
#
# Sizes: BENCH_LAG_EDITS (40), BENCH_BIG_FILES (100000), BENCH_IDLE_DRIVES (10000),
# BENCH_IDLE_WINDOW_SECS (60), BENCH_CHAOS_EDITS (10000), BENCH_CHAOS_CONNECTIONS (50),
# BENCH_CHAOS_KILLS (4), BENCH_CHAOS_SEED (12), BENCH_CHAOS_ROUNDS (edits / 20). The chaos run needs PostgreSQL:
# TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="bench/out/feed-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
flags=()
[ "${PROFILE:-dev}" = release ] && flags+=(--release)
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(lag big idle chaos)
for part in "${parts[@]}"; do
  case "$part" in
    lag) test=feed_bench::bench_feed_lag ;;
    big) test=feed_bench::bench_initial_sync_large_drive ;;
    idle) test=feed_bench::bench_idle_watched_drives ;;
    chaos) test=feed_chaos::bench_feed_chaos ;;
    *) echo "unknown part $part (lag big idle chaos)" >&2; exit 2 ;;
  esac
  echo "== $part ($test)"
  # The machine's load next to each part's figures (shared machines: say how loaded it was).
  echo "LOAD $part before: $(uptime)" | tee -a "$OUT/summary.txt"
  cargo test "${flags[@]}" -p grantd --test it "$test" -- --ignored --nocapture --exact \
    >"$OUT/$part.log" 2>&1 || { echo "$part failed: see $OUT/$part.log" >&2; }
  grep '^BENCH' "$OUT/$part.log" | tee -a "$OUT/summary.txt" || true
  echo "LOAD $part after: $(uptime)" | tee -a "$OUT/summary.txt"
done
echo "logs in $OUT"
