#!/usr/bin/env bash
# Instructions per policy decision, counted by callgrind: repeatable where criterion's
# timings on a shared machine are not. Runs the `policy_eval_loop` example (release) under
# valgrind for each policy set and input given, collecting only inside
# `PolicySet::evaluate` (loading the policies is not counted), and prints instructions per
# decision (the warm-up decision included, so use N of 200 or more).
#
# Usage: bench/callgrind-policies.sh [BINARY] [N]   (default: the example built by
#   `cargo build --release -p aaf-core --example policy_eval_loop`, N = 200)
# Compare two builds: copy one binary aside, rebuild, run the script on each.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-target/release/examples/policy_eval_loop}"
N="${2:-200}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
printf '%-12s %-8s %14s\n' policies input instr/decision
for set in 1 4 10 100 policies/packs/security.rego policies/packs/compliance.rego policies/packs/financial.rego; do
  for input in charge search; do
    # RUST_BACKTRACE off: errors created and dropped inside the engine would otherwise
    # capture backtraces, which the count would include.
    env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE valgrind --tool=callgrind \
      --callgrind-out-file="$WORK/cg" --toggle-collect='aaf_core::policy::PolicySet::evaluate' \
      "$BIN" "$set" "$input" "$N" >"$WORK/out" 2>"$WORK/log"
    total=$(grep -m1 '^summary:' "$WORK/cg" | awk '{print $2}')
    name=$(basename "$set" .rego)
    printf '%-12s %-8s %14d\n' "$name" "$input" $((total / (N + 1)))
  done
done
