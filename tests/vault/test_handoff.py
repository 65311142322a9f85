"""Handing an open vault to a child process (mailvault.vault.handoff): the child reads the vault from the
key material it got over a pipe — no password, no key derivation, nothing secret in argv or env."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from mailvault.errors import IntegrityError
from mailvault.storage.local import LocalBackend
from mailvault.vault.handoff import VaultHandoff, handoff, open_handed_over
from mailvault.vault.repository import Repository
from tests.common import proc_env

# The child refuses to derive a key: if opening needed scrypt, this script would fail.
CHILD = """
import hashlib, sys
import mailvault.vault.crypto as crypto

def no_kdf(*a, **k):
    raise SystemExit("the child tried to derive a key from a password")

crypto._kek = no_kdf
from mailvault.vault.handoff import VaultHandoff, open_handed_over

data = sys.stdin.buffer.read()
blob = bytes.fromhex(sys.argv[1])
with open_handed_over(VaultHandoff.from_bytes(data)) as repo:
    print(hashlib.sha256(repo.read_blob(blob)).hexdigest(), repo.encrypted)
"""


def _store(repo: Repository, raw: bytes) -> str:
    w = repo.writer()
    blob, _new = w.add(raw)
    w.flush()
    return blob


def test_child_reads_an_encrypted_vault_from_the_handed_over_key(
    make_repo: Callable[..., Repository],
) -> None:
    repo = make_repo()
    raw = b"From: a@example.org\r\nSubject: handoff\r\n\r\nbody\r\n"
    blob = _store(repo, raw)
    h = handoff(repo)
    assert h is not None and h.master_key is not None
    data = h.to_bytes()
    assert "master_key" not in repr(h) and h.master_key.hex() not in repr(h)
    env = proc_env()
    env.pop("MAILVAULT_PASSWORD", None)  # the child has no password in any form
    argv = [sys.executable, "-c", CHILD, blob]
    proc = subprocess.run(argv, input=data, capture_output=True, env=env, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().split() == [hashlib.sha256(raw).hexdigest(), "True"]
    assert not any(h.master_key.hex() in a or data.decode() in a for a in argv)


def test_handed_over_key_must_open_the_vault(make_repo: Callable[..., Repository]) -> None:
    repo = make_repo()
    h = handoff(repo)
    assert h is not None
    wrong = VaultHandoff(h.location, h.config, os.urandom(32), h.key_id, h.cache_root)
    with pytest.raises(IntegrityError, match="does not open"):
        open_handed_over(VaultHandoff.from_bytes(wrong.to_bytes()))
    altered = VaultHandoff(h.location, {**h.config, "id": "0" * 32}, h.master_key, h.key_id, h.cache_root)
    with pytest.raises(IntegrityError, match="altered"):
        open_handed_over(altered)
    keyless = VaultHandoff(h.location, h.config, None, h.key_id, h.cache_root)
    with pytest.raises(IntegrityError, match="without its key"):
        open_handed_over(keyless)


def test_unencrypted_vault_round_trip(make_repo: Callable[..., Repository]) -> None:
    repo = make_repo(None)
    raw = b"Subject: plain\r\n\r\nx\r\n"
    blob = _store(repo, raw)
    h = handoff(repo)
    assert h is not None and h.master_key is None
    with open_handed_over(VaultHandoff.from_bytes(h.to_bytes())) as twin:
        assert twin.read_blob(bytes.fromhex(blob)) == raw
        assert not twin.encrypted and twin.id == repo.id


def test_backend_a_child_cannot_reopen_gives_no_handoff(make_repo: Callable[..., Repository]) -> None:
    repo = make_repo()

    class Wrapped(LocalBackend):  # e.g. a test's fault-injecting wrapper
        pass

    repo.backend = Wrapped(repo.location)
    assert handoff(repo) is None
