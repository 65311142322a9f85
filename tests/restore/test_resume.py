"""An interrupted restore (SIGKILL, no chance to clean up) resumes without losing or duplicating mail."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

from tests.common import mv_popen
from tests.restore.helpers import (
    PW_ENV,
    Account,
    assert_same,
    backup,
    counts,
    read_account,
    restore,
    restore_args,
    seed_set,
)

LAYOUT = {"INBOX": 1500, "Archive/2019": 900, "Lists/python-dev": 600}


def _kill_midway(vault: Path, target: Account, rng: random.Random) -> tuple[int | None, float]:
    """Start a restore and SIGKILL it a random 0–0.15 s after the target has grown by a message (so the
    kill lands mid-upload however loaded the machine is); return (exit status or None if killed, delay)."""
    import time

    before = sum(counts(target).get(f, 0) for f in LAYOUT)
    delay = rng.uniform(0.0, 0.15)
    proc = mv_popen(*restore_args(vault, target, "--quiet"), env={PW_ENV: target.password})
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return proc.returncode, delay
            if sum(counts(target).get(f, 0) for f in LAYOUT) > before:
                break
            time.sleep(0.05)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:  # still running: the point of the test
            proc.kill()
            proc.wait(timeout=30)
            return None, delay
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        if proc.stderr is not None:
            proc.stderr.close()
    return proc.returncode, delay


def test_kill_9_then_resume_gives_every_message_exactly_once(
    source: Account, target: Account, vault: Path, cache_dir: Path
) -> None:
    # ~120 MB: a full run takes a second or more, so a kill soon after the first upload lands mid-run.
    rng = random.Random(5)
    source.seed(
        {
            f: seed_set(n, rng, tag=f"k{i}-", size=rng.randrange(20000, 60000))
            for i, (f, n) in enumerate(LAYOUT.items())
        }
    )
    backup(vault, source)
    want = read_account(source, LAYOUT)

    kill_seed = random.randrange(1 << 32)
    kill_rng = random.Random(kill_seed)
    kills: list[tuple[int | None, float, int]] = []  # (exit status or None, delay, messages on the target)
    for _ in range(4):
        status, delay = _kill_midway(vault, target, kill_rng)
        kills.append((status, round(delay, 2), sum(counts(target).get(f, 0) for f in LAYOUT)))
        if status is not None:  # that run finished: nothing left to interrupt
            break
    # At least one run must really have been cut off midway, or the test proves nothing.
    assert any(s is None and 0 < n < sum(LAYOUT.values()) for s, _, n in kills), (kill_seed, kills)

    final = restore(vault, target)
    assert final["failures"] == [], final["failures"]
    got = read_account(target, LAYOUT)
    for folder in LAYOUT:
        assert_same(want[folder], got[folder], f"{folder} after kills {kills} (seed {kill_seed})")

    # Without the journal the (Message-ID, size) check finds every message: nothing is uploaded again.
    shutil.rmtree(cache_dir)
    again = restore(vault, target)
    assert again["uploaded"] == 0, again["uploaded"]
    assert again["skipped_existing"] == sum(LAYOUT.values())
    assert {f: n for f, n in counts(target).items() if f in LAYOUT} == LAYOUT


def test_lost_journal_messages_without_message_id_are_matched_by_bytes(
    source: Account, target: Account, vault: Path, cache_dir: Path
) -> None:
    """Without a Message-ID the duplicate check compares bytes: a lost journal uploads nothing again,
    and two byte-identical messages are still both there (matched one for one)."""
    from datetime import UTC, datetime

    msgs = [
        (
            f"From: a@example.org\r\nSubject: no id {i}\r\n\r\nbody {i}\r\n".encode(),
            [],
            datetime(2020, 1, 1, tzinfo=UTC),
        )
        for i in range(12)
    ]
    msgs.append(msgs[0])  # a byte-identical twin
    source.seed({"INBOX": msgs})
    backup(vault, source)
    first = restore(vault, target)
    assert first["uploaded"] == 13
    shutil.rmtree(cache_dir)
    again = restore(vault, target)
    assert again["uploaded"] == 0 and again["skipped_existing"] == 13, again
    assert counts(target)["INBOX"] == 13
