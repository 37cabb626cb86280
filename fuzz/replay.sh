#!/usr/bin/env bash
# Replays every fuzz corpus (fuzz/corpus/<target>/) through its target, on the stable
# toolchain and without libFuzzer: `cargo run` of the `replay` binary of the fuzz crate.
# A panicking input fails the run (exit 1) and is named. Bounded: the replay of the whole
# corpus takes a few minutes at most (mostly rego_load); `timeout` stops a hung target after
# REPLAY_TIMEOUT seconds (default 600), which also fails the run.
#
# The fuzz crate is not a member of the main workspace; it shares the main workspace's
# target directory, so the dependencies `cargo test --workspace` compiled are reused.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --manifest-path fuzz/Cargo.toml --locked --bin replay
timeout "${REPLAY_TIMEOUT:-600}" "$CARGO_TARGET_DIR/debug/replay" fuzz/corpus
