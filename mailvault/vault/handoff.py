"""Handing an open vault to a child process: the key material, in memory, over a pipe.

A worker process (``mailvault.restore.worker``) must read the vault the parent opened, without
the password: asking it again would run scrypt once more (~0.2 s of CPU and 64 MiB per
process) and would need the password in the child's argv, environment or a file, none of which
may hold a secret. So the parent hands over what :meth:`Repository.sibling` shares between
handles — the config, the master key (an encrypted vault) and where the vault is — as bytes the
caller writes to the child's pipe; the child rebuilds the handle with :func:`open_handed_over`.

The config's sealed check is verified in the child (one AES-GCM open), so a master key that does
not belong to the vault is refused there as it is at ``Repository.open``.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailvault.errors import FormatError, IntegrityError
from mailvault.storage.base import Backend, open_backend
from mailvault.vault.crypto import AeadSealer, PlainSealer, Sealer
from mailvault.vault.opening import verify_config_check
from mailvault.vault.repository import Repository

#: Backends a child can reopen from their location alone (S3 credentials and endpoint come from
#: the environment the child inherits, as they did for the parent).
_REOPENABLE = {("mailvault.storage.local", "LocalBackend"), ("mailvault.storage.s3", "S3Backend")}


@dataclass(frozen=True)
class VaultHandoff:
    """What a child needs to open a vault the parent has open. Holds the master key: keep it in
    memory and write it only to a pipe to the child."""

    location: str
    config: dict[str, Any]
    master_key: bytes | None
    key_id: str | None
    cache_root: str | None

    def __repr__(self) -> str:  # never print the key
        return f"VaultHandoff({self.location!r}, encrypted={self.master_key is not None})"

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "location": self.location,
                "config": self.config,
                "master_key": base64.b64encode(self.master_key).decode() if self.master_key else None,
                "key_id": self.key_id,
                "cache_root": self.cache_root,
            }
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> VaultHandoff:
        try:
            doc = json.loads(data)
            key = doc["master_key"]
            return cls(
                str(doc["location"]),
                dict(doc["config"]),
                base64.b64decode(key, validate=True) if key else None,
                doc["key_id"],
                doc["cache_root"],
            )
        except (ValueError, KeyError, TypeError):
            raise FormatError("the vault handed over by the parent process is malformed") from None


def handoff(repo: Repository) -> VaultHandoff | None:
    """The handoff for an open vault; None when a child could not reopen its backend (one made
    in memory, or a test wrapper)."""
    kind = type(repo.backend)
    if (kind.__module__, kind.__name__) not in _REOPENABLE:
        return None
    if repo.encrypted and repo.master_key is None:
        return None
    root = repo.cache_root
    return VaultHandoff(
        repo.location,
        repo.config,
        repo.master_key if repo.encrypted else None,
        repo.key_id,
        str(root) if root is not None else None,
    )


def open_handed_over(h: VaultHandoff, backend: Backend | None = None) -> Repository:
    """Open the vault described by ``h`` in this process, from the key material alone (no
    password, no key derivation)."""
    config = h.config
    sealer: Sealer
    if config.get("encryption") == "none":
        if h.master_key is not None:
            raise IntegrityError(f"{h.location}: a key was handed over for an unencrypted vault")
        sealer = PlainSealer()
    elif config.get("encryption") == "aes-256-gcm":
        if h.master_key is None:
            raise IntegrityError(f"{h.location}: an encrypted vault was handed over without its key")
        try:
            sealer = AeadSealer(h.master_key)
        except ValueError:
            raise IntegrityError(f"{h.location}: the handed-over key is malformed") from None
        verify_config_check(
            config, sealer, h.location, unopened="the handed-over key does not open this vault"
        )
    else:
        raise FormatError(f"{h.location}: unknown encryption {config.get('encryption')!r}")
    repo = Repository(
        backend or open_backend(h.location),
        config,
        sealer,
        Path(h.cache_root) if h.cache_root is not None else None,
    )
    repo.key_id, repo.master_key = h.key_id, h.master_key
    return repo
