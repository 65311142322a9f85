#!/usr/bin/env python3
"""Benchmark ``mailvault backup`` over IMAPS against a bare imapclient fetch and mbsync.

Starts a private Dovecot on loopback (tests/servers/dovecot.py), seeds one account with
corpus A (single-message files, one sub-directory per folder; INTERNALDATE = file mtime,
\\Seen on 2/3 of the messages), and measures, each over IMAPS:

* mailvault: ``init`` + a fresh ``backup``; a no-op re-run; one new message in INBOX, then a re-run;
* a bare imapclient fetch of every body (EXAMINE, UID SEARCH ALL, UID FETCH BODY.PEEK[] in
  500-UID batches, discarded): the floor for any Python backup;
* mbsync (isync): a fresh pull into an empty Maildir; a no-op re-sync; one new message, re-sync.

Then seeds a second account with 10k and 50k small generated messages and records the peak RSS
of a fresh mailvault backup of each (memory should stay flat as the account grows).

Wall time and peak RSS (GNU time's ``%M``, see :func:`common.measure_pipeline`) are per command.  Nothing
leaves the machine.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from common import (
    IMAP_PASSWORD,
    STEP_ERRORS,
    BenchError,
    Measured,
    OpResult,
    StepFailed,
    add_corpus_arg,
    add_json_arg,
    add_tempdir_args,
    base_env,
    failure_text,
    host_line,
    init_vault,
    json_out,
    load_corpus,
    loadavg,
    log,
    maildir_messages,
    mailvault_backup_cmd,
    mailvault_cmd,
    mailvault_env,
    measure,
    print_report,
    ratio,
    report_head,
    rss_method,
    run_dovecot_bench,
    seed_dovecot,
    seen_flags,
    tool_version,
    write_mbsync_config,
)

TOOLS = ("mailvault", "bare", "mbsync")
TOOL_LABELS = {"mailvault": "mailvault", "bare": "bare imapclient", "mbsync": "mbsync"}
OPS = ("fresh", "noop", "new")
USER = "alice"
BULK_USER = "bulk"
BULK_FOLDER = "Bulk"
BATCH = 500

#: Bare imapclient fetch of every body, run as ``python -c`` so that its RSS is measured on its own.
BARE_FETCH = r"""
import json, os, ssl, time
from imapclient import IMAPClient

t0 = time.perf_counter()
ctx = ssl.create_default_context(cafile=os.environ["BENCH_CA"])
c = IMAPClient(os.environ["BENCH_HOST"], port=int(os.environ["BENCH_PORT"]), ssl=True, ssl_context=ctx,
               timeout=120)
c.login(os.environ["BENCH_USER"], os.environ["BENCH_IMAP_PASSWORD"])
batch = int(os.environ["BENCH_BATCH"])
n = total = folders = 0
for flags, _delim, name in c.list_folders():
    if {f.lower() for f in flags} & {b"\\noselect", b"\\nonexistent"}:
        continue
    c.select_folder(name, readonly=True)  # EXAMINE
    uids = c.search(["ALL"])  # UID SEARCH ALL
    folders += 1
    for i in range(0, len(uids), batch):
        for data in c.fetch(uids[i : i + batch], ["BODY.PEEK[]"]).values():  # UID FETCH
            n += 1
            total += len(data[b"BODY[]"])
