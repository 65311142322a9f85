#!/usr/bin/env python3
"""Benchmark mailvault's search index beside ``mu index`` and ``notmuch new`` on the same Maildir.

For each data set (corpus A, and a synthetic vault of ``--synthetic N`` generated messages):

1. a Maildir tree is written (one sub-folder per corpus folder; synthetic mail is generated:
   Zipf-distributed words, 5,000 senders, 3 % with an attachment, dates 2000-2024);
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
import base64
import itertools
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
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


def _vocabulary(rng: random.Random, n: int) -> list[str]:
    syll = [
        "ka",
        "lo",
        "mi",
        "ne",
        "ru",
        "ta",
        "shi",
        "do",
        "fe",
        "gu",
        "ha",
        "jo",
        "pe",
        "qui",
        "so",
        "ve",
        "wa",
        "xe",
        "yo",
        "zu",
    ]
    out, seen = [], set()
    while len(out) < n:
        w = "".join(rng.choice(syll) for _ in range(rng.randint(2, 4)))
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out


def build_synthetic_maildir(root: Path, n: int, seed: int = 1) -> tuple[int, int, dict[str, str]]:
    """``n`` generated messages in 10 folders; returns (messages, bytes, query terms)."""
    rng = random.Random(seed)
    vocab = _vocabulary(rng, 50_000)
    weights = list(itertools.accumulate(1.0 / (r + 1) for r in range(len(vocab))))
    senders = [f"{rng.choice(vocab)}.{rng.choice(vocab)}@{rng.choice(vocab)}.example" for _ in range(5000)]
    folders = [f"folder{i}" for i in range(10)]
    for f in folders:
        for sub in ("cur", "new", "tmp"):
            (root / f / sub).mkdir(parents=True, exist_ok=True)
    start = datetime(2000, 1, 1, tzinfo=UTC)
    size = 0
    blob = base64.encodebytes(random.Random(2).randbytes(3000)).decode()
    for i in range(n):
        words = rng.choices(vocab, cum_weights=weights, k=rng.randint(60, 400))
        lines = [" ".join(words[j : j + 12]) for j in range(0, len(words), 12)]
        subject = " ".join(rng.choices(vocab, cum_weights=weights, k=rng.randint(2, 7)))
        date = start + timedelta(seconds=rng.randrange(0, 25 * 365 * 86400))
        head = (
            f"From: {senders[int(rng.paretovariate(1.2)) % len(senders)]}\n"
            f"To: {rng.choice(senders)}\nSubject: {subject}\n"
            f"Date: {date.strftime('%a, %d %b %Y %H:%M:%S +0000')}\n"
            f"Message-ID: <{i}.{rng.getrandbits(40):x}@bench.example>\nMIME-Version: 1.0\n"
        )
        if rng.random() < 0.03:
            text = (
                head
                + 'Content-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/plain\n\n'
                + "\n".join(lines)
                + f'\n--b\nContent-Type: application/pdf\nContent-Disposition: attachment; filename="{words[0]}.pdf"\n'
                + "Content-Transfer-Encoding: base64\n\n"
                + blob
                + "--b--\n"
            )
        else:
            text = head + "Content-Type: text/plain; charset=utf-8\n\n" + "\n".join(lines) + "\n"
        data = text.encode()
        p = root / folders[i % 10] / "cur" / f"{i}.bench:2,{'S' if i % 3 else ''}"
        p.write_bytes(data)
        ts = date.timestamp()
        os.utime(p, (ts, ts))
        size += len(data)
        if i and i % 100_000 == 0:
            log(f"  generated {i} messages")
    terms = {
        "common": vocab[20],
        "rare": vocab[30_000],
        "mid": vocab[800],
        "sender": senders[1],
        "subject": vocab[300],
        "phrase": f"{vocab[0]} {vocab[1]}",
        "d1": "2010-03-01",
        "d2": "2010-03-08",
    }
    return n, size, terms


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
    run: Callable[[str], object], queries: list[str], repeat: int
) -> tuple[list[float], dict[str, float]]:
    samples: list[float] = []
    per: dict[str, float] = {}
    for q in queries:
        run(q)  # warm-up
        mine = []
        for _ in range(repeat):
            t = time.perf_counter()
            run(q)
            mine.append((time.perf_counter() - t) * 1000)
        samples += mine
        per[q] = round(statistics.median(mine), 2)
    return samples, per


def bench_mailvault(
    ds: DataSet, maildir: Path, top: Path, terms: dict[str, str], args: argparse.Namespace
) -> None:
    mv = mailvault_cmd()
    if mv is None:
        raise BenchError("mailvault is not installed (pip install -e .)")
    cache, vault = top / "mv-cache", top / "vault"
    env = {**os.environ, "MAILVAULT_PASSWORD": VAULT_PASSWORD, "MAILVAULT_CACHE_DIR": str(cache)}
    _timed([*mv, "init", str(vault)], env, args.timeout)
    log(f"  mailvault import ({ds.messages} messages) ...")
    wall_import, _ = _timed(
        [*mv, "import", str(vault), str(maildir), "--account", "bench", "--format", "maildir", "-q"],
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
        note=f"load {load} at start; import {wall_import:.0f}s",
    )
    res.index_cpu = _LAST_CPU[0]
    queries = [q.format(**terms) for q, _, _ in QUERIES]
    sys.path.insert(0, str(ROOT))
    os.environ["MAILVAULT_CACHE_DIR"] = str(cache)
    from mailvault.index import open_index, search
    from mailvault.vault.repository import Repository

    with Repository.open(str(vault), VAULT_PASSWORD.encode) as repo:
        db = open_index(repo)
        samples, per = _latencies(lambda q: search(db, q, limit=50), queries, args.repeat)
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
    name: str, top: Path, make: Callable[[Path], tuple[int, int, dict[str, str]]], args: argparse.Namespace
) -> DataSet:
    maildir = top / "Maildir"
    log(f"{name}: writing the Maildir ...")
    n, size, terms = make(maildir)
    ds = DataSet(name, n, size, loadavg())
    bench_mailvault(ds, maildir, top, terms, args)
    if not args.no_anchors:
        bench_mu(ds, maildir, top, terms, args)
        bench_notmuch(ds, maildir, top, terms, args)
    ds.load_after = loadavg()
    return ds


# --------------------------------------------------------------------------- report


def render(report: dict[str, Any]) -> str:
    out = [f"search_bench  {report['date']}", host_line(report["host"]), ""]
    for ds in report["datasets"]:
        out.append(
            f"{ds['name']}: {ds['messages']:,} messages, {ds['raw_bytes'] / 2**20:,.1f} MiB raw; "
            f"load {ds['load_before']} before, {ds['load_after']} after"
        )
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
        out.append("")
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
    ap.add_argument("--repeat", type=int, default=5, help="runs of each query after a warm-up (default 5)")
    add_json_arg(ap)
    add_tempdir_args(ap, temp="Maildirs, vaults and indexes", keep="keep the temp dir")
    args = ap.parse_args()
    report = report_head(load=loadavg())
    report["datasets"] = []

    def body(top: Path) -> int:
        if not args.no_corpus:
            corpus = args.corpus or default_corpus()

            def make_corpus(root: Path) -> tuple[int, int, dict[str, str]]:
                n, size = build_corpus_maildir(corpus, root)
                return n, size, CORPUS_TERMS

            (top / "a").mkdir()
            report["datasets"].append(asdict(run_dataset("corpus A", top / "a", make_corpus, args)))
        if args.synthetic:
            (top / "s").mkdir()
            ds = run_dataset(
                f"synthetic {args.synthetic:,}",
                top / "s",
                lambda root: build_synthetic_maildir(root, args.synthetic),
                args,
            )
            report["datasets"].append(asdict(ds))
        print_report(report, args.json, render)
        return 0

    return run_in_tempdir(args, "search-bench-", body, kept="kept {}")


if __name__ == "__main__":
    sys.exit(main())
