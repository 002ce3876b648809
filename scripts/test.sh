#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine and runs every check the project has: the
# workflows (actionlint), format, lints, the desktop build, and all tests (unit, integration against the Kandan test
# server and the real codex, the phoenix.js conformance suite). Stops at, and exits
# non-zero on, the first failure. CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup-tests.sh

log() { printf '\n==> %s\n' "$*"; }

log "workflows (actionlint)"
target/tools/actionlint/bin/actionlint -color .github/workflows/*.yml

log "format"
cargo fmt --all -- --check

log "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "desktop app build"
cargo build --locked -p linzumi-desktop

log "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi

log "desktop .deb and .rpm: build, install the app, the linzumi:// handler, icons and licence"
./scripts/check-deb.sh
./scripts/check-rpm.sh
log "AppImage: built and checked where its tools can be downloaded, else skipped with the reason"
./scripts/check-appimage.sh

log "fuzzing (10 s per target; scripts/fuzz.sh long for the on-demand run)"
./scripts/fuzz.sh short 10

log "soak: one minute of turns, streaming and forwarding; memory and descriptors stay flat"
LINZUMI_SOAK_SECS=60 cargo bench --locked -p linzumi-cli --bench soak -- soak
