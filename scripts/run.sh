#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine and starts Linzumi Desktop (a tray app; it needs
# a graphical session).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec cargo run --locked -p linzumi-desktop
