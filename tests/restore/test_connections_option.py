"""``--connections auto|N`` (unit tests of mailvault/net/imap.py's parsing and counting)."""

from __future__ import annotations

import pytest

from mailvault.errors import ConfigError
from mailvault.net.imap import (
    AUTO,
    AUTO_CONNECTIONS,
    GMAIL_CONNECTION_LIMIT,
    connection_count,
    parse_connections,
)


def test_parse_connections() -> None:
    assert parse_connections("auto") == AUTO
    assert parse_connections(" AUTO ") == AUTO
    assert parse_connections("3") == 3
    assert parse_connections(None) is None
    for bad in ("0", "-2", "many", ""):
        with pytest.raises(ConfigError, match="--connections"):
            parse_connections(bad)


def test_connection_count_auto_is_one_per_folder_up_to_the_cap() -> None:
    assert connection_count(AUTO, 1, gmail=False) == 1
    assert connection_count(AUTO, 0, gmail=False) == 1
    assert connection_count(AUTO, 3, gmail=False) == 3
    assert connection_count(AUTO, 50, gmail=False) == AUTO_CONNECTIONS
    assert connection_count(AUTO, 50, gmail=True) == AUTO_CONNECTIONS


def test_connection_count_explicit_is_capped_by_the_provider() -> None:
    assert connection_count(8, 2, gmail=False) == 8
    assert connection_count(40, 2, gmail=True) == GMAIL_CONNECTION_LIMIT