c.logout()
print(json.dumps({"messages": n, "bytes": total, "folders": folders, "seconds": time.perf_counter() - t0}))
"""


# --------------------------------------------------------------------------- data


@dataclass
class Ctx:
    server: Any  # tests.servers.dovecot.Dovecot
    top: Path
    env: dict[str, str]
    messages: int
    runs: int
    fresh_runs: int
    timeout: float
    keep: bool
    settle: float
    mbsync_fsync: str = "yes"

    def pause(self) -> None:
        """Wait before a timed re-run, so that it does not start in the second of the previous write.

        mbsync 1.4 waits for the clock to leave the second in which a Maildir directory it reads was
        last modified (a race guard against deliveries in the same second), which added 1 s to
        back-to-back re-runs. A real re-run comes minutes later; so do not measure that wait.
        """
        time.sleep(self.settle)


# --------------------------------------------------------------------------- seeding


def corpus_flags(i: int) -> list[str]:
    """The flags of a folder's ``i``-th corpus message: \\Seen on 2 of 3, every 17th \\Flagged,
    every 11th \\Answered."""
    flags = seen_flags(i)
    if i % 17 == 0:
        flags.append("\\Flagged")
    if i % 11 == 0:
        flags.append("\\Answered")
    return flags


_TEXT = (
    "the of and to in is that for it as was with be by on not he this are or his from at which but have an "
    "they you were her she there been one all we their has would when if so no will more out up into do "
    "backup restore mailbox folder server message archive snapshot vault meeting invoice report travel "
    "budget release weekend schedule contract review draft agenda deadline quarter customer support ticket "
    "account password network storage upgrade migration deploy incident summary minutes follow-up"
)
_WORDS = _TEXT.split()


def generated_messages(
    start: int, count: int, rng: random.Random
) -> Iterator[tuple[bytes, list[str], datetime]]:
    """Small (~3-5 KB) random-ish text messages, distinct Message-IDs, 2/3 of them \\Seen."""
    lines = [" ".join(rng.choices(_WORDS, k=rng.randint(8, 14))) for _ in range(4000)]
    t0 = datetime(2020, 1, 1, tzinfo=UTC).timestamp()
    for i in range(start, start + count):
        when = datetime.fromtimestamp(t0 + i * 613 + rng.randint(0, 600), tz=UTC)
        body = "\r\n".join(rng.choices(lines, k=rng.randint(40, 70)))
        token = rng.getrandbits(64)
        raw = (
            f"From: Sender {i % 97} <sender{i % 97}@example.org>\r\n"
            f"To: Bulk <bulk@example.org>\r\n"
            f"Subject: {' '.join(rng.choices(_WORDS, k=5))} #{i}\r\n"
            f"Date: {format_datetime(when)}\r\n"
            f"Message-ID: <{i}.{token:016x}@bench.mailvault.invalid>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
            f"{body}\r\n-- \r\nref {token:016x}\r\n"
        ).encode()
        yield raw, seen_flags(i), when


def new_message(tag: str) -> bytes:
    now = datetime.now(UTC)
    return (
        "From: Bench <bench@example.org>\r\nTo: alice@example.org\r\n"
        f"Subject: new message for {tag}\r\nDate: {format_datetime(now)}\r\n"
        f"Message-ID: <{tag}.{time.time_ns()}@bench.mailvault.invalid>\r\n\r\n"
        f"One new message ({tag}).\r\n"
    ).encode()


def append_one(ctx: Ctx, tag: str) -> int:
    """APPEND one new message to INBOX over IMAP; return its UID (UIDPLUS)."""
    client = ctx.server.imap_client(USER, ssl=True)
    try:
        resp = client.append("INBOX", new_message(tag), msg_time=datetime.now(UTC))
    finally:
        with contextlib.suppress(Exception):
            client.logout()
    text = resp.decode() if isinstance(resp, bytes) else str(resp)
    m = re.search(r"APPENDUID \d+ (\d+)", text)
    if not m:
        raise BenchError(f"APPEND gave no APPENDUID: {text!r}")
    return int(m.group(1))


def expunge(ctx: Ctx, uids: list[int]) -> None:
    """Remove the appended messages again, so that the next tool sees corpus A unchanged."""
    if not uids:
        return
    client = ctx.server.imap_client(USER, ssl=True)
    try:
        client.select_folder("INBOX")
        client.delete_messages(uids)
        client.uid_expunge(uids)
    finally:
        with contextlib.suppress(Exception):
            client.logout()


# --------------------------------------------------------------------------- tools


class Tool:
    """One tool under test. The driver interleaves the tools run by run (see _bench), so that a
    change in the machine's load during the benchmark hits all of them alike."""

    name = ""
    ops: tuple[str, ...] = OPS

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.res = {op: OpResult() for op in OPS}
        for op in OPS:
            if op not in self.ops:
                self.res[op].status = "n/a"
        self.wd: Path | None = None  # the state of the last fresh run; no-op and new runs reuse it
        self.alive = True

    def fresh_runs(self) -> int:
        return self.ctx.fresh_runs

    def new_workdir(self, i: int) -> Path:
        self.close()
        self.wd = self.ctx.top / f"{self.name}-{i + 1}"
        self.wd.mkdir()
        return self.wd

    def close(self) -> None:
        if self.wd is not None and not self.ctx.keep:
            shutil.rmtree(self.wd, ignore_errors=True)
        self.wd = None

    def fresh(self, i: int) -> None:
        raise NotImplementedError

    def noop(self, i: int) -> None:
        raise NotImplementedError

    def new(self, i: int) -> None:
        raise NotImplementedError


