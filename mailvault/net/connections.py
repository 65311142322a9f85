"""How many IMAP connections to open (``--connections auto|N``), within the provider's limit."""

from __future__ import annotations

from mailvault.errors import ConfigError

#: ``--connections auto``: one connection per folder that has work, at most this many.
AUTO = 0
AUTO_CONNECTIONS = 4
#: Simultaneous IMAP connections Gmail allows per account.
GMAIL_CONNECTION_LIMIT = 15


def parse_connections(value: str | None) -> int | None:
    """``--connections``: ``auto`` (:data:`AUTO`) or a positive number (None stays None)."""
    if value is None:
        return None
    if value.strip().lower() == "auto":
        return AUTO
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"--connections expects 'auto' or a number >= 1, got {value!r}")
    return n


def connection_count(requested: int, folders: int, *, gmail: bool) -> int:
    """Connections to open for ``folders`` folders with work: ``requested`` (or, for
    :data:`AUTO`, one per folder up to :data:`AUTO_CONNECTIONS`), within the provider's limit."""
    n = min(max(folders, 1), AUTO_CONNECTIONS) if requested == AUTO else requested
    if gmail:
        n = min(n, GMAIL_CONNECTION_LIMIT)
    return max(1, n)
