#!/usr/bin/env bash
# Issue 15's throttling target: 3 grantd instances on one PostgreSQL database × 200 concurrent
# callers each, the emulator answering 429 + Retry-After: 5 for one tenant (contoso) and normally
# for another (fabrikam). Runs the ignored test `bench_three_instances_two_hundred_callers_each`
# (real HTTP, instances in one process, debug build unless BENCH_RELEASE=1) and prints its
# BENCH lines. Needs PostgreSQL: TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test).
set -euo pipefail
cd "$(dirname "$0")/.."
export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
export GRANTD_TEST_NO_SKIP=1
profile=()
[[ "${BENCH_RELEASE:-0}" == 1 ]] && profile=(--release)
cargo test "${profile[@]}" -p grantd --test it throttle::bench_three_instances -- --ignored --nocapture 2>&1 \
  | grep -E '^BENCH|test result|panicked'
