"""What the benchmarks in bench/ share: corpus location, measurement, Dovecot setup, report pieces.

Imported as ``common`` by vault_bench.py, backup_bench.py and restore_bench.py (each script's
directory is first on ``sys.path`` when it runs as ``python bench/NAME.py``).

* corpus: :func:`default_corpus`, :func:`corpus_folders`, :func:`load_corpus`, seed messages;
* measurement: :func:`measure` / :func:`measure_pipeline` (wall time and peak RSS, via GNU time's
  ``%M`` or ``os.wait4``), :class:`Measured`, :class:`StepFailed`;
* running: :func:`run_in_tempdir` (temp dir, cleanup, SIGTERM), :func:`run_with_dovecot`,
  :func:`seed_dovecot`, the mailvault CLI and its environment, mbsync's config;
* output: the report's date/host header, ratios, argparse options, JSON or table.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import functools
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS_ROOT = str(ROOT.parent / "shared" / "corpus")  # ../shared/corpus beside the checkout
CORPUS_NAME = "spamassassin"
MIB = 1024 * 1024

# Throwaway secrets for throwaway vaults, repositories and accounts on a throwaway server.
VAULT_PASSWORD = "bench-vault-password-not-secret"
IMAP_PASSWORD = "bench-imap-password-not-secret"
PASSWORD_VAR = "BENCH_IMAP_PASSWORD"  # the IMAP password reaches mailvault through --password-env

#: What a tool step may raise that the benchmarks report as a failed row rather than a traceback.
STEP_ERRORS: tuple[type[BaseException], ...] = (OSError, subprocess.SubprocessError, ValueError, KeyError)


class BenchError(Exception):
    """A problem with the benchmark's input or environment (reported without a traceback)."""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- corpus


def default_corpus() -> Path:
    return Path(os.environ.get("MAILVAULT_CORPUS", DEFAULT_CORPUS_ROOT)) / CORPUS_NAME


def corpus_folders(corpus: Path, hint: str = "--corpus DIR") -> list[tuple[str, list[Path]]]:
    """(folder name, message files) for a corpus of single-message files.

    Sub-directories become folders; files directly in ``corpus`` go to INBOX.
    Hidden files are skipped.  ``hint`` names the options that choose another corpus.
    """
    if not corpus.exists():
        raise BenchError(
            f"corpus directory {corpus} does not exist "
            f"(pass {hint}, or set MAILVAULT_CORPUS to the directory holding {CORPUS_NAME}/)"
        )
    if not corpus.is_dir():
        raise BenchError(f"corpus {corpus} is not a directory")
    folders: list[tuple[str, list[Path]]] = []
    top = sorted(p for p in corpus.iterdir() if p.is_file() and not p.name.startswith("."))
    if top:
        folders.append(("INBOX", top))
    for sub in sorted(p for p in corpus.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(p for p in sub.rglob("*") if p.is_file() and not p.name.startswith("."))
        if files:
            folders.append((sub.name, files))
    if not folders:
        raise BenchError(f"corpus {corpus} contains no message files")
    return folders


@dataclass
class Corpus:
    path: Path
    folders: list[tuple[str, list[Path]]]
    messages: int
    raw_bytes: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "messages": self.messages,
            "folders": len(self.folders),
            "raw_bytes": self.raw_bytes,
        }


def load_corpus(path: Path | None) -> Corpus:
    """The corpus at ``path`` (default: :func:`default_corpus`), with its message count and bytes."""
    corpus = (path or default_corpus()).resolve()
    folders = corpus_folders(corpus)
    n_msgs = sum(len(f) for _, f in folders)
    raw = sum(p.stat().st_size for _, fs in folders for p in fs)
    return Corpus(corpus, folders, n_msgs, raw)


def seen(i: int) -> bool:
    """\\Seen on 2 of every 3 messages of a folder (the same rule for Dovecot and the Maildirs)."""
    return i % 3 != 2


def seen_flags(i: int) -> list[str]:
    return ["\\Seen"] if seen(i) else []


def corpus_messages(
    files: list[Path], flags: Callable[[int], list[str]] = seen_flags
) -> Iterator[tuple[bytes, list[str], datetime]]:
    """Corpus files as seed messages: bytes unchanged, INTERNALDATE = mtime, ``flags(i)`` (\\Seen on 2 of 3)."""
    for i, path in enumerate(files):
        yield path.read_bytes(), flags(i), datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)


