#!/usr/bin/env bash
# Builds the Linux .rpm of Linzumi Desktop (debug profile, like check-deb.sh) and checks
# its header (rpm -qip: name, version, licence; its requirements) and its payload,
# unpacked with rpm2cpio: rpm installs are not native on Debian, so nothing is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/node_modules/.bin/tauri build --debug --bundles rpm --no-sign
rpm=$(realpath "$(ls -t target/debug/bundle/rpm/*.rpm | head -1)")
echo "built $rpm ($(du -h "$rpm" | cut -f1))"

fail() { echo "check-rpm: $*" >&2; exit 1; }

info=$(rpm -qip "$rpm" 2>/dev/null)
field() { sed -n "s/^$1 *: //p" <<<"$info"; }
[[ "$(field Name)" == linzumi ]] || fail "the package is named '$(field Name)'"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
[[ "$(field Version)" == "$version" ]] || fail "version $(field Version), the workspace is $version"
[[ "$(field License)" == MIT ]] || fail "licence '$(field License)'"
rpm -qp --requires "$rpm" 2>/dev/null | grep -q '^libwebkit2gtk-4.1.so.0' || fail "does not require webkit2gtk 4.1"

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
rpm -K "$rpm" >/dev/null 2>&1 || fail "its header or payload digest does not match"
# rpm2cpio (rpm 4.18) exits 1 for a package without an ARCHIVESIZE tag, which the Tauri
# bundler does not write, after writing the whole payload: the digest check above vouches
# for the payload, and cpio for the archive.
(cd "$root" && { rpm2cpio "$rpm" || true; } | cpio -idm --quiet) || fail "rpm2cpio could not unpack it"
./scripts/check-linux-files.sh "$root" /usr/share/licenses/linzumi/LICENSE check-rpm
