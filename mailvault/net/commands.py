"""IMAP commands imapclient does not send the way we need: UID FETCH of a sequence-set string,
APPEND/MULTIAPPEND in one write with LITERAL+. Responses are parsed by imapclient."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import imapclient
from imapclient.datetime_util import datetime_to_INTERNALDATE
from imapclient.imapclient import _literal, _quote, seq_to_parenstr, seq_to_parenstr_upper
from imapclient.response_parser import parse_fetch_response
from imapclient.util import to_bytes


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


def append(
    client: imapclient.IMAPClient,
    folder_raw: str,
    messages: Sequence[tuple[bytes, Sequence[str], datetime | None]],
) -> bytes:
    """APPEND one message, or several in one MULTIAPPEND command (RFC 3502); return the OK text.

    Messages go as literals (non-synchronising with LITERAL+). Raises imapclient's error on NO/BAD
    — a MULTIAPPEND is all or nothing.
    """
    folder = folder_raw.encode("utf-8")
    if client.has_capability("LITERAL+") and folder.isascii():
        # Non-synchronising literals need no round trip: send the whole command in one write
        # (imapclient would write every literal and its header separately).
        parts = [b"APPEND ", _quote(folder)]
        for raw, flags, date in messages:
            parts += [b" ", to_bytes(seq_to_parenstr(list(flags)))]
            if date is not None:
                parts += [b' "', datetime_to_INTERNALDATE(date).encode("ascii"), b'"']
            parts += [b" {%d+}\r\n" % len(raw), raw]
        tag = client._imap._new_tag()
        client._imap.send(tag + b" " + b"".join(parts) + b"\r\n")
        typ, data = client._imap._command_complete("APPEND", tag)
    else:
        args: list[bytes] = [_quote(folder)]
        for raw, flags, date in messages:
            args.append(to_bytes(seq_to_parenstr(list(flags))))
            if date is not None:
                args.append(b'"' + datetime_to_INTERNALDATE(date).encode("ascii") + b'"')
            args.append(_literal(raw))
        typ, data = client._raw_command(b"APPEND", args, uid=False)
    client._checkok("append", typ, data)
    return b" ".join(d if isinstance(d, bytes) else str(d).encode() for d in data if d)
