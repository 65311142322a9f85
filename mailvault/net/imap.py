"""IMAP protocol helpers shared by sources and targets (parsing is imapclient's)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import imapclient
from imapclient.imapclient import seq_to_parenstr_upper
from imapclient.response_parser import parse_fetch_response


def uid_set(uids: Sequence[int]) -> str:
    """Compact IMAP sequence set: [1,2,3,5,7,8] -> '1:3,5,7:8'."""
    if not uids:
        raise ValueError("empty UID set")
    ordered = sorted(set(uids))
    parts = []
    start = prev = ordered[0]
    for u in ordered[1:]:
        if u == prev + 1:
            prev = u
            continue
        parts.append(f"{start}:{prev}" if prev != start else str(start))
        start = prev = u
    parts.append(f"{start}:{prev}" if prev != start else str(start))
    return ",".join(parts)


def uid_fetch(
    client: imapclient.IMAPClient, msgset: str, items: list[str], modifiers: list[str] | None = None
) -> dict[int, Any]:
    """UID FETCH with a sequence-set string such as ``1:*`` or ``3:9,12``.

    imapclient's own ``fetch`` drops every response whose UID is not in an explicit list,
    so ranges would come back empty; this sends the same command and uses its parser.
    """
    args = ["UID", "FETCH", msgset, seq_to_parenstr_upper(items)]
    if modifiers:
        args.append(seq_to_parenstr_upper(modifiers))
    tag = client._imap._command(*args)
    typ, data = client._imap._command_complete("FETCH", tag)
    client._checkok("fetch", typ, data)
    typ, data = client._imap._untagged_response(typ, data, "FETCH")
    result: dict[int, Any] = parse_fetch_response(data, client.normalise_times, True)
    return result
