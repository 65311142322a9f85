"""``run --shard 1/2`` and ``--shard 2/2`` at the same moment, three accounts, ONE S3 (moto) vault."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from mailvault.runner import in_shard
from tests.common import sha
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
from tests.runner.test_run import account_table, pw_env
from tests.servers.dovecot import Dovecot

pytestmark = pytest.mark.s3


def three_account_names() -> list[str]:
    """Three names, both shards of 2 non-empty (the choice is stable, so this is too)."""
    names = [f"acct-{c}" for c in "abcdefgh"]
    first = [n for n in names if in_shard(n, (1, 2))]
    second = [n for n in names if in_shard(n, (2, 2))]
    assert first and second
    return [first[0], second[0], (first[1:] + second[1:])[0]]


def test_two_shards_at_once_into_one_s3_vault(
    dovecot: Dovecot, fresh_user: tuple[str, str], s3_vault_url: str, tmp_path: Path
) -> None:
    vault = make_vault(s3_vault_url)
    rng = random.Random(23)
    shared = seed_set(rng, "shared", 10)  # the same messages in every account: dedupe under races
    names = three_account_names()
    env: dict[str, str] = {}
    expected: dict[str, list[str]] = {}
    accounts = {}
    for i, name in enumerate(names):
        user, pw = f"{fresh_user[0]}-{i}", f"pw-{fresh_user[0]}-{i}"
        dovecot.add_user(user, pw)
        own = seed_set(rng, f"own{i}", 25)
        dovecot.seed(user, "INBOX", own + shared)
        scheme = "pop3s" if i == 2 else "imaps"
        accounts[name] = account_table(dovecot, user, scheme)
        env[pw_env(user)] = pw
        expected[name] = sorted(sha(Dovecot.served_form(m[0])) for m in own + shared)
    cfg = ConfigBuilder(
        vaults={"s3": {"path": vault, "password_env": VAULT_PW_ENV}},
        accounts=accounts,
        jobs={"all": {"kind": "backup", "accounts": names, "vault": "s3", "schedule": "hourly"}},
    ).write(tmp_path / "c.toml")

    procs = [spawn("run", "--config", cfg, "--shard", s, "--json", env=env) for s in ("1/2", "2/2")]
    done = [p.communicate(timeout=120) for p in procs]
    summaries = []
    for p, (out, err) in zip(procs, done, strict=True):
        assert p.returncode == 0, (out, err)
        summaries.append(json.loads(out))
    ran = [sorted(r["account"] for r in s["results"]) for s in summaries]
    # The shards partition the accounts: each account ran exactly once, in its own shard.
    assert sorted(ran[0] + ran[1]) == sorted(names)
    assert all(in_shard(a, (1, 2)) for a in ran[0]) and all(in_shard(a, (2, 2)) for a in ran[1])
    assert all(r["status"] == "ok" for s in summaries for r in s["results"])

    assert per_account(snapshots(vault)) == dict.fromkeys(names, 1)
    for name in names:
        blobs = sorted(e["blob"] for e in mv_json("ls", vault, "latest", "--account", name))
        assert blobs == expected[name], name
    check_read_data(vault)
    rows = mv_json("status", "--config", cfg, env=env)
    assert {r["account"]: (r["last_status"], r["due"]) for r in rows} == dict.fromkeys(names, ("ok", False))

    # Duplicates the two writers may have stored concurrently are harmless to prune.
    pruned = mv_json("prune", vault)
    assert pruned["warnings"] == []
    check_read_data(vault)
    for name in names:
        blobs = sorted(e["blob"] for e in mv_json("ls", vault, "latest", "--account", name))
        assert blobs == expected[name], name
