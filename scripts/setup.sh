#!/usr/bin/env bash
# Installs what Linzumi needs to build, run and test on Debian or Ubuntu: the system
# packages (Tauri's webkit2gtk stack and friends) and the pinned Node tools (the Codex
# CLI, the phoenix.js conformance client). Safe to run again; it only installs what is
# missing. Needs root or sudo for apt, and a Rust toolchain (cargo) already on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

# Build: Tauri v2 on Linux needs WebKitGTK (the webview), GTK, the Ayatana tray
# indicator, librsvg (icons), libsoup, and xdo/dbus (menus, notifications).
APT_PACKAGES=(
  build-essential pkg-config file
  libwebkit2gtk-4.1-dev libgtk-3-dev libayatana-appindicator3-dev librsvg2-dev
  libsoup-3.0-dev libssl-dev libxdo-dev libdbus-1-dev
  nodejs npm
  # Tests: the Codex TUI runs in tmux; the demo page in headless Chromium.
  tmux chromium curl
  # code-server (tools/code-server) builds kerberos and searches with ripgrep.
  libkrb5-dev ripgrep python3
  # The desktop app's tests: a virtual display and session bus, a notification daemon,
  # an XEmbed tray, WebKit's WebDriver, the Secret Service, and X tools for screenshots.
  xvfb xauth dbus-x11 dbus-user-session dunst libnotify-bin webkit2gtk-driver trayer
  xdotool x11-utils imagemagick fonts-dejavu-core at-spi2-core gnome-keyring desktop-file-utils
)

log() { printf '==> %s\n' "$*"; }

missing=()
for package in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
# A Node.js from elsewhere (nvm, NodeSource) is fine; do not fight it with Debian's.
if command -v node >/dev/null && command -v npm >/dev/null; then
  filtered=()
  for package in "${missing[@]}"; do
    [[ "$package" == nodejs || "$package" == npm ]] || filtered+=("$package")
  done
  missing=("${filtered[@]}")
fi
if ((${#missing[@]})); then
  log "installing system packages: ${missing[*]}"
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  $SUDO apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

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

# Install from the lock file only when it changed since the last install. `npm install
# --no-save` keeps the lock's versions and integrity hashes like `npm ci`, but accepts a
# lock without other platforms' optional packages (the Tauri CLI's darwin/win32 builds),
# which registry mirrors that carry only this platform's packages cannot resolve.
npm_install() {
  local dir=$1
  if [[ ! -f "$dir/node_modules/.package-lock.json" || "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]]; then
    log "installing Node packages in $dir"
    (cd "$dir" && npm install --no-save --no-audit --no-fund --loglevel=error)
  fi
}
npm_install tools
install_code_server
npm_install testing/dev-server
for dir in tests/conformance/*/ tests/browser/; do
  if [[ -f "$dir/package-lock.json" ]]; then npm_install "${dir%/}"; fi
done

# Fuzzing (scripts/fuzz.sh): a nightly toolchain and cargo-fuzz.
if ! cargo +nightly --version >/dev/null 2>&1; then
  log "installing the nightly toolchain (fuzzing)"
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# tauri-driver: the WebDriver bridge of the desktop end-to-end test (to WebKitWebDriver).
if ! command -v tauri-driver >/dev/null; then
  log "installing tauri-driver (about a minute and a half)"
  cargo install tauri-driver --version 2.1.0 --locked
fi

log "codex: $(tools/node_modules/.bin/codex --version)"
log "code-server: $(tools/code-server/node_modules/.bin/code-server --version | head -1)"
