#!/usr/bin/env bash
# Installs what building and running Linzumi needs on Debian or Ubuntu: the system
# packages (Tauri's webkit2gtk stack and friends) and the pinned Node tools (the Codex
# CLI, the Tauri CLI, code-server for the editor). `scripts/run.sh` (the demo) needs
# nothing more; `scripts/setup-tests.sh` adds what only the tests need. Safe to run again;
# it only installs what is missing. Needs root or sudo for apt, and cargo on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

# Build: Tauri v2 on Linux needs WebKitGTK (the webview), GTK, the Ayatana tray
# indicator, librsvg (icons), libsoup, and xdo/dbus (menus, notifications).
APT_PACKAGES=(
  build-essential pkg-config file
  libwebkit2gtk-4.1-dev libgtk-3-dev libayatana-appindicator3-dev librsvg2-dev
  libsoup-3.0-dev libssl-dev libxdo-dev libdbus-1-dev
  nodejs npm
  # code-server (tools/code-server) builds kerberos and searches with ripgrep.
  libkrb5-dev ripgrep python3
)

# shellcheck source=scripts/setup-lib.sh
source scripts/setup-lib.sh

apt_install "${APT_PACKAGES[@]}"

if ! command -v cargo >/dev/null; then
  echo "cargo is not on PATH: install Rust with rustup (https://rustup.rs), then run this again." >&2
  exit 1
fi

# code-server 4.100.3 from npm, for the editor tests and the demo. Its install scripts
# need: unsafe-perm (they refuse to run as root otherwise), `yes` (node-pty's post-install
# runs npx), Node's own headers (no download), and @vscode/ripgrep's binary, which it
# fetches from GitHub unless its cache holds it: we seed that cache with Debian's rg.
install_code_server() {
  local dir=tools/code-server
  if [[ -x "$dir/node_modules/.bin/code-server" && "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]]; then
    return
  fi
  local arch
  case "$(uname -m)" in
    x86_64) arch=x86_64-unknown-linux-musl ;;
    aarch64) arch=aarch64-unknown-linux-musl ;;
    *) echo "code-server: no ripgrep build for $(uname -m)" >&2; exit 1 ;;
  esac
  local cache
  cache="$(node -p 'require("os").tmpdir()')/vscode-ripgrep-cache-1.15.11"
  local asset="$cache/ripgrep-v13.0.0-10-$arch.tar.gz"
  if [[ ! -s "$asset" ]]; then
    local staging
    staging=$(mktemp -d)
    cp "$(command -v rg)" "$staging/rg"
    mkdir -p "$cache"
    tar -czf "$asset" -C "$staging" rg
    rm -rf "$staging"
  fi
  log "installing code-server in $dir (builds native modules; about a minute)"
  local nodedir=()
  if [[ -f /usr/include/node/node.h ]]; then nodedir=(npm_config_nodedir=/usr); fi
  (cd "$dir" && env npm_config_unsafe_perm=true npm_config_yes=true "${nodedir[@]}" \
    npm ci --no-audit --no-fund --loglevel=error)
}

npm_install tools
install_code_server

log "codex: $(tools/node_modules/.bin/codex --version)"
log "code-server: $(tools/code-server/node_modules/.bin/code-server --version | head -1)"
