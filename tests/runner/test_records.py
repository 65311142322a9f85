"""Run records: the status is in the name, old ones are trimmed, the newest success survives."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailvault.runner import KEEP_RECORDS, TaskResult, latest_records, write_record
from mailvault.vault.repository import Repository
from tests.common import init_vault


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MAILVAULT_CACHE_DIR", str(tmp_path / "cache"))
    location = init_vault(tmp_path / "vault", "pw")
    r = Repository.open(location, lambda: b"pw")
    yield r
    r.close()


def _result(status: str, i: int) -> TaskResult:
    return TaskResult(
        "nightly",
        "alice",
        "backup",
        status,
        0 if status == "ok" else 2,
        started=f"2026-01-01T00:00:{i:02d}+00:00",
    )


def test_records_are_trimmed_and_the_last_success_is_kept(repo: Repository) -> None:
    write_record(repo.backend, repo.sealer, _result("ok", 0))
    for i in range(1, KEEP_RECORDS + 10):  # then a long run of failures
        write_record(repo.backend, repo.sealer, _result("failed", i % 60))
    names = [n for n, _ in repo.backend.list("runs/")]
    assert len(names) == KEEP_RECORDS + 1  # the newest KEEP_RECORDS, and the old success
    newest, success = latest_records(repo.backend, repo.sealer, "nightly", "alice")
    assert newest is not None and newest["status"] == "failed"
    assert success is not None and success["status"] == "ok" and success["started"].endswith(":00+00:00")
    write_record(repo.backend, repo.sealer, _result("ok", 59))
    newest, success = latest_records(repo.backend, repo.sealer, "nightly", "alice")
    assert newest == success and success is not None and success["started"].endswith(":59+00:00")
    assert len([n for n, _ in repo.backend.list("runs/")]) == KEEP_RECORDS


def test_no_records(repo: Repository) -> None:
    assert latest_records(repo.backend, repo.sealer, "nightly", "nobody") == (None, None)
