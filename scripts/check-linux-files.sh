#!/usr/bin/env bash
# Checks an unpacked Linux package of Linzumi Desktop (used by check-deb.sh and
# check-rpm.sh): the app, a desktop entry that handles linzumi:// links, the icon in
# every hicolor size, and the licence at the path the packaging convention names.
#
#   ./scripts/check-linux-files.sh <unpacked root> <licence path inside it> <label>
set -euo pipefail
root=$1 licence=$2 label=$3

fail() { echo "$label: $*" >&2; exit 1; }

entry="$root/usr/share/applications/Linzumi.desktop"
[[ -x "$root/usr/bin/linzumi-desktop" ]] || fail "no executable /usr/bin/linzumi-desktop"
[[ -f "$entry" ]] || fail "no desktop entry"
grep -qx 'MimeType=x-scheme-handler/linzumi' "$entry" || fail "the desktop entry does not handle linzumi://"
grep -q '^Exec=linzumi-desktop.*%u' "$entry" || fail "the desktop entry does not pass the link to the app"
grep -qx 'Icon=linzumi-desktop' "$entry" || fail "the desktop entry names another icon"
if command -v desktop-file-validate >/dev/null; then desktop-file-validate "$entry"; fi

for size in 16 24 32 48 64 128 256 512; do
  icon="$root/usr/share/icons/hicolor/${size}x${size}/apps/linzumi-desktop.png"
  [[ -f "$icon" ]] || fail "no ${size}x${size} icon"
  # The PNG's own width and height (big-endian at bytes 16..23) match its folder.
  read -r width height < <(od -An -tu1 -j16 -N8 "$icon" \
    | awk '{print $1*16777216+$2*65536+$3*256+$4, $5*16777216+$6*65536+$7*256+$8}')
  [[ "$width" == "$size" && "$height" == "$size" ]] || fail "the ${size}x${size} icon is ${width}x${height}"
done

[[ -f "$root$licence" ]] || fail "no licence at $licence"
cmp -s "$root$licence" LICENSE || fail "$licence is not the project's LICENSE"
echo "$label: ok — /usr/bin/linzumi-desktop, Linzumi.desktop with MimeType=x-scheme-handler/linzumi, icons 16–512 px, $licence"
