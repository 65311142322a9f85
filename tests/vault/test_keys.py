"""Several passwords for one vault: ``mailvault key list|add|remove|passwd`` (real CLI, local and S3)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from mailvault.errors import ConfigError, PasswordError, VaultError
from mailvault.vault.crypto import DEFAULT_SCRYPT, KeyFile
from mailvault.vault.format import sha256
from mailvault.vault.keys import add_key, list_keys, remove_key
from mailvault.vault.repository import Repository
from tests.common import FAST_SCRYPT, init_vault, mv
from tests.vault.helpers import PASSWORD, make_message, write_snapshot


def _pwfile(tmp_path: Path, name: str, value: str) -> Path:
    path = tmp_path / name
    path.write_text(value + "\n")
    return path


def _keys(vault: str, pwfile: Path) -> list[dict[str, object]]:
    out = json.loads(mv("key", "list", vault, "--password-file", pwfile, "--json").stdout)
    assert isinstance(out, list)
    return out


def test_add_then_remove_the_first_password(vault_location: str, tmp_path: Path) -> None:
    init_vault(vault_location, "first password")
    with Repository.open(vault_location, lambda: b"first password") as repo:
        msgs = [make_message(i) for i in range(5)]
        write_snapshot(repo, {"INBOX": msgs})
    first = _pwfile(tmp_path, "pw1", "first password")
    second = _pwfile(tmp_path, "pw2", "second password")

    (k1,) = _keys(vault_location, first)
    assert k1["current"] is True and k1["kdf"] == "scrypt" and k1["n"] == FAST_SCRYPT["n"]
    added = json.loads(
        mv(
            "key", "add", vault_location, "--password-file", first, "--new-password-file", second, "--json"
        ).stdout
    )
    by_first = _keys(vault_location, first)
    by_second = _keys(vault_location, second)
    assert {k["id"] for k in by_first} == {k1["id"], added["id"]}
    assert [k["id"] for k in by_first if k["current"]] == [k1["id"]]
    assert [k["id"] for k in by_second if k["current"]] == [added["id"]]
    # scrypt parameters are recorded per key: the new key has today's default cost.
    assert next(k for k in by_second if k["current"])["n"] == DEFAULT_SCRYPT["n"]

    # The key a password opened cannot be removed with that password.
    refused = mv("key", "remove", vault_location, str(k1["id"]), "--password-file", first, code=2)
    assert refused.stderr.startswith("mailvault: key ") and len(refused.stderr.splitlines()) == 1
    mv("key", "remove", vault_location, str(k1["id"])[:10], "--password-file", second)

    wrong = mv("snapshots", vault_location, "--password-file", first, code=2)
    assert wrong.stderr.strip() == "mailvault: wrong password for this vault"
    assert mv("check", vault_location, "--read-data", "--password-file", second).returncode == 0
    assert [k["id"] for k in _keys(vault_location, second)] == [added["id"]]
    # The last key stays.
    mv("key", "remove", vault_location, str(added["id"]), "--password-file", second, code=2)


def test_passwd_replaces_the_current_key(vault_location: str, tmp_path: Path) -> None:
    init_vault(vault_location, "old password")
    old = _pwfile(tmp_path, "old", "old password")
    new = _pwfile(tmp_path, "new", "new password")
    (before,) = _keys(vault_location, old)
    out = json.loads(
        mv(
            "key", "passwd", vault_location, "--password-file", old, "--new-password-file", new, "--json"
        ).stdout
    )
    assert out["replaced"] == before["id"]
    assert mv("snapshots", vault_location, "--password-file", old, code=2).returncode == 2
    (after,) = _keys(vault_location, new)
    assert after["id"] == out["id"] and after["current"] is True


def test_key_commands_on_an_unencrypted_vault_fail_in_one_line(tmp_path: Path) -> None:
    location = str(tmp_path / "plain")
    Repository.init(location, None).close()
    proc = mv("key", "list", location, code=2)
    assert proc.stderr.strip().endswith("the vault is not encrypted; it has no keys")


def test_core_rules(make_repo: Callable[..., Repository], reopen: Callable[..., Repository]) -> None:
    repo = make_repo()
    assert [k.current for k in list_keys(repo)] == [True]
    with pytest.raises(PasswordError):
        add_key(repo, b"")
    other = add_key(repo, b"other", FAST_SCRYPT)
    with pytest.raises(VaultError, match="this password opened"):
        remove_key(repo, repo.key_id or "")
    with pytest.raises(ConfigError, match="no key"):
        remove_key(repo, "ffffffffff")
    remove_key(repo, other)
    with pytest.raises(PasswordError):
        reopen(b"other")
    assert reopen(PASSWORD).key_id == repo.key_id


def test_key_files_without_created_time_still_open_and_list(vault_location: str, tmp_path: Path) -> None:
    """A key file from before `created` was recorded (the original format) keeps working."""
    init_vault(vault_location, "pw")
    with Repository.open(vault_location, lambda: b"pw") as repo:
        assert repo.master_key is not None
        legacy = KeyFile.create(repo.master_key, b"legacy", FAST_SCRYPT)
        del legacy.document["created"]
        data = legacy.to_bytes()
        repo.backend.put(f"keys/{sha256(data).hex()}", data)
    with Repository.open(vault_location, lambda: b"legacy") as repo:
        keys = list_keys(repo)
        assert [k.created for k in keys if k.current] == [None]
