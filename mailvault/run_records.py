"""Run records: each task of ``mailvault run`` leaves one sealed record in the vault
(``runs/<job key>/<account key>/<stamp>-<status>-<random>``), read by ``--due`` and ``status``."""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from mailvault.errors import MailvaultError
from mailvault.storage.base import Backend
from mailvault.vault.crypto import Sealer
from mailvault.vault.format import AD_STATE


@dataclass
class TaskResult:
    job: str
    account: str
    kind: str
    status: str  # ok | partial | failed | skipped | not-due
    exit_code: int
    message: str = ""
    snapshot: str = ""
    messages: int = 0
    fetched: int = 0
    uploaded: int = 0
    forgotten: int = 0
    started: str = ""
    duration: float = 0.0
    hook_error: str = ""


def _key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _record_prefix(job: str, account: str) -> str:
    return f"runs/{_key(job)}/{_key(account)}/"


#: Run records kept per job and account (the newest success is always kept too).
KEEP_RECORDS = 50
_SUCCESS = ("ok", "partial")


def write_record(backend: Backend, sealer: Sealer, result: TaskResult) -> None:
    """Record a task's outcome; the status is in the name, so finding the last success needs
    no download of failed runs. Old records beyond :data:`KEEP_RECORDS` are deleted."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    prefix = _record_prefix(result.job, result.account)
    name = prefix + f"{stamp}-{result.status}-{secrets.token_hex(4)}"
    # Not flushed to disk: a record lost to a power cut only makes ``--due`` run that task again.
    backend.put(
        name, sealer.seal(json.dumps(asdict(result)).encode(), AD_STATE), exclusive=True, durable=False
    )
    names = sorted(n for n, _ in backend.list(prefix))
    if len(names) > KEEP_RECORDS:
        newest_success = next((n for n in reversed(names) if _status_in_name(n) in _SUCCESS), None)
        for old in names[:-KEEP_RECORDS]:
            if old != newest_success:
                backend.delete(old)


def _status_in_name(name: str) -> str | None:
    parts = name.rsplit("/", 1)[-1].split("-")
    return parts[1] if len(parts) == 3 else None


def _read_record(backend: Backend, sealer: Sealer, name: str) -> dict[str, Any] | None:
    try:
        doc = json.loads(sealer.open(backend.get(name), AD_STATE))
    except (MailvaultError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def latest_records(
    backend: Backend, sealer: Sealer, job: str, account: str
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(the newest run record, the newest successful one) — at most a few downloads.

    Records stamped after now (written while the clock ran ahead) count only when no other
    success exists, so a clock set back does not hide the real last success."""
    names = sorted(n for n, _ in backend.list(_record_prefix(job, account)))
    newest = _read_record(backend, sealer, names[-1]) if names else None
    now = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    past = [n for n in names if n.rsplit("/", 1)[-1] <= now]
    future = [n for n in names if n.rsplit("/", 1)[-1] > now]
    for name in [*reversed(past), *reversed(future)]:
        if _status_in_name(name) not in (None, *_SUCCESS):
            continue
        rec = newest if name == names[-1] else _read_record(backend, sealer, name)
        if rec is not None and rec.get("status") in _SUCCESS:
            return newest, rec
    return newest, None


def read_records(backend: Backend, sealer: Sealer, job: str, account: str) -> list[dict[str, Any]]:
    """The run records of one job and account, oldest first."""
    names = sorted(n for n, _ in backend.list(_record_prefix(job, account)))
    out = []
    for name in names:
        try:
            out.append(json.loads(sealer.open(backend.get(name), AD_STATE)))
        except (MailvaultError, ValueError):
            continue
    return out


def last_success(records: list[dict[str, Any]]) -> datetime | None:
    for rec in reversed(records):
        if rec.get("status") in _SUCCESS and rec.get("started"):
            return datetime.fromisoformat(rec["started"])
    return None
