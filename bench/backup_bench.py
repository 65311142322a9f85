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

Wall time and peak RSS (GNU time's ``%M``, see :func:`measure`) are per command.  Nothing
leaves the machine.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from vault_bench import (
    BenchError,
    Measured,
    StepFailed,
    _corpus_folders,
    _json_out,
    default_corpus,
    log,
    mailvault_cmd,
    tool_version,
)

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ("mailvault", "bare", "mbsync")
TOOL_LABELS = {"mailvault": "mailvault", "bare": "bare imapclient", "mbsync": "mbsync"}
OPS = ("fresh", "noop", "new")
USER = "alice"
BULK_USER = "bulk"
BULK_FOLDER = "Bulk"
IMAP_PASSWORD = "bench-imap-password-not-secret"  # throwaway account on a throwaway server
VAULT_PASSWORD = "bench-vault-password-not-secret"
PASSWORD_VAR = "BENCH_IMAP_PASSWORD"
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


# --------------------------------------------------------------------------- measurement


def gnu_time() -> str | None:
    """/usr/bin/time if it is GNU time (``-f %M -o FILE``), else None."""
    exe = "/usr/bin/time"
    if not os.access(exe, os.X_OK):
        return None
    try:
        cp = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return None
    return exe if "GNU" in cp.stdout + cp.stderr else None


GNU_TIME = gnu_time()


def measure(cmd: list[str], *, env: dict[str, str], cwd: Path, timeout: float) -> Measured:
    """Run one command: wall time and peak RSS; StepFailed on a non-zero exit.

    The RSS comes from GNU time's ``%M`` (``wait4`` on the child *it* forks) when it is available. A
    child that Python starts directly inherits the *parent's* high-water RSS: Popen uses vfork, and
    exec records the RSS of the address space it leaves (shared with the parent) in the child's
    ``ru_maxrss``; so ``os.wait4`` here could not report less than this script's own peak (about
    30-35 MiB), which would hide small tools like mbsync. GNU time's own footprint is about 1 MiB, and
    it adds about a millisecond to the wall time. Without GNU time, ``os.wait4`` is used and the report
    says so.

    The command runs in its own session; if this script is interrupted (Ctrl-C, SIGTERM, timeout),
    the whole process group is killed, so no backup keeps running against a stopped server.
    """
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(tempfile.TemporaryFile())
        err = stack.enter_context(tempfile.TemporaryFile())
        argv = cmd
        rss_file = None
        if GNU_TIME:
            rss_file = stack.enter_context(tempfile.NamedTemporaryFile("r", prefix="rss-", suffix=".txt"))
            argv = [GNU_TIME, "-f", "%M", "-o", rss_file.name, *cmd]
        t0 = time.perf_counter()
        p = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=cwd, start_new_session=True
        )

        def kill() -> None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.daemon = True
        timer.start()
        try:
            _pid, status, ru = os.wait4(p.pid, 0)
        except BaseException:
            kill()
            with contextlib.suppress(ChildProcessError):
                os.waitpid(p.pid, 0)
            p.returncode = -signal.SIGKILL
            raise
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
        p.returncode = rc = os.waitstatus_to_exitcode(status)
        rss_kib = ru.ru_maxrss  # KiB on Linux
        if rss_file is not None:
            lines = rss_file.read().split()
            if rc == 0 and not (lines and lines[-1].isdigit()):
                raise BenchError(f"GNU time wrote no RSS for `{' '.join(cmd)}`: {lines!r}")
            if lines and lines[-1].isdigit():
                rss_kib = int(lines[-1])
        out.seek(0)
        err.seek(0)
        m = Measured(
            " ".join(cmd),
            wall,
            rss_kib,
            rc,
            out.read().decode("utf-8", "replace"),
            err.read().decode("utf-8", "replace"),
        )
    if m.rc != 0:
        raise StepFailed(m)
    return m


# --------------------------------------------------------------------------- data


@dataclass
class OpResult:
    """One operation of one tool: every run's wall time and peak RSS."""

    status: str = "ok"  # ok | not installed | failed: ...
    walls: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, m: Measured) -> None:
        self.walls.append(m.wall)
        self.rss_mib.append(m.rss_mib)

    def as_dict(self) -> dict[str, Any]:
        ok = self.status == "ok" and bool(self.walls)
        return {
            "status": self.status,
            "wall_s": statistics.median(self.walls) if ok else None,
            "peak_rss_mib": max(self.rss_mib) if ok else None,
            "runs": len(self.walls),
            "wall_all": self.walls,
            "rss_all_mib": self.rss_mib,
            **self.extra,
        }


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

    @property
    def url(self) -> str:
        return f"imaps://{USER}@127.0.0.1:{self.server.imaps_port}"


