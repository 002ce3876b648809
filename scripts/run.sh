#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine and starts the Linzumi demo: a local stand-in
# for Kandan with a live thread page, and a runner sharing a folder with codex.
#
#   ./scripts/run.sh [folder] [linzumi demo options]
#
# The folder defaults to ~/linzumi-demo (created if missing). By default codex answers
# from the project's scripted model API (--mock-model), so it works offline and without
# an OpenAI account; set LINZUMI_DEMO_REAL_MODEL=1 to use your own codex login instead.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh

folder="${1:-$HOME/linzumi-demo}"
shift || true
mkdir -p "$folder"
model=(--mock-model)
if [[ "${LINZUMI_DEMO_REAL_MODEL:-}" == 1 ]]; then model=(); fi
cargo build --locked -q -p linzumi-cli
exec ./target/debug/linzumi demo "$folder" --codex-bin tools/node_modules/.bin/codex \
  --code-server-bin tools/code-server/node_modules/.bin/code-server "${model[@]}" "$@"
