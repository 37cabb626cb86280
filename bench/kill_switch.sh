#!/usr/bin/env bash
# Kill-switch propagation between two real nodes on PostgreSQL (docs/performance.md,
# "Kill-switch propagation"): engages and releases a kill switch through node A ROUNDS times
# (default 200) and times, from each answer, how long node B takes to refuse (or allow again)
# the agent's dry runs. Needs PostgreSQL (TEST_DATABASE_URL, default
# postgres://postgres@127.0.0.1:5432/test). Release build, without LTO to keep the build short.
# (The rounds are not passed as an AAF_ variable: the nodes would take it for configuration.)
#
#   bench/kill_switch.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-200}"
CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
REQUIRE_POSTGRES_TESTS=1 KILL_SWITCH_BENCH_ROUNDS="$rounds" \
  cargo test --release -p aaf --test integration -- \
  --ignored --exact multinode::kill_switch_propagation_benchmark --nocapture 2>&1 \
  | grep -E "^BENCH|test result|panicked"
