#!/usr/bin/env bash
# Runs every benchmark of the project and writes docs/benchmarks.md with its plots
# (docs/benchmarks/*.svg): the engine's Phoenix round trip, the runner and forwarding
# benchmarks (3 runs each, for medians and spread), the soak, the 50-client load, the
# floods from Kandan, the desktop app's benchmarks (scripts/bench-desktop.sh, when present)
# and the fuzzing summary (scripts/fuzz.sh short, when present). Raw results and logs go to .artifacts/bench/.
#
#   scripts/bench.sh            the full set (about 17 minutes on 2 cores, 4 of them building)
#   scripts/bench.sh --quick    one run each, a 30 s soak, a 5 s load, 5 s per fuzz target
#   scripts/bench.sh --runs 5   more runs of the micro-benchmarks
#
# Environment: LINZUMI_SOAK_SECS, LINZUMI_LOAD_SECS (override the soak and load durations),
# LINZUMI_BENCH_SKIP_FUZZ=1, LINZUMI_BENCH_SKIP_DESKTOP=1.
# A benchmark that fails does not stop the others; the page says which failed, and the
# script then exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
runs=3
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; runs=1 ;;
    --runs) runs="${2:?--runs needs a number}"; shift ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ "$quick" = 1 ]; then
  export LINZUMI_SOAK_SECS="${LINZUMI_SOAK_SECS:-30}"
  export LINZUMI_LOAD_SECS="${LINZUMI_LOAD_SECS:-5}"
  export LINZUMI_BENCH_QUICK=1
  mode="--quick"
else
  export LINZUMI_SOAK_SECS="${LINZUMI_SOAK_SECS:-60}"
  export LINZUMI_LOAD_SECS="${LINZUMI_LOAD_SECS:-20}"
  mode=""
  [ "$runs" != 3 ] && mode="--runs $runs"
fi

out=.artifacts/bench
rm -rf "$out/results" "$out/logs"
mkdir -p "$out/results" "$out/logs"
: > "$out/timings.tsv"
failed=0

log() { printf '\n==> %s\n' "$*"; }

# step NAME LOGFILE COMMAND...: runs the command with its output shown and logged, and
# records its wall time and exit status.
step() {
  local name="$1" logfile="$2"
  shift 2
  log "$name"
  local started status load
  started=$(date +%s.%N)
  # Others' work on this machine shows here: the 1-minute load average as the step starts.
  load=$(cut -d' ' -f1 /proc/loadavg)
  set +e
  "$@" 2>&1 | tee "$logfile"
  status=${PIPESTATUS[0]}
  set -e
  printf '%s\t%s\t%s\t%s\n' "$name" "$(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $started }")" "$status" "$load" >> "$out/timings.tsv"
  if [ "$status" != 0 ]; then
    echo "!! $name exited with status $status" >&2
    failed=1
  fi
}

skip() {
  log "$1: skipped ($2)"
  printf '%s\t0\tskipped\t\n' "$1" >> "$out/timings.tsv"
}

# The benchmarks are built once, and every run below executes those very binaries (as
# `cargo bench` would: from the package's folder, with `--bench`), so all runs measure the
# same build even if sources change meanwhile.
step "build the benchmarks" "$out/logs/build.log" \
  sh -c "cargo bench -p linzumi-engine -p linzumi-cli --no-run --message-format=json-render-diagnostics > $out/build.json"

# executable BENCH: the path of a benchmark binary from the build's messages.
executable() {
  python3 - "$out/build.json" "$1" <<'PY'
import json, sys
for line in open(sys.argv[1], encoding="utf-8"):
    try:
        message = json.loads(line)
    except ValueError:
        continue
    target = message.get("target") or {}
    if message.get("executable") and target.get("name") == sys.argv[2] and "bench" in target.get("kind", []):
        print(message["executable"])
PY
}

# bench TITLE RESULT-FILE PACKAGE-DIR BENCH [ARGS...]: one benchmark binary, its figures
# into results/RESULT-FILE.jsonl and its output into logs/RESULT-FILE.log.
bench() {
  local title="$1" file="$2" dir="$3" name="$4"
  shift 4
  local binary
  binary=$(executable "$name" | tail -n 1)
  if [ -z "$binary" ]; then
    printf '%s\t0\t%s\n' "$title" "not built" >> "$out/timings.tsv"
    echo "!! $name was not built" >&2
    failed=1
    return
  fi
  LINZUMI_BENCH_JSON="$PWD/$out/results/$file.jsonl" \
    step "$title" "$out/logs/$file.log" \
    sh -c 'cd "$1" && shift && exec "$@"' sh "$dir" "$binary" "$@" --bench
}

for run in $(seq 1 "$runs"); do
  bench "phoenix_roundtrip (run $run of $runs)" "phoenix_roundtrip.run$run" engine phoenix_roundtrip
  bench "runner (run $run of $runs)" "runner.run$run" cli runner
  bench "forwarding (run $run of $runs)" "forwarding.run$run" cli forwarding
done
# The soak and load are long already; one run each (the soak's figures are slopes over
# its own samples, the load's percentiles are over tens of thousands of requests).
bench "soak (${LINZUMI_SOAK_SECS} s)" soak.run1 cli soak soak
bench "load (50 clients, ${LINZUMI_LOAD_SECS} s per route)" load.run1 cli soak load
bench "floods (forwards, start_instance, huge controls)" floods.run1 cli floods

if [ -n "${LINZUMI_BENCH_SKIP_DESKTOP:-}" ]; then
  skip "desktop benchmarks" "LINZUMI_BENCH_SKIP_DESKTOP"
elif [ -f scripts/bench-desktop.sh ]; then
  LINZUMI_BENCH_JSON="$PWD/$out/results/desktop.run1.jsonl" \
    step "desktop benchmarks (scripts/bench-desktop.sh)" "$out/logs/desktop.log" \
    bash scripts/bench-desktop.sh
else
  skip "desktop benchmarks" "no scripts/bench-desktop.sh"
fi

if [ -n "${LINZUMI_BENCH_SKIP_FUZZ:-}" ]; then
  skip "fuzzing (scripts/fuzz.sh short)" "LINZUMI_BENCH_SKIP_FUZZ"
elif [ -f scripts/fuzz.sh ]; then
  # --quick fuzzes each target for 5 s instead of 20.
  step "fuzzing (scripts/fuzz.sh short)" "$out/logs/fuzz.log" \
    bash scripts/fuzz.sh short $([ "$quick" = 1 ] && echo 5)
else
  skip "fuzzing (scripts/fuzz.sh short)" "no scripts/fuzz.sh"
fi

log "report"
venv=bench/report/.venv
if ! "$venv/bin/python" -c 'import matplotlib' >/dev/null 2>&1; then
  python=$(command -v python3.11 || command -v python3)
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r bench/report/requirements.txt
fi
"$venv/bin/python" bench/report/generate.py --results "$out" --mode="$mode"

exit "$failed"
