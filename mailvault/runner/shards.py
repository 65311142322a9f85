"""``--shard I/N``: parsing it, and the stable choice of the accounts that fall into a shard."""

from __future__ import annotations

import hashlib

from mailvault.errors import ConfigError


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard expects I/N (e.g. 1/3), got {text!r}") from None
    if n < 1 or not 1 <= i <= n:
        raise ConfigError(f"--shard {text}: I must be between 1 and N")
    return i, n


def in_shard(account: str, shard: tuple[int, int] | None) -> bool:
    """A stable choice: the same account always falls into the same shard of N."""
    if shard is None:
        return True
    i, n = shard
    h = int.from_bytes(hashlib.sha256(account.encode()).digest()[:8], "big")
    return h % n == i - 1
