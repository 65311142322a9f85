"""``mailvault key``: several passwords for one vault.

Every key file (``keys/<id>``) wraps the same random master key under a key derived from one
password with scrypt (its parameters are recorded in the file), so adding or removing a
password never re-encrypts any data. At least one key file always remains: the key the given
password opened cannot be removed (open the vault with another password to remove it, or
change its password with ``passwd``), so the vault always stays openable by whoever removes.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailvault.errors import ConfigError, PasswordError, VaultError
from mailvault.vault.crypto import KeyFile
from mailvault.vault.format import sha256
from mailvault.vault.repository import Repository


@dataclass
class KeyInfo:
    id: str
    current: bool  # the key the given password opened
    host: str
    created: str | None
    kdf: str
    n: int
    r: int
    p: int


def _need_encrypted(repo: Repository) -> bytes:
    if not repo.encrypted or repo.master_key is None:
        raise ConfigError(f"{repo.location}: the vault is not encrypted; it has no keys")
    return repo.master_key


def _key_files(repo: Repository) -> dict[str, KeyFile]:
    return {
        name.rsplit("/", 1)[-1]: KeyFile.from_bytes(repo.backend.get(name))
        for name, _ in sorted(repo.backend.list("keys/"))
    }


def list_keys(repo: Repository) -> list[KeyInfo]:
    _need_encrypted(repo)
    out = []
    for key_id, kf in _key_files(repo).items():
        d = kf.document
        out.append(
            KeyInfo(
                key_id,
                key_id == repo.key_id,
                str(d.get("host", "")),
                d.get("created"),
                str(d.get("kdf")),
                int(d.get("n", 0)),
                int(d.get("r", 0)),
                int(d.get("p", 0)),
            )
        )
    return out


def add_key(repo: Repository, new_password: bytes, scrypt: dict[str, int] | None = None) -> str:
    """Store a new key file for ``new_password``; return its id."""
    master = _need_encrypted(repo)
    if not new_password:
        raise PasswordError("the new password must not be empty")
    kf = KeyFile.create(master, new_password, scrypt)
    if kf.unwrap(new_password) != master:  # never store a key file that does not open
        raise VaultError("the new key file does not open; nothing was stored")
    data = kf.to_bytes()
    key_id = sha256(data).hex()
    repo.backend.put(f"keys/{key_id}", data, exclusive=True)
    return key_id


def _resolve(repo: Repository, spec: str) -> str:
    spec = spec.lower()
    matches = [k for k in _key_files(repo) if k.startswith(spec)]
    if not spec or not matches:
        raise ConfigError(f"no key {spec!r} in {repo.location} (see 'mailvault key list')")
    if len(matches) > 1:
        raise ConfigError(f"key prefix {spec!r} is ambiguous ({len(matches)} match)")
    return matches[0]


def remove_key(repo: Repository, spec: str, *, wait: float = 0.0) -> str:
    """Delete the key file ``spec`` (an id or unique prefix); return its id."""
    _need_encrypted(repo)
    # The exclusive lock: two removals at once could otherwise leave no key at all.
    with repo.lock(exclusive=True, wait=wait):
        key_id = _resolve(repo, spec)
        if key_id == repo.key_id:
            raise VaultError(
                f"key {key_id[:12]} is the one this password opened; open the vault with another "
                "key's password to remove it, or change its password with 'mailvault key passwd'"
            )
        if len(_key_files(repo)) < 2:
            raise VaultError("refusing to remove the last key of the vault")
        repo.backend.delete(f"keys/{key_id}")
        return key_id


def change_password(
    repo: Repository, new_password: bytes, *, scrypt: dict[str, int] | None = None, wait: float = 0.0
) -> tuple[str, str]:
    """Replace the current key file by one for ``new_password``; return (new id, old id)."""
    _need_encrypted(repo)
    old = repo.key_id
    assert old is not None
    with repo.lock(exclusive=True, wait=wait):
        new = add_key(repo, new_password, scrypt)  # written first: a crash leaves both passwords working
        repo.backend.delete(f"keys/{old}")
    repo.key_id = new
    return new, old
