#!/usr/bin/env python3
"""Benchmark mailvault's search index beside ``mu index`` and ``notmuch new`` on the same Maildir.

For each data set (corpus A, and a synthetic vault of ``--synthetic N`` generated messages):

1. a Maildir tree is written (one sub-folder per corpus folder). Synthetic mail is generated
   by ``bench/synth_mail.py`` (Zipf-distributed words, 5,000 senders, 3 % with an attachment,
   dates 2000-2024) on every core, as 10 mbox files (what mailvault imports: a million
   messages in minutes) plus a Maildir of the first ``--anchors-max`` of them (mu and notmuch
   read only Maildirs). With ``--anchors-max M`` below N, the N-message set is run by
   mailvault alone, and a second set, the first M messages, by all three tools;
2. mailvault: ``init`` (encrypted) + ``import`` of the tree (not the measured step), then
   ``mailvault index`` on an empty cache — *cold* index throughput (messages/s over wall
   time) and the index size ÷ raw message bytes;
3. query latency: each query of the set is run ``--repeat`` times (after one warm-up) through
   the core API on an open index (``search(..., limit=50)``, what the web UI does), giving p50
   and p95 over all runs; plus the wall time of one ``mailvault search --limit 50`` command
   (process start, vault open and index freshness check included);
4. anchors: ``mu init`` + ``mu index`` and ``notmuch new`` on the same Maildir (wall time,
   database size), and the same queries as ``mu find -n 50`` / ``notmuch search --limit=50``
   commands (a process per query, so compare them with the mailvault command line).

Nothing leaves the machine. Load averages are recorded beside every figure: the 2 shared cores
of the build machine make timings noisy. See bench/README.md ("Search").
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common import (
    ROOT,
    VAULT_PASSWORD,
    BenchError,
    add_corpus_arg,
    add_json_arg,
    add_tempdir_args,
    corpus_folders,
    default_corpus,
    host_line,
    loadavg,
    log,
    mailvault_cmd,
    print_report,
    report_head,
    run_in_tempdir,
    tool_version,
)
from synth_mail import generate

# mailvault query -> (mu query, notmuch query); {w1} etc. are filled per data set.
QUERIES: list[tuple[str, str, str]] = [
    ("{common}", "{common}", "{common}"),
    ("{rare}", "{rare}", "{rare}"),
    ("from:{sender}", "from:{sender}", "from:{sender}"),
    ("subject:{subject}", "subject:{subject}", "subject:{subject}"),
    ("{common} {mid}", "{common} AND {mid}", "{common} AND {mid}"),
    ("{mid} OR {rare}", "{mid} OR {rare}", "{mid} OR {rare}"),
    ("{mid} -{common}", "{mid} AND NOT {common}", "{mid} AND NOT {common}"),
    ('"{phrase}"', '"{phrase}"', '"{phrase}"'),
    ("after:{d1} before:{d2}", "date:{d1}..{d2}", "date:{d1}..{d2}"),
    ("has:attachment", "flag:attach", "tag:attachment"),
    ("has:attachment {mid}", "flag:attach AND {mid}", "tag:attachment AND {mid}"),
    ("{common} OR {mid}", "{common} OR {mid}", "{common} OR {mid}"),
    ("-{common}", "NOT {common}", "NOT {common}"),
]
CORPUS_TERMS = {
    "common": "razor",
    "rare": "zebrafish",
    "mid": "python",
    "sender": "pudge@perl.org",
    "subject": "perl",
    "phrase": "spam assassin",
    "d1": "2002-09-01",
    "d2": "2002-09-08",
}


@dataclass
class ToolResult:
    tool: str
    index_wall: float | None = None
    index_cpu: float | None = None  # CPU seconds of the indexing command (all its processes)
    index_bytes: int | None = None
    query_p50_ms: float | None = None
    query_p95_ms: float | None = None
    note: str = ""
    per_query_ms: dict[str, float] = field(default_factory=dict)
    first_ms: dict[str, float] = field(default_factory=dict)  # each query's first run (mailvault)


@dataclass
class DataSet:
    name: str
    messages: int
    raw_bytes: int
    load_before: list[float]
    results: list[ToolResult] = field(default_factory=list)
    msgs_per_s: float | None = None
    cli_query_ms: float | None = None
    cli_open_ms: float | None = None
    load_after: list[float] = field(default_factory=list)
    generate_s: float | None = None


# --------------------------------------------------------------------------- data


def build_corpus_maildir(corpus: Path, root: Path) -> tuple[int, int]:
    n = size = 0
    for folder, files in corpus_folders(corpus):
        d = root / folder
        for sub in ("cur", "new", "tmp"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        for i, src in enumerate(files):
            data = src.read_bytes()
            (d / "cur" / f"{i}.{folder}.bench:2,S").write_bytes(data)
            n += 1
            size += len(data)
    return n, size


# --------------------------------------------------------------------------- tools


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


_LAST_CPU = [0.0]  # CPU seconds (user + system) of the last _timed command and its children


def _timed(
    cmd: list[str], env: dict[str, str], timeout: float
) -> tuple[float, subprocess.CompletedProcess[str]]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    cp = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    _LAST_CPU[0] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if cp.returncode != 0:
        raise BenchError(f"{' '.join(cmd[:3])} ... exited {cp.returncode}: {cp.stderr.strip()[-300:]}")
    return wall, cp


def _percentiles(samples: list[float]) -> tuple[float, float]:
    s = sorted(samples)
    return statistics.median(s), s[min(len(s) - 1, round(0.95 * (len(s) - 1)))]


def _latencies(
    run: Callable[[str], object], queries: list[str], repeat: int, first: dict[str, float] | None = None
) -> tuple[list[float], dict[str, float]]:
    """Samples of every query's ``repeat`` runs after a warm-up, and each query's median;
    ``first`` gets the time of each warm-up run (the first run of the query)."""
    samples: list[float] = []
    per: dict[str, float] = {}
    for q in queries:
        t = time.perf_counter()
        run(q)  # warm-up
        if first is not None:
            first[q] = round((time.perf_counter() - t) * 1000, 2)
        mine = []
        for _ in range(repeat):
            t = time.perf_counter()
            run(q)
            mine.append((time.perf_counter() - t) * 1000)
        samples += mine
        per[q] = round(statistics.median(mine), 2)
    return samples, per


def bench_mailvault(
    ds: DataSet, source: Path, fmt: str, top: Path, terms: dict[str, str], args: argparse.Namespace
) -> None:
    mv = mailvault_cmd()
    if mv is None:
        raise BenchError("mailvault is not installed (pip install -e .)")
    cache, vault = top / "mv-cache", top / "vault"
    env = {**os.environ, "MAILVAULT_PASSWORD": VAULT_PASSWORD, "MAILVAULT_CACHE_DIR": str(cache)}
    _timed([*mv, "init", str(vault)], env, args.timeout)
    log(f"  mailvault import ({ds.messages} messages) ...")
    wall_import, _ = _timed(
        [*mv, "import", str(vault), str(source), "--account", "bench", "--format", fmt, "-q"],
        env,
        args.timeout,
    )
    # Cold: an empty search index (the vault's own block index cache stays, as after any backup).
    log(f"  mailvault index (import took {wall_import:.1f}s) ...")
    load = loadavg()
    wall, cp = _timed([*mv, "index", str(vault), "--json"], env, args.timeout)
    stats = json.loads(cp.stdout)
    ds.msgs_per_s = stats["messages_indexed"] / wall
    res = ToolResult(
        "mailvault",
        wall,
        index_bytes=stats["index_bytes"],
        note=f"load {load} at start, {loadavg()} at end; import ({fmt}) {wall_import:.0f}s",
    )
    res.index_cpu = _LAST_CPU[0]
    queries = [q.format(**terms) for q, _, _ in QUERIES]
    sys.path.insert(0, str(ROOT))
    os.environ["MAILVAULT_CACHE_DIR"] = str(cache)
    from mailvault.index import open_index, search
    from mailvault.vault.repository import Repository

    with Repository.open(str(vault), VAULT_PASSWORD.encode) as repo:
        db = open_index(repo)
        samples, per = _latencies(lambda q: search(db, q, limit=50), queries, args.repeat, res.first_ms)
        db.close()
    res.query_p50_ms, res.query_p95_ms = _percentiles(samples)
    res.per_query_ms = per
    ds.results.append(res)
    wall_cli, _ = _timed(
        [*mv, "search", str(vault), queries[2], "--limit", "50", "--json"], env, args.timeout
    )
    ds.cli_query_ms = wall_cli * 1000
    wall_open, _ = _timed([*mv, "snapshots", str(vault), "--json"], env, args.timeout)
    ds.cli_open_ms = wall_open * 1000  # the same process start and vault open (key derivation), no search


def bench_mu(ds: DataSet, maildir: Path, top: Path, terms: dict[str, str], args: argparse.Namespace) -> None:
    if not shutil.which("mu"):
        ds.results.append(ToolResult("mu", note="not installed"))
        return
    home = top / "mu-home"
    env = dict(os.environ)
    _timed(["mu", "init", f"--muhome={home}", f"--maildir={maildir}"], env, args.timeout)
    log("  mu index ...")
    load = loadavg()
    wall, _ = _timed(["mu", "index", f"--muhome={home}", "--quiet"], env, args.timeout)
    res = ToolResult(
        "mu " + tool_version(["mu", "--version"]).split("version")[-1].strip(),
        wall,
        index_bytes=_du(home),
        note=f"load {load}",
    )
    res.index_cpu = _LAST_CPU[0]

    def run(q: str) -> None:
        cp = subprocess.run(
            ["mu", "find", f"--muhome={home}", "-n", "50", "--fields=l", q],
            env=env,
            capture_output=True,
            timeout=args.timeout,
            check=False,
        )
        if cp.returncode not in (0, 2, 4):  # 2/4: no matches
            raise BenchError(f"mu find {q!r} exited {cp.returncode}: {cp.stderr.decode()[-200:]}")

    samples, per = _latencies(run, [m.format(**terms) for _, m, _ in QUERIES], args.repeat)
    res.query_p50_ms, res.query_p95_ms = _percentiles(samples)
    res.per_query_ms = per
    ds.results.append(res)


def bench_notmuch(
    ds: DataSet, maildir: Path, top: Path, terms: dict[str, str], args: argparse.Namespace
) -> None:
    if not shutil.which("notmuch"):
        ds.results.append(ToolResult("notmuch", note="not installed"))
        return
    cfg = top / "notmuch-config"
    cfg.write_text(f"[database]\npath={maildir}\n[new]\ntags=unread;\n[maildir]\nsynchronize_flags=true\n")
    env = {**os.environ, "NOTMUCH_CONFIG": str(cfg)}
    log("  notmuch new ...")
    load = loadavg()
    wall, _ = _timed(["notmuch", "new", "--quiet"], env, args.timeout)
    res = ToolResult(
        tool_version(["notmuch", "--version"]),
        wall,
        index_bytes=_du(maildir / ".notmuch"),
        note=f"load {load}",
    )
    res.index_cpu = _LAST_CPU[0]

    def run(q: str) -> None:
        _timed(["notmuch", "search", "--limit=50", "--output=files", q], env, args.timeout)

    samples, per = _latencies(run, [n.format(**terms) for _, _, n in QUERIES], args.repeat)
    res.query_p50_ms, res.query_p95_ms = _percentiles(samples)
    res.per_query_ms = per
    ds.results.append(res)


def run_dataset(
    ds: DataSet,
    top: Path,
    source: tuple[Path, str],
    maildir: Path | None,
    terms: dict[str, str],
    args: argparse.Namespace,
) -> DataSet:
    """mailvault on ``source`` (path, import format); mu and notmuch on ``maildir`` (if any)."""
    top.mkdir(parents=True, exist_ok=True)
    bench_mailvault(ds, source[0], source[1], top, terms, args)
    if maildir is not None:
        bench_mu(ds, maildir, top, terms, args)
        bench_notmuch(ds, maildir, top, terms, args)
    ds.load_after = loadavg()
    log(render_dataset(asdict(ds)))
    return ds


def run_synthetic(top: Path, args: argparse.Namespace) -> list[DataSet]:
    """The generated data set(s): all ``--synthetic`` messages for mailvault (imported from
    mbox files); mu and notmuch on a Maildir of the first ``--anchors-max`` of them (the same
    bytes) — when that is fewer, mailvault is also run on that Maildir, for a like-for-like row."""
    n = args.synthetic
    amax = 0 if args.no_anchors else min(n, args.anchors_max or n)
    log(f"generating {n:,} messages (a Maildir of the first {amax:,}) ...")
    syn = generate(top / "data", n, maildir_max=amax)
    log(f"  generated in {syn.seconds:.0f}s, {syn.raw_bytes / 2**20:,.0f} MiB; load {loadavg()}")
    assert syn.mbox_dir is not None
    out = []
    name = f"synthetic {n:,}"
    ds = DataSet(name, syn.messages, syn.raw_bytes, loadavg(), generate_s=round(syn.seconds, 1))
    full_anchors = syn.maildir if amax == n else None
    out.append(run_dataset(ds, top / "full", (syn.mbox_dir, "mbox"), full_anchors, syn.terms, args))
    if 0 < amax < n:
        assert syn.maildir is not None
        shutil.rmtree(top / "full", ignore_errors=True)  # its vault and index: disk space
        ds = DataSet(f"synthetic {amax:,} (the first of the {n:,})", amax, syn.maildir_bytes, loadavg())
        out.append(run_dataset(ds, top / "anchors", (syn.maildir, "maildir"), syn.maildir, syn.terms, args))
    return out


# --------------------------------------------------------------------------- report


def render_dataset(ds: dict[str, Any]) -> str:
    gen = f"; generated in {ds['generate_s']:,.0f} s" if ds.get("generate_s") else ""
    out = [
        f"{ds['name']}: {ds['messages']:,} messages, {ds['raw_bytes'] / 2**20:,.1f} MiB raw{gen}; "
        f"load {ds['load_before']} before, {ds['load_after']} after"
    ]
    hdr = (
        f"{'tool':<16} {'index s':>9} {'msg/s':>8} {'CPU s':>8} {'msg/CPU-s':>10} {'index MiB':>10} "
        f"{'÷ raw':>7} {'query p50 ms':>13} {'p95 ms':>8}  note"
    )
    out += [hdr, "-" * len(hdr)]
    for r in ds["results"]:
        rate = ds["messages"] / r["index_wall"] if r["index_wall"] else None
        size = r["index_bytes"]
        out.append(
            f"{r['tool'][:16]:<16} {_f(r['index_wall'], 1):>9} {_f(rate, 0):>8} {_f(r.get('index_cpu'), 1):>8} "
            f"{_f(ds['messages'] / r['index_cpu'] if r.get('index_cpu') else None, 0):>10} "
            f"{_f(size / 2**20 if size else None, 1):>10} {_f(size / ds['raw_bytes'] if size else None, 3):>7} "
            f"{_f(r['query_p50_ms'], 1):>13} {_f(r['query_p95_ms'], 1):>8}  {r['note']}"
        )
    out.append(
        f"mailvault: {_f(ds['msgs_per_s'], 0)} msg/s indexed; one `mailvault search` command: "
        f"{_f(ds['cli_query_ms'], 0)} ms (`mailvault snapshots`, the same start and vault open: "
        f"{_f(ds.get('cli_open_ms'), 0)} ms)"
    )
    out.append("per query, median ms:")
    for r in ds["results"]:
        out.append(f"  {r['tool']}: " + "; ".join(f"{q} {v}" for q, v in r["per_query_ms"].items()))
    for r in ds["results"]:
        if r.get("first_ms"):
            out.append(
                f"  {r['tool']}, first run of each query (a new index connection's first query; "
                "phrase checks not yet cached): " + "; ".join(f"{q} {v}" for q, v in r["first_ms"].items())
            )
    return "\n".join(out)


def render(report: dict[str, Any]) -> str:
    out = [f"search_bench  {report['date']}", host_line(report["host"]), ""]
    for ds in report["datasets"]:
        out += [render_dataset(ds), ""]
    out.append(
        "mailvault queries run in-process on an open index (limit 50); mu/notmuch queries are one process "
        "each (compare those with the one-command figure)."
    )
    return "\n".join(out)


def _f(v: float | None, digits: int) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_corpus_arg(ap)
    ap.add_argument(
        "--synthetic",
        type=int,
        default=0,
        metavar="N",
        help="also a generated vault of N messages (the target is 1,000,000)",
    )
    ap.add_argument("--no-corpus", action="store_true", help="skip corpus A")
    ap.add_argument("--no-anchors", action="store_true", help="skip mu and notmuch")
    ap.add_argument(
        "--anchors-max",
        type=int,
        default=0,
        metavar="M",
        help="run mu and notmuch (and mailvault again, like for like) on only the first M synthetic "
        "messages (mu indexes ~750 msg/s, notmuch ~370 msg/s: 1M takes them 20-45 min)",
    )
    ap.add_argument("--repeat", type=int, default=5, help="runs of each query after a warm-up (default 5)")
    add_json_arg(ap)
    add_tempdir_args(ap, temp="Maildirs, vaults and indexes", keep="keep the temp dir")
    args = ap.parse_args()
    report = report_head(load=loadavg())
    report["datasets"] = []

    def body(top: Path) -> int:
        if not args.no_corpus:
            corpus = args.corpus or default_corpus()
            log("corpus A: writing the Maildir ...")
            maildir = top / "a" / "Maildir"
            n, size = build_corpus_maildir(corpus, maildir)
            ds = DataSet("corpus A", n, size, loadavg())
            anchors = None if args.no_anchors else maildir
            run_dataset(ds, top / "a", (maildir, "maildir"), anchors, CORPUS_TERMS, args)
            report["datasets"].append(asdict(ds))
        if args.synthetic:
            report["datasets"] += [asdict(ds) for ds in run_synthetic(top / "s", args)]
        print_report(report, args.json, render)
        return 0

    return run_in_tempdir(args, "search-bench-", body, kept="kept {}")


if __name__ == "__main__":
    sys.exit(main())
