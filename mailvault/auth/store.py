"""Where OAuth2 tokens live: sealed inside the vault (default) or in the OS keyring (optional).

**In the vault** (``tokens/<key>/<generation>-<random>``, see docs/FORMAT.md): each save writes a
*new* object — the JSON token record sealed with the vault's master key (AD ``mailvault-token``) —
named by a generation one above the newest; the newest generation wins. Objects are written
create-only, so two machines saving at once cannot overwrite each other: the loser sees
:class:`~mailvault.errors.ObjectExists`, and reads the winner's record (which holds a token at least
as new). Only this store deletes its own old generations (it keeps :data:`KEEP` of them), nothing
here is content-addressed, so the write-once rules of packs, indexes and snapshots are untouched.

**In the keyring** (``token_store = "keyring"``, needs the ``keyring`` package): one entry per
token key under the service ``mailvault``; for a desktop user who wants tokens outside the vault.
"""

from __future__ import annotations

import hashlib
import json
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any

from mailvault.errors import ConfigError, FormatError, MailvaultError, ObjectExists, ObjectNotFound
from mailvault.storage.base import Backend
from mailvault.vault.crypto import Sealer

AD_TOKEN = b"mailvault-token"
PREFIX = "tokens/"
#: Generations kept per token key (the newest and a few before it, for a reader racing a writer).
KEEP = 3
KEYRING_SERVICE = "mailvault"


@dataclass
class TokenRecord:
    """What a sign-in leaves behind. ``access_token``/``refresh_token`` are secrets."""

    key: str  # "<provider>:<user>"
    provider: str
    user: str
    token_url: str
    client_id: str
    scopes: list[str] = field(default_factory=list)
    grant: str = "authorization_code"  # how it was obtained: authorization_code | device_code | ...
    access_token: str = ""
    refresh_token: str = ""
    expires_at: float = 0.0  # UNIX time
    obtained_at: float = 0.0
    refreshed_at: float = 0.0
    generation: int = 0  # set by the store when read

    def valid_for(self, now: float | None = None) -> float:
        return self.expires_at - (time.time() if now is None else now)

    def to_json(self) -> bytes:
        doc = asdict(self)
        doc.pop("generation")
        return json.dumps({"version": 1, **doc}, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes, generation: int = 0) -> TokenRecord:
        try:
            doc = json.loads(data)
        except ValueError:
            raise FormatError("token record is not valid JSON") from None
        if not isinstance(doc, dict) or doc.pop("version", None) != 1:
            raise FormatError("unsupported token record version")
        known = set(cls.__dataclass_fields__) - {"generation"}
        try:
            return cls(**{k: v for k, v in doc.items() if k in known}, generation=generation)
        except TypeError as exc:
            raise FormatError(f"token record is damaged: {exc}") from None

    def public(self) -> dict[str, Any]:
        """The record without its secrets (for `accounts --json`)."""
        return {
            "key": self.key,
            "provider": self.provider,
            "user": self.user,
            "client_id": self.client_id,
            "scopes": self.scopes,
            "grant": self.grant,
            "expires_at": self.expires_at,
            "obtained_at": self.obtained_at,
            "refreshed_at": self.refreshed_at,
            "has_refresh_token": bool(self.refresh_token),
        }


def token_key(provider: str, user: str) -> str:
    return f"{provider}:{user}"


class TokenStore(ABC):
    """Load the newest token record of a key; save a newer one; forget a key."""

    #: Shown by `mailvault accounts`: "vault <location>" or "keyring".
    where: str = ""

    @abstractmethod
    def load(self, key: str) -> TokenRecord | None: ...

    @abstractmethod
    def save(self, record: TokenRecord) -> TokenRecord:
        """Store ``record`` as the newest; return what is now the newest (another machine's, if it
        saved the same generation first)."""

    @abstractmethod
    def delete(self, key: str) -> bool:
        """Forget every token of ``key``; whether there was one."""


def _dir(key: str) -> str:
    return PREFIX + hashlib.sha256(key.encode()).hexdigest()[:32] + "/"


def _generation(name: str) -> int:
    try:
        return int(name.rsplit("/", 1)[-1])
    except ValueError:
        return -1


