#!/usr/bin/env python3
"""Builds docs/benchmarks.md and its plots (docs/benchmarks/*.svg) from the JSON lines the
benchmarks append to $LINZUMI_BENCH_JSON. `scripts/bench.sh` runs the benchmarks and then
this; run it alone to rebuild the page from the results of the last run:

    bench/report/.venv/bin/python bench/report/generate.py

Inputs (all under --results, default .artifacts/bench):
  results/<name>.run<N>.jsonl   one file per benchmark and run; each line one JSON object:
      {"bench", "metric", "label", "value", "unit", "role", "target": {"op", "value", "text"}}
      role: "measured" (Linzumi's figure), "peer" (a floor or another tool measured in the
      same run), "info"; "distribution" lines carry "samples" (a quantile sketch) and
      "series" lines carry time series, both for plots.
  timings.tsv                   step, seconds, exit status (written by scripts/bench.sh)
  .artifacts/fuzz-summary.json  (--fuzz) the fuzzing summary, when there is one.
Records from other producers (scripts/bench-desktop.sh) are read leniently: a line with a
numeric "value" and a "metric" or "name" is a figure; a "target" may be a string such as
"< 15 MiB".
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import math
import os
import re
import statistics
import subprocess
from collections import OrderedDict, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# What each benchmark is, in the order the page shows them. Targets come from the issues
# (and are written next to each figure by the benchmarks themselves).
BENCHES = OrderedDict(
    [
        (
            "phoenix_roundtrip",
            {
                "title": "Kandan client: Phoenix round trip",
                "command": "cargo bench -p linzumi-engine --bench phoenix_roundtrip",
                "issue": "issue 2",
                "about": "The engine's Phoenix client over loopback against the Kandan test "
                "server (in its own runtime and thread): push→reply latency over 20,000 "
                "sequential pushes and pipelined push/reply throughput (512 in flight, "
                "200,000 pairs), on a current-thread and a multi-thread tokio runtime. "
                "Floors measured in the same run: a plain TCP ping-pong between two threads "
                "and a raw WebSocket echo against the same server without our client.",
            },
        ),
        (
            "runner",
            {
                "title": "Runner: memory, idle CPU, event forwarding, streaming",
                "command": "cargo bench -p linzumi-cli --bench runner",
                "issue": "issues 3 and 4",
                "about": "The real `linzumi connect` in a process of its own. Idle memory and "
                "CPU with the real codex (3 s after joining; CPU over 10 s); Codex → Kandan "
                "notification forwarding (20,000 notifications), delta → Kandan latency "
                "(2,000 deltas 2 ms apart, 150 ms flush: the target is the flush interval "
                "plus 5 ms) and the CPU to carry 100,000 deltas, all from a scripted "
                "app-server so the load is the runner's alone. Peer: a bare Bun runtime "
                "(the reference runner's runtime) holding one Phoenix websocket.",
            },
        ),
        (
            "forwarding",
            {
                "title": "Preview forwarding: tunnel vs direct vs bore",
                "command": "cargo bench -p linzumi-cli --bench forwarding",
                "issue": "issue 5",
                "about": "One local origin reached three ways in one run: directly "
                "(`127.0.0.1:<port>`), through Kandan's preview, the forward tunnel and the "
                "runner (`tunnel`), and through `bore` 0.6.0 (a plain TCP tunnel, `bore "
                "server` + `bore local` on this machine). Small-request latency on one "
                "connection (2,000 requests), requests/s over 16 connections (5 s), MB/s of "
                "a 256 MiB body (median of 3), and the runner's memory while 100 MB stream "
                "through it. The Kandan side and the clients run in the benchmark's own "
                "process and share the cores with the runner.",
            },
        ),
        (
            "soak",
            {
                "title": "Soak: continuous turns and preview traffic",
                "command": "LINZUMI_SOAK_SECS=60 cargo bench -p linzumi-cli --bench soak -- soak",
                "issue": "issue 8",
                "about": "The real `linzumi connect` with the real codex (answering from "
                "the mock model API) runs a chat turn every second (each: a streamed "
                "reasoning summary and an answer in 150 deltas; every 4th turn runs a "
                "command first), while preview HTTP "
                "requests (128 KiB bodies every 10th), a WebSocket echo and new connections "
                "flow through the tunnel to the Node dev server. The runner's resident "
                "memory and open descriptors are sampled every second; after the warm-up "
                "(a quarter of the run, 10–60 s) their slopes are the figures (least "
                "squares, and Theil–Sen, which the limits apply to: see the end of the "
                "page). Every turn's rows are checked (processed, one row per item, exact "
                "text, not streaming) and every forwarded response is checked.",
            },
        ),
        (
            "load",
            {
                "title": "Load: 50 concurrent preview clients",
                "command": "cargo bench -p linzumi-cli --bench soak -- load",
                "issue": "issue 8",
                "about": "50 clients at once through one runner (40 HTTP keep-alive "
                "connections requesting `/api/hello` and every 10th `/app.js`, 10 "
                "WebSockets echoing back to back) → Kandan's preview proxy → the tunnel → "
                "the runner → the Node dev server; then the same clients against the dev "
                "server directly (`direct`, the peer). The Node dev server is "
                "single-threaded and shares this machine's two cores with the runner, the "
                "Kandan test server and the clients.",
            },
        ),
        (
            "floods",
            {
                "title": "Floods from Kandan: what each costs",
                "command": "cargo bench -p linzumi-cli --bench floods",
                "issue": "issue 13",
                "about": "The real `linzumi` binary in its own process; figures are its peak "
                "resident memory (VmHWM) above where it stood before each flood, and Codex's "
                "resident memory (the npm wrapper, the app-server and its children). 200 "
                "`forward_http_request`s with 4 MiB bodies to a local server that never "
                "answers (at most 16 wait, with 32 MiB of bodies; the rest are refused as "
                "`busy`); 1,400 `start_instance`s against the real codex (at most 64 "
                "threads); 30 controls of 7.9 MB into the event log (16 KiB a line). The "
                "figures before the caps (1,732 MiB, 885 MB, 237 MB) are from the issue and "
                "from the forward flood run with the caps lifted.",
            },
        ),
        (
            "desktop",
            {
                "title": "Desktop app",
                "command": "scripts/bench-desktop.sh",
                "issue": "",
                "about": "The desktop app (Tauri, webview): idle memory with the webview and "
                "cold start to tray-ready.",
            },
        ),
    ]
)

DESKTOP_ABOUT = (
    "The desktop app (Tauri, webview): idle memory with the webview and cold start to "
    "tray-ready, from `scripts/bench-desktop.sh`."
)

OPS = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
       ">=": lambda a, b: a >= b, "≤": lambda a, b: a <= b, "≥": lambda a, b: a >= b,
       "==": lambda a, b: a == b, "=": lambda a, b: a == b}


# ---- reading --------------------------------------------------------------------------------

def read_results(results: Path):
    """Every JSON line, each with its run number and source file name."""
    records = []
    for path in sorted(glob.glob(str(results / "*.jsonl"))):
        name = os.path.basename(path)
        match = re.match(r"(.+?)\.run(\d+)\.jsonl$", name)
        source, run = (match.group(1), int(match.group(2))) if match else (name[:-6], 1)
        with open(path, encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    print(f"warning: {name}:{number}: not JSON ({error}); skipped")
                    continue
                if not isinstance(record, dict):
                    continue
                record.setdefault("bench", source)
                record["_run"] = run
                record["_source"] = source
                records.append(record)
    return records


def parse_target(target):
    """(op, bound, text) from a {"op","value","text"} object or a string like "< 15 MiB"."""
    if target is None:
        return None
    if isinstance(target, dict):
        op, bound = target.get("op"), target.get("value")
        text = target.get("text") or (f"{op} {bound}" if op else "")
        if op in OPS and isinstance(bound, (int, float)):
            return op, float(bound), text
        return None if not text else (None, None, text)
    if isinstance(target, (int, float)):
        return None, None, str(target)
    text = str(target)
    match = re.match(r"^\s*(<=|>=|<|>|≤|≥|==?)\s*([-+]?[\d,]*\.?\d+)", text)
    if match:
        return match.group(1), float(match.group(2).replace(",", "")), text
    return None, None, text


def figures(records):
    """(bench, metric) → {label, unit, role, target, values: {run: value}} in first-seen order."""
    table = OrderedDict()
    for record in records:
        value = record.get("value")
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        if record.get("role") in ("distribution", "series"):
            continue
        metric = record.get("metric") or record.get("name") or record.get("label")
        if not metric:
            continue
        key = (str(record["bench"]), str(metric))
        entry = table.setdefault(
            key,
            {
                "label": record.get("label") or record.get("name") or str(metric),
                "unit": record.get("unit", ""),
                "role": record.get("role", "measured"),
                "target": parse_target(record.get("target")),
                "values": OrderedDict(),
                "samples": [],
            },
        )
        entry["values"].setdefault(record["_run"], []).append(float(value))
        # A figure that is already the median of repeated measurements in one run (the
        # desktop's cold starts) may bring them along, for the spread.
        samples = record.get("samples")
        if isinstance(samples, list):
            entry["samples"] += [float(v) for v in samples if isinstance(v, (int, float))]
    for entry in table.values():
        # One value per run (the mean if a run reported a figure twice).
        entry["values"] = [statistics.fmean(v) for v in entry["values"].values()]
    return table


# ---- formatting -----------------------------------------------------------------------------

def number(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    magnitude = abs(value)
    if float(value).is_integer() and magnitude < 1e15:
        return f"{int(value):,}"
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    if magnitude == 0:
        return "0"
    return f"{value:.3f}"


def with_unit(text: str, unit: str) -> str:
    if not unit:
        return text
    if unit in ("%", "x"):
        return f"{text}{unit}" if unit == "%" else f"{text}×"
    return f"{text} {unit}"


def verdict(entry, value):
    target = entry["target"]
    if not target or target[0] is None:
        return ""
    op, bound, _ = target
    return "✅ met" if OPS[op](value, bound) else "❌ missed"


def escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def figure_rows(entries, with_target: bool):
    rows = []
    for (_, _), entry in entries:
        values = entry["values"]
        median = statistics.median(values)
        spread = (
            f"{number(min(values))} – {number(max(values))}" if len(values) > 1 else "—"
        )
        count = f"{len(values)} runs" if len(values) > 1 else "1 run"
        if len(values) == 1 and len(entry["samples"]) > 1:
            samples = entry["samples"]
            spread = f"{number(min(samples))} – {number(max(samples))}"
            count = f"{len(samples)} samples"
        cells = [escape(entry["label"].strip())]
        if with_target:
            cells.append(escape(entry["target"][2]) if entry["target"] else "")
        cells += [
            with_unit(number(median), entry["unit"]),
            spread,
            count,
        ]
        if with_target:
            cells.append(verdict(entry, median))
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def cpu_split(table):
    """Where one small forwarded request's CPU goes, per route and process (forwarding bench
    `cpu_<route>_<process>` figures), with the rate those costs allow on this machine."""
    routes = OrderedDict()
    for (bench, metric), entry in table.items():
        if bench != "forwarding" or not metric.startswith("cpu_"):
            continue
        route, who = entry["label"].split(", ", 1)[1].split(": ", 1)
        routes.setdefault(route, []).append((who, statistics.median(entry["values"])))
    if not routes:
        return []
    cores = os.cpu_count() or 1
    lines = [
        "",
        "Where the CPU of one small request goes (16 connections; medians over the runs; "
        "\"this process\" is the benchmark's own: the clients and the origin, and for the "
        "tunnel Kandan's preview proxy too). A route cannot serve more than "
        f"{cores} cores × 10⁶ ÷ its total µs requests per second on this machine:",
        "",
        "| route | µs per request, by process | total | ceiling |",
        "| --- | --- | ---: | ---: |",
    ]
    for route, parts in routes.items():
        total = sum(micros for _, micros in parts)
        shown = ", ".join(f"{escape(who)} {micros:.1f}" for who, micros in parts)
        lines.append(f"| {escape(route)} | {shown} | {total:.1f} µs | "
                     f"{number(cores * 1e6 / total)} req/s |")
    direct = dict(routes.get("direct", []))
    tunnel = dict(routes.get("tunnel", []))
    if "this process" in direct and "this process" in tunnel and "runner" in tunnel:
        kandan = tunnel["this process"] - direct["this process"]
        base = direct["this process"]
        # Half of direct's rate allows the two hops together what direct costs in all.
        verdict_text = (
            "Kandan's proxy alone costs more than that, so on this machine the tunnel cannot "
            "reach half of direct's rate whatever the runner does"
            if kandan >= base else
            f"the runner would have to cost at most {base - kandan:.1f} µs"
        )
        lines += [
            "",
            f"The tunnel's request costs the runner {tunnel['runner']:.1f} µs and Kandan's "
            f"proxy about {kandan:.1f} µs (this process's CPU beyond direct's), on top of the "
            f"{base:.1f} µs that clients and origin spend in any case. Half of direct's rate "
            f"leaves the two hops {base:.1f} µs together: {verdict_text}. `bore` copies bytes "
            "on both hops without parsing HTTP.",
        ]
    return lines


def bench_tables(bench, table):
    entries = [(k, v) for k, v in table.items()
               if k[0] == bench and not (bench == "forwarding" and k[1].startswith("cpu_"))]
    own = [(k, v) for k, v in entries if v["role"] != "peer"]
    peers = [(k, v) for k, v in entries if v["role"] == "peer"]
    lines = []
    if own:
        lines += [
            "| figure | target | median | spread (min – max) | over | |",
            "| --- | --- | ---: | ---: | ---: | --- |",
        ]
        lines += figure_rows(own, True)
    if peers:
        lines += [
            "",
            "Peers and floors, measured in the same runs:",
            "",
            "| peer / floor | median | spread (min – max) | over |",
            "| --- | ---: | ---: | ---: |",
        ]
        lines += figure_rows(peers, False)
    return lines


# ---- the machine ----------------------------------------------------------------------------

def run(command, cwd=ROOT):
    try:
        out = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=30)
        return (out.stdout or out.stderr).strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine():
    info = OrderedDict()
    cpu = ""
    for line in run(["lscpu"]).splitlines():
        if line.startswith("Model name:"):
            cpu = line.split(":", 1)[1].strip()
            break
    info["CPU"] = cpu or "unknown"
    info["cores"] = f"{os.cpu_count()} logical"
    try:
        with open("/proc/meminfo", encoding="utf-8") as meminfo:
            kib = int(next(l for l in meminfo if l.startswith("MemTotal")).split()[1])
        info["RAM"] = f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration, ValueError):
        info["RAM"] = "unknown"
    pretty = ""
    try:
        with open("/etc/os-release", encoding="utf-8") as release:
            for line in release:
                if line.startswith("PRETTY_NAME="):
                    pretty = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    info["OS"] = pretty or "unknown"
    info["kernel"] = run(["uname", "-sr"])
    info["rustc"] = run(["rustc", "-V"])
    info["build"] = "cargo `bench` profile (release: thin LTO, 4 codegen units)"
    info["node"] = run(["node", "--version"])
    codex = ROOT / "tools/node_modules/.bin/codex"
    if codex.exists():
        info["codex"] = run([str(codex), "--version"])
    bun = ROOT / "bench/peers/node_modules/.bin/bun"
    if bun.exists():
        info["Bun (peer)"] = run([str(bun), "--version"])
    bore = ROOT / "target/bench-tools/bin/bore"
    if bore.exists():
        info["bore (peer)"] = run([str(bore), "--version"])
    commit = run(["git", "rev-parse", "--short=12", "HEAD"])
    if commit:
        dirty = run(["git", "status", "--porcelain", "--untracked-files=no"])
        info["commit"] = commit + (" (with uncommitted changes)" if dirty else "")
    return info


# ---- plots ----------------------------------------------------------------------------------

def plotting():
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("svg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "svg.fonttype": "none",  # text stays text: small files, readable diffs
            "svg.hashsalt": "linzumi-benchmarks",  # stable ids between runs
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "figure.dpi": 100,
        }
    )
    return plt


COLORS = {"tunnel": "#1f77b4", "direct": "#2ca02c", "bore": "#d62728"}


def merged_samples(records, bench, metric):
    samples = []
    for record in records:
        if (record.get("bench"), record.get("metric")) == (bench, metric) and record.get(
            "role"
        ) == "distribution":
            samples += [float(v) for v in record.get("samples", []) if v is not None]
    return samples


def log_bins(groups, count=60):
    values = [v for samples in groups for v in samples if v > 0]
    if not values:
        return None
    low, high = min(values), max(values)
    if high <= low:
        high = low * 1.01 + 1e-9
    step = (math.log10(high) - math.log10(low)) / count
    return [10 ** (math.log10(low) + i * step) for i in range(count + 1)]


def histogram(plt, axis, series, unit, title, lines=(), linear=False):
    bins = log_bins([samples for _, samples in series])
    if bins is None:
        return False
    if linear:
        high = max(v for _, samples in series for v in samples)
        bins = [high * i / 60 for i in range(61)]
    for name, samples in series:
        if not samples:
            continue
        weights = [100.0 / len(samples)] * len(samples)
        p50 = statistics.median(samples)
        axis.hist(
            [max(v, bins[0]) for v in samples],
            bins=bins,
            weights=weights,
            histtype="step",
            linewidth=1.4,
            color=COLORS.get(name),
            label=f"{name} (p50 {number(p50)} {unit})",
        )
    for x, label in lines:
        axis.axvline(x, color="#555", linestyle="--", linewidth=1)
        axis.annotate(label, (x, 1), xycoords=("data", "axes fraction"), rotation=90,
                      va="top", ha="right", fontsize=8, color="#555")
    axis.set_xlabel(unit)
    axis.set_ylabel("% of samples")
    axis.set_title(title)
    axis.legend(frameon=False)
    if linear:
        return True
    axis.set_xscale("log")
    from matplotlib.ticker import FuncFormatter, LogLocator

    axis.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    return True


def save(plt, figure, path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, format="svg", metadata={"Date": None})
    if os.environ.get("LINZUMI_BENCH_PNG"):  # for looking at the plots without a browser
        figure.savefig(path.with_suffix(".png"), format="png", dpi=110)
    plt.close(figure)


def make_plots(records, plots: Path, page: Path):
    """Writes the SVGs; returns {name: markdown image line}."""
    plt = plotting()
    if plt is None:
        return {}, "matplotlib is not installed; no plots (scripts/bench.sh installs it)."
    made = {}
    rel = os.path.relpath(plots, page.parent)

    def link(name, alt):
        return f"![{alt}]({rel}/{name})"

    # Forwarding latency, one connection: direct, tunnel, bore.
    series = [(route, merged_samples(records, "forwarding", f"latency_{route}"))
              for route in ("direct", "tunnel", "bore")]
    series = [(n, s) for n, s in series if s]
    if series:
        figure, axis = plt.subplots(figsize=(7, 3.4))
        if histogram(plt, axis, series, "µs",
                     "Small request latency on one connection (forwarding bench)"):
            save(plt, figure, plots / "forwarding-latency.svg")
            made["forwarding"] = link("forwarding-latency.svg", "forwarding latency histogram")

    # Load: HTTP and WebSocket latency, direct vs tunnel.
    http = [(r, merged_samples(records, "load", f"http_latency_{r}")) for r in ("direct", "tunnel")]
    ws = [(r, merged_samples(records, "load", f"ws_latency_{r}")) for r in ("direct", "tunnel")]
    if any(s for _, s in http + ws):
        figure, axes = plt.subplots(1, 2, figsize=(9, 3.4))
        histogram(plt, axes[0], [x for x in http if x[1]], "ms", "HTTP request latency, 50 clients")
        histogram(plt, axes[1], [x for x in ws if x[1]], "ms", "WebSocket echo latency, 50 clients")
        save(plt, figure, plots / "load-latency.svg")
        made["load"] = link("load-latency.svg", "load latency histograms")

    # Delta → Kandan latency.
    deltas = merged_samples(records, "runner", "delta_latency")
    if deltas:
        figure, axis = plt.subplots(figsize=(7, 3.2))
        COLORS.setdefault("deltas", "#1f77b4")
        if histogram(plt, axis, [("deltas", deltas)], "ms",
                     "Delta → Kandan latency (150 ms flush)", lines=[(155, "target 155 ms")],
                     linear=True):
            save(plt, figure, plots / "delta-latency.svg")
            made["runner"] = link("delta-latency.svg", "delta latency histogram")

    # Soak: memory and descriptors over time.
    soak = [r for r in records if r.get("bench") == "soak" and r.get("role") == "series"]
    if soak:
        record = soak[-1]
        rows = record.get("samples", [])
        warmup = float(record.get("warmup_secs", 0))
        if rows:
            secs = [row[0] for row in rows]
            rss = [row[1] / 1024 for row in rows]
            fds = [row[2] for row in rows]
            figure, axis = plt.subplots(figsize=(8, 3.6))
            axis.plot(secs, rss, color="#1f77b4", linewidth=1.4, label="resident memory (MiB)")
            after = [(t, r) for t, r in zip(secs, rss) if t >= warmup]
            if len(after) >= 2:
                xs = [after[0][0], after[-1][0]]
                slope_per_s = fit_slope(after)
                mean_t = statistics.fmean(t for t, _ in after)
                mean_r = statistics.fmean(r for _, r in after)
                axis.plot(xs, [mean_r + slope_per_s * (x - mean_t) for x in xs],
                          color="#1f77b4", linestyle="--", linewidth=1,
                          label=f"least squares: {slope_per_s * 60 * 1024:+.0f} KiB/min")
                robust = theil_sen(after)
                intercept = statistics.median(r - robust * t for t, r in after)
                axis.plot(xs, [intercept + robust * x for x in xs],
                          color="#9467bd", linestyle=":", linewidth=1.4,
                          label=f"Theil–Sen: {robust * 60 * 1024:+.0f} KiB/min")
            axis.axvspan(0, warmup, color="#999", alpha=0.15, label="warm-up")
            axis.set_xlabel("seconds")
            axis.set_ylabel("MiB")
            low = min(rss)
            axis.set_ylim(max(0, low - 4), max(rss) + 4)
            twin = axis.twinx()
            twin.plot(secs, fds, color="#ff7f0e", linewidth=1, label="open descriptors")
            twin.set_ylabel("descriptors")
            twin.set_ylim(0, max(fds) * 1.6 + 1)
            twin.grid(False)
            handles = axis.get_legend_handles_labels()
            twin_handles = twin.get_legend_handles_labels()
            axis.legend(handles[0] + twin_handles[0], handles[1] + twin_handles[1],
                        frameon=False, loc="lower right", fontsize=8)
            axis.set_title("Runner during the soak (sampled every second)")
            save(plt, figure, plots / "soak-memory.svg")
            made["soak"] = link("soak-memory.svg", "runner memory and descriptors during the soak")
    return made, None


def theil_sen(points, limit=600):
    stride = max(1, math.ceil(len(points) / limit))
    points = points[::stride]
    slopes = [
        (b[1] - a[1]) / (b[0] - a[0])
        for i, a in enumerate(points)
        for b in points[i + 1:]
        if b[0] > a[0]
    ]
    return statistics.median(slopes) if slopes else 0.0


def fit_slope(points):
    mean_x = statistics.fmean(p[0] for p in points)
    mean_y = statistics.fmean(p[1] for p in points)
    var = sum((p[0] - mean_x) ** 2 for p in points)
    if var == 0:
        return 0.0
    return sum((p[0] - mean_x) * (p[1] - mean_y) for p in points) / var


# ---- other producers ------------------------------------------------------------------------

def flatten(value, prefix=""):
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from flatten(inner, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list) and not all(isinstance(v, dict) for v in value):
        yield prefix, ", ".join(str(v) for v in value)
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            name = inner.get("target") or inner.get("name") or str(index)
            yield from flatten({k: v for k, v in inner.items() if k not in ("target", "name")},
                               f"{prefix}[{name}]")
    else:
        yield prefix, value


def fuzz_section(path: Path):
    lines = ["## Fuzzing", ""]
    if not path.exists():
        lines += [
            "No fuzzing summary in this run (`scripts/fuzz.sh short` writes "
            "`.artifacts/fuzz-summary.json`; it was not there).",
            "",
        ]
        return lines
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        return lines + [f"`{path.name}` could not be read: {error}.", ""]
    modified = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc)
    lines += [f"From `scripts/fuzz.sh short` (`.artifacts/fuzz-summary.json`, written "
              f"{modified:%Y-%m-%d %H:%M} UTC).", ""]
    targets = None
    if isinstance(summary, dict):
        for key in ("targets", "results", "fuzzers"):
            if isinstance(summary.get(key), list) and all(isinstance(t, dict) for t in summary[key]):
                targets = summary[key]
                rest = {k: v for k, v in summary.items() if k != key}
                break
            if isinstance(summary.get(key), dict) and all(
                isinstance(t, dict) for t in summary[key].values()
            ):
                targets = [dict(name=name, **t) for name, t in summary[key].items()]
                rest = {k: v for k, v in summary.items() if k != key}
                break
    elif isinstance(summary, list) and all(isinstance(t, dict) for t in summary):
        targets, rest = summary, {}
    if targets is not None:
        columns = []
        for target in targets:
            for key, value in target.items():
                if key not in columns and not isinstance(value, (dict, list)):
                    columns.append(key)
        lines += ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
        for target in targets:
            cells = [fmt_cell(target.get(c, "")) for c in columns]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        summary = rest
    scalars = list(flatten(summary)) if summary else []
    if scalars:
        lines += ["| field | value |", "| --- | --- |"]
        lines += [f"| {escape(k)} | {fmt_cell(v)} |" for k, v in scalars]
        lines.append("")
    return lines


def fmt_cell(value):
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return number(float(value)) if isinstance(value, float) else f"{value:,}"
    return escape(value)


# ---- the page -------------------------------------------------------------------------------

def read_timings(path: Path):
    steps = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            parts = line.split("\t")
            if len(parts) >= 3:
                load = parts[3] if len(parts) > 3 else ""
                steps.append((parts[0], float(parts[1]), parts[2], load))
    return steps


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    return f"{seconds // 60} min {seconds % 60:02d} s"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(ROOT / ".artifacts/bench"))
    parser.add_argument("--fuzz", default=str(ROOT / ".artifacts/fuzz-summary.json"))
    parser.add_argument("--out", default=str(ROOT / "docs/benchmarks.md"))
    parser.add_argument("--plots", default=str(ROOT / "docs/benchmarks"))
    parser.add_argument("--mode", default="", help="how scripts/bench.sh was run, for the page")
    args = parser.parse_args()

    results = Path(args.results)
    records = read_results(results / "results")
    table = figures(records)
    page = Path(args.out)
    plots, plot_note = make_plots(records, Path(args.plots), page)
    timings = read_timings(results / "timings.tsv")
    info = machine()
    # When the benchmarks ran: the newest result (the page may be rebuilt later).
    stamps = [p.stat().st_mtime for p in (results / "results").glob("*.jsonl")]
    now = (dt.datetime.fromtimestamp(max(stamps), dt.timezone.utc) if stamps
           else dt.datetime.now(dt.timezone.utc))

    out = [
        "# Benchmarks",
        "",
        "<!-- Generated by scripts/bench.sh (bench/report/generate.py); edit those, not this file. -->",
        "",
        f"Measured {now:%Y-%m-%d %H:%M} UTC with `scripts/bench.sh{(' ' + args.mode) if args.mode else ''}`. "
        "Each figure is the median over the runs of its benchmark, with the spread (smallest "
        "and largest run) next to it; a figure that is itself a percentile (p50, p99) is that "
        "percentile of one run's samples, and then the median of those over the runs. "
        "Targets are the issues'; ✅/❌ compares the median with its target. Peers and floors "
        "(direct loopback, `bore`, a bare Bun runtime, a TCP ping-pong, a raw WebSocket echo) "
        "are measured in the same runs on the same machine, so they say what the machine "
        "itself costs.",
        "",
        "## Machine",
        "",
        "| | |",
        "| --- | --- |",
    ]
    out += [f"| {k} | {escape(v)} |" for k, v in info.items()]
    out.append(f"| date | {now:%Y-%m-%d} |")
    out.append("")

    failed = [(step, status) for step, _, status, _ in timings if status not in ("0", "skipped")]
    missed = [
        (key, entry)
        for key, entry in table.items()
        if entry["target"] and entry["target"][0] and verdict(entry, statistics.median(entry["values"])).startswith("❌")
    ]
    out += ["## Summary", ""]
    if failed:
        out += [f"- **{step}** exited with status {status} (see its log under `.artifacts/bench/logs/`)."
                for step, status in failed]
    targets = [e for e in table.values() if e["target"] and e["target"][0]]
    out.append(f"- {len(targets) - len(missed)} of {len(targets)} figures with a target meet it.")
    for (bench, _), entry in missed:
        out.append(
            f"- Missed: {escape(entry['label'])} ({bench}): "
            f"{with_unit(number(statistics.median(entry['values'])), entry['unit'])}, "
            f"target {escape(entry['target'][2])}."
        )
    out.append("")

    benches = list(BENCHES)
    others = sorted({b for b, _ in table} - set(benches))
    for bench in benches + others:
        meta = BENCHES.get(bench)
        if not any(k[0] == bench for k in table) and bench not in plots:
            if meta and bench != "desktop":  # the desktop's absence has its own section
                out += [f"## {meta['title']}", "", f"`{meta['command']}` — not run, or it reported nothing.", ""]
            continue
        if meta:
            issue = f" ({meta['issue']})" if meta["issue"] else ""
            command = meta["command"]
            soak = table.get(("soak", "duration"))
            if bench == "soak" and soak:
                # The command as it ran: CI's minute, or the longer soak on demand.
                seconds = round(statistics.median(soak["values"]))
                command = command.replace("LINZUMI_SOAK_SECS=60", f"LINZUMI_SOAK_SECS={seconds}")
            out += [f"## {meta['title']}", "", f"`{command}`{issue}. {meta['about']}", ""]
        else:
            out += [f"## {bench}", "", f"From `scripts/bench-desktop.sh`. {DESKTOP_ABOUT}" if bench.startswith("desktop") else "", ""]
        out += bench_tables(bench, table)
        if bench == "forwarding":
            out += cpu_split(table)
        out.append("")
        if bench in plots:
            out += [plots[bench], ""]

    if not any(r["_source"].startswith("desktop") or str(r["bench"]).startswith("desktop")
               for r in records):
        out += [
            "## Desktop app",
            "",
            "No desktop figures in this run (`scripts/bench-desktop.sh` was not there or "
            "reported nothing). " + DESKTOP_ABOUT,
            "",
        ]

    out += fuzz_section(Path(args.fuzz))

    if plot_note:
        out += [f"_{plot_note}_", ""]

    if timings:
        total = sum(seconds for _, seconds, _, _ in timings)
        out += [
            "## How long this took",
            "",
            "The load average is the machine's 1-minute load as the step started: above 0 "
            f"the benchmarks shared the {os.cpu_count()} cores with other work.",
            "",
            "| step | wall time | exit | load average |",
            "| --- | ---: | --- | ---: |",
        ]
        out += [
            f"| {escape(step)} | {duration(seconds)} | {status} | {load} |"
            for step, seconds, status, load in timings
        ]
        out += [f"| **total** | **{duration(total)}** | | |", ""]

    out += [
        "## Running them",
        "",
        "```sh",
        "scripts/bench.sh            # everything, 3 runs of each micro-benchmark, a 60 s soak: this page",
        "scripts/bench.sh --quick    # 1 run each, a 30 s soak, a 5 s load: a quick look",
        "LINZUMI_SOAK_SECS=600 cargo bench -p linzumi-cli --bench soak -- soak   # a real soak",
        "```",
        "",
        "Each benchmark prints its figures for people; with `LINZUMI_BENCH_JSON=<file>` it "
        "also appends them as JSON lines (`bench`, `metric`, `label`, `value`, `unit`, "
        "`role`: `measured`/`peer`/`info`, `target`: `{op, value, text}`), which "
        "`bench/report/generate.py` turns into this page. Raw results and logs stay in "
        "`.artifacts/bench/`.",
        "",
        "The soak reports two slopes of the runner's resident memory and open descriptors "
        "after the warm-up: least squares, and Theil–Sen (the median of the slopes between "
        "every two samples). A leak lifts both; a few allocator steps late in a run lift the "
        "first a lot and the second little, so the limits apply to Theil–Sen. The soak fails "
        "(non-zero exit) when the memory slope would raise the line more than 1 MiB across "
        "the measured window, or more than 128 KiB/min, whichever allows more (1365 KiB/min "
        "for the 60 s run, 128 KiB/min for a 10-minute one), when the descriptors grow "
        "faster than 6 per minute, when the runner holds more than 4 descriptors more at "
        "rest after the run than before it, when any turn or item is lost, or when any "
        "forwarded request or WebSocket message fails; the load fails on any error.",
        "",
    ]
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text("\n".join(out), encoding="utf-8")
    print(f"wrote {page}" + (f" and {len(plots)} plots" if plots else ""))


if __name__ == "__main__":
    main()
