#!/usr/bin/env bash
# Contract tests: Schemathesis against the OpenAPI document the real `aaf` binary serves
# (GET /v1/openapi.json), on a free loopback port with a temporary data directory.
#
# Fails (exit 1) on any 5xx, and on any answer the document does not describe: an
# undocumented status code, content type or header, a body that does not match its schema,
# or invalid data (an out-of-range query value, a wrong body) accepted. Stateful phase: the
# OpenAPI links lead from POST /v1/actions to GET /v1/actions/{id}, approve, reject, cancel
# and result (and from created agents, users, webhooks and policies to their operations).
#
# Two passes: every operation but those that can revoke, rotate, delete or demote the run's
# own credentials (three quarters of the time), then those (the last quarter).
#
# Usage: bash tests/schemathesis/run.sh [MAX_SECONDS]   (default 180: Schemathesis' time
# budget over both passes; the whole script stays under 5 minutes)
#
# Needs: target/debug/aaf (built by `cargo test --workspace`; built here if missing), Python 3
# with pip (Schemathesis is installed with pip if `st` is missing). No traffic leaves
# 127.0.0.1: the server's HTTP connector and webhooks have DNS turned off, and the policy
# denies every HTTP connector action.
set -euo pipefail
cd "$(dirname "$0")/../.."

MAX_SECONDS="${1:-180}"
SCHEMATHESIS_VERSION="4.32.5"

if ! command -v st >/dev/null 2>&1 || ! st --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  python3 -m pip install --quiet "schemathesis==$SCHEMATHESIS_VERSION"
fi
if [ ! -x target/debug/aaf ]; then
  cargo build -p aaf
fi

work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# A policy that reaches every outcome without any network traffic: tool `allow` is allowed,
# the HTTP connector's tools are denied, everything else waits for approval (so that
# approve, reject and cancel have actions to act on).
mkdir -p "$work/policies" "$work/data"
cat > "$work/policies/schemathesis.rego" <<'EOF'
package schemathesis.contract

import rego.v1

decision := "deny" if input.action.tool in {"http_proxy", "http"}

decision := "allow" if input.action.tool == "allow"

decision := {"action": "require_approval", "reason": "contract test"} if {
	not input.action.tool in {"http_proxy", "http", "allow"}
}
EOF

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
base="http://127.0.0.1:$port"
admin_token="aaf_at_schemathesis_$(python3 -c 'import secrets; print(secrets.token_hex(24))')"

# Failed authentications are not limited here: Schemathesis sends requests with broken
# credentials on purpose, and 429 would hide the answers under test (429 is documented).
AAF_ADMIN_TOKEN="$admin_token" \
AAF_AUTH__FAILED_AUTH_PER_MINUTE=0 \
AAF_CONNECTORS__HTTP__SYSTEM_DNS=false \
AAF_POLICY_ENGINE__WATCH=false \
AAF_LOG__LEVEL=warn \
  target/debug/aaf serve --listen "127.0.0.1:$port" --data-dir "$work/data" \
  --policies "$work/policies" >"$work/server.log" 2>&1 &
server_pid=$!

healthy() {
  python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" \
    "$base/healthz" >/dev/null 2>&1
}
for _ in $(seq 1 100); do
  if healthy; then break; fi
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "schemathesis: the server did not start:" >&2
    cat "$work/server.log" >&2
    exit 1
  fi
  sleep 0.1
done

# An agent key and an approver, created through the API with the admin token.
# post PATH JSON FIELD: POSTs JSON with the admin token and prints FIELD of the answer.
post() {
  python3 - "$base$1" "$2" "$3" "$admin_token" <<'PY'
import json, sys, urllib.request
url, body, field, token = sys.argv[1:]
request = urllib.request.Request(url, data=body.encode(), method="POST", headers={
    "authorization": f"Bearer {token}", "content-type": "application/json"})
with urllib.request.urlopen(request, timeout=10) as answer:
    print(json.load(answer)[field])
PY
}
export AAF_ST_ADMIN_TOKEN="$admin_token"
AAF_ST_AGENT_KEY="$(post /v1/agents '{"name": "schemathesis-agent"}' api_key)"
AAF_ST_APPROVER_TOKEN="$(post /v1/users '{"name": "schemathesis-approver", "role": "approver"}' token)"
export AAF_ST_AGENT_KEY AAF_ST_APPROVER_TOKEN

status=0
config="$PWD/tests/schemathesis/schemathesis.toml"
# Schemathesis keeps a cache directory (.schemathesis/) in its working directory: the
# temporary one, not the repository.
cd "$work"
# Operations that can take away the run's own credentials: Schemathesis finds the ids of
# the run's agent key and users in list answers and revokes, rotates, deletes or demotes
# them, after which every later request answers 401 and the operations under test are
# checked no further than authentication; a kill switch (engaged, or by isolating the agent)
# makes every later action of the agent a 403 before evaluation, a rate limit a 429. They
# run in a second, shorter pass at the end.
destructive='^(rotate_key|revoke_key|delete_user|update_user|engage_kill_switch|isolate_agent|create_rate_limit)$'
# The client waits longer than the longest long poll (`GET /v1/actions/{id}?wait=60`
# answers after up to 60 s by design).
run_pass() {
  local seconds="$1"
  shift
  timeout $((seconds + 90)) st --config-file "$config" run \
    "$base/v1/openapi.json" \
    --max-time "$seconds" \
    --seed "${SCHEMATHESIS_SEED:-20261204}" \
    --workers 1 \
    --request-timeout 75 \
    --suppress-health-check all \
    "$@"
}
main_seconds=$((MAX_SECONDS * 3 / 4))
run_pass "$main_seconds" --exclude-operation-id-regex "$destructive" || status=$?
run_pass $((MAX_SECONDS - main_seconds)) --include-operation-id-regex "$destructive" || status=$?

if grep -q "panicked" "$work/server.log"; then
  echo "schemathesis: the server panicked:" >&2
  grep -A5 "panicked" "$work/server.log" >&2
  status=1
fi
if [ "$status" -ne 0 ]; then
  echo "schemathesis: FAILED (exit $status); server log tail:" >&2
  tail -20 "$work/server.log" >&2
fi
exit "$status"
