#!/usr/bin/env python3
"""Benchmark ``mailvault import`` of Outlook PST/OST files beside ``readpst -r`` (Debian pst-utils).

For every PST/OST under ``$MAILVAULT_CORPUS/pst`` (or the files given with ``--file``) that
libpff opens, measures (median of ``--runs``):

* mailvault: ``mailvault import VAULT FILE --account bench --json`` into a fresh encrypted vault
  (the conversion of every mail item to RFC 5322, compression, encryption, commit): wall time,
  peak RSS, messages stored;
* readpst: ``readpst -r -o OUT FILE`` into a fresh directory (mbox files per folder, contacts and
  calendar files): wall time, peak RSS, messages written (``From `` lines of its mbox files).

Both are whole processes, start-up included (for the small corpus files start-up dominates:
see the "fixed cost" line, an import of the smallest file). Prints a table, or JSON with
``--json``. Nothing leaves the machine. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

from common import (
    DEFAULT_CORPUS_ROOT,
    BenchError,
    Measured,
    add_json_arg,
    add_tempdir_args,
    base_env,
    host_line,
    loadavg,
    log,
    mailvault_cmd,
    mailvault_env,
    measure,
    print_report,
    report_head,
    rss_method,
    run_in_tempdir,
    table_head,
    tool_version,
)

UNOPENABLE = "AddingBulkMessagesWithImprovedPerformance.pst"


def pst_files(args: argparse.Namespace) -> list[Path]:
    if args.file:
        return [Path(f) for f in args.file]
    import os

    root = Path(os.environ.get("MAILVAULT_CORPUS") or DEFAULT_CORPUS_ROOT) / "pst"
    if not root.is_dir():
        raise BenchError(f"no PST corpus at {root} (set MAILVAULT_CORPUS or give --file)")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in (".pst", ".ost") and p.name != UNOPENABLE)


def count_mbox_messages(out: Path) -> int:
    n = 0
    for p in out.rglob("*"):
        if p.is_file() and p.name.startswith("mbox"):
            with open(p, "rb") as f:
                n += sum(1 for line in f if line.startswith(b"From "))
    return n


def bench_file(
    pst: Path, top: Path, mv: list[str], readpst: str | None, runs: int, timeout: float
) -> dict[str, Any]:
    row: dict[str, Any] = {"file": pst.name, "bytes": pst.stat().st_size}
    mv_walls: list[float] = []
    mv_rss: list[float] = []
    rp_walls: list[float] = []
    rp_rss: list[float] = []
    for run in range(runs):
        work = top / f"{pst.stem}-{run}"
        work.mkdir()
        env = mailvault_env(base_env(), work / "cache")
        m: Measured = measure(
            [*mv, "init", str(work / "vault"), "--json"], env=env, cwd=work, timeout=timeout
        )
        m = measure(
            [*mv, "import", str(work / "vault"), str(pst), "--account", "bench", "--json"],
            env=env,
            cwd=work,
            timeout=timeout,
            check=False,
        )
        if m.rc not in (0, 1):
            row["mailvault_status"] = f"failed: exit {m.rc}: {m.stderr.strip()[-200:]}"
            break
        out = json.loads(m.stdout)
        row["mailvault_messages"] = out["messages"]
        row["mailvault_unreadable"] = len(out.get("problems", []))
        mv_walls.append(m.wall)
        mv_rss.append(m.rss_mib)
        if readpst:
            rout = work / "readpst"
            rout.mkdir()
            r = measure(
                [readpst, "-q", "-r", "-o", str(rout), str(pst)],
                env=base_env(),
                cwd=work,
                timeout=timeout,
                check=False,
            )
            row["readpst_rc"] = r.rc
            row["readpst_messages"] = count_mbox_messages(rout)
            rp_walls.append(r.wall)
            rp_rss.append(r.rss_mib)
        shutil.rmtree(work, ignore_errors=True)
    if mv_walls:
        row["mailvault_wall_s"] = statistics.median(mv_walls)
        row["mailvault_rss_mib"] = max(mv_rss)
    if rp_walls:
        row["readpst_wall_s"] = statistics.median(rp_walls)
        row["readpst_rss_mib"] = max(rp_rss)
    return row


#: All files converted in one process (libpff reading + conversion to RFC 5322, no vault):
#: the conversion's own throughput, without per-process start-up.
CONVERT_ALL = """
import sys
from mailvault.sources.pst import PstReport, iter_pst
n = size = 0
for path in sys.argv[1:]:
    for _info, messages in iter_pst(path, PstReport(path)):
        for m in messages:
            n += 1
            size += len(m.raw)
