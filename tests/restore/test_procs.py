"""Restore worker processes (mailvault.restore.procs / .worker) against the real Dovecot and CLI.

``MAILVAULT_RESTORE_PROCESSES=1`` forces one worker process (the default is one per CPU beyond the
first, so none on a 1-CPU machine); ``MAILVAULT_RESTORE_WORKER_TRACE`` makes each worker log what it
does (``<pid> <time> ready|start|done ...``), so the tests know the worker really worked, and when.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench.latency_proxy import LatencyProxy
from tests.common import assert_one_line_error, mv, mv_argv, proc_env
from tests.restore.helpers import (
    PW_ENV,
    Account,
    assert_same,
    backup,
    counts,
    make_message,
    read_account,
    restore,
    restore_args,
    seed_set,
)
from tests.servers.dovecot import SeedMessage

FOLDERS = ["INBOX", "Archive", "Lists/small"]
COUNTERS = ("messages", "bytes", "uploaded", "uploaded_bytes", "already_there", "failed", "pending")
#: The kill tests upload through a link capped at this rate: the parent's own connection then takes
#: seconds, not a fraction of one, so the worker (a new interpreter, its own login) is in before the
#: work runs out even on a loaded machine.
SLOW_LINK_MBIT = 24
FOLDER_COUNTERS = ("messages", "bytes", "already", "uploaded", "uploaded_bytes", "skipped_existing", "failed")


def _procs_env(trace: Path) -> dict[str, str]:
    return {"MAILVAULT_RESTORE_PROCESSES": "1", "MAILVAULT_RESTORE_WORKER_TRACE": str(trace)}


def _trace(trace: Path) -> list[list[str]]:
    return [line.split() for line in trace.read_text().splitlines()] if trace.exists() else []


def _seed(source: Account, rng: random.Random, inbox: int, size: int | None = None) -> None:
    big = seed_set(inbox, rng, tag="big-", size=size)
    # Byte-identical copies in one folder and messages without a Message-ID: every copy is kept.
    twin = make_message(9999, rng, tag="twin-")
    no_id = [
        (f"From: a@example.org\r\nSubject: no id {i}\r\n\r\nbody {i % 3}\r\n".encode(), ["\\Seen"], big[i][2])
        for i in range(20)
    ]
    extra: list[SeedMessage] = [(twin, ["\\Flagged"], big[0][2]), (twin, [], big[1][2]), *no_id]
    source.seed(
        {
            "INBOX": big[: inbox // 2] + extra + big[inbox // 2 :],
            "Archive": seed_set(300, rng, tag="a-", size=size),
            "Lists/small": seed_set(40, rng, tag="s-"),
        }
    )


def test_worker_process_restore_equals_one_connection_restore(
    source: Account, make_account: Callable[..., Account], vault: Path, tmp_path: Path
) -> None:
    rng = random.Random(21)
    _seed(source, rng, 2000)
    backup(vault, source)
    want = read_account(source, FOLDERS)

    one = make_account()
    trace = tmp_path / "trace"
    r1 = restore(vault, one, "--connections", "1")
    # The worker takes work once it has logged in; on a loaded machine the parent's connection
    # may have taken everything by then: another fresh account (at most 3 tries).
    for _ in range(8):
        trace.unlink(missing_ok=True)
        procs = make_account()
        env = {PW_ENV: procs.password, **_procs_env(trace)}
        rp = json.loads(mv(*restore_args(vault, procs, "--connections", "2"), "--json", env=env).stdout)
        if any(e[2] == "done" for e in _trace(trace)):
            break
    else:
        raise AssertionError(f"the worker process restored nothing in 3 runs: {_trace(trace)}")
    assert rp["failures"] == r1["failures"] == [] and rp["warnings"] == r1["warnings"]
    for key in COUNTERS:
        assert rp[key] == r1[key], key
    f1 = {f["target"]: f for f in r1["folders"]}
    for f in rp["folders"]:
        for key in FOLDER_COUNTERS:
            assert f[key] == f1[f["target"]][key], (f["target"], key)
        assert sorted(f["dropped_flags"]) == sorted(f1[f["target"]]["dropped_flags"])
    parts = {f["target"]: f["parts"] for f in rp["folders"]}
    assert parts["INBOX"] > 1  # split: parts shared with the worker

    got1, gotp = read_account(one, FOLDERS), read_account(procs, FOLDERS)
    for folder in want:
        assert_same(want[folder], got1[folder], f"{folder}, one connection")
        assert_same(want[folder], gotp[folder], f"{folder}, with a worker process")

    # A rerun (worker process again) finds everything in the journal: nothing uploaded, nothing doubled.
    trace.unlink()
    again = json.loads(mv(*restore_args(vault, procs, "--connections", "2"), "--json", env=env).stdout)
    assert again["uploaded"] == 0 and again["already_there"] == again["messages"] == r1["messages"]
    assert counts(procs) == counts(one)


def _slow_link(source: Account) -> LatencyProxy:
    return LatencyProxy("127.0.0.1", source.server.imaps_port, rtt_ms=1, bandwidth_mbit=SLOW_LINK_MBIT)


def _start(vault: Path, target: Account, trace: Path, port: int) -> subprocess.Popen[str]:
    args = restore_args(vault, target, "--connections", "2", "--json")
    args[2] = target.url("imaps", port)
    argv = mv_argv(*args)
    env = proc_env({PW_ENV: target.password, **_procs_env(trace)})
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _wait_for_job(proc: subprocess.Popen[str], trace: Path) -> int | None:
    """The worker's pid once it has started a job (None: the restore ended first)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        started = [e for e in _trace(trace) if e[2] == "start"]
        if started:
            return int(started[0][0])
        time.sleep(0.01)
    return None