class Mailvault(Tool):
    name = "mailvault"

    def __init__(self, ctx: Ctx) -> None:
        super().__init__(ctx)
        mv = mailvault_cmd()
        if mv is None:
            raise NotInstalled
        self.mv = mv
        self.res["fresh"].extra["version"] = tool_version([*mv, "--version"])
        self.env: dict[str, str] = {}

    def backup(self) -> tuple[Measured, dict[str, Any]]:
        assert self.wd is not None
        argv = mailvault_backup_cmd(self.mv, self.wd / "vault", self.ctx.server, USER)
        m = measure(argv, env=self.env, cwd=self.wd, timeout=self.ctx.timeout)
        return m, json_out(m)

    def fresh(self, i: int) -> None:
        wd = self.new_workdir(i)
        self.env = mailvault_env(self.ctx.env, wd / "cache")
        init = init_vault(self.mv, wd / "vault", env=self.env, cwd=wd, timeout=self.ctx.timeout)
        m, info = self.backup()
        if info.get("messages") != self.ctx.messages:
            raise BenchError(f"backed up {info.get('messages')} messages, expected {self.ctx.messages}")
        r = self.res["fresh"]
        r.add(m)
        r.extra.setdefault("init_wall_all", []).append(init.wall)
        r.extra.update(
            messages=info.get("messages"),
            bytes_fetched=info.get("bytes_fetched"),
            vault_stored_bytes=info.get("new_bytes_stored"),
        )

    def noop(self, i: int) -> None:
        m, info = self.backup()
        if info.get("messages_fetched") != 0:
            raise BenchError(f"no-op re-run fetched {info.get('messages_fetched')} messages, expected 0")
        self.res["noop"].add(m)
        # For scale: the interpreter start-up and CLI imports alone.
        v = measure([*self.mv, "--version"], env=self.env, cwd=self.ctx.top, timeout=self.ctx.timeout)
        r = self.res["noop"].extra
        r.setdefault("version_wall_all", []).append(v.wall)
        r.setdefault("version_rss_all_mib", []).append(v.rss_mib)

    def new(self, i: int) -> None:
        m, info = self.backup()
        if info.get("messages_fetched") != 1:
            raise BenchError(
                f"re-run after one APPEND fetched {info.get('messages_fetched')} messages, expected 1"
            )
        self.res["new"].add(m)
        self.res["new"].extra["messages_fetched"] = 1


class BareFetch(Tool):
    name = "bare"
    ops = ("fresh",)

    def __init__(self, ctx: Ctx) -> None:
        super().__init__(ctx)
        self.env = bare_env(ctx.env, ctx.server)

    def fresh_runs(self) -> int:
        return self.ctx.runs  # cheap: as many runs as the no-op / new-message operations

    def fresh(self, i: int) -> None:
        m = measure(
            [sys.executable, "-c", BARE_FETCH], env=self.env, cwd=self.ctx.top, timeout=self.ctx.timeout
        )
        info = json.loads(m.stdout)
        if info["messages"] != self.ctx.messages:
            raise BenchError(f"fetched {info['messages']} messages, expected {self.ctx.messages}")
        r = self.res["fresh"]
        r.add(m)
        r.extra.setdefault("inner_seconds_all", []).append(info["seconds"])
        r.extra.update(messages=info["messages"], bytes_fetched=info["bytes"])


