"""What goes wrong: a refused login, and a target that refuses or alters messages (the torture corpus).

The corpus part runs with ``MAILVAULT_CORPUS=/path/to/shared/corpus python -m pytest -m corpus tests/restore``.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailvault.vault.repository import Repository
from tests.common import assert_one_line_error, mv, vault_files
from tests.restore.helpers import (
    PW_ENV,
    VAULT_PASSWORD,
    Account,
    backup,
    bodies,
    counts,
    list_folders,
    mv_json,
    read_account,
    restore,
    restore_args,
    seed_set,
)

CORPUS = os.environ.get("MAILVAULT_CORPUS")


def test_wrong_target_password_is_one_line_exit_2_and_touches_nothing(
    source: Account, target: Account, vault: Path, cache_dir: Path
) -> None:
    source.seed({"INBOX": seed_set(5, random.Random(3), tag="pw-")})
    backup(vault, source)
    before = vault_files(vault)
    folders_before = list_folders(target, selectable_only=False)

    for extra in ((), ("--json",)):
        proc = mv(*restore_args(vault, target, *extra), env={PW_ENV: "not-the-password"}, code=None)
        target.server.clear_auth_penalty()
        line = assert_one_line_error(proc, 2, target.user, "refused")
        assert "not-the-password" not in line

    assert vault_files(vault) == before
    assert list(cache_dir.rglob("restore.sqlite*")) == []  # no journal for a restore that never started
    assert list_folders(target, selectable_only=False) == folders_before
    assert sum(counts(target).values()) == 0


# ----------------------------------------------------------------------------- the torture corpus

_WARN_SIZE = re.compile(
    r"^(?P<folder>.+) UID \d+: the server stored (?P<got>\d+) bytes of a (?P<want>\d+)-byte message \(blob (?P<blob>[0-9a-f]{12})\)"
)
_FAILURE = re.compile(
    r"^(?P<folder>.+) UID \d+ \((?P<size>\d+) bytes, blob (?P<blob>[0-9a-f]{12})\): refused by the server: (?P<answer>.+)$"
)


def _torture_messages(torture: Path) -> dict[str, list[bytes]]:
    """Folder (the corpus project) -> its single-message files; the mbox fixtures are left out."""
    out: dict[str, list[bytes]] = {}
    for path in sorted(torture.rglob("*")):
        rel = path.relative_to(torture).as_posix()
        if not path.is_file() or path.name == "README.md" or rel.startswith("mimekit/mbox/"):
            continue
        out.setdefault(rel.split("/", 1)[0], []).append(path.read_bytes())
    return out


requires_corpus = pytest.mark.skipif(
    not CORPUS, reason="set MAILVAULT_CORPUS=/path/to/shared/corpus to run the corpus tier"
)


def _torture_dir() -> Path:
    torture = Path(CORPUS or "") / "torture"
    if not torture.is_dir():
        pytest.fail(f"MAILVAULT_CORPUS={CORPUS} has no torture/ folder")
    return torture


def _snapshot_blobs(vault: Path, account: str | None = None) -> dict[str, Counter[bytes]]:
    """Folder -> the multiset of the latest snapshot's message bytes, straight from the vault."""
    repo = Repository.open(str(vault), VAULT_PASSWORD.encode)
    try:
        snap = repo.resolve_snapshot("latest", account)
        return {
            f.name: Counter(repo.read_blob(bytes.fromhex(e.blob)) for e in repo.read_manifest(f))
            for f in snap.folders
        }
    finally:
        repo.close()


def _assert_exact_or_reported(r: dict, want: dict[str, Counter[bytes]], target: Account) -> list[tuple]:
    """Each snapshot message is on the target byte-exact, or altered and named by a size warning, or refused
    and named in ``failures`` with the server's answer; nothing else is on the target; warnings are true."""
    assert r["exit_code"] == (1 if r["failures"] else 0), r["failures"]
    failures: dict[str, Counter[str]] = {}
    for text in r["failures"]:
        m = _FAILURE.match(text)
        assert m, f"failure not naming a message: {text!r}"
        assert m["answer"].strip(), text
        failures.setdefault(m["folder"], Counter())[m["blob"]] += 1
    altered: dict[str, Counter[str]] = {}
    for text in r["warnings"]:
        if m := _WARN_SIZE.match(text):
            altered.setdefault(m["folder"], Counter())[m["blob"]] += 1

    got = read_account(target, list(want))
    report = []
    for folder, blobs in want.items():
        on_target = bodies(got[folder])
        exact = blobs & on_target
        not_exact = Counter({_blob12(raw): n for raw, n in (blobs - exact).items()})
        refused = failures.get(folder, Counter())
        changed = altered.get(folder, Counter())
        assert not_exact == refused + changed, (folder, not_exact, refused, changed)
        # The altered ones are on the target (with other bytes), the refused ones are not.
        assert sum((on_target - exact).values()) == sum(changed.values()), folder
        report.append((folder, sum(blobs.values()), sum(refused.values()), sum(changed.values())))
    return report


