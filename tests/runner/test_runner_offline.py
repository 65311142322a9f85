"""The runner without a mail server: unreachable accounts, unscheduled jobs, hook failures."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from mailvault.config import load_config
from mailvault.errors import EXIT_OK
from mailvault.runner import Runner, TaskResult, read_records
from mailvault.vault.repository import Repository
from tests.runner.helpers import VAULT_PASSWORD, VAULT_PW_ENV, ConfigBuilder, make_vault
from tests.runner.test_run import read_hook_file


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(tmp_path: Path, **jobs: dict[str, object]) -> Path:
    vault = make_vault(tmp_path / "vault")
    return ConfigBuilder(
        vaults={"v": {"path": vault, "password_env": VAULT_PW_ENV}},
        accounts={
            "gone": {"url": f"imaps://u@127.0.0.1:{closed_port()}", "password_env": "MV_RUNNER_UNUSED"},
        },
        jobs={name: {"kind": "backup", "accounts": ["gone"], "vault": "v", **t} for name, t in jobs.items()},
    ).write(tmp_path / "c.toml")


def test_unreachable_account_fails_with_a_record_and_stays_due(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MV_RUNNER_UNUSED", "x")
    cfg = load_config(config(tmp_path, j={"schedule": "hourly", "on_failure": f"touch {tmp_path / 'hook'}"}))
    summary = Runner(cfg).run(due_only=True)
    (r,) = summary.results
    assert r.status == "failed" and r.exit_code == 2 and r.message
    assert summary.exit_code == 2
    assert (tmp_path / "hook").exists()
    # Still due (no success), and the failure is recorded in the vault.
    (r2,) = Runner(cfg).run(due_only=True).results
    assert r2.status == "failed"
    with Repository.open(cfg.vaults["v"].path, VAULT_PASSWORD.encode) as repo:
        recs = read_records(repo.backend, repo.sealer, "j", "gone")
    assert [rec["status"] for rec in recs] == ["failed", "failed"]


def test_run_due_skips_jobs_without_a_schedule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MV_RUNNER_UNUSED", "x")
    cfg = load_config(config(tmp_path, manual={}))
    summary = Runner(cfg).run(due_only=True)
    assert all(r.status == "not-due" for r in summary.results), summary.results
    assert summary.exit_code == 0


def test_hook_failures_are_reported_but_do_not_change_the_result(tmp_path: Path) -> None:
    cfg = load_config(
        config(
            tmp_path,
            fails={"on_success": "sh -c 'exit 3'"},
            missing={"on_success": "/nonexistent/hook-binary --flag"},
            unparsable={"on_success": "echo 'unterminated"},
            good={
                "on_success": f"sh -c 'echo MAILVAULT_JOB=$MAILVAULT_JOB >> {tmp_path / 'h'}; echo --- >> {tmp_path / 'h'}'"
            },
        )
    )
    runner = Runner(cfg)
    errors = {}
    for name in ("fails", "missing", "unparsable", "good"):
        result = TaskResult(name, "gone", "backup", "ok", EXIT_OK)
        runner._hook(cfg.jobs[name], result)
        assert result.status == "ok" and result.exit_code == EXIT_OK
        errors[name] = result.hook_error
    assert errors["fails"] == "hook exited with 3"
    assert errors["missing"].startswith("hook failed")
    assert errors["unparsable"].startswith("hook failed")
    assert errors["good"] == ""
    assert read_hook_file(tmp_path / "h") == [{"MAILVAULT_JOB": "good"}]
