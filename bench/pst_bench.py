#!/usr/bin/env python3
"""Benchmark ``mailvault import`` of Outlook PST/OST files beside ``readpst -r`` (Debian pst-utils).

For every PST/OST under ``$MAILVAULT_CORPUS/pst`` (or the files given with ``--file``) that
libpff opens, measures (median of ``--runs``):

* mailvault: ``mailvault import VAULT FILE --account bench --json`` into a fresh encrypted vault
  (the conversion of every mail item to RFC 5322, compression, encryption, commit): wall time,
  peak RSS, messages stored;
* readpst: ``readpst -r -o OUT FILE`` into a fresh directory (mbox files per folder, contacts and
  calendar files): wall time, peak RSS, messages written (``From `` lines of its mbox files);
* all files converted in one mailvault process without a vault (libpff + conversion only).

Besides wall time, each command's user+system CPU seconds are recorded: on a shared, loaded
machine they are the steadier figure.

Both are whole processes, start-up included (for the small corpus files start-up dominates:
see the "fixed cost" line: the import of a PST without mail). Prints a table, or JSON with
``--json``. Nothing leaves the machine. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
from dataclasses import dataclass, field
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


def cpu_measure(cmd: list[str], **kw: Any) -> tuple[Measured, float]:
    """:func:`measure`, plus the command's user+system CPU seconds: the growth of RUSAGE_CHILDREN,
    which counts every waited-for descendant (GNU time waits for the command, we for GNU time)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    m = measure(cmd, **kw)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return m, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


@dataclass
class Runs:
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)

    def add(self, m: Measured, cpu: float) -> None:
        self.walls.append(m.wall)
        self.cpus.append(cpu)
        self.rss.append(m.rss_mib)

    def summary(self, prefix: str) -> dict[str, Any]:
        if not self.walls:
            return {}
        return {
            f"{prefix}_wall_s": statistics.median(self.walls),
            f"{prefix}_cpu_s": statistics.median(self.cpus),
            f"{prefix}_rss_mib": max(self.rss),
        }


def bench_file(
    pst: Path, top: Path, mv: list[str], readpst: str | None, runs: int, timeout: float
) -> dict[str, Any]:
    row: dict[str, Any] = {"file": pst.name, "bytes": pst.stat().st_size}
    mvr, rpr = Runs(), Runs()
    for run in range(runs):
        work = top / f"{pst.stem}-{run}"
        work.mkdir()
        env = mailvault_env(base_env(), work / "cache")
        measure([*mv, "init", str(work / "vault"), "--json"], env=env, cwd=work, timeout=timeout)
        cmd = [*mv, "import", str(work / "vault"), str(pst), "--account", "bench", "--json"]
        m, cpu = cpu_measure(cmd, env=env, cwd=work, timeout=timeout, check=False)
        if m.rc not in (0, 1):
            row["mailvault_status"] = f"failed: exit {m.rc}: {m.stderr.strip()[-200:]}"
            break
        out = json.loads(m.stdout)
        row["mailvault_messages"] = out["messages"]
        row["mailvault_unreadable"] = len(out.get("problems", []))
        mvr.add(m, cpu)
        if readpst:
            rout = work / "readpst"
            rout.mkdir()
            cmd = [readpst, "-q", "-r", "-o", str(rout), str(pst)]
            r, rcpu = cpu_measure(cmd, env=base_env(), cwd=work, timeout=timeout, check=False)
            row["readpst_rc"] = r.rc
            row["readpst_messages"] = count_mbox_messages(rout)
            rpr.add(r, rcpu)
        shutil.rmtree(work, ignore_errors=True)
    return {**row, **mvr.summary("mailvault"), **rpr.summary("readpst")}


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
    r = Runs()
    n = size = 0
    for _ in range(runs):
        cmd = [sys.executable, "-c", CONVERT_ALL, *map(str, files)]
        m, cpu = cpu_measure(cmd, env=base_env(), cwd=top, timeout=timeout)
        n, size = (int(x) for x in m.stdout.split())
        r.add(m, cpu)
    out = r.summary("convert")
    return {
        "messages": n,
        "bytes": size,
        **out,
        "msgs_per_s": n / out["convert_wall_s"],
        "msgs_per_cpu_s": n / out["convert_cpu_s"] if out["convert_cpu_s"] else None,
    }