class Mbsync(Tool):
    name = "mbsync"

    def __init__(self, ctx: Ctx) -> None:
        super().__init__(ctx)
        exe = shutil.which("mbsync")
        if exe is None:
            raise NotInstalled
        self.exe = exe
        self.res["fresh"].extra["version"] = tool_version([exe, "--version"])
        self.conf: Path | None = None

    def sync(self) -> Measured:
        assert self.wd is not None and self.conf is not None
        env = {**self.ctx.env, "HOME": str(self.wd)}
        return measure(
            [self.exe, "-c", str(self.conf), "-q", "-a"], env=env, cwd=self.wd, timeout=self.ctx.timeout
        )

    def count(self) -> int:
        assert self.wd is not None
        return len(maildir_messages(self.wd / "mail"))

    def fresh(self, i: int) -> None:
        wd = self.new_workdir(i)
        self.conf = mbsync_config(self.ctx, wd)
        m = self.sync()
        if self.count() != self.ctx.messages:
            raise BenchError(f"pulled {self.count()} messages, expected {self.ctx.messages}")
        self.res["fresh"].add(m)
        self.res["fresh"].extra["messages"] = self.ctx.messages

    def noop(self, i: int) -> None:
        before = self.count()
        m = self.sync()
        if self.count() != before:
            raise BenchError(f"no-op re-sync pulled {self.count() - before} messages, expected 0")
        self.res["noop"].add(m)

    def new(self, i: int) -> None:
        before = self.count()
        m = self.sync()
        if self.count() - before != 1:
            raise BenchError(f"re-sync after one APPEND pulled {self.count() - before} messages, expected 1")
        self.res["new"].add(m)
        self.res["new"].extra["messages_fetched"] = 1


class NotInstalled(Exception):
    pass


TOOL_CLASSES: dict[str, type[Tool]] = {"mailvault": Mailvault, "bare": BareFetch, "mbsync": Mbsync}


def bare_env(env: dict[str, str], server: Any) -> dict[str, str]:
    return {
        **env,
        "BENCH_HOST": "127.0.0.1",
        "BENCH_PORT": str(server.imaps_port),
        "BENCH_USER": USER,
        "BENCH_CA": str(server.ca_file),
        "BENCH_BATCH": str(BATCH),
    }


def mbsync_config(ctx: Ctx, wd: Path) -> Path:
    mail = wd / "mail"
    mail.mkdir()
    return write_mbsync_config(
        wd / "mbsyncrc",
        ctx.server,
        user=USER,
        mail=mail,
        fsync=ctx.mbsync_fsync,
        sync="pull",
        pipeline_depth=50,
    )


def run_large(ctx: Ctx, sizes: list[int], folders: int) -> list[dict[str, Any]]:
    """Seed BULK_USER up to each size (incrementally) and run one fresh mailvault backup of each.

    The messages go to one folder ``Bulk``, or spread evenly over ``Bulk1`` .. ``BulkN``.
    """
    mv = mailvault_cmd()
    if mv is None:
        return [{"messages": n, "status": "not installed"} for n in sizes]
    ctx.server.add_user(BULK_USER, IMAP_PASSWORD)
    rng = random.Random(20261127)
    seeded = 0
    out: list[dict[str, Any]] = []
    for n in sizes:
        row: dict[str, Any] = {"messages": n, "folders": folders, "status": "ok"}
        out.append(row)
        wd = ctx.top / f"large-{n}"
        try:
            t0 = time.perf_counter()
            names = [BULK_FOLDER] if folders == 1 else [f"{BULK_FOLDER}{k + 1}" for k in range(folders)]
            todo = n - seeded
            for k, name in enumerate(names):
                share = todo // folders + (1 if k < todo % folders else 0)
                while share > 0:  # in chunks: the generator keeps memory low, seed() indexes each chunk
                    chunk = min(10_000, share)
                    ctx.server.seed(BULK_USER, name, generated_messages(seeded, chunk, rng))
                    seeded += chunk
                    share -= chunk
            log(f"large account: seeded {n:,} messages in {time.perf_counter() - t0:.1f} s")
            wd.mkdir()
            env = mailvault_env(ctx.env, wd / "cache")
            init_vault(mv, wd / "vault", env=env, cwd=wd, timeout=ctx.timeout)
            m = measure(
                mailvault_backup_cmd(mv, wd / "vault", ctx.server, BULK_USER),
                env=env,
                cwd=wd,
                timeout=ctx.timeout,
            )
            info = json_out(m)
            if info.get("messages") != n:
                raise BenchError(f"mailvault backed up {info.get('messages')} messages, expected {n}")
            row.update(wall_s=m.wall, peak_rss_mib=m.rss_mib, bytes_fetched=info.get("bytes_fetched"))
            log(f"  mailvault fresh backup of {n:,}: {m.wall:.2f} s, {m.rss_mib:.1f} MiB")
        except (StepFailed, BenchError, OSError, subprocess.SubprocessError) as exc:
            row["status"] = f"failed: {exc}"
        finally:
            if not ctx.keep:
                shutil.rmtree(wd, ignore_errors=True)
        if row["status"] != "ok":
            log(f"  {row['status']}")
    return out