class VaultTokenStore(TokenStore):
    """Token records sealed with the vault's key, versioned, newest generation wins."""

    def __init__(self, backend: Backend, sealer: Sealer) -> None:
        self.backend = backend
        self.sealer = sealer
        self.where = f"vault {backend.location}"

    def _names(self, key: str) -> list[str]:
        names = [n for n, _ in self.backend.list(_dir(key)) if _generation(n) >= 0]
        return sorted(names, key=lambda n: (_generation(n), n))

    def load(self, key: str) -> TokenRecord | None:
        for name in reversed(self._names(key)):  # newest first; a damaged one falls back to older
            try:
                sealed = self.backend.get(name)
            except ObjectNotFound:
                continue  # trimmed by a concurrent save
            try:
                rec = TokenRecord.from_json(self.sealer.open(sealed, AD_TOKEN), _generation(name))
            except MailvaultError:
                continue  # damaged: an older generation still works
            if rec.key == key:
                return rec
        return None

    def save(self, record: TokenRecord) -> TokenRecord:
        if not self.sealer.encrypted:
            raise ConfigError(
                f"{self.backend.location} is not encrypted: OAuth2 tokens are not stored in it in "
                'plaintext; use an encrypted vault or token_store = "keyring"'
            )
        sealed = self.sealer.seal(record.to_json(), AD_TOKEN)
        for _ in range(5):
            names = self._names(record.key)
            generation = max((_generation(names[-1]) + 1) if names else 1, record.generation + 1)
            # One name per generation, written create-only: of two machines saving the same
            # generation exactly one wins; the other reads the winner's (newer) record.
            try:
                self.backend.put(f"{_dir(record.key)}{generation:012d}", sealed, exclusive=True)
            except ObjectExists:
                newest = self.load(record.key)
                if newest is not None and newest.generation >= generation:
                    return newest
                continue
            record.generation = generation
            self._trim(record.key)
            return record
        raise MailvaultError(f"could not save the token of {record.key}: too many concurrent writers")

    def _trim(self, key: str) -> None:
        names = [n for n, _ in self.backend.list(_dir(key))]
        generations = sorted({_generation(n) for n in names if _generation(n) >= 0})
        keep = set(generations[-KEEP:])
        for n in names:
            if _generation(n) not in keep:
                self.backend.delete(n)

    def delete(self, key: str) -> bool:
        names = [n for n, _ in self.backend.list(_dir(key))]
        for n in names:
            self.backend.delete(n)
        return bool(names)


class KeyringTokenStore(TokenStore):
    """Token records in the OS keyring (Secret Service, macOS Keychain, Windows Credential Locker)."""

    where = "keyring"

    def __init__(self) -> None:
        try:
            import keyring
            import keyring.errors
        except ImportError:
            raise ConfigError(
                'token_store = "keyring" needs the keyring package (pip install "mailvault[keyring]")'
            ) from None
        self._keyring = keyring
        self._errors: tuple[type[BaseException], ...] = (keyring.errors.KeyringError,)

    def load(self, key: str) -> TokenRecord | None:
        try:
            text = self._keyring.get_password(KEYRING_SERVICE, key)
        except self._errors as exc:
            raise ConfigError(f"keyring: cannot read the token of {key}: {type(exc).__name__}") from None
        if text is None:
            return None
        doc = json.loads(text)
        return TokenRecord.from_json(text.encode(), int(doc.get("generation", 0)))

    def save(self, record: TokenRecord) -> TokenRecord:
        record.generation += 1
        doc = json.loads(record.to_json())
        doc["generation"] = record.generation
        try:
            self._keyring.set_password(KEYRING_SERVICE, record.key, json.dumps(doc))
        except self._errors as exc:
            raise ConfigError(
                f"keyring: cannot save the token of {record.key}: {type(exc).__name__}"
            ) from None
        return record

    def delete(self, key: str) -> bool:
        try:
            if self._keyring.get_password(KEYRING_SERVICE, key) is None:
                return False
            self._keyring.delete_password(KEYRING_SERVICE, key)
        except self._errors as exc:
            raise ConfigError(f"keyring: cannot delete the token of {key}: {type(exc).__name__}") from None
        return True
