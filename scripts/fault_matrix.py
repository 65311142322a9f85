#!/usr/bin/env python3
"""Run the fault tier (``pytest -m faults``) with the full trial counts and write the table of
``docs/RELIABILITY.md`` from what it recorded.

    .venv/bin/python scripts/fault_matrix.py                 # everything, full counts
    .venv/bin/python scripts/fault_matrix.py -k "kill and s3"  # a part; its rows replace the old ones
    .venv/bin/python scripts/fault_matrix.py --table-only      # rewrite the table from the saved rows
    .venv/bin/python scripts/fault_matrix.py --merge A.jsonl B.jsonl   # add rows of runs made elsewhere

Rows are kept in ``docs/reliability-results.jsonl`` (one JSON object per fault: fault, injection,
trials, result, seconds, when, load), so partial runs add up to the whole matrix. A fault whose test
failed gets no row: the run's exit status is pytest's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "RELIABILITY.md"
RESULTS = ROOT / "docs" / "reliability-results.jsonl"
BEGIN, END = "<!-- fault-matrix:begin -->", "<!-- fault-matrix:end -->"


def load_rows() -> dict[str, dict]:
    rows: dict[str, dict] = {}
    if RESULTS.exists():
        for line in RESULTS.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                rows[row["fault"]] = row
    return rows


def save_rows(rows: dict[str, dict]) -> None:
    RESULTS.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows.values()), encoding="utf-8"
    )


def table(rows: dict[str, dict]) -> str:
    order = ["kill", "s3", "net", "disk", "schedule"]
    ordered = sorted(
        rows.values(),
        key=lambda r: (order.index(r.get("group", "net")) if r.get("group") in order else 99, r["fault"]),
    )
    out = [
        "| fault | injection | trials | result | run took |",
        "|---|---|---:|---|---:|",
    ]
    for r in ordered:
        trials = str(r["trials"])
        if r.get("planned") and r["trials"] < r["planned"]:
            trials = f"{r['trials']} (of {r['planned']} planned: the run was stopped)"
        cells = [r["fault"], r["injection"], trials, r["result"], f"{r.get('seconds', 0):.0f} s"]
        out.append("| " + " | ".join(cells) + " |")
    runs = sorted({(r.get("when", "?"), r.get("load", "?"), r.get("run_seconds", 0)) for r in rows.values()})
    out.append("")
    out.append("Recorded by `scripts/fault_matrix.py` (full trial counts) in these runs (finish time):")
    for when, load, secs in runs:
        took = f"{secs / 60:.1f} min wall for the whole run, " if secs else ""
        out.append(f"- {when}: {took}load average before it {load}")
    return "\n".join(out)


def write_doc(rows: dict[str, dict]) -> None:
    text = DOC.read_text(encoding="utf-8")
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    DOC.write_text(text[:start] + "\n" + table(rows) + "\n" + text[end:], encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table-only", action="store_true", help="only rewrite the table from saved rows")
    parser.add_argument("--trials", default="full", help="MAILVAULT_FAULT_TRIALS for the run (default: full)")
    parser.add_argument(
        "--merge",
        nargs="+",
        default=[],
        metavar="FILE",
        help="add the rows of other runs' reliability-results.jsonl (e.g. parts run in parallel copies; "
        "of two rows of one fault the one with more trials stays), then write the table",
    )
    args, pytest_args = parser.parse_known_args()
    rows = load_rows()
    status = 0
    if args.merge:
        for path in args.merge:
            for line in Path(path).read_text(encoding="utf-8").splitlines():
                if line.strip():
                    row = json.loads(line)
                    old = rows.get(row["fault"])
                    if old is None or row["trials"] >= old["trials"]:  # the longer run of a fault wins
                        rows[row["fault"]] = row
        save_rows(rows)
    elif not args.table_only:
        load = os.getloadavg()
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "report.jsonl"
            env = dict(os.environ, MAILVAULT_FAULT_TRIALS=args.trials, MAILVAULT_FAULT_REPORT=str(report))
            started = time.monotonic()
            cmd = [
                sys.executable,
                "-m",
                "pytest",
                "-m",
                "faults",
                "-q",
                "-p",
                "no:cacheprovider",
                "-p",
                "no:logging",
                "--timeout=5400",
                "tests/faults",
                *pytest_args,
            ]
            status = subprocess.run(cmd, cwd=ROOT, env=env, check=False).returncode
            took = time.monotonic() - started
            when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
            new = [json.loads(line) for line in report.read_text().splitlines()] if report.exists() else []
        for row in new:
            row.update(when=when, load=" ".join(f"{x:.1f}" for x in load), run_seconds=round(took))
            rows[row["fault"]] = row
        save_rows(rows)
        print(f"{len(new)} fault rows recorded in {took / 60:.1f} min (pytest exit {status})")
    write_doc(rows)
    return status


if __name__ == "__main__":
    sys.exit(main())
