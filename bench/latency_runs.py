#!/usr/bin/env python3
"""Run ``latency_bench.py`` several times and summarise: per operation and tool the median wall
time and its range, and mailvault's ratio to each anchor run by run (each run times every tool in
the same minute, so a ratio is taken within one run, never across runs).

Why: on a 2-CPU VM an anchor's figure can swing by 2x between runs (mbsync's pull into the VM's
disk: 5-15 s for the same corpus A pull, from the disk's varying cost per created file), so a
single run's ratio says little. The summary gives the median ratio and in how many runs each target was met.

    python bench/latency_runs.py --runs 5 -- --tools mailvault,mbsync --ops fresh,noop,restore
    python bench/latency_runs.py --runs 3 --json -- --ops restore-gmail > out.json
    python bench/latency_runs.py --runs 3 --alternate "--store-dir /dev/shm" -- --tools mailvault,mbsync --ops fresh

Everything after ``--`` goes to latency_bench.py unchanged (``--json`` is added). ``--alternate
ARGS`` runs every run twice, once as given and once with ARGS added, one after the other (the
host's speed drifts over the hours, so two series compare only when interleaved), and prints a
summary of each.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from common import loadavg, log
from latency_bench import NOOP_TARGET_S

HERE = Path(__file__).resolve().parent


def _one_run(bench_args: list[str], timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, str(HERE / "latency_bench.py"), *bench_args, "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    try:
        out: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise SystemExit(f"latency_bench.py failed (exit {done.returncode}): {' | '.join(tail)}") from None
    return out


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians, ranges and per-run ratios of ``runs`` (latency_bench.py JSON reports)."""
    ops: dict[str, Any] = {}
    for run in runs:
        for tool, results in run["results"].items():
            for op, r in results.items():
                if r.get("status") == "ok" and r.get("wall_s") is not None:
                    ops.setdefault(op, {}).setdefault("wall", {}).setdefault(tool, []).append(r["wall_s"])
        for rat in run["ratios"]:
            if rat.get("value") is None:
                continue
            entry = ops.setdefault(rat["op"], {}).setdefault("ratios", {}).setdefault(rat["anchor"], [])
            entry.append({"value": rat["value"], "met": rat.get("met"), "target": rat.get("target")})
    out: dict[str, Any] = {}
    for op, d in ops.items():
        walls = {
            t: {"median": statistics.median(v), "min": min(v), "max": max(v), "runs": v}
            for t, v in d.get("wall", {}).items()
        }
        ratios = {}
        for anchor, rs in d.get("ratios", {}).items():
            values = [r["value"] for r in rs]
            target = rs[0]["target"]
            met = sum(1 for r in rs if r["met"]) if target not in (None, float("inf")) else None
            ratios[anchor] = {
                "median": statistics.median(values),
                "min": min(values),
                "max": max(values),
                "runs": values,
                "target": target,
                "met_runs": met,
            }
        out[op] = {"wall": walls, "ratios": ratios}
    return out


def _calibration_range(runs: list[dict[str, Any]]) -> str:
    """The host's speed over the runs (bench/common.py ``cpu_calibration``): lower is faster."""
    values = [c for r in runs for c in r["host"].get("cpu_calibration") or [] if c is not None]
    return f"{min(values):.3f}-{max(values):.3f}" if values else "n/a"


def _store_range(runs: list[dict[str, Any]]) -> str:
    """Where the tools stored and what a bare Maildir delivery took there over the runs
    (bench/fscost.py)."""
    stores = [s for s in (r["conditions"].get("store") for r in runs) if s]
    if not stores:
        return "where the tools store: not recorded"
    costs = [s["delivery_s"] for s in stores]
    first = stores[0]
    return (
        f"tools stored on {first['fs']}; a bare Maildir delivery of {first['files']:,} files there "
        f"(fsync each: {'yes' if first['fsync'] else 'no'}): {min(costs):.2f}-{max(costs):.2f} s"
    )


