"""``mailvault run`` / ``status`` / ``schedule`` against a real Dovecot (IMAPS + POP3S), as real processes."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from tests.common import mv, sha
from tests.runner.helpers import (
    VAULT_PW_ENV,
    ConfigBuilder,
    check_read_data,
    make_vault,
    mv_json,
    per_account,
    seed_set,
    snapshots,
    spawn,
)
from tests.servers.dovecot import Dovecot


def pw_env(name: str) -> str:
    return "MV_RUNNER_PW_" + re.sub(r"\W", "_", name).upper()


def account_table(server: Dovecot, user: str, scheme: str = "imaps", **extra: Any) -> dict[str, Any]:
    port = server.imaps_port if scheme == "imaps" else server.pop3s_port
    return {
        "url": f"{scheme}://{user}@{server.host}:{port}",
        "password_env": pw_env(user),
        "ca_file": str(server.ca_file),
        **extra,
    }


def hook(path: Path) -> str:
    """A hook command appending its MAILVAULT_* job variables (not the inherited ones) to ``path``.

    One printf, so one write: hooks of tasks run in parallel (``--jobs 2``) append whole records,
    never interleaved lines."""
    keys = "JOB ACCOUNT KIND STATUS EXIT_CODE SNAPSHOT MESSAGES FETCHED MESSAGE"
    fields = " ".join(f'"MAILVAULT_{k}=$MAILVAULT_{k}"' for k in keys.split())
    return f"sh -c 'printf \"%s\\n\" {fields} --- >> {path}'"


def read_hook_file(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    out, cur = [], {}
    for line in path.read_text().splitlines():
        if line == "---":
            out.append(cur)
            cur = {}
        else:
            k, _, v = line.partition("=")
            cur[k] = v
    return out


def by_account(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["account"]: r for r in summary["results"]}


@pytest.fixture
def two_accounts(dovecot: Dovecot, fresh_user: tuple[str, str]) -> dict[str, Any]:
    """An IMAPS user (two folders) and a POP3S user, seeded; their passwords in the env dict."""
    rng = random.Random(7)
    imap_user, imap_pw = fresh_user
    pop_user, pop_pw = f"{imap_user}-pop", f"secret-{imap_user}-pop"
    dovecot.add_user(pop_user, pop_pw)
    imap_msgs = seed_set(rng, "imap-inbox", 12)
    arch_msgs = seed_set(rng, "imap-arch", 5)
    pop_msgs = seed_set(rng, "pop", 8)
    dovecot.seed(imap_user, "INBOX", imap_msgs)
    dovecot.seed(imap_user, "Archive", arch_msgs)
    dovecot.seed(pop_user, "INBOX", pop_msgs)
    return {
        "imap_user": imap_user,
        "pop_user": pop_user,
        "env": {pw_env(imap_user): imap_pw, pw_env(pop_user): pop_pw},
        "imap_hashes": sorted(sha(Dovecot.served_form(m[0])) for m in imap_msgs + arch_msgs),
        "pop_hashes": sorted(sha(Dovecot.served_form(m[0])) for m in pop_msgs),
    }


def test_run_due_retention_status_and_hooks(
    dovecot: Dovecot, two_accounts: dict[str, Any], tmp_path: Path
) -> None:
    vault = make_vault(tmp_path / "vault")
    hooks = tmp_path / "hooks.txt"
    imap_user, pop_user, env = two_accounts["imap_user"], two_accounts["pop_user"], two_accounts["env"]
    cfg = ConfigBuilder(
        vaults={"local": {"path": vault, "password_env": VAULT_PW_ENV}},
        accounts={
            "mail": account_table(dovecot, imap_user),
            "shop": account_table(dovecot, pop_user, "pop3s"),
        },
        jobs={
            "nightly": {
                "kind": "backup",
                "accounts": ["mail", "shop"],
                "vault": "local",
                "schedule": "daily",
                "keep_last": 2,
                "prune": True,
                "on_success": hook(hooks),
                "on_failure": hook(tmp_path / "failures.txt"),
            }
        },
    ).write(tmp_path / "mailvault.toml")

    # 1. Never run: both due, status says so.
    rows = mv_json("status", "--config", cfg, env=env)
    assert {(r["account"], r["last_status"], r["due"]) for r in rows} == {
        ("mail", "never run", True),
        ("shop", "never run", True),
    }

    # 2. A first run backs up both accounts.
    res = mv("run", "--config", cfg, "--jobs", "2", env=env)
    assert re.search(r"nightly\s+mail\s+ok\s", res.stdout), res.stdout
    assert re.search(r"nightly\s+shop\s+ok\s", res.stdout), res.stdout
    snaps = snapshots(vault)
    assert per_account(snaps) == {"mail": 1, "shop": 1}
    listed = {
        acc: sorted(e["blob"] for e in mv_json("ls", vault, "latest", "--account", acc))
        for acc in ("mail", "shop")
    }
    assert listed == {"mail": two_accounts["imap_hashes"], "shop": two_accounts["pop_hashes"]}
    first_ids = {s["id"] for s in snaps}

    # Hooks: on_success ran once per account with the job's variables.
    calls = read_hook_file(hooks)
    assert sorted(c["MAILVAULT_ACCOUNT"] for c in calls) == ["mail", "shop"]
    by_acc = {c["MAILVAULT_ACCOUNT"]: c for c in calls}
    for acc, count in (("mail", 17), ("shop", 8)):
        c = by_acc[acc]
        assert c["MAILVAULT_JOB"] == "nightly"
        assert c["MAILVAULT_KIND"] == "backup"
        assert c["MAILVAULT_STATUS"] == "ok"
        assert c["MAILVAULT_EXIT_CODE"] == "0"
        assert c["MAILVAULT_MESSAGES"] == str(count)
        assert c["MAILVAULT_SNAPSHOT"] in first_ids
    assert not (tmp_path / "failures.txt").exists()

    # 3. --due right after: nothing is due, nothing is written, no hook runs.
    summary = mv_json("run", "--config", cfg, "--due", env=env)
    assert summary["exit_code"] == 0
    assert {(r["account"], r["status"]) for r in summary["results"]} == {
        ("mail", "not-due"),
        ("shop", "not-due"),
    }
    assert all(r["snapshot"] == "" for r in summary["results"])
    assert summary["pruned"] == {}  # nothing ran, nothing to prune
    assert {s["id"] for s in snapshots(vault)} == first_ids
    assert len(read_hook_file(hooks)) == 2

    # 4. status: last success recorded, not due.
    rows = {r["account"]: r for r in mv_json("status", "--config", cfg, env=env)}
    for acc in ("mail", "shop"):
        assert rows[acc]["last_status"] == "ok"
        assert rows[acc]["last_success"] and rows[acc]["last_success"] == rows[acc]["last_run"]
        assert rows[acc]["due"] is False
        assert rows[acc]["schedule"] == "daily"

    # 5. New mail, then three more (unconditional) runs: keep_last = 2 leaves two per account.
    extra = seed_set(random.Random(8), "late", 3)
    dovecot.seed(imap_user, "INBOX", extra)
    for i in range(3):
        summary = mv_json("run", "--config", cfg, "--jobs", "2", env=env)
        assert summary["exit_code"] == 0, summary
        results = by_account(summary)
        assert results["mail"]["status"] == results["shop"]["status"] == "ok"
        assert results["mail"]["forgotten"] == results["shop"]["forgotten"] == (0 if i == 0 else 1)
        assert list(summary["pruned"]) == ["local"] and summary["errors"] == []  # once per vault
    snaps = snapshots(vault)
    assert per_account(snaps) == {"mail": 2, "shop": 2}
    assert not first_ids & {s["id"] for s in snaps}
    newest_mail = sorted(e["blob"] for e in mv_json("ls", vault, "latest", "--account", "mail"))
    want = sorted(two_accounts["imap_hashes"] + [sha(Dovecot.served_form(m[0])) for m in extra])
    assert newest_mail == want
    check_read_data(vault)
    assert len(read_hook_file(hooks)) == 8

    # status after: the last success is the newest run.
    rows = {r["account"]: r for r in mv_json("status", "--config", cfg, env=env)}
    for acc in ("mail", "shop"):
        assert rows[acc]["last_success"] == results[acc]["started"]


def test_wrong_password_fails_one_account_the_other_succeeds(
    dovecot: Dovecot, two_accounts: dict[str, Any], tmp_path: Path
) -> None:
    vault = make_vault(tmp_path / "vault")
    ok_hooks, fail_hooks = tmp_path / "ok.txt", tmp_path / "fail.txt"
    env = dict(two_accounts["env"])
    env[pw_env(two_accounts["imap_user"])] = "not-the-password"
    cfg = ConfigBuilder(
        vaults={"v": {"path": vault, "password_env": VAULT_PW_ENV}},
        accounts={
            "mail": account_table(dovecot, two_accounts["imap_user"]),
            "shop": account_table(dovecot, two_accounts["pop_user"], "pop3s"),
        },
        jobs={
            "j": {
                "kind": "backup",
                "accounts": ["mail", "shop"],
                "vault": "v",
                "schedule": "hourly",
                "on_success": hook(ok_hooks),
                "on_failure": hook(fail_hooks),
            }
        },
    ).write(tmp_path / "c.toml")
    try:
        summary = mv_json("run", "--config", cfg, code=2, env=env)
    finally:
        dovecot.clear_auth_penalty()
    assert summary["exit_code"] == 2
    results = by_account(summary)
    assert results["mail"]["status"] == "failed" and results["mail"]["exit_code"] == 2
    assert results["mail"]["message"], results["mail"]
    assert "not-the-password" not in str(summary)
    assert results["shop"]["status"] == "ok" and results["shop"]["exit_code"] == 0
    assert per_account(snapshots(vault)) == {"shop": 1}

    fails = read_hook_file(fail_hooks)
    assert len(fails) == 1
    assert fails[0]["MAILVAULT_ACCOUNT"] == "mail"
    assert fails[0]["MAILVAULT_JOB"] == "j"
    assert fails[0]["MAILVAULT_STATUS"] == "failed"
    assert fails[0]["MAILVAULT_EXIT_CODE"] == "2"
    assert fails[0]["MAILVAULT_MESSAGE"] == results["mail"]["message"]
    oks = read_hook_file(ok_hooks)
    assert [c["MAILVAULT_ACCOUNT"] for c in oks] == ["shop"]

    # The table output: exit 2, the failed row with its reason.
    res = mv("run", "--config", cfg, "j", code=2, env=env)
    dovecot.clear_auth_penalty()
    assert re.search(r"^j\s+mail\s+failed\s", res.stdout, re.M), res.stdout
    # status: mail failed and is still due; shop succeeded.
    rows = {r["account"]: r for r in mv_json("status", "--config", cfg, env=env)}
    assert rows["mail"]["last_status"] == "failed" and rows["mail"]["last_success"] == ""
    assert rows["mail"]["due"] is True
    assert rows["shop"]["last_status"] == "ok" and rows["shop"]["last_success"]
    check_read_data(vault)


def test_two_runners_on_the_same_account(
    dovecot: Dovecot, fresh_user: tuple[str, str], tmp_path: Path
) -> None:
    """Two runners at once on one account: one backs up, the other skips (account busy)."""
    user, pw = fresh_user
    rng = random.Random(11)
    dovecot.seed(user, "INBOX", seed_set(rng, "busy", 1500, body_bytes=3000))
    vault = make_vault(tmp_path / "vault")
    cfg = ConfigBuilder(
        vaults={"v": {"path": vault, "password_env": VAULT_PW_ENV}},
        accounts={"busy": account_table(dovecot, user)},
        jobs={"j": {"kind": "backup", "accounts": ["busy"], "vault": "v"}},
    ).write(tmp_path / "c.toml")
    env = {pw_env(user): pw}
    procs = [spawn("run", "--config", cfg, "--json", env=env) for _ in range(2)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        outs.append((p.returncode, out, err))
    summaries = [(code, json.loads(out)) for code, out, _ in outs]
    statuses = sorted(s["results"][0]["status"] for _, s in summaries)
    assert statuses == ["ok", "skipped"], outs
    for code, s in summaries:
        r = s["results"][0]
        if r["status"] == "ok":
            assert code == 0
        else:
            assert code == 1 and r["exit_code"] == 1
            assert "account 'busy' is busy" in r["message"], r["message"]
            assert "lock by pid" in r["message"]
    assert per_account(snapshots(vault)) == {"busy": 1}
    check_read_data(vault)
    # The busy runner's lock is gone: a third run works (and finds nothing new).
    summary = mv_json("run", "--config", cfg, env=env)
    assert summary["results"][0]["status"] == "ok" and summary["results"][0]["fetched"] == 0


def test_schedule_units(tmp_path: Path) -> None:
    cfg = tmp_path / "my config.toml"
    systemd = mv("schedule", "--systemd", "--config", cfg).stdout
    assert "run --due" in systemd
    assert re.search(r"^ExecStart=.*run --due .*--config '.*my config\.toml'$", systemd, re.M), systemd
    assert "OnCalendar=*:0/15" in systemd and "[Timer]" in systemd and "[Service]" in systemd
    cron = mv("schedule", "--cron", "--config", cfg, "--every", "10").stdout
    line = [ln for ln in cron.splitlines() if not ln.startswith("#")]
    assert len(line) == 1 and line[0].startswith("*/10 * * * * ") and "run --due" in line[0], cron
    assert str(cfg.resolve()) in line[0]
    for args in (("schedule",), ("schedule", "--cron", "--systemd"), ("schedule", "--cron", "--every", "0")):
        res = mv(*args, code=2)
        assert len(res.stderr.splitlines()) == 1 and res.stderr.startswith("mailvault: ")
