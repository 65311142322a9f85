"""Reading a target server's answers: refusals (throttled, over quota, already there, rejected)
and the UIDs an ``[APPENDUID]`` response code names."""

from __future__ import annotations

import re
from typing import Any

from mailvault.net.imap import Throttled, server_text, text

#: The ``[APPENDUID uidvalidity uid-set]`` response code of an APPEND's answer (RFC 4315 UIDPLUS).
APPENDUID_CODE = re.compile(rb"\[APPENDUID (\d+) ([0-9:,]+)\]", re.IGNORECASE)


class Rejected(Exception):
    """The server refused one message (the text is the server's answer)."""


class OverQuota(Rejected):
    """The server refused a message because the account is full (``[OVERQUOTA]``, RFC 5530): every
    further APPEND would be refused too."""


def is_throttle(text: str) -> bool:
    t = text.upper()
    # RFC 5530: UNAVAILABLE is a temporary failure, LIMIT a limit on operations (Gmail, Exchange):
    # both clear with time, so back off and retry rather than give the message up.
    return (
        any(code in t for code in ("[THROTTLED]", "[UNAVAILABLE]", "[LIMIT]"))
        or ("[OVERQUOTA]" in t and "RATE" in t)
        or "TOO MANY" in t
    )


def is_over_quota(text: str) -> bool:
    t = text.upper()
    return "[OVERQUOTA]" in t or "QUOTA EXCEEDED" in t or "OVER QUOTA" in t


def already_exists(answer: str) -> bool:
    """A CREATE refused because the folder is there already (RFC 5530 ALREADYEXISTS, or said)."""
    return "ALREADYEXISTS" in answer.upper() or "already exists" in answer.lower()


def refusal(exc: BaseException) -> Exception:
    """A NO/BAD answer as Throttled (back off and retry) or Rejected (this message, give up)."""
    answer = server_text(exc)
    if is_throttle(answer):
        return Throttled(answer)
    return OverQuota(answer) if is_over_quota(answer) else Rejected(answer)


def appenduids(resp: Any, count: int) -> list[int | None]:
    """UIDs from an ``[APPENDUID v uid-set]`` response code, in order."""
    if isinstance(resp, list | tuple):
        resp = b" ".join(r if isinstance(r, bytes) else text(r).encode() for r in resp)
    if isinstance(resp, str):
        resp = resp.encode()
    m = APPENDUID_CODE.search(resp or b"")
    if not m:
        return [None] * count
    uids: list[int] = []
    for part in m.group(2).split(b","):
        if b":" in part:
            a, b = (int(x) for x in part.split(b":"))
            uids.extend(range(a, b + 1) if a <= b else range(a, b - 1, -1))
        else:
            uids.append(int(part))
    if len(uids) != count:
        return [None] * count
    return [int(u) for u in uids]