# --------------------------------------------------------------------------- seeding


def corpus_messages(files: list[Path]) -> Iterator[tuple[bytes, list[str], datetime]]:
    """Corpus files as seed messages: bytes unchanged, INTERNALDATE = mtime, \\Seen on 2 of 3."""
    for i, path in enumerate(files):
        flags = []
        if i % 3 != 2:
            flags.append("\\Seen")
        if i % 17 == 0:
            flags.append("\\Flagged")
        if i % 11 == 0:
            flags.append("\\Answered")
        yield path.read_bytes(), flags, datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)


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
        yield raw, (["\\Seen"] if i % 3 != 2 else []), when


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
        argv = [
            *self.mv, "backup", str(self.wd / "vault"), self.ctx.url, "--password-env", PASSWORD_VAR,
            "--ca-file", str(self.ctx.server.ca_file), "--account", USER, "-q", "--json",
        ]  # fmt: skip
        m = measure(argv, env=self.env, cwd=self.wd, timeout=self.ctx.timeout)
        return m, _json_out(m)

    def fresh(self, i: int) -> None:
        wd = self.new_workdir(i)
        self.env = {
            **self.ctx.env,
            "MAILVAULT_PASSWORD": VAULT_PASSWORD,
            "MAILVAULT_CACHE_DIR": str(wd / "cache"),
        }
        init = measure(
            [*self.mv, "init", str(wd / "vault"), "--json"], env=self.env, cwd=wd, timeout=self.ctx.timeout
        )
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
        return maildir_count(self.wd / "mail")

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
    conf = wd / "mbsyncrc"
    conf.write_text(
        f"""\
FSync {ctx.mbsync_fsync}

IMAPAccount bench
Host {ctx.server.hostname}
Port {ctx.server.imaps_port}
User {USER}
Pass {IMAP_PASSWORD}
SSLType IMAPS
CertificateFile {ctx.server.ca_file}
PipelineDepth 50

IMAPStore bench-far
Account bench

MaildirStore bench-near
Path {mail}/
Inbox {mail}/INBOX
SubFolders Verbatim

Channel bench
Far :bench-far:
Near :bench-near:
Patterns *
Create Near
Sync Pull
CopyArrivalDate yes
SyncState *
"""
    )
    conf.chmod(0o600)
    return conf


def maildir_count(path: Path) -> int:
    n = 0
    for dirpath, _dirs, files in os.walk(path):
        if os.path.basename(dirpath) in ("cur", "new"):
            n += len(files)
    return n


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
            env = {**ctx.env, "MAILVAULT_PASSWORD": VAULT_PASSWORD, "MAILVAULT_CACHE_DIR": str(wd / "cache")}
            measure([*mv, "init", str(wd / "vault"), "--json"], env=env, cwd=wd, timeout=ctx.timeout)
            url = f"imaps://{BULK_USER}@127.0.0.1:{ctx.server.imaps_port}"
            m = measure(
                [*mv, "backup", str(wd / "vault"), url, "--password-env", PASSWORD_VAR,
                 "--ca-file", str(ctx.server.ca_file), "--account", BULK_USER, "-q", "--json"],
                env=env,
                cwd=wd,
                timeout=ctx.timeout,
            )  # fmt: skip
            info = _json_out(m)
            if info.get("messages") != n:
                raise BenchError(f"mailvault backed up {info.get('messages')} messages, expected {n}")
            row.update(wall_s=m.wall, peak_rss_mib=m.rss_mib, bytes_fetched=info.get("bytes_fetched"))
            log(f"  mailvault fresh backup of {n:,}: {m.wall:.2f} s, {m.rss_mib:.1f} MiB")
        except StepFailed as exc:
            row["status"] = f"failed: {exc}"
        except (BenchError, OSError, subprocess.SubprocessError) as exc:
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
    out = []
    for name, a, b, target in specs:
        wa, wb = wall(*a), wall(*b)
        value = wa / wb if wa is not None and wb else None
        out.append(
            {
                "name": name,
                "value": value,
                "target": target,
                "met": None if value is None else value <= target,
            }
        )
    return out


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
        f"host: {h['cpus']} CPUs, {h['platform']}, Python {h['python']}",
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
    ap.add_argument(
        "--corpus",
        type=Path,
        help="directory of single-message files, one sub-directory per folder "
        "(default: $MAILVAULT_CORPUS/spamassassin, i.e. /work/shared/corpus/spamassassin)",
    )
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
    ap.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    ap.add_argument("--workdir", type=Path, help="where to create the temp dir (default: system temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (vaults, Maildirs, Dovecot logs)")
    ap.add_argument("--timeout", type=float, default=1800, help="per-command timeout in seconds")
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
    # A SIGTERM should clean up like Ctrl-C does (stop Dovecot, remove the temp dirs).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    top = Path(tempfile.mkdtemp(prefix="mailvault-backup-bench-", dir=args.workdir))
    server = None
    try:
        sys.path.insert(0, str(ROOT))
        from tests.servers.dovecot import Dovecot, DovecotError

        try:
            server = Dovecot(top / "dovecot", name=f"mvbench-{os.getpid()}")
            return _bench(args, top, server)
        except DovecotError as exc:
            log(f"error: {exc}")
            return 2
    except BenchError as exc:
        log(f"error: {exc}")
        return 2
    finally:
        if server is not None:
            with contextlib.suppress(Exception):
                server.cleanup()
        if args.keep:
            log(f"kept {top}")
        else:
            shutil.rmtree(top, ignore_errors=True)