def _f(v: float | None, width: int = 6, digits: int = 2) -> str:
    return f"{v:>{width}.{digits}f}" if isinstance(v, int | float) else f"{'-':>{width}}"


def render(rep: dict[str, Any]) -> str:
    h = rep["host"]
    lines = [
        f"PST import: mailvault import vs readpst -r  ({rep['date']})",
        host_line(h) + f", load average {h['load_before']} -> {h['load_after']}",
        f"runs per file: {rep['runs']} (medians); RSS: {rep['rss_method']}; readpst: {rep['readpst_version']}",
        "",
    ]
    hdr = (
        f"{'file':<30} {'KiB':>5} | {'mv msgs':>7} {'wall s':>6} {'cpu s':>6} {'MiB':>4} |"
        f" {'rp msgs':>7} {'wall s':>6} {'cpu s':>6} {'MiB':>4}"
    )
    lines += table_head(hdr)
    for item in [*rep["files"], None]:
        if item is None:
            lines.append("-" * len(hdr))
        r = rep["totals"] if item is None else item
        lines.append(
            f"{r['file'][:30]:<30} {r['bytes'] // 1024:>5} |"
            f" {r.get('mailvault_messages', '-'):>7} {_f(r.get('mailvault_wall_s'))}"
            f" {_f(r.get('mailvault_cpu_s'))} {_f(r.get('mailvault_rss_mib'), 4, 0)} |"
            f" {r.get('readpst_messages', '-'):>7} {_f(r.get('readpst_wall_s'))}"
            f" {_f(r.get('readpst_cpu_s'))} {_f(r.get('readpst_rss_mib'), 4, 0)}"
        )
    t = rep["totals"]
    c = rep["convert_all"]
    lines += [
        "",
        f"per process: mailvault {t['mailvault_messages'] / t['mailvault_cpu_s']:.1f} msg per CPU s, "
        f"readpst {t['readpst_messages'] / max(t['readpst_cpu_s'], 1e-9):.1f} (start-up included, summed over files)",
        f"mailvault fixed cost (a PST with no mail): {_f(rep['fixed_cost_cpu_s']).strip()} CPU s",
        f"all files converted in one process, no vault: {c['messages']} messages, {c['bytes'] / 2**20:.1f} MiB "
        f"RFC 5322, {c['convert_wall_s']:.2f} s wall, {c['convert_cpu_s']:.2f} CPU s = "
        f"{c['msgs_per_cpu_s']:.1f} msg per CPU s, peak {c['convert_rss_mib']:.0f} MiB",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument(
        "--file", action="append", help="a PST/OST file (repeatable; default: the corpus pst/ set)"
    )
    ap.add_argument("--runs", type=int, default=1, help="runs per file (medians)")
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
        runs = max(1, args.runs)
        rows = [bench_file(p, top, mv, readpst, runs, args.timeout) for p in files]
        totals: dict[str, Any] = {"file": "total", "bytes": sum(r["bytes"] for r in rows)}
        for key in ("mailvault_messages", "readpst_messages"):
            totals[key] = sum(r.get(key, 0) for r in rows)
        for key in ("mailvault_wall_s", "mailvault_cpu_s", "readpst_wall_s", "readpst_cpu_s"):
            totals[key] = sum(r.get(key, 0.0) for r in rows)
        empty = [r for r in rows if r.get("mailvault_messages") == 0 and "mailvault_cpu_s" in r]
        rep = {
            **report_head(load_before=load_before),
            "runs": runs,
            "rss_method": rss_method(),
            "readpst_version": tool_version([readpst, "-V"]) if readpst else "not installed",
            "files": rows,
            "totals": totals,
            "fixed_cost_cpu_s": min((r["mailvault_cpu_s"] for r in empty), default=None),
            "convert_all": bench_convert_all(files, top, runs, args.timeout),
        }
        rep["host"]["load_after"] = loadavg()
        print_report(rep, args.json, render)
        return 1 if any("mailvault_status" in r for r in rows) else 0

    return run_in_tempdir(args, "pst-bench-", body, kept="kept {}")


if __name__ == "__main__":
    sys.exit(main())