def copy_message(src: Path, target: Path) -> None:
    """Copy one message file into a Maildir: bytes and mtime unchanged."""
    st = src.stat()
    shutil.copyfile(src, target)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))


def maildir_messages(maildir: Path) -> list[Path]:
    """Every message file of a Maildir / Maildir++ tree (files in any cur/ or new/)."""
    msgs = []
    for dirpath, dirnames, filenames in os.walk(maildir):
        dirnames.sort()
        if os.path.basename(dirpath) in ("cur", "new"):
            msgs.extend(Path(dirpath, f) for f in sorted(filenames) if not f.startswith("."))
    return msgs


# --------------------------------------------------------------------------- measurement


@dataclass
class Measured:
    argv: str
    wall: float
    rss_kib: int
    rc: int
    stdout: str
    stderr: str

    @property
    def rss_mib(self) -> float:
        return self.rss_kib / 1024


class StepFailed(Exception):
    def __init__(self, m: Measured) -> None:
        tail = (m.stderr.strip() or m.stdout.strip())[-400:]
        super().__init__(f"`{m.argv}` exited {m.rc}: {tail}")
        self.measured = m


@dataclass
class OpResult:
    """One operation of one tool: every run's wall time and peak RSS."""

    status: str = "ok"  # ok | not installed | n/a | failed: ...
    walls: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, m: Measured) -> None:
        self.walls.append(m.wall)
        self.rss_mib.append(m.rss_mib)

    def as_dict(self, messages: int | None = None, *, rate: bool = False) -> dict[str, Any]:
        """Median wall time and maximum RSS over the runs; with ``rate``, also ``messages`` / wall."""
        ok = self.status == "ok" and bool(self.walls)
        wall = statistics.median(self.walls) if ok else None
        out: dict[str, Any] = {
            "status": self.status,
            "wall_s": wall,
            "peak_rss_mib": max(self.rss_mib) if ok else None,
        }
        if rate:
            out["messages_per_s"] = messages / wall if ok and wall and messages else None
        return {
            **out,
            "runs": len(self.walls),
            "wall_all": self.walls,
            "rss_all_mib": self.rss_mib,
            **self.extra,
        }


def failure_text(exc: BaseException) -> str:
    """A failed row's status: the command's exit and stderr tail, or the exception's type and text."""
    if isinstance(exc, StepFailed):
        return f"failed: {exc}"
    return f"failed: {type(exc).__name__}: {exc}"


@functools.cache
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


def rss_method() -> str:
    """How :func:`measure` gets peak RSS, for the report's header."""
    return "GNU time %M" if gnu_time() else "os.wait4 (floor: this script's own RSS)"


def measure(
    cmd: Sequence[str], *, env: dict[str, str], cwd: Path, timeout: float, check: bool = True
) -> Measured:
    """Run one command under GNU time if there is one: see :func:`measure_pipeline`."""
    return measure_pipeline([cmd], env=env, cwd=cwd, timeout=timeout, check=check)


