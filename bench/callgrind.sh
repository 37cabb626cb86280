#!/usr/bin/env bash
# Instructions per request of the decision path and of GET /healthz, counted by callgrind:
# repeatable on a noisy machine where bench/load.sh's timings are not. Starts `aaf serve`
# (the binary given, release) under valgrind on a fresh data directory with the bundled
# starter policy, warms it up with 20 requests of each kind, then counts N decisions (the
# request bench/load.sh sends, on one keep-alive connection) and N `GET /healthz`, each
# between a zeroing and a dump of the counters (callgrind_control), so start-up is not
# counted. Prints instructions per decision, per /healthz, and their ratio.
#
# Usage: bench/callgrind.sh BINARY [N]   (default N = 400; needs valgrind, python3, curl)
# Compare two builds: run it on each (e.g. BENCH_BIN of bench/load.sh and target/release/aaf).
set -euo pipefail
BIN="$1"
N="${2:-400}"
cd "$(dirname "$0")/.."
WORK="$(mktemp -d)"
VP=""
trap '[ -n "$VP" ] && kill "$VP" 2>/dev/null; rm -rf "$WORK"' EXIT
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
TOKEN="aaf_at_callgrind_$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
AAF_ADMIN_TOKEN="$TOKEN" AAF_LOG__LEVEL=warn valgrind --tool=callgrind \
  --callgrind-out-file="$WORK/cg.%p" "$BIN" serve --listen "127.0.0.1:$PORT" \
  --data-dir "$WORK/data" --policies "$WORK/no-policies-use-starter" >"$WORK/out" 2>"$WORK/log" &
VP=$!
for _ in $(seq 1 600); do
  curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.5
done
KEY=$(curl -sf -X POST "http://127.0.0.1:$PORT/v1/agents" -H "Authorization: Bearer $TOKEN" \
  -H 'content-type: application/json' -d '{"name": "callgrind-agent", "risk_score": 0.1}' |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["api_key"])')
requests() {
  python3 - "$PORT" "$KEY" "$1" "$2" <<'PY'
import http.client, sys
port, key, n, what = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
c = http.client.HTTPConnection("127.0.0.1", int(port))
body = ('{"tool": "knowledge_base", "operation": "search", "params": {"q": "refund policy", '
        '"limit": 5}, "context": {"user_id": "user-456", "purpose": "answer a customer"}}')
for _ in range(n):
    if what == "decision":
        c.request("POST", "/v1/actions", body,
                  {"Authorization": "Bearer " + key, "content-type": "application/json"})
    else:
        c.request("GET", "/healthz")
    r = c.getresponse()
    r.read()
    assert r.status == 200, r.status
PY
}
requests 20 decision
requests 20 healthz
for what in decision healthz; do
  callgrind_control -z "$VP" >/dev/null 2>&1
  requests "$N" "$what"
  callgrind_control -d "$what" "$VP" >/dev/null 2>&1
done
kill -TERM "$VP"
wait "$VP" || true
VP=""
python3 - "$WORK" "$N" <<'PY'
import glob, re, sys
work, n = sys.argv[1], int(sys.argv[2])
total = {}
for f in glob.glob(f"{work}/cg.*.*"):
    text = open(f).read()
    what = re.search(r"^desc: Trigger: (?:Client Request: |dump )?(\w+)", text, re.M)
    ir = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
    if what and ir:
        total[what.group(1)] = int(ir.group(1)) / n
d, h = total["decision"], total["healthz"]
print(f"CALLGRIND instructions_per_decision={d:.0f} instructions_per_healthz={h:.0f} "
      f"healthz_per_decision={h / d:.4f}")
PY
