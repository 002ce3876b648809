#!/usr/bin/env bash
# Fuzzes the engine's parsers with cargo-fuzz (the fuzz/ crate: its own workspace, built
# on nightly with AddressSanitizer and libFuzzer).
#
#   scripts/fuzz.sh short            every target for 20 s (CI)
#   scripts/fuzz.sh long [seconds]   every target for longer (default 600 s)
#
# FUZZ_TARGETS="phoenix_frame tunnel_frame" narrows the set; FUZZ_ARGS adds libFuzzer
# flags. Each target runs with its seeds (fuzz/corpus/<target>, read only), its
# dictionary, and a working corpus that grows between runs (fuzz/corpus-work/<target>).
# Limits: an input may take 5 s, the process 512 MB, one allocation 128 MB; beyond any
# of them, or on a panic, the target fails.
#
# Prints per target: executions, exec/s, coverage (libFuzzer's cov: edges and ft:
# features), corpus size. Writes the figures to .artifacts/fuzz-summary.json (or
# $FUZZ_SUMMARY). Exits non-zero if any target failed; the input that did it is kept
# under fuzz/artifacts/<target>/ and the log under .artifacts/fuzz-logs/<target>.log.
# Reproduce one with: fuzz/target/<host>/release/<target> fuzz/artifacts/<target>/<file>
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

mode=${1:-short}
case "$mode" in
  short) seconds=${2:-20} ;;
  long) seconds=${2:-600} ;;
  -h | --help | help) usage ;;
  *) usage ;;
esac
[[ "$seconds" =~ ^[0-9]+$ ]] || usage

TOOLCHAIN=${FUZZ_TOOLCHAIN:-nightly}
SUMMARY=${FUZZ_SUMMARY:-.artifacts/fuzz-summary.json}
LOGS=.artifacts/fuzz-logs

log() { printf '==> %s\n' "$*"; }

# cargo-fuzz needs a nightly compiler (sanitizers, -Z flags).
if ! cargo "+$TOOLCHAIN" --version >/dev/null 2>&1; then
  log "installing the $TOOLCHAIN toolchain"
  rustup toolchain install "$TOOLCHAIN" --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

host=$(rustc "+$TOOLCHAIN" -vV | sed -n 's/^host: //p')
mapfile -t all_targets < <(cargo "+$TOOLCHAIN" fuzz list)
read -r -a targets <<<"${FUZZ_TARGETS:-${all_targets[*]}}"

log "building the fuzz targets ($(cargo fuzz --version), $(rustc "+$TOOLCHAIN" --version))"
build_start=$(date +%s%N)
cargo "+$TOOLCHAIN" fuzz build
build_seconds=$(awk -v ns=$(($(date +%s%N) - build_start)) 'BEGIN { printf "%.1f", ns / 1e9 }')
log "built in $build_seconds s"

mkdir -p "$LOGS" "$(dirname "$SUMMARY")"
# A small quarantine keeps ASan's own memory well inside the 512 MB limit.
export ASAN_OPTIONS="quarantine_size_mb=64:${ASAN_OPTIONS:-}"

# The value after `key` on the last line of `file` that has it.
field() { grep -aEo "$2 *[0-9]+" "$1" | tail -1 | grep -Eo '[0-9]+$' || echo null; }
# `corp: 947/61Kb` → 947 and 61Kb
corpus_of() { grep -aEo 'corp: [0-9]+/[0-9]+[a-zA-Z]*' "$1" | tail -1 | sed 's/corp: //' || true; }

