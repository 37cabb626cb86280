#!/usr/bin/env bash
# HTTP load test of the decision path: builds release, starts `aaf serve` on a fresh data
# directory (SQLite, synchronous=FULL, audit on), registers an agent, and drives
# POST /v1/actions with a decision-only tool (`knowledge_base.search`, allowed by the bundled
# starter policy) using wrk at 32 connections for 20 s, then GET /healthz the same way. Prints
# decisions/s, p50 and p99, /healthz answers per second and the ratio of the two (compare
# builds by the ratio: it does not move with the machine's speed that day), then stops the
# server and verifies the audit chain offline (every decision is an audit event).
#
# Usage: bench/load.sh [DURATION_SECONDS] [CONNECTIONS]
# Environment: BENCH_PORT (default 18700), BENCH_THREADS (wrk threads, default 2),
#              BENCH_DATABASE_URL (a PostgreSQL URL: measure the PostgreSQL backend; the
#              database should be empty), BENCH_NODES (servers on that database, default 1;
#              the connections are split between them, one wrk per node, and the
#              decisions/s added up),
#              BENCH_SYNC (full|normal, default full), BENCH_BIN (a built aaf binary to
#              measure instead of building target/release/aaf), BENCH_PACKS (set: enable
#              the three built-in policy packs, the security pack allowing the measured tool).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${1:-20}"
CONNECTIONS="${2:-32}"
PORT="${BENCH_PORT:-18700}"
THREADS="${BENCH_THREADS:-2}"
SYNC="${BENCH_SYNC:-full}"

if ! command -v wrk >/dev/null 2>&1; then
  echo "== installing wrk (Debian package)"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq wrk
  else
    sudo apt-get update -qq && sudo apt-get install -y -qq wrk
  fi
fi

if [ -n "${BENCH_BIN:-}" ]; then
  AAF="$BENCH_BIN"
  echo "== using $AAF (BENCH_BIN; not rebuilt)"
else
  echo "== building release"
  cargo build --release -p aaf --quiet
  AAF=target/release/aaf
fi

WORK="$(mktemp -d)"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; [ -n "${KEEP:-}" ] || rm -rf "$WORK"' EXIT
TOKEN="aaf_at_bench_$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
NODES="${BENCH_NODES:-1}"
DB_URL="${BENCH_DATABASE_URL:-}"
if [ "$NODES" -gt 1 ] && [ -z "$DB_URL" ]; then
  echo "BENCH_NODES > 1 needs BENCH_DATABASE_URL (nodes share a PostgreSQL database)" >&2
  exit 2
fi

for n in $(seq 0 $((NODES - 1))); do
  port=$((PORT + n))
  echo "== starting aaf serve on 127.0.0.1:$port (${DB_URL:+PostgreSQL }data in $WORK/data$n, synchronous=$SYNC)"
  if [ -n "$DB_URL" ]; then
    export AAF_DATABASE_URL="$DB_URL"
  fi
  AAF_ADMIN_TOKEN="$TOKEN" AAF_DATABASE__SQLITE_SYNCHRONOUS="$SYNC" AAF_LOG__LEVEL=warn \
    "$AAF" serve --listen "127.0.0.1:$port" --data-dir "$WORK/data$n" --policies "$WORK/no-policies-use-starter" \
    >"$WORK/serve$n.out" 2>"$WORK/serve$n.log" &
  PIDS+=($!)
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -sf "http://127.0.0.1:$port/healthz" >/dev/null
done

KEY=$(curl -sf -X POST "http://127.0.0.1:$PORT/v1/agents" \
  -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d '{"name": "bench-agent", "risk_score": 0.1}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])')

if [ -n "${BENCH_PACKS:-}" ]; then
  # The three built-in packs on top of the starter policy; the security pack (default deny)
  # allows the measured tool, so the decision is still an allow, now by four policies.
  echo "== enabling the built-in packs (security, compliance, financial)"
  curl -sf -X PUT "http://127.0.0.1:$PORT/v1/data/packs/security" \
    -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d '{"allowed_tools": ["knowledge_base.search"]}' >/dev/null
  for pack in security compliance financial; do
    curl -sf -X POST "http://127.0.0.1:$PORT/v1/policy-packs/$pack/enable" \
      -H "Authorization: Bearer $TOKEN" >/dev/null
  done
