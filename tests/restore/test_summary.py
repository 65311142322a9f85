"""The restore summary accounts for every message of the snapshot (real Dovecot, real CLI):
uploaded + already there (journal or found) + failed + pending = messages, in text and JSON."""

from __future__ import annotations

import random
import re
from pathlib import Path

from tests.common import mv
from tests.restore.helpers import PW_ENV, Account, backup, restore, restore_args, seed_set

LAYOUT = {"INBOX": 25, "Work": 15}
TOTAL = sum(LAYOUT.values())


def _sums(r: dict[str, object]) -> None:
    parts = [r["uploaded"], r["already_there"], r["failed"], r["pending"]]
    assert all(isinstance(x, int) for x in parts)
    assert sum(parts) == r["messages"], r  # type: ignore[arg-type]
    for f in r["folders"]:  # type: ignore[attr-defined]
        assert (
            f["uploaded"] + f["already"] + f["skipped_existing"] + f["failed"] + f["pending"] == f["messages"]
        ), f


def _text(vault: Path, target: Account, *extra: str) -> str:
    out = mv(*restore_args(vault, target, *extra), env={PW_ENV: target.password}, code=None)
    return out.stdout + out.stderr


def test_summary_counts_every_message_on_every_run(
    source: Account, target: Account, vault: Path, cache_dir: Path
) -> None:
    rng = random.Random(5)
    source.seed({f: seed_set(n, rng, tag=f"sum-{f}-") for f, n in LAYOUT.items()})
    backup(vault, source)

    first = restore(vault, target)
    _sums(first)
    assert (first["uploaded"], first["already_there"], first["failed"]) == (TOTAL, 0, 0)

    again = restore(vault, target)
    _sums(again)
    assert (again["uploaded"], again["already_there"], again["skipped_existing"]) == (0, TOTAL, 0)
    text = _text(vault, target)
    assert re.search(
        rf"{TOTAL} messages: 0 uploaded \(0 B\), {TOTAL} already there \({TOTAL} in the journal, 0 found\), "
        r"0 failed",
        text,
    ), text

    # Without the journal, the messages are found in the target (by Message-ID and size).
    for journal in cache_dir.glob("*/restore.sqlite*"):
        journal.unlink()
    found = restore(vault, target)
    _sums(found)
    assert (found["uploaded"], found["already_there"], found["skipped_existing"]) == (0, TOTAL, TOTAL)


def test_summary_counts_what_the_budget_left_for_later(source: Account, target: Account, vault: Path) -> None:
    rng = random.Random(6)
    source.seed({"INBOX": seed_set(30, rng, tag="budget-", size=60_000)})  # ~1.8 MB
    backup(vault, source)
    r = restore(vault, target, "--max-upload-mb-per-day", "1", code=1)
    _sums(r)
    assert r["pending"] > 0 and r["uploaded"] > 0 and r["failed"] == 0, r
    text = _text(vault, target, "--max-upload-mb-per-day", "1")
    assert "not attempted (budget)" in text, text
