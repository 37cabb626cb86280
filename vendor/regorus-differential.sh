#!/usr/bin/env bash
# Decision by decision, AAF's policy evaluation at another commit (default: the last
# commit that changed vendor/regorus, before the working tree) against the working tree.
# Run it after changing vendor/regorus or the evaluator: every decision must be the same.
#
# It writes the corpus of crates/aaf-core/tests/pack_differential.rs (each built-in pack
# with each of its parameter documents over thousands of generated inputs, the four
# policies together), builds crates/aaf-core/examples/decision_replay.rs at both commits
# (the example is copied into the other commit if it lacks it), replays the corpus on each
# (and every input once more through the evaluator benchmark's 100 policies), and compares
# the two outputs: every decision, reason, risk level, matched policy and per-policy
# outcome, with timings zeroed.
#
# Usage: vendor/regorus-differential.sh [BASE_COMMIT] [WORK_DIR]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BASE="${1:-$(git -C "$ROOT" log -1 --format=%H -- vendor/regorus)}"
WORK="${2:-$(mktemp -d)}"
mkdir -p "$WORK"
echo "base: $(git -C "$ROOT" log -1 --format='%h %s' "$BASE")"
rm -rf "$WORK/base"
mkdir -p "$WORK/base"
git -C "$ROOT" archive "$BASE" | tar -x -C "$WORK/base"
cp "$ROOT/crates/aaf-core/examples/decision_replay.rs" "$WORK/base/crates/aaf-core/examples/"
(cd "$ROOT" && AAF_CORPUS_OUT="$WORK/corpus.json" \
  cargo test -q --release -p aaf-core --test pack_differential write_corpus -- --ignored >/dev/null)
for side in base head; do
  if [ "$side" = base ]; then dir="$WORK/base"; else dir="$ROOT"; fi
  (cd "$dir" && CARGO_TARGET_DIR="$WORK/target-$side" \
    cargo build -q --release -p aaf-core --example decision_replay)
  env -u RUST_BACKTRACE "$WORK/target-$side/release/examples/decision_replay" \
    "$WORK/corpus.json" 100 >"$WORK/$side.jsonl"
done
total=$(wc -l <"$WORK/head.jsonl")
if cmp -s "$WORK/base.jsonl" "$WORK/head.jsonl"; then
  echo "same: $total decisions"
  python3 - "$WORK/head.jsonl" <<'PY'
import collections, json, sys
count = collections.Counter()
for line in open(sys.argv[1]):
    d = json.loads(line)["decision"]
    count[d["verdict"]] += 1
print("verdicts:", dict(count))
PY
else
  echo "DIFFERENT: $(diff "$WORK/base.jsonl" "$WORK/head.jsonl" | grep -c '^>') of $total decisions; first:"
  diff "$WORK/base.jsonl" "$WORK/head.jsonl" | head -4 | cut -c1-2000
  exit 1
fi