failed=0
results=()
rows=()
for target in "${targets[@]}"; do
  bin="fuzz/target/$host/release/$target"
  [[ -x "$bin" ]] || { echo "no fuzz target $target" >&2; exit 2; }
  work="fuzz/corpus-work/$target"
  mkdir -p "$work" "fuzz/artifacts/$target" "fuzz/corpus/$target"
  dict=()
  [[ -f "fuzz/dict/$target.dict" ]] && dict=("-dict=fuzz/dict/$target.dict")
  logfile="$LOGS/$target.log"
  log "fuzzing $target for $seconds s"
  started=$(date +%s)
  set +e
  # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
  "$bin" "$work" "fuzz/corpus/$target" "${dict[@]}" \
    -max_total_time="$seconds" -timeout=5 -rss_limit_mb=512 -malloc_limit_mb=128 \
    -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$target/" ${FUZZ_ARGS:-} \
    >"$logfile" 2>&1
  code=$?
  set -e
  elapsed=$(($(date +%s) - started))

  status=ok
  if ((code != 0)); then
    failed=1
    if grep -aq 'out-of-memory' "$logfile"; then status=out-of-memory
    elif grep -aq 'libFuzzer: timeout' "$logfile"; then status=timeout
    elif grep -aq 'LeakSanitizer' "$logfile"; then status=leak
    else status=crash; fi
  fi
  execs=$(field "$logfile" 'stat::number_of_executed_units:')
  rate=$(field "$logfile" 'stat::average_exec_per_sec:')
  new_units=$(field "$logfile" 'stat::new_units_added:')
  rss=$(field "$logfile" 'stat::peak_rss_mb:')
  cov=$(field "$logfile" ' cov:')
  ft=$(field "$logfile" ' ft:')
  corp=$(corpus_of "$logfile")
  units=${corp%%/*}
  files=$(find "$work" "fuzz/corpus/$target" -type f | wc -l)
  artifact=$(grep -aEo "Test unit written to [^ ]+" "$logfile" | tail -1 | sed 's/Test unit written to //' || true)

  printf '    %-15s %-13s execs %-9s exec/s %-7s cov %-5s ft %-6s corpus %s units (%s), %s files\n' \
    "$target" "$status" "$execs" "$rate" "$cov" "$ft" "${units:-?}" "${corp#*/}" "$files"
  if [[ "$status" != ok ]]; then
    grep -aE "panicked at|ERROR:|SUMMARY" "$logfile" | head -5 | sed 's/^/      /'
    echo "      input: ${artifact:-none saved}; log: $logfile"
  fi
  rows+=("$(printf '%-15s %-13s %10s %8s %6s %7s %8s' "$target" "$status" "$execs" "$rate" "$cov" "$ft" "${units:-?}")")
  results+=("$(printf '{"target": "%s", "status": "%s", "seconds": %s, "executions": %s, "exec_per_sec": %s, "cov": %s, "ft": %s, "corpus_units": %s, "corpus_size": "%s", "corpus_files": %s, "new_units": %s, "peak_rss_mb": %s, "artifact": %s}' \
    "$target" "$status" "$elapsed" "$execs" "$rate" "$cov" "$ft" "${units:-null}" "${corp#*/}" "$files" "$new_units" "$rss" \
    "$([[ -n "$artifact" ]] && printf '"%s"' "$artifact" || echo null)")")
done

{
  printf '{\n  "mode": "%s",\n  "seconds_per_target": %s,\n  "build_seconds": %s,\n' "$mode" "$seconds" "$build_seconds"
  printf '  "toolchain": "%s",\n  "cargo_fuzz": "%s",\n  "finished_at": "%s",\n' \
    "$(rustc "+$TOOLCHAIN" --version)" "$(cargo fuzz --version)" "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  printf '  "limits": {"timeout_s": 5, "rss_limit_mb": 512, "malloc_limit_mb": 128},\n'
  printf '  "targets": [\n'
  for i in "${!results[@]}"; do
    printf '    %s%s\n' "${results[$i]}" "$([[ $i -lt $((${#results[@]} - 1)) ]] && echo ,)"
  done
  printf '  ]\n}\n'
} >"$SUMMARY"

echo
printf '%-15s %-13s %10s %8s %6s %7s %8s\n' target status execs exec/s cov ft corpus
printf '%s\n' "${rows[@]}"
log "summary: $SUMMARY"
if ((failed)); then
  log "fuzzing found a problem; see the inputs under fuzz/artifacts/"
  exit 1
fi
