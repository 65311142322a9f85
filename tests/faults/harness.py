"""The fault matrix's machinery: trial counts, the report the matrix script turns into a table, the kill
loop, and the end-of-trial audit (rerun done, ``check --read-data`` clean, nothing stored twice).

Trial counts: the CI default of each fault, or ``MAILVAULT_FAULT_TRIALS=full`` for the full counts
(the published matrix), or ``MAILVAULT_FAULT_TRIALS=N`` for N trials of everything.
``MAILVAULT_FAULT_REPORT=FILE`` appends one JSON line per finished fault (the matrix script reads it).
"""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mailvault.vault.format import BLOB_MESSAGE, BLOB_PART, BLOB_SKELETON, id_from_name
from mailvault.vault.index import decode_index_file
from mailvault.vault.repository import Repository, VaultParams
from tests.backup.helpers import server_messages
from tests.common import MAIL_WORDS, REPO_ROOT, DovecotAccount, invoke, proc_env, sha

VAULT_PASSWORD = "fault matrix vault password"
#: Small packs and blocks, so even a small mailbox makes many storage writes (many kill points).
SMALL_PACKS = VaultParams(pack_size=64 << 10, block_size=16 << 10)


def trials(ci: int, full: int) -> int:
    """How many trials a fault gets in this run (see the module docstring)."""
    setting = os.environ.get("MAILVAULT_FAULT_TRIALS", "").strip().lower()
    if not setting:
        return ci
    if setting == "full":
        return full
    return max(1, int(setting))


def full_run() -> bool:
    return os.environ.get("MAILVAULT_FAULT_TRIALS", "").strip().lower() == "full"


def report(
    fault: str, injection: str, trials: int, result: str, *, quiet: bool = False, **extra: Any
) -> None:
    """Record a fault's trials for docs/RELIABILITY.md (only when MAILVAULT_FAULT_REPORT is set; a
    later row of the same fault replaces an earlier one)."""
    path = os.environ.get("MAILVAULT_FAULT_REPORT")
    line = {"fault": fault, "injection": injection, "trials": trials, "result": result, **extra}
    if not quiet:
        print(json.dumps(line))
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")


@contextmanager
def timed() -> Iterator[Callable[[], float]]:
    start = time.monotonic()
    yield lambda: round(time.monotonic() - start, 1)


# ----------------------------------------------------------------------------- the CLI


def ok(*args: str | Path, env: dict[str, str] | None = None, code: int = 0) -> str:
    """``mailvault ARGS`` in-process; must exit ``code``; returns stdout."""
    return invoke(*args, code=code, env=env).stdout


def ok_json(*args: str | Path, env: dict[str, str] | None = None, code: int = 0) -> Any:
    return json.loads(ok(*args, "--json", env=env, code=code))


def killhook_argv(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "tests.faults.killhook", *map(str, args)]


def calibrate(args: list[str | Path], env: dict[str, str], scratch: Path) -> Counter[str]:
    """Run ``args`` once through the kill hook without killing; return its event counts."""
    counts = scratch / f"counts-{time.monotonic_ns()}.json"
    proc = subprocess.run(
        killhook_argv(*args),
        env=proc_env({**env, "MV_KILL_COUNTS": str(counts)}),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO_ROOT,
    )
    assert proc.returncode == 0, (args, proc.stdout[-2000:], proc.stderr[-2000:])
    return Counter(json.loads(counts.read_text()))


@dataclass
class KillPoint:
    kind: str
    n: int
    delay_ms: int

    def spec(self) -> str:
        return f"{self.kind}:{self.n}:{self.delay_ms}"


def pick_point(rng: random.Random, counts: Counter[str], kinds: tuple[str, ...]) -> KillPoint:
    """A kind of progress point (uniformly among those the operation reaches), an occurrence of it
    (uniformly), and a delay: a third of the kills at once, the rest 0-40 ms later."""
    usable = [k for k in kinds if counts.get(k, 0) > 0]
    assert usable, f"none of {kinds} happened in the calibration run: {dict(counts)}"
    kind = rng.choice(usable)
    delay = 0 if rng.random() < 1 / 3 else rng.randint(1, 40)
    return KillPoint(kind, rng.randint(1, counts[kind]), delay)


def run_killed(args: list[str | Path], env: dict[str, str], point: KillPoint) -> tuple[bool, int, str]:
    """Run ``args`` with the kill point armed; (killed?, exit status, stderr)."""
    proc = subprocess.run(
        killhook_argv(*args),
        env=proc_env({**env, "MV_KILL_AT": point.spec()}),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO_ROOT,
    )
    killed = proc.returncode == -signal.SIGKILL
    if not killed:
        # The run ended before the kill point fired (a late delay): it must have succeeded.
        assert proc.returncode == 0, (point, proc.returncode, proc.stderr[-2000:])
    return killed, proc.returncode, proc.stderr


@dataclass
class KillStats:
    attempts: int = 0
    kills: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    duplicated: int = 0
    lost: int = 0
    reruns: int = 0
    seconds: float = 0.0