def render(summary: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    head = runs[0]
    loads = [r["host"]["loadavg_start"][0] for r in runs] + [r["host"]["loadavg_end"][0] for r in runs]
    lines = [
        f"latency_bench.py x {len(runs)}: {head['conditions']['imaps_proxy']}, Dovecot mail_fsync = "
        f"{head['conditions']['server_fsync']}, {head['versions']['mailvault']}, {head['versions']['mbsync']}",
        f"corpus: {head['corpus']['messages']:,} messages; load average (1 min) over the runs: "
        f"{min(loads):.2f}-{max(loads):.2f}; CPU calibration (zstd -9 of 4 MiB, CPU s): "
        f"{_calibration_range(runs)}",
        _store_range(runs),
        "",
        f"{'operation':<16}{'tool':<12}{'median s':>9}  {'range s':<13}{'ratio to mbsync (runs)':<34}{'median':>7}  target",
        "-" * 108,
    ]
    for op, d in summary.items():
        for tool, w in d["wall"].items():
            rat = d["ratios"].get("mbsync") if tool == "mailvault" else None
            runs_txt = med = tgt = ""
            if rat is not None:
                runs_txt = " ".join(f"{v:.2f}" for v in rat["runs"])
                med = f"{rat['median']:.2f}"
                if rat["met_runs"] is not None:
                    tgt = f"<= {rat['target']:g}x: met in {rat['met_runs']}/{len(rat['runs'])} runs"
            if op == "noop" and tool == "mailvault":
                met = sum(1 for v in w["runs"] if v <= NOOP_TARGET_S)
                tgt = f"<= {NOOP_TARGET_S:g} s: met in {met}/{len(w['runs'])} runs"
            rng = f"{w['min']:.2f}-{w['max']:.2f}"
            lines.append(f"{op:<16}{tool:<12}{w['median']:>9.2f}  {rng:<13}{runs_txt:<34}{med:>7}  {tgt}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ours, bench_args = (
        (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    )
    ap = argparse.ArgumentParser(description="latency_bench.py, several runs, summarised")
    ap.add_argument("--runs", type=int, default=5, help="how many runs (default 5)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per run (default 3600)")
    ap.add_argument("--json", action="store_true", help="print the runs and the summary as JSON")
    ap.add_argument(
        "--alternate",
        metavar="ARGS",
        help="a second series, interleaved run by run: latency_bench.py arguments added to the first's",
    )
    args = ap.parse_args(ours)
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    series = series_args(bench_args, args.alternate)
    runs: list[list[dict[str, Any]]] = [[] for _ in series]
    for i in range(args.runs):
        for k, (label, extra) in enumerate(series):
            log(f"run {i + 1}/{args.runs}{label} (load {loadavg()[0]:.2f})")
            runs[k].append(_one_run(extra, args.timeout))
    out = [
        {"args": extra, "runs": rs, "summary": summarise(rs)}
        for (_, extra), rs in zip(series, runs, strict=True)
    ]
    if args.json:
        print(json.dumps(out[0] if len(out) == 1 else {"series": out}, indent=2))
    else:
        print(
            "\n\n".join(
                (f"series {k + 1}: latency_bench.py {shlex.join(s['args'])}\n" if len(out) > 1 else "")
                + render(s["summary"], s["runs"])
                for k, s in enumerate(out)
            )
        )
    return 0


def series_args(bench_args: list[str], alternate: str | None) -> list[tuple[str, list[str]]]:
    """(log label, latency_bench.py arguments) of each series: the given arguments, and with
    ``alternate`` (split as a shell would) added when it is given."""
    if alternate is None:
        return [("", bench_args)]
    return [(" (series 1)", bench_args), (" (series 2)", [*bench_args, *shlex.split(alternate)])]


if __name__ == "__main__":
    sys.exit(main())