print(n, size)
"""


def bench_convert_all(files: list[Path], top: Path, runs: int, timeout: float) -> dict[str, Any]:
    walls: list[float] = []
    rss: list[float] = []
    out: dict[str, Any] = {}
    for _ in range(runs):
        m = measure(
            [sys.executable, "-c", CONVERT_ALL, *map(str, files)], env=base_env(), cwd=top, timeout=timeout
        )
        n, size = (int(x) for x in m.stdout.split())
        out = {"messages": n, "bytes": size}
        walls.append(m.wall)
        rss.append(m.rss_mib)
    wall = statistics.median(walls)
    return {**out, "wall_s": wall, "rss_mib": max(rss), "msgs_per_s": out["messages"] / wall if wall else 0.0}


def render(rep: dict[str, Any]) -> str:
    lines = [
        f"PST import: mailvault import vs readpst -r  ({rep['date']})",
        host_line(rep["host"]) + f", load {rep['host']['load_before']} -> {rep['host']['load_after']}",
        f"runs per file: {rep['runs']} (median wall); RSS: {rep['rss_method']}; readpst: {rep['readpst_version']}",
        "",
    ]
    hdr = f"{'file':<46} {'KiB':>6} | {'mv msgs':>7} {'mv s':>6} {'mv MiB':>6} | {'rp msgs':>7} {'rp s':>6} {'rp MiB':>6}"
    lines += table_head(hdr)
    for r in rep["files"]:
        lines.append(
            f"{r['file'][:46]:<46} {r['bytes'] // 1024:>6} | {r.get('mailvault_messages', '-'):>7} "
            f"{_f(r.get('mailvault_wall_s'))} {_f(r.get('mailvault_rss_mib'), 6, 0)} | "
            f"{r.get('readpst_messages', '-'):>7} {_f(r.get('readpst_wall_s'))} {_f(r.get('readpst_rss_mib'), 6, 0)}"
        )
    t = rep["totals"]
    lines.append("-" * len(hdr))
    lines.append(
        f"{'total':<46} {t['bytes'] // 1024:>6} | {t['mailvault_messages']:>7} {_f(t['mailvault_wall_s'])} {'':>6} | "
        f"{t['readpst_messages']:>7} {_f(t['readpst_wall_s'])}"
    )
    lines.append("")
    lines.append(
        f"throughput: mailvault {t['mailvault_msgs_per_s']:.1f} msg/s, readpst {t['readpst_msgs_per_s']:.1f} msg/s "
        f"(whole processes, summed over the files)"
    )
    lines.append(
        f"fixed cost (process start-up, smallest file): mailvault {_f(rep['fixed_cost_s']).strip()} s"
    )
    c = rep["convert_all"]
    lines.append(
        f"all files converted in one process (no vault): {c['messages']} messages, "
        f"{c['bytes'] / 1024 / 1024:.1f} MiB of RFC 5322 in {c['wall_s']:.2f} s = {c['msgs_per_s']:.1f} msg/s, "
        f"peak {c['rss_mib']:.0f} MiB"
    )
    return "\n".join(lines)


def _f(v: float | None, width: int = 6, digits: int = 2) -> str:
    return f"{v:>{width}.{digits}f}" if isinstance(v, int | float) else f"{'-':>{width}}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--file", action="append", help="a PST/OST file (repeatable; default: the corpus pst/ set)"
    )
    ap.add_argument("--runs", type=int, default=1, help="runs per file (median wall time)")
    add_json_arg(ap)
    add_tempdir_args(ap, temp="temp dirs", keep="keep the temp dirs")
    args = ap.parse_args()
    mv = mailvault_cmd()
    if mv is None:
        log("error: mailvault is not installed")
        return 2
    readpst = shutil.which("readpst")
    if readpst is None:
        log("readpst not installed (Debian pst-utils): its columns stay empty")

    def body(top: Path) -> int:
        files = pst_files(args)
        load_before = loadavg()
        rows = [bench_file(p, top, mv, readpst, max(1, args.runs), args.timeout) for p in files]
        totals = {
            "bytes": sum(r["bytes"] for r in rows),
            "mailvault_messages": sum(r.get("mailvault_messages", 0) for r in rows),
            "mailvault_wall_s": sum(r.get("mailvault_wall_s", 0.0) for r in rows),
            "readpst_messages": sum(r.get("readpst_messages", 0) for r in rows),
            "readpst_wall_s": sum(r.get("readpst_wall_s", 0.0) for r in rows),
        }
        totals["mailvault_msgs_per_s"] = (
            totals["mailvault_messages"] / totals["mailvault_wall_s"] if totals["mailvault_wall_s"] else 0.0
        )
        totals["readpst_msgs_per_s"] = (
            totals["readpst_messages"] / totals["readpst_wall_s"] if totals["readpst_wall_s"] else 0.0
        )
        convert_all = bench_convert_all(files, top, max(1, args.runs), args.timeout)
        smallest = min(rows, key=lambda r: (r.get("mailvault_messages", 0), r["bytes"]))
        rep = {
            **report_head(load_before=load_before, load_after=loadavg()),
            "runs": max(1, args.runs),
            "rss_method": rss_method(),
            "readpst_version": tool_version([readpst, "-V"]) if readpst else "not installed",
            "files": rows,
            "totals": totals,
            "fixed_cost_s": smallest.get("mailvault_wall_s"),
            "convert_all": convert_all,
        }
        print_report(rep, args.json, render)
        failed = [r for r in rows if "mailvault_status" in r]
        return 1 if failed else 0

    return run_in_tempdir(args, "pst-bench-", body, kept="kept {}")


if __name__ == "__main__":
    sys.exit(main())