def measure_pipeline(
    cmds: Sequence[Sequence[str]],
    *,
    env: dict[str, str],
    cwd: Path,
    timeout: float = 1800,
    check: bool = True,
    stdout_path: Path | None = None,
    use_gnu_time: bool = True,
) -> Measured:
    """Run a command (or a pipeline ``cmds[0] | cmds[1] | ...``): wall time and peak RSS.

    Wall time is perf_counter around start .. last exit.  Peak RSS is per command, unlike
    ``getrusage(RUSAGE_CHILDREN)``, which is a running maximum over everything this process ever
    waited for; for a pipeline it is the largest member's peak (they run concurrently, so the sum
    would also be defensible; the maximum is what ``time`` on the whole shell pipeline shows).

    With ``use_gnu_time`` and GNU time installed, each command runs under ``/usr/bin/time -f %M``,
    whose own ``wait4`` on the child it forks gives the child's true peak (GNU time itself: ~1 MiB,
    ~1 ms).  A child that Python starts directly inherits this script's high-water RSS (Popen uses
    vfork, and exec records the RSS of the address space it leaves -- the parent's -- in the child's
    ``ru_maxrss``), so ``os.wait4`` on it cannot report less than this script's own peak (about
    30-35 MiB), which would hide small tools like mbsync.  Otherwise ``ru_maxrss`` from ``os.wait4``
    on each child is used (the same source GNU time uses) and the report says so (:func:`rss_method`).

    Every command runs in its own session; on a timeout or an interruption (Ctrl-C, SIGTERM) its
    whole process group is killed, so nothing keeps running against a stopped server.  With
    ``check``, a non-zero exit raises :class:`StepFailed`.
    """
    argv_text = " | ".join(" ".join(c) for c in cmds)
    time_exe = gnu_time() if use_gnu_time else None
    procs: list[subprocess.Popen[bytes]] = []
    rss_files: list[Any] = []

    def kill() -> None:
        for p in procs:
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)

    with contextlib.ExitStack() as stack:
        out = stack.enter_context(tempfile.TemporaryFile())
        err = stack.enter_context(tempfile.TemporaryFile())
        final_out = stack.enter_context(open(stdout_path, "wb")) if stdout_path else out
        timer = threading.Timer(timeout, kill)
        timer.daemon = True
        if time_exe:
            rss_files = [
                stack.enter_context(tempfile.NamedTemporaryFile("r", prefix="rss-", suffix=".txt"))
                for _ in cmds
            ]
        peaks: list[int] = []
        rc = 0
        try:
            t0 = time.perf_counter()
            prev_stdout = None
            for i, cmd in enumerate(cmds):
                argv = list(cmd)
                if time_exe:
                    argv = [time_exe, "-f", "%M", "-o", rss_files[i].name, *argv]
                p = subprocess.Popen(
                    argv,
                    cwd=cwd,
                    env=env,
                    stdin=prev_stdout if prev_stdout is not None else subprocess.DEVNULL,
                    stdout=final_out if i == len(cmds) - 1 else subprocess.PIPE,
                    stderr=err,
                    start_new_session=True,
                )
                if prev_stdout is not None:
                    prev_stdout.close()  # so the producer gets SIGPIPE if the consumer dies
                prev_stdout = p.stdout
                procs.append(p)
            timer.start()
            for p in procs:
                _pid, status, ru = os.wait4(p.pid, 0)
                p.returncode = os.waitstatus_to_exitcode(status)
                peaks.append(ru.ru_maxrss)  # KiB on Linux
                rc = rc or p.returncode
            wall = time.perf_counter() - t0
        except BaseException:
            kill()
            for p in procs:
                if p.returncode is None:
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(p.pid, 0)
                    p.returncode = -signal.SIGKILL
            raise
        finally:
            timer.cancel()
        for k, rss_file in enumerate(rss_files):  # GNU time's figure for the command it ran
            lines = rss_file.read().split()
            if lines and lines[-1].isdigit():
                peaks[k] = int(lines[-1])
            elif procs[k].returncode == 0:
                raise BenchError(f"GNU time wrote no RSS for `{' '.join(cmds[k])}`: {lines!r}")
        out.seek(0)
        err.seek(0)
        m = Measured(
            argv_text,
            wall,
            max(peaks),
            rc,
            out.read().decode("utf-8", "replace"),
            err.read().decode("utf-8", "replace"),
        )
    if check and m.rc != 0:
        raise StepFailed(m)
    return m


def tool_version(argv: list[str]) -> str:
    try:
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return "?"
    line = (cp.stdout.strip() or cp.stderr.strip()).splitlines()
    return line[0] if line else "?"


# --------------------------------------------------------------------------- mailvault


def mailvault_cmd() -> list[str] | None:
    exe = shutil.which("mailvault")
    if exe:
        return [exe]
    try:
        import mailvault  # noqa: F401
    except ImportError:
        return None
    return [sys.executable, "-m", "mailvault"]


def json_out(m: Measured) -> dict[str, Any]:
    try:
        return json.loads(m.stdout)
    except json.JSONDecodeError:
        return {}


def base_env(imap: bool = False) -> dict[str, str]:
    """This process's environment without MAILVAULT_PASSWORD; with ``imap``, plus the IMAP password
    in ``PASSWORD_VAR`` (for ``--password-env``)."""
    env = dict(os.environ)
    env.pop("MAILVAULT_PASSWORD", None)
    if imap:
        env[PASSWORD_VAR] = IMAP_PASSWORD
    return env


def mailvault_env(env: dict[str, str], cache: Path) -> dict[str, str]:
    """``env`` for the mailvault CLI: the vault password, and its cache in ``cache``."""
    return {**env, "MAILVAULT_PASSWORD": VAULT_PASSWORD, "MAILVAULT_CACHE_DIR": str(cache)}


