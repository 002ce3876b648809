#!/usr/bin/env bash
# Builds the Linux .deb of Linzumi Desktop (debug profile: it reuses the test build's
# artefacts; release bundles come from scripts/release-bundle.sh) and checks that it
# installs the app, a desktop entry that handles linzumi:// links, its icons and licence.
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

./scripts/check-linux-files.sh "$root" /usr/share/doc/linzumi/copyright check-deb