def _gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _start_until_job(
    vault: Path, make_account: Callable[..., Account], trace: Path, port: int
) -> tuple[subprocess.Popen[str], Account, int]:
    """A restore into a new account whose worker process has started a job (the worker takes work
    once it has logged in; on a loaded machine the parent may finish first: at most 8 tries)."""
    for _ in range(8):
        trace.unlink(missing_ok=True)
        target = make_account()
        proc = _start(vault, target, trace, port)
        pid = _wait_for_job(proc, trace)
        if pid is not None:
            return proc, target, pid
        proc.communicate(timeout=300)
    raise AssertionError(f"the worker never started a job in 8 runs: {_trace(trace)}")


def _kill_worker_run(
    vault: Path, make_account: Callable[..., Account], trace: Path, port: int
) -> tuple[dict[str, Any], Account, bool]:
    """A restore whose worker process is SIGKILLed mid-job; (its JSON, the account, whether the
    kill hit a job)."""
    proc, target, pid = _start_until_job(vault, make_account, trace, port)
    try:
        time.sleep(0.03)  # into the upload
        os.kill(pid, signal.SIGKILL)
        mid_job = [e[2] for e in _trace(trace) if int(e[0]) == pid][-1] == "start"
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode in (0, 1), err
    return json.loads(out), target, mid_job


@pytest.mark.parametrize("job", ["part", "folder"])
def test_killed_worker_loses_and_doubles_nothing(
    source: Account, make_account: Callable[..., Account], vault: Path, tmp_path: Path, job: str
) -> None:
    rng = random.Random(22)
    if job == "part":  # INBOX is split: the worker is killed while uploading a part of it
        _seed(source, rng, 2000, size=6000)
    else:  # no folder is big enough to split: the worker gets whole folders (redone in-process)
        source.seed({f: seed_set(500, rng, tag=f"{i}-", size=6000) for i, f in enumerate(FOLDERS)})
    backup(vault, source)
    want = read_account(source, FOLDERS)

    with _slow_link(source) as link:
        r, target, mid_job = _kill_worker_run(vault, make_account, tmp_path / "trace", link.port)
    assert r["uploaded"] + r["already_there"] + r["failed"] + r["pending"] == r["messages"], r
    said = " ".join(r["failures"] + r["warnings"])
    if mid_job:
        assert "restore worker process stopped (killed by signal 9)" in said, r
        assert r["exit_code"] == (1 if r["pending"] else 0), r
        if job == "folder":  # finished in-process in the same run
            assert r["pending"] == 0 and "restored in-process" in said, r
    assert r["uploaded"] > 0

    again = restore(vault, target, "--connections", "2")
    assert again["failures"] == []
    assert again["uploaded"] + again["already_there"] == again["messages"]
    got = read_account(target, FOLDERS)
    for folder in want:
        assert_same(want[folder], got[folder], f"{folder} after a killed worker and a rerun")
    assert restore(vault, target, "--connections", "2")["uploaded"] == 0


def test_killed_parent_stops_its_worker(
    source: Account, make_account: Callable[..., Account], vault: Path, tmp_path: Path
) -> None:
    rng = random.Random(23)
    _seed(source, rng, 2000, size=6000)
    backup(vault, source)
    with _slow_link(source) as link:
        proc, target, pid = _start_until_job(vault, make_account, tmp_path / "trace", link.port)
        try:
            proc.kill()
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert _gone(pid, 10), "the worker outlived its parent"
    restore(vault, target, "--connections", "2")
    want, got = read_account(source, FOLDERS), read_account(target, FOLDERS)
    for folder in want:
        assert_same(want[folder], got[folder], f"{folder} after a killed restore and a rerun")


def test_wrong_password_fails_once(source: Account, target: Account, vault: Path, tmp_path: Path) -> None:
    source.seed({"INBOX": seed_set(30, random.Random(24), tag="w-")})
    backup(vault, source)
    env = {PW_ENV: "not the password", **_procs_env(tmp_path / "trace")}
    proc = mv(*restore_args(vault, target, "--connections", "4"), code=None, env=env)
    assert_one_line_error(proc, 2)
    assert not any(e[2] in ("ready", "start") for e in _trace(tmp_path / "trace"))