# --------------------------------------------------------------------------- report


def ratios(results: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    def wall(tool: str, op: str) -> float | None:
        return results.get(tool, {}).get(op, {}).get("wall_s")

    specs = [
        ("mailvault fresh / bare fetch", ("mailvault", "fresh"), ("bare", "fresh"), 3.0),
        ("mailvault fresh / mbsync fresh", ("mailvault", "fresh"), ("mbsync", "fresh"), 0.35),
        ("mailvault no-op / mbsync no-op", ("mailvault", "noop"), ("mbsync", "noop"), 10.0),
    ]
    return [ratio(name, wall(*a), wall(*b), target) for name, a, b, target in specs]


def _cell(r: dict[str, Any] | None) -> str:
    if r is None:
        return f"{'-':>8} {'-':>8}"
    if r["status"] != "ok":
        s = "n/a" if r["status"] == "n/a" else r["status"].split(":")[0]
        return f"{s:>17}"
    w = r["wall_s"]
    return f"{w:>8.3f} {r['peak_rss_mib']:>8.1f}" if w < 1 else f"{w:>8.2f} {r['peak_rss_mib']:>8.1f}"


def render_table(report: dict[str, Any]) -> str:
    c = report["corpus"]
    h = report["host"]
    tools = list(report["results"])
    lines = [
        f"mailvault backup benchmark over IMAPS, {report['date']}",
        host_line(h),
        f"server: {report['versions']['dovecot']} on loopback; "
        + ", ".join(v for k, v in report["versions"].items() if k != "dovecot"),
        f"corpus A: {c['path']}: {c['messages']:,} messages in {c['folders']} folders, "
        f"{c['raw_bytes'] / 1e6:.1f} MB on disk, {c['served_bytes'] / 1e6:.1f} MB served"
        if c.get("served_bytes")
        else f"corpus A: {c['path']}: {c['messages']:,} messages in {c['folders']} folders",
        f"runs: fresh pull {report['fresh_runs']} (mailvault, mbsync), {report['runs']} for the bare fetch, "
        f"no-op and new message; wall = median, RSS = max over runs ({report['rss_method']}); "
        f"{report['settle_s']:g} s pause before each re-run",
        f"load average (1 min) at start / end: {report['host']['loadavg_start'][0]:.2f} / "
        f"{report['host']['loadavg_end'][0]:.2f}; mbsync FSync {report['mbsync_fsync']}; "
        f"UID FETCH batches of {report['batch_uids']} (bare fetch)",
        "",
    ]
    w = 27
    lines.append(f"{'operation':<{w}}" + "".join(f"  {TOOL_LABELS[t]:>17}" for t in tools))
    lines.append(f"{'':<{w}}" + "".join(f"  {'wall s':>8} {'RSS MiB':>8}" for _ in tools))
    lines.append("-" * len(lines[-1]))
    op_names = {
        "fresh": f"fresh pull ({c['messages']:,} msgs)",
        "noop": "no-op re-run",
        "new": "1 new message in INBOX",
    }
    for op in OPS:
        lines.append(
            f"{op_names[op]:<{w}}" + "".join(f"  {_cell(report['results'][t].get(op))}" for t in tools)
        )
    lines.append("")
    lines.append(f"{'ratio (wall)':<34} {'value':>6}  target")
    for r in report["ratios"]:
        if r["value"] is None:
            lines.append(f"{r['name']:<34} {'n/a':>6}  <= {r['target']:g}")
        else:
            verdict = "met" if r["met"] else "MISSED"
            lines.append(f"{r['name']:<34} {r['value']:>6.2f}  <= {r['target']:g}  {verdict}")
    large = report.get("large") or []
    if large:
        nf = large[0].get("folders", 1)
        where = "one folder" if nf == 1 else f"{nf} folders"
        lines += ["", f"mailvault fresh backup of a larger account (generated ~4 KB messages, {where}):"]
        lines.append(f"{'messages':>10} {'MB served':>10} {'wall s':>8} {'RSS MiB':>8}")
        for row in large:
            if row["status"] != "ok":
                lines.append(f"{row['messages']:>10,} {row['status']}")
                continue
            mb = (row.get("bytes_fetched") or 0) / 1e6
            lines.append(
                f"{row['messages']:>10,} {mb:>10.1f} {row['wall_s']:>8.2f} {row['peak_rss_mib']:>8.1f}"
            )
        ok = [r for r in large if r["status"] == "ok"]
        if len(ok) >= 2:
            lines.append(
                f"peak RSS {ok[-1]['messages']:,} / {ok[0]['messages']:,} messages: "
                f"{ok[-1]['peak_rss_mib'] / ok[0]['peak_rss_mib']:.2f}x "
                f"(messages {ok[-1]['messages'] / ok[0]['messages']:.0f}x)"
            )
    mv = report["results"].get("mailvault", {}).get("fresh", {})
    inits = mv.get("init_wall_all")
    lines.append("")
    lines.append(
        "wall = the whole command incl. interpreter start-up and TLS login; mailvault fresh = `backup` alone"
        + (f" (`init` before it: {statistics.median(inits):.2f} s)" if inits else "")
    )
    noop = report["results"].get("mailvault", {}).get("noop", {})
    if noop.get("version_wall_all"):
        lines.append(
            "mailvault start-up alone (`mailvault --version`): "
            f"{statistics.median(noop['version_wall_all']):.3f} s, "
            f"{max(noop['version_rss_all_mib']):.1f} MiB"
        )
    for t in tools:
        for op, r in report["results"][t].items():
            if r["status"].startswith("failed"):
                lines.append(f"{TOOL_LABELS[t]} {op}: {r['status']}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="Time mailvault backup over IMAPS against a bare imapclient fetch and mbsync."
    )
    add_corpus_arg(ap)
    ap.add_argument("--runs", type=int, default=3, help="runs of the cheap operations (median; default 3)")
    ap.add_argument("--fresh-runs", type=int, default=1, help="fresh pulls per tool (median; default 1)")
    ap.add_argument(
        "--large",
        default="10000,50000",
        help="message counts of the larger generated account, comma-separated "
        "('' to skip; default 10000,50000)",
    )
    ap.add_argument(
        "--large-folders",
        type=int,
        default=1,
        help="spread the larger account over N folders (default 1: all in one folder)",
    )
    ap.add_argument("--tools", default=",".join(TOOLS), help=f"comma-separated subset of {','.join(TOOLS)}")
    ap.add_argument(
        "--settle",
        type=float,
        default=1.1,
        help="seconds to wait before each timed re-run (no-op / new message; default 1.1, see README)",
    )
    ap.add_argument(
        "--mbsync-fsync",
        choices=("yes", "no"),
        default="yes",
        help="mbsync's global FSync setting (default yes, mbsync's own default)",
    )
    add_json_arg(ap)
    add_tempdir_args(ap, temp="temp dir", keep="keep the temp dir (vaults, Maildirs, Dovecot logs)")
    args = ap.parse_args(argv)
    if args.runs < 1 or args.fresh_runs < 1 or args.large_folders < 1:
        ap.error("--runs, --fresh-runs and --large-folders must be >= 1")
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    if not tools or any(t not in TOOLS for t in tools):
        ap.error(f"--tools: choose from {', '.join(TOOLS)}")
    args.tools = [t for t in TOOLS if t in tools]  # fixed order: mailvault, bare, mbsync
    try:
        args.large = sorted({int(x) for x in args.large.split(",") if x.strip()})
    except ValueError:
        ap.error("--large: comma-separated message counts")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_dovecot_bench(
        args, "mailvault-backup-bench-", "mvbench", lambda top, server: _bench(args, top, server)
    )


def _bench(args: argparse.Namespace, top: Path, server: Any) -> int:
    corpus = load_corpus(args.corpus)
    n_msgs = corpus.messages
    seed_dovecot(server, USER, corpus, corpus_flags)

    env = base_env(imap=True)
    ctx = Ctx(
        server, top, env, n_msgs, args.runs, args.fresh_runs, args.timeout, args.keep, args.settle,
        args.mbsync_fsync,
    )  # fmt: skip
    load_start = loadavg()

    # One untimed fetch of everything: Dovecot builds its index/cache files on first access,
    # so every tool afterwards sees the same warm server. It also yields the served byte count.
    warm = measure(
        [sys.executable, "-c", BARE_FETCH], env=bare_env(env, server), cwd=top, timeout=args.timeout
    )
    served = json.loads(warm.stdout)["bytes"]
    log(f"warm-up fetch: {warm.wall:.2f} s, {served:,} bytes served")

    tools: list[Tool] = []
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for name in args.tools:
        try:
            tools.append(TOOL_CLASSES[name](ctx))
        except NotInstalled:
            results[name] = {op: OpResult(status="not installed").as_dict() for op in OPS}
    failed = False

    def step(tool: Tool, op: str, i: int, fn: Callable[[int], None]) -> None:
        """Run one measured step; a failure ends that tool's runs (the other tools go on)."""
        nonlocal failed
        if not tool.alive:
            return
        try:
            fn(i)
        except (StepFailed, BenchError, *STEP_ERRORS) as exc:
            msg = failure_text(exc)
        else:
            r = tool.res[op]
            log(f"{TOOL_LABELS[tool.name]} {op} {i + 1}: {r.walls[-1]:.3f} s, {r.rss_mib[-1]:.1f} MiB")
            return
        failed = True
        tool.alive = False
        log(f"{TOOL_LABELS[tool.name]} {op} {i + 1}: {msg}")
        tool.res[op].status = msg
        for later in OPS[OPS.index(op) + 1 :]:
            if tool.res[later].status == "ok":
                tool.res[later].status = "failed: not run (an earlier step failed)"

    # Run i of every tool, then run i + 1 of every tool, ...: load changes hit all tools alike.
    appended: list[int] = []
    try:
        for i in range(max([t.fresh_runs() for t in tools], default=0)):
            for t in tools:
                if i < t.fresh_runs():
                    step(t, "fresh", i, t.fresh)
        for i in range(args.runs):
            for t in tools:
                if "noop" in t.ops and t.alive:
                    ctx.pause()
                    step(t, "noop", i, t.noop)
        for i in range(args.runs):
            # One new message per round: every tool has seen all earlier ones, so each fetches one.
            if any("new" in t.ops and t.alive for t in tools):
                appended.append(append_one(ctx, f"round-{i + 1}"))
            for t in tools:
                if "new" in t.ops and t.alive:
                    ctx.pause()
                    step(t, "new", i, t.new)
    finally:
        expunge(ctx, appended)  # leave corpus A as it was
        for t in tools:
            t.close()
    for t in tools:
        results[t.name] = {op: r.as_dict() for op, r in t.res.items()}
    results = {name: results[name] for name in args.tools}

    large = run_large(ctx, args.large, args.large_folders) if args.large and "mailvault" in args.tools else []
    failed = failed or any(r["status"].startswith("failed") for r in large)
    load_end = loadavg()

    report = {
        **report_head(loadavg_start=load_start, loadavg_end=load_end),
        "versions": {
            "dovecot": "Dovecot " + tool_version([server.dovecot_bin, "--version"]).split()[0],
            **{TOOL_LABELS[t]: results[t]["fresh"].get("version", "?") for t in args.tools if t != "bare"},
            "imapclient": f"imapclient {_imapclient_version()}",
        },
        "corpus": {**corpus.as_dict(), "served_bytes": served},
        "runs": args.runs,
        "fresh_runs": args.fresh_runs,
        "batch_uids": BATCH,
        "settle_s": args.settle,
        "mbsync_fsync": args.mbsync_fsync,
        "rss_method": rss_method(),
        "results": results,
        "ratios": ratios(results),
        "large": large,
    }
    print_report(report, args.json, render_table)
    return 1 if failed else 0


def _imapclient_version() -> str:
    try:
        import imapclient

        return imapclient.__version__
    except ImportError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