def imaps_url(server: Any, user: str) -> str:
    return f"imaps://{user}@127.0.0.1:{server.imaps_port}"


def mailvault_backup_cmd(mv: list[str], vault: Path, server: Any, user: str) -> list[str]:
    """``mailvault backup`` of ``user`` over IMAPS into ``vault`` (JSON result, no progress)."""
    return [
        *mv, "backup", str(vault), imaps_url(server, user), "--password-env", PASSWORD_VAR,
        "--ca-file", str(server.ca_file), "--account", user, "-q", "--json",
    ]  # fmt: skip


def init_vault(mv: list[str], vault: Path, *, env: dict[str, str], cwd: Path, timeout: float) -> Measured:
    return measure([*mv, "init", str(vault), "--json"], env=env, cwd=cwd, timeout=timeout)


# --------------------------------------------------------------------------- Dovecot, mbsync


def run_with_dovecot(top: Path, name: str, body: Callable[[Any], int]) -> int:
    """``body(server)`` with a private Dovecot (tests/servers/dovecot.py, not started yet) under
    ``top/dovecot``, cleaned up afterwards; exit status 2 if Dovecot fails."""
    sys.path.insert(0, str(ROOT))
    from tests.servers.dovecot import Dovecot, DovecotError

    server = None
    try:
        server = Dovecot(top / "dovecot", name=name)
        return body(server)
    except DovecotError as exc:
        log(f"error: {exc}")
        return 2
    finally:
        if server is not None:
            with contextlib.suppress(Exception):
                server.cleanup()


def seed_dovecot(
    server: Any, user: str, corpus: Corpus, flags: Callable[[int], list[str]] = seen_flags
) -> float:
    """Start ``server``, add ``user`` and seed it with ``corpus`` (one folder per corpus folder).

    Returns the seconds the seeding took.
    """
    server.start()
    server.clear_auth_penalty()
    server.add_user(user, IMAP_PASSWORD)
    t0 = time.perf_counter()
    for name, files in corpus.folders:
        server.seed(user, name, corpus_messages(files, flags))
    seed_s = time.perf_counter() - t0
    log(
        f"seeded {corpus.messages:,} messages ({corpus.raw_bytes:,} bytes) from {corpus.path} "
        f"in {seed_s:.1f} s"
    )
    return seed_s


#: The names in an mbsync config that pulls (backup_bench.py) or pushes (restore_bench.py).
_MBSYNC_NAMES = {
    "pull": {"account": "bench", "far": "bench-far", "near": "bench-near", "channel": "bench", "create": "Near"},
    "push": {"account": "localhost", "far": "imapstore", "near": "maildirstore", "channel": "push", "create": "Far"},
}  # fmt: skip


def write_mbsync_config(
    conf: Path,
    server: Any,
    *,
    user: str,
    mail: Path,
    fsync: str,
    sync: str,
    pipeline_depth: int | None = None,
) -> Path:
    """An mbsync config at ``conf`` between ``user`` on ``server`` (IMAPS) and the ``SubFolders
    Verbatim`` Maildir ``mail``; ``sync`` is ``pull`` (IMAP -> Maildir) or ``push``."""
    n = _MBSYNC_NAMES[sync]
    depth = f"PipelineDepth {pipeline_depth}\n" if pipeline_depth else ""
    conf.write_text(
        f"""\
FSync {fsync}

IMAPAccount {n["account"]}
Host {server.hostname}
Port {server.imaps_port}
User {user}
Pass {IMAP_PASSWORD}
SSLType IMAPS
CertificateFile {server.ca_file}
{depth}
IMAPStore {n["far"]}
Account {n["account"]}

MaildirStore {n["near"]}
Path {mail}/
Inbox {mail}/INBOX
SubFolders Verbatim

Channel {n["channel"]}
Far :{n["far"]}:
Near :{n["near"]}:
Patterns *
Create {n["create"]}
Sync {sync.capitalize()}
CopyArrivalDate yes
SyncState *
"""
    )
    conf.chmod(0o600)
    return conf


# --------------------------------------------------------------------------- running


