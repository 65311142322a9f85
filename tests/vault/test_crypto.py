"""Sealers (AES-256-GCM, plain checksum) and password-wrapped key files."""

from __future__ import annotations

import hashlib
import json

import pytest

from mailvault.errors import FormatError, IntegrityError, PasswordError
from mailvault.vault.crypto import (
    DEFAULT_SCRYPT,
    KEY_LEN,
    NONCE_LEN,
    TAG_LEN,
    AeadSealer,
    KeyFile,
    PlainSealer,
    new_master_key,
    unwrap_any,
)
from mailvault.vault.format import AD_BLOCK, AD_INDEX
from tests.common import FAST_SCRYPT

PLAIN = b"Subject: secret plans\r\n\r\nmeet at noon\x00\xff" * 50


def flipped(data: bytes, pos: int) -> bytes:
    b = bytearray(data)
    b[pos] ^= 0x01
    return bytes(b)


# -- AEAD -------------------------------------------------------------------------------


def test_aead_roundtrip() -> None:
    sealer = AeadSealer(new_master_key())
    sealed = sealer.seal(PLAIN, AD_BLOCK)
    assert len(sealed) == len(PLAIN) + NONCE_LEN + TAG_LEN == len(PLAIN) + sealer.overhead
    assert sealer.open(sealed, AD_BLOCK) == PLAIN
    assert sealer.encrypted


def test_aead_empty_plaintext() -> None:
    sealer = AeadSealer(new_master_key())
    assert sealer.open(sealer.seal(b"", AD_INDEX), AD_INDEX) == b""


def test_aead_hides_plaintext_and_uses_fresh_nonces() -> None:
    sealer = AeadSealer(new_master_key())
    a, b = sealer.seal(PLAIN, AD_BLOCK), sealer.seal(PLAIN, AD_BLOCK)
    assert a != b
    assert a[:NONCE_LEN] != b[:NONCE_LEN]
    assert b"secret plans" not in a


def test_aead_wrong_ad_is_integrity_error() -> None:
    sealer = AeadSealer(new_master_key())
    sealed = sealer.seal(PLAIN, AD_BLOCK)
    with pytest.raises(IntegrityError):
        sealer.open(sealed, AD_INDEX)


@pytest.mark.parametrize("where", ["nonce", "ciphertext", "tag"])
def test_aead_tampered_is_integrity_error(where: str) -> None:
    sealer = AeadSealer(new_master_key())
    sealed = sealer.seal(PLAIN, AD_BLOCK)
    pos = {"nonce": 3, "ciphertext": NONCE_LEN + 100, "tag": len(sealed) - 2}[where]
    with pytest.raises(IntegrityError):
        sealer.open(flipped(sealed, pos), AD_BLOCK)


def test_aead_truncated_and_wrong_key() -> None:
    sealer = AeadSealer(new_master_key())
    sealed = sealer.seal(PLAIN, AD_BLOCK)
    for cut in (0, 5, NONCE_LEN + TAG_LEN - 1, len(sealed) - 1):
        with pytest.raises(IntegrityError):
            sealer.open(sealed[:cut], AD_BLOCK)
    with pytest.raises(IntegrityError):
        AeadSealer(new_master_key()).open(sealed, AD_BLOCK)


def test_aead_rejects_short_key() -> None:
    with pytest.raises(ValueError):
        AeadSealer(b"\x00" * 16)


def test_master_keys_are_random() -> None:
    keys = {new_master_key() for _ in range(8)}
    assert len(keys) == 8
    assert all(len(k) == KEY_LEN for k in keys)


# -- plain ------------------------------------------------------------------------------


def test_plain_sealer_layout_is_plaintext_plus_checksum() -> None:
    sealer = PlainSealer()
    sealed = sealer.seal(PLAIN, AD_BLOCK)
    assert sealed == PLAIN + hashlib.sha256(AD_BLOCK + PLAIN).digest()
    assert sealer.open(sealed, AD_BLOCK) == PLAIN
    assert not sealer.encrypted
    assert sealer.overhead == 32


def test_plain_sealer_detects_damage() -> None:
    sealer = PlainSealer()
    sealed = sealer.seal(PLAIN, AD_BLOCK)
    for pos in (0, len(PLAIN) // 2, len(sealed) - 1):
        with pytest.raises(IntegrityError):
            sealer.open(flipped(sealed, pos), AD_BLOCK)
    with pytest.raises(IntegrityError):
        sealer.open(sealed, AD_INDEX)
    with pytest.raises(IntegrityError):
        sealer.open(sealed[:31], AD_BLOCK)
    assert sealer.open(sealer.seal(b"", AD_BLOCK), AD_BLOCK) == b""


# -- key files --------------------------------------------------------------------------


def test_keyfile_roundtrip_and_unwrap() -> None:
    master = new_master_key()
    kf = KeyFile.create(master, b"pw", FAST_SCRYPT)
    data = kf.to_bytes()
    doc = json.loads(data)
    assert doc["n"] == FAST_SCRYPT["n"] and doc["kdf"] == "scrypt"
    assert master not in data and master.hex().encode() not in data
    again = KeyFile.from_bytes(data)
    assert again.unwrap(b"pw") == master


def test_keyfile_wrong_password_is_none() -> None:
    kf = KeyFile.create(new_master_key(), b"pw", FAST_SCRYPT)
    assert kf.unwrap(b"pW") is None
    assert kf.unwrap(b"") is None


def test_keyfile_default_cost() -> None:
    kf = KeyFile.create(new_master_key(), b"pw")
    assert kf.document["n"] == DEFAULT_SCRYPT["n"]


def test_keyfiles_salted_differently() -> None:
    master = new_master_key()
    a = KeyFile.create(master, b"pw", FAST_SCRYPT).document
    b = KeyFile.create(master, b"pw", FAST_SCRYPT).document
    assert a["salt"] != b["salt"]
    assert a["wrapped"] != b["wrapped"]


@pytest.mark.parametrize(
    "data", [b"not json", b"[]", b'{"version": 2, "kdf": "scrypt"}', b'{"version": 1, "kdf": "argon2"}']
)
def test_keyfile_from_bad_bytes_is_format_error(data: bytes) -> None:
    with pytest.raises(FormatError):
        KeyFile.from_bytes(data)


def test_damaged_keyfile_is_format_error() -> None:
    kf = KeyFile.create(new_master_key(), b"pw", FAST_SCRYPT)
    doc = dict(kf.document)
    doc["salt"] = "!!not base64!!"
    with pytest.raises(FormatError):
        KeyFile(doc).unwrap(b"pw")
    doc = dict(kf.document)
    del doc["wrapped"]
    with pytest.raises(FormatError):
        KeyFile(doc).unwrap(b"pw")


def test_unwrap_any_tries_every_keyfile() -> None:
    master = new_master_key()
    files = [KeyFile.create(master, pw, FAST_SCRYPT) for pw in (b"first", b"second")]
    assert unwrap_any(files, b"second") == master
    assert unwrap_any(files, b"first") == master
    with pytest.raises(PasswordError):
        unwrap_any(files, b"third")
    with pytest.raises(PasswordError):
        unwrap_any([], b"first")