def _bench(args: argparse.Namespace, top: Path, server: Any) -> int:
    corpus = (args.corpus or default_corpus()).resolve()
    if not corpus.is_dir():
        raise BenchError(
            f"corpus directory {corpus} does not exist (pass --corpus DIR, or set MAILVAULT_CORPUS "
            "to the directory holding spamassassin/)"
        )
    folders = _corpus_folders(corpus)
    n_msgs = sum(len(f) for _, f in folders)
    raw = sum(p.stat().st_size for _, fs in folders for p in fs)

    server.start()
    server.clear_auth_penalty()
    server.add_user(USER, IMAP_PASSWORD)
    t0 = time.perf_counter()
    for name, files in folders:
        server.seed(USER, name, corpus_messages(files))
    log(f"seeded {n_msgs:,} messages ({raw:,} bytes) from {corpus} in {time.perf_counter() - t0:.1f} s")

    env = dict(os.environ)
    env.pop("MAILVAULT_PASSWORD", None)
    env[PASSWORD_VAR] = IMAP_PASSWORD
    ctx = Ctx(
        server, top, env, n_msgs, args.runs, args.fresh_runs, args.timeout, args.keep, args.settle,
        args.mbsync_fsync,
    )  # fmt: skip
    load_start = os.getloadavg()

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
        except StepFailed as exc:
            msg = f"failed: {exc}"
        except (BenchError, OSError, subprocess.SubprocessError, ValueError, KeyError) as exc:
            msg = f"failed: {type(exc).__name__}: {exc}"
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
    load_end = os.getloadavg()

    report = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(terse=True),
            "python": platform.python_version(),
            "loadavg_start": [round(x, 2) for x in load_start],
            "loadavg_end": [round(x, 2) for x in load_end],
        },
        "versions": {
            "dovecot": "Dovecot " + tool_version([server.dovecot_bin, "--version"]).split()[0],
            **{TOOL_LABELS[t]: results[t]["fresh"].get("version", "?") for t in args.tools if t != "bare"},
            "imapclient": f"imapclient {_imapclient_version()}",
        },
        "corpus": {
            "path": str(corpus),
            "messages": n_msgs,
            "folders": len(folders),
            "raw_bytes": raw,
            "served_bytes": served,
        },
        "runs": args.runs,
        "fresh_runs": args.fresh_runs,
        "batch_uids": BATCH,
        "settle_s": args.settle,
        "mbsync_fsync": args.mbsync_fsync,
        "rss_method": "GNU time %M" if GNU_TIME else "os.wait4 (floor: this script's own RSS)",
        "results": results,
        "ratios": ratios(results),
        "large": large,
    }
    print(json.dumps(report, indent=2) if args.json else render_table(report))
    return 1 if failed else 0


def _imapclient_version() -> str:
    try:
        import imapclient

        return imapclient.__version__
    except ImportError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
