"""A hostile IMAP server (tests/servers/hostile.py) against the real CLI: every kind of nonsense ends
in a clear one-line error or a correct snapshot, with bounded memory and no hang; the vault stays
consistent (``check --read-data``) and a later run against a sane server completes."""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import IO

import pytest

from tests.common import mv, mv_argv, mv_json, proc_env
from tests.servers.hostile import PASSWORD, HostileImap

PW_ENV = "MV_HOSTILE_PW"
RSS_LIMIT_KB = 400 * 1024  # far below the 10**12-byte literal, the endless line, 10,000 folders


def run_backup(vault: Path, server: HostileImap, timeout: float = 120) -> tuple[int, str, str, int, float]:
    """``mailvault backup`` as a child process: exit code, stdout, stderr, peak RSS (KiB), seconds."""
    env = proc_env({PW_ENV: PASSWORD, "MAILVAULT_TIMEOUT": "3"})
    argv = mv_argv(
        "backup", vault, server.url, "--password-env", PW_ENV, "--allow-plaintext", "--account", "h"
    )
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out: dict[str, bytes] = {}

    def drain(name: str, stream: IO[bytes]) -> None:
        out[name] = stream.read()

    readers = [
        threading.Thread(target=drain, args=(name, stream), daemon=True)
        for name, stream in (("out", proc.stdout), ("err", proc.stderr))
    ]
    for r in readers:
        r.start()
    # os.wait4 gives this child's own peak RSS (RUSAGE_CHILDREN would be the largest of every
    # child this pytest worker ever waited for, e.g. another test's 100 MB message).
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - started > timeout:
            proc.kill()
            os.wait4(proc.pid, 0)
            proc.returncode = -9
            pytest.fail(f"backup hung for more than {timeout}s")
        time.sleep(0.02)
    proc.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.monotonic() - started
    for r in readers:
        r.join()
    return proc.returncode, out["out"].decode(), out["err"].decode(), usage.ru_maxrss, elapsed


def one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip() and "warning:" not in ln.split(" ", 2)[:2]]
    assert lines, "no error line"
    assert all("Traceback" not in ln and "internal error" not in ln for ln in lines), err
    return lines[-1]


def vault_ok(vault: Path) -> None:
    mv("check", vault, "--read-data")


@pytest.mark.parametrize(
    ("mode", "needle"),
    [
        ("huge_literal", "literal"),
        ("short_literal", ""),
        ("endless_line", ""),
        ("stall", "timed out"),
        ("bye", ""),
    ],
)
def test_bad_fetch_answers_fail_cleanly(vault: Path, mode: str, needle: str) -> None:
    with HostileImap(mode, stall_seconds=20) as server:
        code, _out, err, rss, took = run_backup(vault, server)
        logins = sum(1 for c in server.commands if " LOGIN " in c.upper())
    if mode == "bye" and code == 0:
        # A BYE closes only that connection: the backup may fetch the rest on a new one, and
        # then the snapshot must hold every message, byte for byte.
        assert logins > 1, "exit 0 after a BYE without reconnecting"
        rows = mv_json("ls", vault, "latest", "--account", "h")
        assert sorted(r["uid"] for r in rows) == [1, 2, 3], rows
        assert {r["blob"] for r in rows} == {hashlib.sha256(m).hexdigest() for m in server.messages}
    else:
        assert code in (1, 2), (code, err)
        line = one_line(err)
        assert needle.lower() in line.lower(), line
    assert took < 100, f"took {took:.0f}s: a 3 s timeout and a bounded number of retries must end it sooner"
    assert rss < RSS_LIMIT_KB, f"peak RSS {rss} KiB"
    vault_ok(vault)
    # The same vault then backs up a sane server completely.
    with HostileImap("ok") as sane:
        code, _out, err, _rss, _took = run_backup(vault, sane)
    assert code == 0, err
    snaps = mv_json("snapshots", vault, "--account", "h")
    assert snaps[-1]["messages"] == 3


def test_invalid_utf7_folder_names(vault: Path) -> None:
    with HostileImap("bad_utf7") as server:
        code, _out, err, _rss, _took = run_backup(vault, server)
    assert code == 0, err
    snap = mv_json("snapshots", vault, "--account", "h")[-1]
    listing = mv_json("ls", vault, snap["id"], "--account", "h")
    raw_names = {m["folder_raw"] for m in listing}
    assert {"&Jjo!", "Bad&-&Name", "Tail&AGE", "Ok-Folder", "INBOX"} <= raw_names, raw_names
    vault_ok(vault)


def test_ten_thousand_folders(vault: Path) -> None:
    with HostileImap("many_folders") as server:
        code, _out, err, rss, took = run_backup(vault, server, timeout=300)
    assert code == 0, err
    snap = mv_json("snapshots", vault, "--account", "h")[-1]
    assert snap["folders"] == 10_001
    assert snap["messages"] == 3
    assert rss < RSS_LIMIT_KB
    assert took < 280


def test_fetch_for_a_uid_never_asked_for(vault: Path) -> None:
    with HostileImap("unasked_uid") as server:
        code, _out, err, _rss, _took = run_backup(vault, server)
    assert code == 0, err
    snap = mv_json("snapshots", vault, "--account", "h")[-1]
    listing = mv_json("ls", vault, snap["id"], "--account", "h")
    assert sorted(m["uid"] for m in listing) == [1, 2, 3]
    assert os.environ.get("MAILVAULT_CACHE_DIR")
