"""``mailvault status``: one row per (job, account) from the run records in the vault — the
last run, the last success, and whether the job is due."""

from __future__ import annotations

from dataclasses import dataclass

from mailvault.config import Config
from mailvault.run_records import last_success, latest_records
from mailvault.runner.credentials import vault_password
from mailvault.schedule import parse_schedule
from mailvault.vault.repository import Repository


@dataclass
class StatusRow:
    job: str
    account: str
    kind: str
    schedule: str
    last_run: str
    last_status: str
    last_message: str
    last_success: str
    due: bool


def status(config: Config) -> list[StatusRow]:
    rows = []
    repos: dict[str, Repository] = {}
    try:
        for job in config.jobs.values():
            v = config.vaults[job.vault]
            if v.name not in repos:
                repos[v.name] = Repository.open(v.path, vault_password(v))
            repo = repos[v.name]
            for acc in job.accounts:
                newest, ok_rec = latest_records(repo.backend, repo.sealer, job.name, acc)
                last = newest or {}
                ok = last_success([ok_rec] if ok_rec else [])
                due = parse_schedule(job.schedule).is_due(ok) if job.schedule else True
                rows.append(
                    StatusRow(
                        job.name,
                        acc,
                        job.kind,
                        job.schedule or "",
                        last.get("started", ""),
                        last.get("status", "never run"),
                        last.get("message", ""),
                        ok.isoformat() if ok else "",
                        due,
                    )
                )
    finally:
        for r in repos.values():
            r.close()
    return rows
