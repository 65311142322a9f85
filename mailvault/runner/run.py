"""``mailvault run``: the :class:`Runner` — a config's tasks (job × account), due or not, in a
thread pool, sharded; each task's backup / restore / retention, its run record and its hook;
the end-of-run prune. The package docstring (:mod:`mailvault.runner`) describes the whole."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from mailvault.backup import BackupOptions, backup
from mailvault.config import AccountConfig, Config, JobConfig, VaultConfig
from mailvault.errors import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL, ConfigError, LockedError, MailvaultError
from mailvault.net.providers import apply_limits
from mailvault.net.session import Credentials, TLSPolicy, parse_url
from mailvault.passwords import secret_provider
from mailvault.progress import QUIET, Progress
from mailvault.restore import RestoreOptions, parse_map, restore
from mailvault.retention import forget
from mailvault.run_records import TaskResult, last_success, latest_records, write_record
from mailvault.runner.credentials import account_access, vault_password
from mailvault.runner.hooks import run_hook
from mailvault.runner.shards import in_shard
from mailvault.schedule import parse_schedule
from mailvault.vault.prune import prune
from mailvault.vault.repository import Repository

#: How long the end-of-run prune waits for other writers to finish.
PRUNE_WAIT = 600.0


@dataclass
class RunSummary:
    results: list[TaskResult] = field(default_factory=list)
    pruned: dict[str, int] = field(default_factory=dict)  # vault -> bytes freed
    errors: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        codes = [r.exit_code for r in self.results]
        if self.errors:
            codes.append(EXIT_ERROR)
        return max(codes, default=EXIT_OK)


class Runner:
    def __init__(self, config: Config, *, progress: Progress = QUIET) -> None:
        self.config = config
        self.progress = progress
        self._prune_lock = threading.Lock()
        self._open_lock = threading.Lock()
        self._vaults: dict[str, Repository] = {}
        self._prune_vaults: set[str] = set()

    def tasks(
        self, job_names: Sequence[str] = (), shard: tuple[int, int] | None = None
    ) -> list[tuple[JobConfig, AccountConfig]]:
        names = list(job_names) or list(self.config.jobs)
        for n in names:
            if n not in self.config.jobs:
                raise ConfigError(
                    f"{self.config.path}: no job named {n!r} (have: {', '.join(self.config.jobs)})"
                )
        out = []
        for n in names:
            job = self.config.jobs[n]
            for acc in job.accounts:
                if in_shard(acc, shard):
                    out.append((job, self.config.accounts[acc]))
        return out

    def run(
        self,
        job_names: Sequence[str] = (),
        *,
        due_only: bool = False,
        parallel: int = 1,
        shard: tuple[int, int] | None = None,
    ) -> RunSummary:
        tasks = self.tasks(job_names, shard)
        if due_only and not job_names:
            # A job without a schedule runs only when named (a restore is not a timer's business).
            tasks = [(job, acc) for job, acc in tasks if job.schedule]
        summary = RunSummary()
        try:
            workers = max(1, parallel)
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mailvault-task") as pool:
                futures = [pool.submit(self._task, job, acc, due_only) for job, acc in tasks]
                summary.results = [f.result() for f in futures]
            for vault_name in sorted(self._prune_vaults):
                try:
                    with self._open(self.config.vaults[vault_name]) as repo:
                        res = prune(repo, wait=PRUNE_WAIT)
                    summary.pruned[vault_name] = res.bytes_freed
                except MailvaultError as exc:
                    summary.errors.append(f"prune of vault {vault_name}: {exc}")
        finally:
            for repo in self._vaults.values():
                repo.close()
            self._vaults.clear()
        return summary

    def _open(self, v: VaultConfig) -> Repository:
        """A handle on vault ``v``: opened (and its key derived) once per run, a sibling per task."""
        with self._open_lock:
            base = self._vaults.get(v.name)
            if base is None:
                base = self._vaults[v.name] = Repository.open(v.path, vault_password(v))
                # The index cache synced once, and its connection held for the run: a task's
                # handle then skips the sync (``INDEX_SYNC_TTL``), and closing it is never the
                # last close of the database (which checkpoints and fsyncs its write-ahead log).
                base.cache  # noqa: B018
        return base.sibling()

    def _task(self, job: JobConfig, acc: AccountConfig, due_only: bool) -> TaskResult:
        started = datetime.now(UTC).astimezone()
        t0 = time.monotonic()
        result = TaskResult(job.name, acc.name, job.kind, "ok", EXIT_OK, started=started.isoformat())
        repo: Repository | None = None
        try:
            repo = self._open(self.config.vaults[job.vault])
            if due_only and job.schedule:
                _, ok_rec = latest_records(repo.backend, repo.sealer, job.name, acc.name)
                last = last_success([ok_rec] if ok_rec else [])
                if not parse_schedule(job.schedule).is_due(last):
                    result.status, result.message = (
                        "not-due",
                        f"last success {last.isoformat() if last else '-'}",
                    )
                    return result
            try:
                account_lock = repo.lock(account=acc.name)
            except LockedError as exc:
                result.status, result.exit_code, result.message = "skipped", EXIT_PARTIAL, str(exc)
                return result
            with account_lock:
                self._execute(repo, job, acc, result)
        except MailvaultError as exc:
            result.status, result.exit_code, result.message = "failed", exc.exit_code or EXIT_ERROR, str(exc)
        except Exception as exc:  # one account's surprise must not stop the others
            result.status, result.exit_code = "failed", EXIT_ERROR
            result.message = f"internal error: {type(exc).__name__}: {exc}"
        finally:
            result.duration = round(time.monotonic() - t0, 3)
            if repo is not None:
                if result.status != "not-due":
                    try:
                        write_record(repo.backend, repo.sealer, result)
                    except MailvaultError as exc:
                        result.message += f" (run record not written: {exc})"
                repo.close()
            if result.status not in ("not-due",):
                self._hook(job, result)
        return result

    def _execute(self, repo: Repository, job: JobConfig, acc: AccountConfig, result: TaskResult) -> None:
        from mailvault.auth.access import account_credentials, target_credentials

        if acc.auth == "oauth2":
            creds = account_credentials(self.config, acc, repo.backend, repo.sealer)
            tls = TLSPolicy(acc.ca_file, acc.allow_plaintext)
        else:
            creds, tls = account_access(acc)
        code = EXIT_OK
        if job.kind in ("backup", "migrate"):
            b = backup(
                repo,
                acc.endpoint,
                creds,
                tls,
                BackupOptions(
                    account=acc.name,
                    folders=acc.folders,
                    exclude_folders=acc.exclude_folders,
                    delete_after_days=acc.delete_after_days,
                ),
                progress=self.progress,
            )
            result.snapshot, result.messages, result.fetched = b.snapshot, b.messages, b.messages_fetched
            code = max(code, b.exit_code)
            if b.failures:
                result.message = f"{len(b.failures)} message(s) not fetched: {b.failures[0]}"
        if job.kind in ("restore", "migrate"):
            assert job.target is not None
            target = parse_url(job.target, self.config.providers)
            tcreds = target_credentials(self.config, job, target, repo.backend, repo.sealer) or Credentials(
                password=secret_provider(
                    env_var=job.target_password_env,
                    command=job.target_password_command,
                    label=f"password of {target.account}",
                )
                if not job.target_oauth2_token_command
                else None,
                oauth2_token=secret_provider(
                    command=job.target_oauth2_token_command, label="OAuth2 token", cache=False
                )
                if job.target_oauth2_token_command
                else None,
            )
            ttls = TLSPolicy(job.target_ca_file or acc.ca_file, acc.allow_plaintext)
            r = restore(
                repo,
                target,
                tcreds,
                ttls,
                RestoreOptions(
                    snapshot=result.snapshot or job.snapshot,
                    account=acc.name,
                    maps=parse_map(job.maps),
                    into=job.into,
                    max_upload_mb_per_day=apply_limits(
                        self.config.providers.get(target.provider), job.max_upload_mb_per_day, None
                    )[0],
                ),
                progress=self.progress,
            )
            result.uploaded = r.uploaded
            result.snapshot = result.snapshot or r.snapshot
            code = max(code, r.exit_code)
            if r.failures or r.budget_exhausted:
                result.message = (
                    r.budget_exhausted or f"{len(r.failures)} message(s) refused: {r.failures[0]}"
                )
        if job.keep is not None and code == EXIT_OK:
            f = forget(repo, job.keep, account=acc.name)
            result.forgotten = len(f.removed)
            if job.prune:
                with self._prune_lock:
                    self._prune_vaults.add(job.vault)
        result.exit_code = code
        result.status = "ok" if code == EXIT_OK else "partial"

    def _hook(self, job: JobConfig, result: TaskResult) -> None:
        run_hook(self.config, job, result)
