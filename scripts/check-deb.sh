#!/usr/bin/env bash
# Builds the Linux .deb of Linzumi Desktop (debug profile: it reuses the test build's
# artefacts; release bundles come from `tauri build --bundles deb,rpm`) and checks that it
# installs the app, its icons and a desktop entry that handles linzumi:// links.
# Installing uses dpkg with a scratch --root, so this machine's packages are untouched.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/node_modules/.bin/tauri build --debug --bundles deb --no-sign
deb=$(ls -t target/debug/bundle/deb/*.deb | head -1)
echo "built $deb ($(du -h "$deb" | cut -f1))"

fail() { echo "check-deb: $*" >&2; exit 1; }

dpkg-deb --field "$deb" Depends | grep -q libwebkit2gtk-4.1-0 || fail "Depends lacks webkit2gtk"
apt-get install --simulate -q "./$deb" >/dev/null || fail "its dependencies do not resolve"

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/var/lib/dpkg/updates" "$root/var/lib/dpkg/info"
touch "$root/var/lib/dpkg/status"
dpkg --root="$root" --force-depends --force-not-root --log=/dev/null -i "$deb" >/dev/null 2>&1 \
  || fail "dpkg could not install it"

entry="$root/usr/share/applications/Linzumi.desktop"
[[ -x "$root/usr/bin/linzumi-desktop" ]] || fail "no /usr/bin/linzumi-desktop"
[[ -f "$entry" ]] || fail "no desktop entry"
grep -qx 'MimeType=x-scheme-handler/linzumi' "$entry" || fail "the desktop entry does not handle linzumi://"
grep -q '^Exec=linzumi-desktop.*%u' "$entry" || fail "the desktop entry does not pass the link to the app"
[[ -f "$root/usr/share/icons/hicolor/128x128/apps/linzumi-desktop.png" ]] || fail "no icon"
if command -v desktop-file-validate >/dev/null; then desktop-file-validate "$entry"; fi
echo "check-deb: ok — installs /usr/bin/linzumi-desktop and $(basename "$entry") with MimeType=x-scheme-handler/linzumi"