def run_in_tempdir(args: argparse.Namespace, prefix: str, body: Callable[[Path], int], kept: str) -> int:
    """``body(top)`` in a new temp dir ``top`` (under ``--workdir``), removed afterwards unless
    ``--keep`` (then ``kept.format(top)`` is logged), also after an error, Ctrl-C or SIGTERM.
    A :class:`BenchError` is logged as a one-line error with exit status 2."""
    # A SIGTERM should clean up like Ctrl-C does (kill the running command, stop Dovecot, remove
    # the temp dirs).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    top = Path(tempfile.mkdtemp(prefix=prefix, dir=args.workdir))
    try:
        return body(top)
    except BenchError as exc:
        log(f"error: {exc}")
        return 2
    finally:
        if args.keep:
            log(kept.format(top))
        else:
            shutil.rmtree(top, ignore_errors=True)


def run_dovecot_bench(
    args: argparse.Namespace, prefix: str, server_name: str, bench: Callable[[Path, Any], int]
) -> int:
    """``bench(top, server)``: :func:`run_with_dovecot` (server ``<server_name>-<pid>``) in
    :func:`run_in_tempdir` (prefix ``prefix``)."""
    name = f"{server_name}-{os.getpid()}"
    return run_in_tempdir(
        args,
        prefix,
        lambda top: run_with_dovecot(top, name, lambda server: bench(top, server)),
        kept="kept {}",
    )


# --------------------------------------------------------------------------- options, report


def add_corpus_arg(ap: Any, more: str = "") -> None:
    """``--corpus DIR`` on a parser or a group; ``more`` is added to its help."""
    ap.add_argument(
        "--corpus",
        type=Path,
        help="directory of single-message files, one sub-directory per folder "
        f"(default: $MAILVAULT_CORPUS/{CORPUS_NAME}, i.e. {DEFAULT_CORPUS_ROOT}/{CORPUS_NAME})" + more,
    )


def add_json_arg(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")


def add_tempdir_args(ap: argparse.ArgumentParser, *, temp: str, keep: str) -> None:
    """``--workdir``, ``--keep`` (help: ``keep``) and ``--timeout``; ``temp`` names the temp dir(s)."""
    ap.add_argument("--workdir", type=Path, help=f"where to create the {temp} (default: system temp dir)")
    ap.add_argument("--keep", action="store_true", help=keep)
    ap.add_argument("--timeout", type=float, default=1800, help="per-command timeout in seconds")


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def report_head(**host: Any) -> dict[str, Any]:
    """A report's ``date`` and ``host`` (CPUs, platform, Python, and ``host``, e.g. load averages)."""
    return {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(terse=True),
            "python": platform.python_version(),
            **host,
        },
    }


#: The calibration workload: zstd level 9 over this much generated text, best of 3.
CALIBRATION_BYTES = 4 << 20


@functools.cache
def _calibration_text() -> bytes:
    import random

    rng = random.Random(12)
    words = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
        for _ in range(3000)
    ]
    out: list[str] = []
    size = 0
    while size < CALIBRATION_BYTES:
        line = " ".join(rng.choices(words, k=12)) + "\r\n"
        out.append(line)
        size += len(line)
    return "".join(out).encode()[:CALIBRATION_BYTES]


def cpu_calibration() -> float | None:
    """CPU seconds this host takes right now for a fixed piece of work (zstd level 9 over 4 MiB
    of generated text, best of 3; None without the zstandard module). A shared VM's speed drifts
    over hours — by 1.65x on 2026-12-03 — so a bench report carries it beside the load average:
    times are comparable across reports only at similar calibrations, ratios within a run always."""
    try:
        import zstandard
    except ImportError:
        return None
    data = _calibration_text()
    best = None
    for _ in range(3):
        t = time.process_time()
        zstandard.ZstdCompressor(level=9).compress(data)
        dt = time.process_time() - t
        best = dt if best is None else min(best, dt)
    return round(best, 3) if best is not None else None


def host_line(h: dict[str, Any]) -> str:
    return f"host: {h['cpus']} CPUs, {h['platform']}, Python {h['python']}"


def table_head(hdr: str) -> list[str]:
    """A table's header line and the rule under it."""
    return [hdr, "-" * len(hdr)]


def ratio(name: str, wa: float | None, wb: float | None, target: float) -> dict[str, Any]:
    """Wall time ``wa / wb`` against a target (lower is better)."""
    value = wa / wb if wa is not None and wb else None
    return {"name": name, "value": value, "target": target, "met": None if value is None else value <= target}


def print_report(report: dict[str, Any], as_json: bool, render: Callable[[dict[str, Any]], str]) -> None:
    print(json.dumps(report, indent=2) if as_json else render(report))
