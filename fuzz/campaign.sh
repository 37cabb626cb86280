#!/usr/bin/env bash
# One fuzzing campaign: builds the libFuzzer binaries on the stable toolchain (no sanitizer,
# see docs/security.md) and fuzzes TARGET for SECONDS at the lowest CPU priority, with a
# 2 GiB memory limit, growing fuzz/corpus/TARGET; then minimises the corpus (-merge=1).
# The last lines of libFuzzer's output (`#N DONE cov: ... ft: ... corp: ...`) are what
# docs/security.md records.
#
# Usage: bash fuzz/campaign.sh TARGET SECONDS [LOG]   (needs cargo-fuzz and a C++ compiler)
set -euo pipefail
cd "$(dirname "$0")"
target="$1"
seconds="$2"
log="${3:-/tmp/fuzz-$target.log}"
flags=(-s none --codegen-units 16 --features libfuzzer)

cargo fuzz build "${flags[@]}" "$target"
mkdir -p "corpus/$target"
# libFuzzer exits 1 on a finding (the reproducer is in artifacts/TARGET/); report it.
status=0
nice -n 19 cargo fuzz run "${flags[@]}" "$target" "corpus/$target" -- \
  -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=30 -print_final_stats=1 \
  >"$log" 2>&1 || status=$?
tail -n 30 "$log"

# Minimise: keep only inputs that add coverage.
tmp="$(mktemp -d)"
mv "corpus/$target" "$tmp/old"
mkdir -p "corpus/$target"
nice -n 19 cargo fuzz run "${flags[@]}" "$target" "corpus/$target" "$tmp/old" -- \
  -merge=1 -rss_limit_mb=2048 -timeout=30 >"$log.merge" 2>&1 || {
    echo "merge failed; corpus kept as it was" >&2
    rm -rf "corpus/$target"
    mv "$tmp/old" "corpus/$target"
  }
rm -rf "$tmp"
echo "corpus/$target: $(ls "corpus/$target" | wc -l) inputs after merge"
exit "$status"