def _blob12(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:12]


@pytest.mark.corpus
@requires_corpus
def test_torture_set_is_byte_exact_or_reported(source: Account, target: Account, vault: Path) -> None:
    """The torture set as a server serves it: seeded into Dovecot, backed up over IMAPS, restored."""
    when = datetime(2009, 2, 13, 23, 31, 30, tzinfo=UTC)
    seeded = _torture_messages(_torture_dir())
    source.seed({folder: [(raw, ["\\Seen"], when) for raw in msgs] for folder, msgs in seeded.items()})
    b = backup(vault, source)
    assert b["messages"] == sum(len(m) for m in seeded.values())

    r = restore(vault, target, code=None)
    want = {k: v for k, v in _snapshot_blobs(vault).items() if k in seeded}
    assert set(want) == set(seeded)
    report = _assert_exact_or_reported(r, want, target)
    print("torture (served) restore: (folder, messages, refused, altered):", report)


@pytest.mark.corpus
@requires_corpus
def test_imported_torture_files_are_byte_exact_or_reported(
    target: Account, vault: Path, tmp_path: Path
) -> None:
    """The raw torture files (LF-only, bare CR, NUL bytes, 8-bit headers) imported as .eml, then restored:
    Dovecot rewrites line endings, and the restore must name every message it altered."""
    seeded = _torture_messages(_torture_dir())
    stage = tmp_path / "eml"
    for folder, msgs in seeded.items():
        (stage / folder).mkdir(parents=True)
        for i, raw in enumerate(msgs):
            (stage / folder / f"{i:04d}.eml").write_bytes(raw)
    mv_json("import", vault, stage, "--account", "torture", "--format", "eml")
    want = _snapshot_blobs(vault, "torture")
    assert want == {f: Counter(m) for f, m in seeded.items()}  # the import itself is byte-exact

    r = restore(vault, target, code=None)
    report = _assert_exact_or_reported(r, want, target)
    assert sum(changed for *_, changed in report) > 0  # LF-only files come back CRLF: this path is exercised
    print("torture (raw files) restore: (folder, messages, refused, altered):", report)


def test_a_message_the_target_refuses_is_reported_and_the_rest_restored(
    source: Account, target: Account, vault: Path
) -> None:
    """Dovecot refuses to APPEND a zero-byte message; MULTIAPPEND is all-or-nothing, so the batch around it
    must be retried without it."""
    rng = random.Random(4)
    msgs = seed_set(9, rng, tag="rej-")
    when = datetime(2010, 5, 6, 7, 8, 9, tzinfo=UTC)
    source.seed({"INBOX": [*msgs[:4], (b"", [], when), *msgs[4:]], "Work": seed_set(3, rng, tag="rej-work-")})
    b = backup(vault, source)
    assert b["messages"] == 13, b

    r = restore(vault, target, code=1)
    assert r["uploaded"] == 12, r
    assert len(r["failures"]) == 1, r["failures"]
    m = _FAILURE.match(r["failures"][0])
    assert m, r["failures"][0]
    assert m["folder"] == "INBOX" and m["size"] == "0"
    assert "zero byte" in m["answer"], m["answer"]  # the server's own answer

    want = read_account(source, ["INBOX", "Work"])
    got = read_account(target, ["INBOX", "Work"])
    assert got["Work"] == want["Work"]
    assert got["INBOX"] == Counter({k: n for k, n in want["INBOX"].items() if k[0]}), "INBOX"

    proc = mv(*restore_args(vault, target), env={PW_ENV: target.password}, code=1)
    assert "refused by the server" in proc.stderr and "zero byte" in proc.stderr
    assert sum(counts(target).values()) == 12
