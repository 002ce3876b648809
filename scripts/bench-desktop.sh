#!/usr/bin/env bash
# The desktop app's benchmarks (cold start to tray-ready, idle memory in the tray and with
# the window), for scripts/bench.sh; LINZUMI_BENCH_JSON names its results file.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --locked -p linzumi-desktop --bench desktop
