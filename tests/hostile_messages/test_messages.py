"""Hostile messages — 100 MiB, a 1 MiB header line, 10^5 MIME parts — stored byte-exact with bounded
memory, through ``import`` (Maildir) and through an IMAP ``backup`` from the real test Dovecot; ``export``
and ``restore`` give the exact bytes back and ``check --read-data`` passes.

Every CLI step runs as a child process whose peak RSS (``ru_maxrss`` from :func:`os.wait4`) is
asserted below ``RSS_FACTOR * message size + RSS_BASE``. The messages are generated here (never
committed). The 100 MiB case carries the ``slow`` marker (it still runs in CI).
"""

from __future__ import annotations

import base64
import os
import random
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.common import DovecotAccount, proc_env, sha
from tests.servers.dovecot import Dovecot

MIB = 2**20
#: Peak RSS allowed for one CLI child handling one message of N bytes: RSS_FACTOR * N + RSS_BASE.
#: A message is one blob and a blob is never split across pack blocks, so a huge message is in memory
#: a few times at once (raw, its decoded attachment, zstd output, AES-GCM output, nonce + ciphertext).
RSS_FACTOR = 4
RSS_BASE = 150 * MIB
DATE = datetime(2020, 2, 2, 2, 2, 2, tzinfo=UTC)
PW_ENV = "MV_HOSTILE_SERVER_PW"
#: Peak RSS per (case, step), printed at the end for docs/RELIABILITY.md.
MEASURED: dict[str, int] = {}


