"""Creating and opening a vault: the config, the key files and the password (``Repository.init``
and ``Repository.open`` call these)."""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from mailvault.errors import (
    FormatError,
    IntegrityError,
    ObjectNotFound,
    PasswordError,
    VaultExists,
    VaultNotFound,
)
from mailvault.storage.base import Backend, open_backend
from mailvault.vault.crypto import AeadSealer, KeyFile, PlainSealer, Sealer, new_master_key, unwrap_which
from mailvault.vault.format import AD_CONFIG, VAULT_VERSION, VAULT_VERSIONS, sha256
from mailvault.vault.index import default_cache_root
from mailvault.vault.params import VaultParams

if TYPE_CHECKING:
    from collections.abc import Callable

    from mailvault.vault.repository import Repository

    PasswordProvider = Callable[[], bytes]

R = TypeVar("R", bound="Repository")


def _encrypted_marker(cache_root: Path | None, vault_id: str) -> Path:
    return (cache_root or default_cache_root()) / vault_id / "encrypted"


def _remember_encrypted(cache_root: Path | None, vault_id: str) -> None:
    """Note on this machine that the vault is encrypted, so a config later altered to say
    "none" is refused instead of receiving plaintext (downgrade protection)."""
    marker = _encrypted_marker(cache_root, vault_id)
    with contextlib.suppress(OSError):
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()


def _canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def verify_config_check(config: dict[str, Any], sealer: Sealer, location: str, *, unopened: str) -> None:
    """Verify the sealed check of an encrypted vault's ``config`` with ``sealer`` (the master
    key): an :class:`IntegrityError` ``"<location>: <unopened>"`` when the key does not open the
    check, ``"<location>: the vault config was altered"`` when the check does not match the
    config. ``Repository.open`` and a handed-over vault (``handoff.py``) both verify with this."""
    check = dict(config)
    sealed_check = check.pop("check", "")
    try:
        expected = sealer.open(base64.b64decode(sealed_check), AD_CONFIG)
    except (IntegrityError, ValueError):
        raise IntegrityError(f"{location}: {unopened}") from None
    if expected != _canonical(check):
        raise IntegrityError(f"{location}: the vault config was altered")


def create_vault(
    cls: type[R],
    location: str | Backend,
    password: bytes | None,
    params: VaultParams | None = None,
    *,
    scrypt: dict[str, int] | None = None,
    cache_root: Path | None = None,
) -> R:
    """Create a new vault; ``password=None`` means no encryption."""
    params = params or VaultParams()
    params.validate()
    backend = location if isinstance(location, Backend) else open_backend(location)
    if backend.exists("config"):
        raise VaultExists(f"{backend.location}: a vault already exists here")
    if next(iter(backend.list("")), None) is not None:
        raise VaultExists(f"{backend.location}: not empty; init needs an empty directory or prefix")
    config: dict[str, Any] = {
        "version": VAULT_VERSION,
        "id": secrets.token_hex(16),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "encryption": "aes-256-gcm" if password is not None else "none",
        "chunking": {
            "pack_size": params.pack_size,
            "block_size": params.block_size,
            "zstd_level": params.zstd_level,
            "dictionary": params.dictionary,
            "sia_min_part": params.sia_min_part,
        },
    }
    sealer: Sealer
    if password is not None:
        if not password:
            raise PasswordError("the vault password must not be empty")
        master = new_master_key()
        sealer = AeadSealer(master)
        keyfile = KeyFile.create(master, password, scrypt)
        data = keyfile.to_bytes()
        key_id = sha256(data).hex()
        backend.put(f"keys/{key_id}", data, exclusive=True)
        config["check"] = base64.b64encode(sealer.seal(_canonical(config), AD_CONFIG)).decode()
        _remember_encrypted(cache_root, config["id"])
    else:
        sealer = PlainSealer()
    # The config is written last: its presence is what makes the location a vault.
    backend.put("config", json.dumps(config, indent=1, sort_keys=True).encode(), exclusive=True)
    repo = cls(backend, config, sealer, cache_root)
    if password is not None:
        repo.key_id, repo.master_key = key_id, master
    return repo


def open_vault(
    cls: type[R],
    location: str | Backend,
    password: PasswordProvider | None = None,
    *,
    cache_root: Path | None = None,
) -> R:
    backend = location if isinstance(location, Backend) else open_backend(location)
    try:
        raw = backend.get("config")
    except ObjectNotFound:
        raise VaultNotFound(f"{backend.location}: no vault here (create one with 'mailvault init')") from None
    try:
        config = json.loads(raw)
        version = config["version"]
        config["chunking"]["pack_size"]
    except (ValueError, KeyError, TypeError):
        raise FormatError(f"{backend.location}: the vault config is damaged") from None
    if version not in VAULT_VERSIONS:
        raise FormatError(
            f"{backend.location}: vault format version {version} is not supported "
            f"(this mailvault reads versions {', '.join(map(str, VAULT_VERSIONS))})"
        )
    key_names = sorted(name for name, _ in backend.list("keys/"))
    keyfiles = [KeyFile.from_bytes(backend.get(name)) for name in key_names]
    key_id: str | None = None
    master: bytes | None = None
    sealer: Sealer
    marker = _encrypted_marker(cache_root, str(config.get("id", "?")))
    if config.get("encryption") == "none":
        if keyfiles:
            raise FormatError(
                f"{backend.location}: config says unencrypted but key files exist (config altered?)"
            )
        if marker.exists():
            raise IntegrityError(
                f"{backend.location}: this vault was encrypted when last used here, but its config now "
                "says unencrypted; refusing to write plaintext (config altered?)"
            )
        sealer = PlainSealer()
    elif config.get("encryption") == "aes-256-gcm":
        if not keyfiles:
            raise FormatError(f"{backend.location}: encrypted vault without key files")
        if password is None:
            raise PasswordError(f"{backend.location}: the vault is encrypted and no password was given")
        which, master = unwrap_which(keyfiles, password())
        key_id = key_names[which].rsplit("/", 1)[-1]
        sealer = AeadSealer(master)
        verify_config_check(config, sealer, backend.location, unopened="the vault config fails its check")
        _remember_encrypted(cache_root, config["id"])
    else:
        raise FormatError(f"{backend.location}: unknown encryption {config.get('encryption')!r}")
    repo = cls(backend, config, sealer, cache_root)
    repo.key_id, repo.master_key = key_id, master
    return repo
