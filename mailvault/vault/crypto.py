"""Sealing of every object the vault stores.

A :class:`Sealer` turns plaintext into the bytes written to storage and back.

* :class:`AeadSealer` (default): AES-256-GCM under the vault's random master
  key. Sealed form: ``nonce (12 random bytes) || ciphertext || tag (16)``.
  The associated data names the object kind (``b"pack-block"``, ``b"index"``,
  ...), so an object cannot be passed off as another kind.
* :class:`PlainSealer` (``init --no-encryption``): ``plaintext || SHA-256(ad ||
  plaintext)``; no secrecy, but damage is still detected.

The master key is random (``os.urandom``); it is stored only wrapped, in a key
file, by a key derived from the password with scrypt. All primitives come from
``cryptography``; nothing here is hand-rolled.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from mailvault.errors import FormatError, IntegrityError, PasswordError

NONCE_LEN = 12
TAG_LEN = 16
KEY_LEN = 32

#: scrypt cost used for new key files (about 64 MiB of memory, ~0.2 s).
DEFAULT_SCRYPT = {"n": 2**16, "r": 8, "p": 1}


class Sealer(ABC):
    """Interface: seal plaintext for storage, open stored bytes."""

    encrypted: bool = False
    #: Bytes a sealed object has beyond its plaintext.
    overhead: int = 0

    @abstractmethod
    def seal(self, plaintext: bytes, ad: bytes) -> bytes:
        """The bytes to store for ``plaintext`` (``ad`` names the object kind)."""

    @abstractmethod
    def open(self, sealed: bytes, ad: bytes) -> bytes:
        """The plaintext, or IntegrityError if the bytes were damaged or altered."""


class AeadSealer(Sealer):
    """AES-256-GCM with a random 96-bit nonce per object."""

    encrypted = True
    overhead = NONCE_LEN + TAG_LEN

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_LEN:
            raise ValueError("master key must be 32 bytes")
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, ad: bytes) -> bytes:
        nonce = os.urandom(NONCE_LEN)
        return nonce + self._aead.encrypt(nonce, plaintext, ad)

    def open(self, sealed: bytes, ad: bytes) -> bytes:
        if len(sealed) < self.overhead:
            raise IntegrityError("sealed object is truncated")
        try:
            return self._aead.decrypt(sealed[:NONCE_LEN], sealed[NONCE_LEN:], ad)
        except InvalidTag:
            raise IntegrityError("authentication failed (data damaged or altered)") from None


class PlainSealer(Sealer):
    """No encryption: the plaintext followed by a SHA-256 checksum."""

    encrypted = False
    overhead = 32

    def seal(self, plaintext: bytes, ad: bytes) -> bytes:
        return plaintext + hashlib.sha256(ad + plaintext).digest()

    def open(self, sealed: bytes, ad: bytes) -> bytes:
        if len(sealed) < 32:
            raise IntegrityError("object is truncated")
        body, digest = sealed[:-32], sealed[-32:]
        if hashlib.sha256(ad + body).digest() != digest:
            raise IntegrityError("checksum mismatch (data damaged)")
        return body


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _kek(password: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=KEY_LEN, n=n, r=r, p=p).derive(password)


@dataclass
class KeyFile:
    """A password-wrapped copy of the master key (``keys/<id>`` in the vault)."""

    document: dict[str, Any]

    @classmethod
    def create(cls, master_key: bytes, password: bytes, scrypt: dict[str, int] | None = None) -> KeyFile:
        params = dict(scrypt or DEFAULT_SCRYPT)
        salt = os.urandom(16)
        kek = _kek(password, salt, params["n"], params["r"], params["p"])
        nonce = os.urandom(NONCE_LEN)
        wrapped = AESGCM(kek).encrypt(nonce, master_key, b"mailvault-key")
        doc = {
            "version": 1,
            "kdf": "scrypt",
            "n": params["n"],
            "r": params["r"],
            "p": params["p"],
            "salt": _b64(salt),
            "cipher": "aes-256-gcm",
            "wrapped": _b64(nonce + wrapped),
            "host": os.uname().nodename if hasattr(os, "uname") else "",
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        return cls(doc)

    def to_bytes(self) -> bytes:
        return json.dumps(self.document, sort_keys=True, indent=1).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> KeyFile:
        try:
            doc = json.loads(data)
        except ValueError:
            raise FormatError("key file is not valid JSON") from None
        if not isinstance(doc, dict) or doc.get("version") != 1 or doc.get("kdf") != "scrypt":
            raise FormatError("unsupported key file version")
        return cls(doc)

    def unwrap(self, password: bytes) -> bytes | None:
        """The master key, or None if the password does not open this key file."""
        d = self.document
        try:
            kek = _kek(password, _unb64(d["salt"]), int(d["n"]), int(d["r"]), int(d["p"]))
            blob = _unb64(d["wrapped"])
        except (KeyError, ValueError) as exc:
            raise FormatError(f"key file is damaged: {exc}") from None
        try:
            return AESGCM(kek).decrypt(blob[:NONCE_LEN], blob[NONCE_LEN:], b"mailvault-key")
        except InvalidTag:
            return None


def new_master_key() -> bytes:
    return os.urandom(KEY_LEN)


def unwrap_which(keyfiles: list[KeyFile], password: bytes) -> tuple[int, bytes]:
    """(index of the first key file the password opens, master key); PasswordError when none does."""
    for i, kf in enumerate(keyfiles):
        key = kf.unwrap(password)
        if key is not None:
            return i, key
    raise PasswordError("wrong password for this vault")


def unwrap_any(keyfiles: list[KeyFile], password: bytes) -> bytes:
    """Try every key file; raise PasswordError when none opens."""
    return unwrap_which(keyfiles, password)[1]
