#!/usr/bin/env python3
"""Writes the update feed (latest.json) for tauri-plugin-updater from a folder of release
bundles and their .sig files, to standard output:

    scripts/update_feed.py <folder> <version> <download base URL>

Each platform key is what the plugin looks for: "<os>-<arch>-<installer>" first, then
"<os>-<arch>". A bundle without a .sig is left out (the app would refuse it anyway)."""
import datetime
import json
import pathlib
import sys

# file suffix -> the platform keys it serves
KEYS = {
    ".app.tar.gz": ["darwin-aarch64", "darwin-x86_64", "darwin-aarch64-app", "darwin-x86_64-app"],
    "-setup.exe": ["windows-x86_64", "windows-x86_64-nsis"],
    ".msi": ["windows-x86_64-msi"],
    ".AppImage": ["linux-x86_64", "linux-x86_64-appimage"],
    ".deb": ["linux-x86_64-deb"],
    ".rpm": ["linux-x86_64-rpm"],
}


def main(folder: str, version: str, base: str) -> None:
    platforms = {}
    for bundle in sorted(pathlib.Path(folder).iterdir()):
        signature = bundle.with_name(bundle.name + ".sig")
        suffix = next((s for s in KEYS if bundle.name.endswith(s)), None)
        if suffix is None or not signature.is_file():
            continue
        entry = {"url": f"{base.rstrip('/')}/{bundle.name}", "signature": signature.read_text().strip()}
        for key in KEYS[suffix]:
            platforms[key] = entry
    if not platforms:
        sys.exit(f"update_feed: no signed bundles in {folder}")
    feed = {
        "version": version,
        "notes": f"Linzumi {version}",
        "pub_date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "platforms": platforms,
    }
    json.dump(feed, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
