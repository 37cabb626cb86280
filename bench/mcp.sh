#!/usr/bin/env bash
# The MCP gateway's added latency on tools/call (docs/performance.md, "MCP gateway: added
# latency of tools/call"): the same upstream called directly and through AAF's /mcp in one
# run, alternating, with CALLERS concurrent callers (default 4), and the p50/p90/p99 each
# path took and AAF added. Release build, without LTO to keep the build short (the figures
# in performance.md say which build they come from).
#
#   bench/mcp.sh [CALLERS] [RATE]
#
# RATE: calls per second per caller, paced, each latency counted from when its call was due
# (default 0: back to back). Other variables, passed through: MCP_BENCH_CALLS,
# MCP_BENCH_ROUNDS, MCP_BENCH_WARMUP, MCP_BENCH_CLIENT_POOL=0, MCP_BENCH_SQLITE_SYNCHRONOUS,
# MCP_BENCH_UPSTREAM_NODELAY=0 (see crates/aaf/tests/integration/mcp_bench.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
MCP_BENCH_CALLERS="${1:-4}" MCP_BENCH_RATE="${2:-0}" \
  cargo test --release -p aaf --test integration -- \
  --ignored --exact mcp_bench::mcp_gateway_added_latency_benchmark --nocapture 2>&1 \
  | grep -E "^BENCH|test result|panicked"