# ----------------------------------------------------------------------------- the audit


@dataclass
class Audit:
    index_packs: int
    data_packs: int
    message_entries: int  # message blob entries over all indexed packs
    unique_messages: int
    orphan_packs: list[str]  # data/ objects no index file names
    missing_packs: list[str]  # packs an index file names that are not in data/
    data_bytes: int

    @property
    def duplicated(self) -> int:
        return self.message_entries - self.unique_messages


def audit(location: str | Path, password: str = VAULT_PASSWORD) -> Audit:
    """Read every index file directly (not the cache, which folds duplicates): how often each message
    blob is stored, and which packs are unindexed or missing."""
    with Repository.open(str(location), password.encode) as repo:
        packs: dict[bytes, Any] = {}
        for name, _size in repo.backend.list("index/"):
            for pack_id, header in decode_index_file(repo.sealer, repo.backend.get(name)):
                packs.setdefault(pack_id, header)
        data: dict[bytes, int] = {}
        for name, size in repo.backend.list("data/"):
            data[id_from_name(name)] = size
    # A message is a whole blob or a skeleton (+ parts, each stored once too): duplicates of any of
    # them count; messages are the whole blobs and skeletons.
    content = (BLOB_MESSAGE, BLOB_SKELETON, BLOB_PART)
    entries = Counter(e.id for h in packs.values() for e in h.blobs if e.type in content)
    messages = {e.id for h in packs.values() for e in h.blobs if e.type in (BLOB_MESSAGE, BLOB_SKELETON)}
    return Audit(
        index_packs=len(packs),
        data_packs=len(data),
        message_entries=sum(entries.values()) - len(entries) + len(messages),
        unique_messages=len(messages),
        orphan_packs=sorted(p.hex()[:12] for p in data if p not in packs),
        missing_packs=sorted(p.hex()[:12] for p in packs if p not in data),
        data_bytes=sum(data.values()),
    )


def assert_checks(location: str | Path) -> None:
    """``check --read-data`` passes (after a failed run: packs it wrote may still await an index,
    which the next writer adds)."""
    report_ = ok_json("check", location, "--read-data")
    assert report_["ok"] is True and report_["errors"] == [], report_


def assert_clean_vault(location: str | Path, *, messages: int | None = None) -> Audit:
    """``check --read-data`` passes; every message blob is stored exactly once; no pack is unindexed
    or missing; (optionally) the vault holds exactly ``messages`` distinct messages."""
    assert_checks(location)
    a = audit(location)
    assert a.duplicated == 0, f"{a.duplicated} message blob(s) stored twice: {a}"
    assert a.orphan_packs == [], f"unindexed packs after the rerun: {a}"
    assert a.missing_packs == [], f"indexed packs missing: {a}"
    if messages is not None:
        assert a.unique_messages == messages, (a.unique_messages, messages)
    return a


def ls_by_folder(
    location: str | Path, snapshot: str = "latest", account: str | None = None
) -> dict[str, Counter[str]]:
    args: list[str | Path] = ["ls", location, snapshot]
    if account:
        args += ["--account", account]
    out: dict[str, Counter[str]] = {}
    for row in ok_json(*args):
        out.setdefault(row["folder"], Counter())[row["blob"]] += 1
    return out


# ----------------------------------------------------------------------------- generated mail


def seed_account(
    account: DovecotAccount, folders: dict[str, int], tag: str, seed: int
) -> dict[str, Counter[str]]:
    """Seed the folders; return folder -> multiset of the blobs the server serves."""
    rng = random.Random(seed)
    for n, (folder, count) in enumerate(folders.items()):
        msgs = [(noisy_message(rng, i, f"{tag}{n}", crlf=i % 2 == 0), ["\\Seen"] if i % 3 else [],
                 datetime(2009, 9, 9, tzinfo=UTC)) for i in range(count)]  # fmt: skip
        account.server.seed(account.user, folder, msgs)
    return {f: Counter(sha(m.body) for m in server_messages(account, f).values()) for f in folders}


def noisy_message(rng: random.Random, i: int, tag: str, *, size: int = 2500, crlf: bool = True,
                  date: str = "Wed, 09 Sep 2009 09:09:09 +0000") -> bytes:  # fmt: skip
    """A message with a unique Message-ID and ~half its bytes incompressible (so packs fill up)."""
    nl = "\r\n" if crlf else "\n"
    head = [
        f"From: Sender {i % 17} <s{i % 17}@example.org>",
        "To: rcpt@example.net",
        f"Subject: fault matrix {tag} #{i}",
        f"Message-ID: <{tag}.{i}.{rng.getrandbits(48):x}@example.org>",
        f"Date: {date}",
        "",
    ]
    words = " ".join(rng.choices(MAIL_WORDS, k=size // 16))
    noise = base64.encodebytes(rng.randbytes(size // 2)).decode().replace("\n", nl)
    return (nl.join(head) + nl + words + nl + noise).encode()
