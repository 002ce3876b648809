#!/usr/bin/env bash
# Builds release bundles with the pinned Tauri CLI and copies them to an output folder;
# the release workflow runs it on each system. Every kind of signing is used only when its
# keys are in the environment, and each missing one is reported as a workflow warning:
#
#   TAURI_SIGNING_PRIVATE_KEY[_PASSWORD], LINZUMI_UPDATER_PUBKEY   update artifacts (.sig)
#   APPLE_CERTIFICATE[_PASSWORD], APPLE_SIGNING_IDENTITY           Developer ID signing
#   APPLE_ID, APPLE_PASSWORD, APPLE_TEAM_ID                        notarization
#   LINZUMI_SIGNTOOL, LINZUMI_SIGN_THUMBPRINT                      Authenticode (Windows)
#
#   ./scripts/release-bundle.sh <bundles> <rust target> <output folder>
set -euo pipefail
cd "$(dirname "$0")/.."
bundles=$1 target=$2 out=$3

warn() { echo "::warning title=$1::$2"; }

# Merged over tauri.conf.json by `tauri build --config`.
overrides='{}'
merge() { overrides=$(node -e 'const [a, b] = process.argv.slice(1).map(JSON.parse);
  const deep = (x, y) => { for (const [k, v] of Object.entries(y)) x[k] = v && typeof v === "object" && !Array.isArray(v) ? deep(x[k] || {}, v) : v; return x; };
  console.log(JSON.stringify(deep(a, b)));' "$overrides" "$1"); }

if [[ -n "${TAURI_SIGNING_PRIVATE_KEY:-}" && -n "${LINZUMI_UPDATER_PUBKEY:-}" ]]; then
  merge "$(node -e 'console.log(JSON.stringify({bundle: {createUpdaterArtifacts: true},
    plugins: {updater: {pubkey: process.argv[1]}}}))' "$LINZUMI_UPDATER_PUBKEY")"
else
  unset TAURI_SIGNING_PRIVATE_KEY TAURI_SIGNING_PRIVATE_KEY_PASSWORD
  warn "No update signatures" "TAURI_SIGNING_PRIVATE_KEY or the LINZUMI_UPDATER_PUBKEY variable is not set: no update artifacts, and this build does not check for updates."
fi

if [[ "$target" == *apple-darwin ]]; then
  if [[ -z "${APPLE_CERTIFICATE:-}" ]]; then
    unset APPLE_CERTIFICATE APPLE_CERTIFICATE_PASSWORD APPLE_SIGNING_IDENTITY APPLE_ID APPLE_PASSWORD APPLE_TEAM_ID
    # Ad-hoc signing: Apple silicon runs nothing unsigned; Gatekeeper still warns.
    merge '{"bundle": {"macOS": {"signingIdentity": "-"}}}'
    warn "Unsigned macOS app" "APPLE_CERTIFICATE is not set: the .app and .dmg are ad-hoc signed and not notarized; Gatekeeper will block them until the user allows them."
  elif [[ -z "${APPLE_ID:-}" || -z "${APPLE_PASSWORD:-}" || -z "${APPLE_TEAM_ID:-}" ]]; then
    unset APPLE_ID APPLE_PASSWORD APPLE_TEAM_ID
    warn "macOS app not notarized" "APPLE_ID, APPLE_PASSWORD or APPLE_TEAM_ID is not set: the app is signed but not notarized."
  fi
fi

if [[ "$target" == *windows* ]]; then
  if [[ -n "${LINZUMI_SIGN_THUMBPRINT:-}" ]]; then
    merge "$(node -e 'console.log(JSON.stringify({bundle: {windows: {signCommand: {cmd: process.argv[1],
      args: ["sign", "/sha1", process.argv[2], "/fd", "SHA256", "/tr", "http://timestamp.digicert.com", "/td", "SHA256", "%1"]}}}}))' \
      "$LINZUMI_SIGNTOOL" "$LINZUMI_SIGN_THUMBPRINT")"
  fi
fi

tools/node_modules/.bin/tauri build --ci --bundles "$bundles" --target "$target" --config "$overrides"

mkdir -p "$out"
find "target/$target/release/bundle" -maxdepth 2 -type f \
  \( -name '*.dmg' -o -name '*.app.tar.gz*' -o -name '*.msi*' -o -name '*-setup.exe*' \
     -o -name '*.deb*' -o -name '*.rpm*' -o -name '*.AppImage*' \) -exec cp {} "$out/" \;
ls -l "$out"
