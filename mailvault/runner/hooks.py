"""A job's ``on_success`` / ``on_failure`` hook: run after each task with its result in
``MAILVAULT_*`` environment variables, and without the variables that hold secrets."""

from __future__ import annotations

import os
import shlex
import subprocess

from mailvault.config import Config, JobConfig
from mailvault.errors import EXIT_OK
from mailvault.run_records import TaskResult


def run_hook(config: Config, job: JobConfig, result: TaskResult) -> None:
    """Run the hook ``result`` calls for, if the job has one; a failure is noted in
    ``result.hook_error``."""
    command = job.on_success if result.exit_code == EXIT_OK else job.on_failure
    if not command:
        return
    # The hook gets the result, not the secrets: variables that hold passwords are left out.
    secret_vars = {"MAILVAULT_PASSWORD"}
    for v in config.vaults.values():
        secret_vars.add(v.password_env or "")
    for a in config.accounts.values():
        secret_vars.add(a.password_env or "")
    for j in config.jobs.values():
        secret_vars.add(j.target_password_env or "")
    for provider in config.providers.values():
        secret_vars.add(provider.client_secret_env)
    env = dict(
        {k: v for k, v in os.environ.items() if k not in secret_vars},
        MAILVAULT_JOB=result.job,
        MAILVAULT_ACCOUNT=result.account,
        MAILVAULT_KIND=result.kind,
        MAILVAULT_STATUS=result.status,
        MAILVAULT_EXIT_CODE=str(result.exit_code),
        MAILVAULT_SNAPSHOT=result.snapshot,
        MAILVAULT_MESSAGES=str(result.messages),
        MAILVAULT_FETCHED=str(result.fetched),
        MAILVAULT_UPLOADED=str(result.uploaded),
        MAILVAULT_MESSAGE=result.message,
        MAILVAULT_DURATION=str(result.duration),
    )
    try:
        proc = subprocess.run(shlex.split(command), env=env, capture_output=True, timeout=120, check=False)
        if proc.returncode != 0:
            result.hook_error = f"hook exited with {proc.returncode}"
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        result.hook_error = f"hook failed: {exc}"