fi

# One request to show what is measured.
echo "== sample decision"
curl -s -X POST "http://127.0.0.1:$PORT/v1/actions" -H "Authorization: Bearer $KEY" \
  -H 'content-type: application/json' \
  -d '{"tool": "knowledge_base", "operation": "search", "params": {"q": "refund policy"}}'
echo

cat >"$WORK/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $KEY"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"tool": "knowledge_base", "operation": "search", "params": {"q": "refund policy", "limit": 5}, "context": {"user_id": "user-456", "purpose": "answer a customer"}}'
done = function(summary, latency, requests)
  local non2xx = summary.errors.status
  io.write(string.format("RESULT decisions_per_s=%.0f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f requests=%d non_2xx=%d socket_errors=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, summary.requests, non2xx,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
LUA

PER_NODE=$((CONNECTIONS / NODES))
echo "== wrk: $CONNECTIONS connections over $NODES node(s), $THREADS threads each, ${DURATION}s"
WRK_PIDS=()
for n in $(seq 0 $((NODES - 1))); do
  wrk -t"$THREADS" -c"$PER_NODE" -d"${DURATION}s" --latency -s "$WORK/post.lua" \
    "http://127.0.0.1:$((PORT + n))/v1/actions" >"$WORK/wrk$n.out" &
  WRK_PIDS+=($!)
done
for p in "${WRK_PIDS[@]}"; do wait "$p"; done
cat "$WORK"/wrk*.out

# The same server's cheapest answer, for a ratio that does not depend on how fast the
# machine is that day: decisions per second over /healthz answers per second.
echo "== wrk: GET /healthz, $CONNECTIONS connections, ${DURATION}s (the same server, for the ratio)"
cat >"$WORK/health.lua" <<'LUA'
done = function(summary, latency, requests)
  io.write(string.format("HEALTHZ requests_per_s=%.0f p99_ms=%.3f\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(99) / 1000))
end
LUA
wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$WORK/health.lua" \
  "http://127.0.0.1:$PORT/healthz" >"$WORK/health.out"

echo "== stopping the server(s) (SIGTERM) and verifying the audit chain"
for p in "${PIDS[@]}"; do kill -TERM "$p"; done
for p in "${PIDS[@]}"; do wait "$p" || true; done
PIDS=()
if [ -n "$DB_URL" ]; then
  "$AAF" audit verify --database-url "$DB_URL"
else
  "$AAF" audit verify --data-dir "$WORK/data0"
fi
echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(uname -sr)"
grep -h '^RESULT' "$WORK"/wrk*.out
grep -h '^HEALTHZ' "$WORK/health.out"
python3 - "$WORK" <<'PY'
import glob, sys
work = sys.argv[1]
decisions = sum(float(dict(kv.split("=") for kv in l.split()[1:])["decisions_per_s"])
                for f in glob.glob(f"{work}/wrk*.out") for l in open(f) if l.startswith("RESULT"))
health = [float(dict(kv.split("=") for kv in l.split()[1:])["requests_per_s"])
          for l in open(f"{work}/health.out") if l.startswith("HEALTHZ")]
if health and health[0] > 0:
    print(f"RATIO decisions_per_healthz={decisions / health[0]:.3f}")
PY
if [ "$NODES" -gt 1 ]; then
  grep -h '^RESULT' "$WORK"/wrk*.out | python3 -c '
import sys
rows = [dict(kv.split("=") for kv in line.split()[1:]) for line in sys.stdin]
total = sum(float(r["decisions_per_s"]) for r in rows)
p99 = max(float(r["p99_ms"]) for r in rows)
p50 = max(float(r["p50_ms"]) for r in rows)
print(f"TOTAL decisions_per_s={total:.0f} worst_p50_ms={p50:.3f} worst_p99_ms={p99:.3f} nodes={len(rows)}")
'
fi
