"""Readers sharing this machine's index cache with a ``check`` that rebuilds it.

``mailvault check`` calls ``index.rebuild()``, which replaces every cached row. Another process
using the same vault on the same machine (export, restore, a runner's backup reading its previous
manifests) shares that SQLite cache and must never see it half rebuilt ("not in any index"): the
delete and the re-inserts are one transaction. (Seen for real, before that fix, when
``check --read-data`` and ``export`` ran at once.)
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from mailvault.errors import IntegrityError
from mailvault.importer import import_local
from mailvault.vault.check import check
from mailvault.vault.index import IndexCache
from mailvault.vault.repository import Repository
from tests.runner.helpers import VAULT_PASSWORD, make_message, make_vault, write_mbox


def open_repo(location: str | Path) -> Repository:
    return Repository.open(str(location), VAULT_PASSWORD.encode)


def test_a_reader_keeps_working_while_check_rebuilds_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = make_vault(tmp_path / "vault")
    rng = random.Random(3)
    mbox = write_mbox(tmp_path / "in.mbox", [make_message(rng, f"m{i}") for i in range(20)])
    with open_repo(vault) as repo:
        import_local(repo, mbox, "acct")
    reader = open_repo(vault)  # "another process": its own connection to the machine's cache
    checker = open_repo(vault)
    try:
        snap = reader.snapshots()[0]
        blobs = [bytes.fromhex(e.blob) for e in reader.read_manifest(snap.folders[0])]
        assert reader.read_blob(blobs[0])
        seen: list[str] = []
        original_insert = IndexCache._insert

        def insert_and_peek(self: IndexCache, *args: object, **kw: object) -> None:
            if not seen:  # the rebuild has reset the cache and is about to re-add the first file
                reader._blocks.clear()
                try:
                    reader.read_blob(blobs[-1])
                    seen.append("ok")
                except IntegrityError as exc:
                    seen.append(str(exc))
            original_insert(self, *args, **kw)  # type: ignore[arg-type]

        monkeypatch.setattr(IndexCache, "_insert", insert_and_peek)
        report = check(checker)
        assert report.ok
        assert seen == ["ok"]
    finally:
        reader.close()
        checker.close()
