#!/usr/bin/env bash
# Builds the AppImage of Linzumi Desktop (debug profile) where the Tauri bundler can get
# its tools, and checks that it runs its own `--appimage-extract` and carries the app and
# the desktop entry. The bundler downloads linuxdeploy and its plugins from GitHub into
# ~/.cache/tauri; where neither that cache nor GitHub is there (these machines reach
# package registries only), the build is skipped with that reason, not failed. The
# release workflow builds the real AppImage on a hosted runner.
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${XDG_CACHE_HOME:-$HOME/.cache}/tauri"
if [[ ! -e "$cache/linuxdeploy-x86_64.AppImage" ]] \
  && ! curl -fsI --max-time 15 -o /dev/null https://github.com/tauri-apps/binary-releases/releases; then
  echo "check-appimage: skipped — the AppImage tools (linuxdeploy) are not in $cache and GitHub cannot be reached from here"
  exit 0
fi

fail() { echo "check-appimage: $*" >&2; exit 1; }

tools/node_modules/.bin/tauri build --debug --bundles appimage --no-sign
appimage=$(realpath "$(ls -t target/debug/bundle/appimage/*.AppImage | head -1)")
echo "built $appimage ($(du -h "$appimage" | cut -f1))"
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
(cd "$root" && "$appimage" --appimage-extract >/dev/null) || fail "it does not extract itself"
[[ -x "$root/squashfs-root/usr/bin/linzumi-desktop" ]] || fail "no usr/bin/linzumi-desktop inside"
grep -qx 'MimeType=x-scheme-handler/linzumi' "$root"/squashfs-root/*.desktop \
  || fail "its desktop entry does not handle linzumi://"
echo "check-appimage: ok — $(basename "$appimage") extracts, with the app and a linzumi:// desktop entry"
