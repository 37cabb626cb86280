#!/usr/bin/env bash
# regorus's own test suite against AAF's patched copy of it (vendor/regorus). The vendored
# copy has no tests (AAF-PATCHES.md); this fetches the published crate the copy came from
# (regorus 0.14.1, from crates.io, checksum checked), puts the patched `src/` in its place,
# and runs the crate's library tests (which include the interpreter's YAML cases under
# `tests/interpreter/`) and its integration tests `mod`, `arc`, `execution_limits` and
# `memory_limits`. Run it after changing vendor/regorus: every test must pass.
#
# Usage: vendor/regorus-upstream-tests.sh [WORK_DIR]   (default: a temporary directory)
# Needs: curl, tar, sha256sum, and crates.io (the crate and its dev-dependencies).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${1:-$(mktemp -d)}"
VERSION=0.14.1
# crates.io's checksum of regorus-0.14.1.crate (as a registry Cargo.lock records it).
SHA256=ec9c3ac0d614c8f87448b86c8ddef36c8affce3d2c5deea81b7c28c812e4bfb8
mkdir -p "$WORK"
cd "$WORK"
if [ ! -d "regorus-$VERSION" ]; then
  curl -sSfL -o regorus.crate "https://static.crates.io/crates/regorus/regorus-$VERSION.crate"
  echo "$SHA256  regorus.crate" | sha256sum -c -
  tar xzf regorus.crate
fi
cd "regorus-$VERSION"
rm -rf src
cp -r "$ROOT/vendor/regorus/src" src
cp "$ROOT/vendor/regorus/build.rs" build.rs
# The dependencies AAF's patches added (vendor/regorus/Cargo.toml), once.
if ! grep -q '^\[dependencies.foldhash\]' Cargo.toml; then
  python3 - <<'PY'
s = open("Cargo.toml").read()
s = s.replace("[dependencies.hashbrown]", "[dependencies.foldhash]\nversion = \"0.2\"\ndefault-features = false\nfeatures = [\"std\"]\n\n[dependencies.hashbrown]", 1)
open("Cargo.toml", "w").write(s)
PY
fi
# AAF's patches use smallvec too (vendor/regorus/AAF-PATCHES.md).
if ! grep -q '^\[dependencies.smallvec\]' Cargo.toml; then
  python3 - <<'PY'
s = open("Cargo.toml").read()
s = s.replace("[dependencies.spin]", "[dependencies.smallvec]\nversion = \"1.13\"\ndefault-features = false\n\n[dependencies.spin]", 1)
open("Cargo.toml", "w").write(s)
PY
fi
env -u RUST_BACKTRACE cargo test --lib --test mod --test arc --test execution_limits --test memory_limits --no-fail-fast