def big_message(size: int = 100 * MIB) -> bytes:
    """A multipart message with one base64 attachment of random bytes (incompressible), ``size`` bytes."""
    head = (
        b"From: a@example.org\r\nTo: b@example.org\r\nSubject: 100 MiB\r\n"
        b"Date: Sun, 2 Feb 2020 02:02:02 +0000\r\nMessage-ID: <big@hostile.test>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nbig\r\n'
        b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    )
    tail = b"--b--\r\n"
    room = size - len(head) - len(tail)
    payload = random.Random(1).randbytes(room * 3 // 4)
    body = base64.encodebytes(payload).replace(b"\n", b"\r\n")[:room]
    if not body.endswith(b"\r\n"):
        body = body[:-2] + b"\r\n"
    return head + body + tail


def long_header_message(line_bytes: int = MIB) -> bytes:
    return (
        b"From: a@example.org\r\nSubject: long header\r\nDate: Sun, 2 Feb 2020 02:02:02 +0000\r\n"
        b"X-Long: " + b"x" * line_bytes + b"\r\nMessage-ID: <long@hostile.test>\r\n\r\nbody\r\n"
    )


def many_parts_message(parts: int = 100_000) -> bytes:
    head = (
        b"From: a@example.org\r\nSubject: 10^5 parts\r\nDate: Sun, 2 Feb 2020 02:02:02 +0000\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="p"\r\n\r\n'
    )
    part = b"--p\r\nContent-Type: text/plain\r\n\r\npart %d\r\n"
    return head + b"".join(part % i for i in range(parts)) + b"--p--\r\n"


CASES: dict[str, Callable[[], bytes]] = {
    "1MiB-header-line": long_header_message,
    "1e5-mime-parts": many_parts_message,
    "100MiB": big_message,
}
PARAMS = [
    pytest.param("1MiB-header-line"),
    pytest.param("1e5-mime-parts"),
    pytest.param("100MiB", marks=pytest.mark.slow),
]


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    peak_rss: int  # bytes


#: Runs ``python -m mailvault`` and, at exit, writes the process's own VmHWM (peak RSS of *its* address
#: space, fresh at exec) to $MV_HWM_FILE. ``ru_maxrss`` from ``wait4`` would not do: after a vfork-style
#: spawn Linux carries the parent's (pytest's) peak RSS into the child's ``maxrss``.
_WRAPPER = """
import atexit, os, runpy, sys
def _hwm():
    with open("/proc/self/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    with open(os.environ["MV_HWM_FILE"], "w") as f:
        f.write(str(kb * 1024))
atexit.register(_hwm)
sys.argv[0] = "mailvault"
runpy.run_module("mailvault", run_name="__main__", alter_sys=True)
"""


def measured(*args: str | Path, env: dict[str, str] | None = None, timeout: float = 600) -> Run:
    """``python -m mailvault ARGS`` as a child; its exit code, output and peak RSS (VmHWM at exit)."""
    with tempfile.TemporaryDirectory() as tmp:
        hwm = Path(tmp) / "hwm"
        proc = subprocess.run(
            [sys.executable, "-c", _WRAPPER, *map(str, args)],
            capture_output=True, text=True, timeout=timeout, check=False,
            env=proc_env({**(env or {}), "MV_HWM_FILE": str(hwm)}),
        )  # fmt: skip
        assert proc.returncode == 0, (
            f"mailvault {' '.join(map(str, args))}: exit {proc.returncode}\n{proc.stderr[-3000:]}"
        )
        return Run(proc.returncode, proc.stdout, proc.stderr, int(hwm.read_text()))


def check_rss(case: str, step: str, run: Run, size: int) -> None:
    MEASURED[f"{case}/{step}"] = run.peak_rss
    limit = RSS_FACTOR * size + RSS_BASE
    print(f"{case:18} {step:10} peak RSS {run.peak_rss / MIB:7.1f} MiB (message {size / MIB:.1f} MiB)")
    assert run.peak_rss < limit, (
        f"{case} {step}: peak RSS {run.peak_rss / MIB:.0f} MiB >= {limit / MIB:.0f} MiB"
    )


def exported_files(dest: Path) -> list[Path]:
    return sorted(p for p in dest.rglob("*") if p.is_file() and p.name != "dovecot-keywords")


def export_and_check(case: str, vault: Path, tmp_path: Path, raw_sha: str, size: int) -> None:
    for fmt in ("eml", "maildir") if size < 50 * MIB else ("eml",):  # CI time: one format for the big one
        dest = tmp_path / f"export-{fmt}"
        run = measured("export", vault, "latest", dest, "--format", fmt)
        check_rss(case, f"export-{fmt}", run, size)
        files = exported_files(dest)
        assert len(files) == 1, files
        assert sha(files[0].read_bytes()) == raw_sha
        files[0].unlink()
    run = measured("check", vault, "--read-data")
    check_rss(case, "check", run, size)
    assert "no errors" in run.stdout, run.stdout


@pytest.mark.parametrize("case", PARAMS)
def test_import_maildir_byte_exact_bounded_memory(case: str, vault: Path, tmp_path: Path) -> None:
    raw = CASES[case]()
    size, raw_sha = len(raw), sha(raw)
    tree = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (tree / sub).mkdir(parents=True)
    (tree / "cur" / "1580608922.hostile.host:2,S").write_bytes(raw)
    del raw
    run = measured("import", vault, tree, "--account", "local", "--format", "maildir", "--json")
    check_rss(case, "import", run, size)
    assert '"new_messages": 1' in run.stdout, run.stdout
    export_and_check(case, vault, tmp_path, raw_sha, size)


@pytest.mark.parametrize("case", PARAMS)
def test_imap_backup_restore_byte_exact_bounded_memory(
    case: str, vault: Path, tmp_path: Path, dovecot: Dovecot, fresh_user: tuple[str, str]
) -> None:
    source = DovecotAccount(dovecot, *fresh_user)
    raw = CASES[case]()
    size, raw_sha = len(raw), sha(raw)
    dovecot.seed(source.user, "INBOX", [(raw, ["\\Seen"], DATE)])
    del raw
    run = measured(
        "backup", vault, source.url(), "--password-env", PW_ENV, "--ca-file", dovecot.ca_file, "--json",
        env={PW_ENV: source.password},
    )  # fmt: skip
    check_rss(case, "backup", run, size)
    export_and_check(case, vault, tmp_path, raw_sha, size)

    target_user = f"h{os.getpid()}-{abs(hash(case)) % 10**6}-{fresh_user[0]}"
    dovecot.add_user(target_user, "secret-target")
    target = DovecotAccount(dovecot, target_user, "secret-target")
    run = measured(
        "restore", vault, target.url(), "--password-env", PW_ENV, "--ca-file", dovecot.ca_file, "--json",
        env={PW_ENV: target.password},
    )  # fmt: skip
    check_rss(case, "restore", run, size)
    client = dovecot.imap_client(target.user, timeout=120)
    try:
        client.select_folder("INBOX", readonly=True)
        fetched = client.fetch(client.search("ALL"), ["BODY.PEEK[]", "FLAGS"])
    finally:
        client.logout()
    assert len(fetched) == 1
    (data,) = fetched.values()
    assert sha(data[b"BODY[]"]) == raw_sha
    assert b"\\Seen" in data[b"FLAGS"]
