"""Pipelined APPEND: many APPEND commands in flight on one connection, as far as the server's
literal rules allow.

* ``LITERAL+`` (RFC 7888): every literal is non-synchronising (``{n+}``): commands stream out
  back to back and the client never waits, except for the window (at most ``window`` messages
  unanswered);
* ``LITERAL-``: literals of at most 4096 octets are non-synchronising; a larger one is sent as
  ``{n}``, and the client waits for the server's ``+`` before sending its bytes (the one round
  trip the protocol forces) — the commands before it stay in flight, and the next command goes
  out right behind the literal;
* neither: every literal is synchronising, each waits for its ``+``, the tagged answers are
  still collected in the background.

The responses are read and parsed by imaplib (under imapclient): this module only writes the
commands (``tag APPEND mailbox (flags) "date" {n+}``) and reads with imaplib's own
``_get_response``, which files tagged answers under their tag and returns ``None`` for a ``+``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import imapclient
from imapclient.datetime_util import datetime_to_INTERNALDATE
from imapclient.imapclient import _quote, seq_to_parenstr
from imapclient.util import to_bytes

#: RFC 7888: the largest literal LITERAL- lets a client send without waiting.
LITERAL_MINUS_MAX = 4096
#: Bytes gathered before one socket write (commands with non-synchronising literals).
WRITE_CHUNK = 256 * 1024


@dataclass
class Answer:
    """The tagged answer to one pipelined APPEND command."""

    ok: bool
    typ: str  # OK / NO / BAD
    text: bytes  # the rest of the line, e.g. b"[APPENDUID 7 12] Append completed."


def literal_mode(capabilities: set[str]) -> str:
    """``plus``, ``minus`` or ``sync``: what literals the server lets us send without waiting."""
    if "LITERAL+" in capabilities:
        return "plus"
    if "LITERAL-" in capabilities:
        return "minus"
    return "sync"


class AppendStream:
    """APPEND commands on one logged-in imapclient connection, pipelined.

    :meth:`send` writes one command (one message, or several with MULTIAPPEND) and returns its
    tag; answers are collected with :meth:`wait_oldest` / :meth:`drain` and returned in the
    order the commands were sent. Network errors propagate (imaplib's ``abort``, ``OSError``):
    the caller treats every command not yet answered as uncertain.
    """

    def __init__(self, client: imapclient.IMAPClient, folder_raw: str, capabilities: set[str]) -> None:
        folder = folder_raw.encode("ascii")  # modified UTF-7 (callers use the classic path otherwise)
        self._imap: Any = client._imap
        self._mailbox = _quote(folder)
        self.mode = literal_mode(capabilities)
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._pending: deque[bytes] = deque()
        #: Round trips spent waiting for a ``+`` (synchronising literals).
        self.continuations = 0

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def _non_sync(self, size: int) -> bool:
        return self.mode == "plus" or (self.mode == "minus" and size <= LITERAL_MINUS_MAX)

    def send(self, messages: Sequence[tuple[bytes, Sequence[str], datetime | None]]) -> bytes:
        """Queue one APPEND of ``messages`` (more than one only where MULTIAPPEND is offered)."""
        tag: bytes = self._imap._new_tag()
        head = [tag, b" APPEND ", self._mailbox]
        for raw, flags, date in messages:
            head += [b" ", to_bytes(seq_to_parenstr(list(flags)))]
            if date is not None:
                head += [b' "', datetime_to_INTERNALDATE(date).encode("ascii"), b'"']
            if self._non_sync(len(raw)):
                head.append(b" {%d+}\r\n" % len(raw))
                self._write(b"".join(head))
                self._write(raw)
            else:
                head.append(b" {%d}\r\n" % len(raw))
                self._write(b"".join(head))
                if not self._continue(tag):
                    break  # refused before the literal (e.g. [TOOBIG]): the answer is filed
                self._write(raw)
            head = []
        else:
            self._write(b"\r\n")
        self._pending.append(tag)
        if self._out_bytes >= WRITE_CHUNK:
            self.flush()
        return tag

    def _write(self, data: bytes) -> None:
        self._out.append(data)
        self._out_bytes += len(data)

    def flush(self) -> None:
        if self._out:
            self._imap.send(b"".join(self._out))
            self._out, self._out_bytes = [], 0

    def _continue(self, tag: bytes) -> bool:
        """Send what is queued and wait for the ``+`` for ``tag``'s literal; False if the server
        answered the command instead (it refused it before its literal)."""
        self.flush()
        self.continuations += 1
        while True:
            if self._imap._get_response() is None:  # '+': go ahead
                return True
            self._imap._check_bye()
            if self._imap.tagged_commands.get(tag) is not None:
                return False

    def _answer(self, tag: bytes) -> Answer:
        typ, data = self._imap.tagged_commands.pop(tag)
        text = data[0] if data and isinstance(data[0], bytes) else b""
        return Answer(typ == "OK", typ, text)

    def wait_oldest(self) -> list[tuple[bytes, Answer]]:
        """Wait for the oldest command's answer; return every answer that has arrived (in order)."""
        self.flush()
        if not self._pending:
            return []
        oldest = self._pending[0]
        tagged = self._imap.tagged_commands
        while tagged.get(oldest) is None:
            if self._imap._get_response() is None:
                raise self._imap.abort("unexpected continuation request")
            self._imap._check_bye()
        return self.completed()

    def completed(self) -> list[tuple[bytes, Answer]]:
        """Answers that have arrived, oldest first, up to the first command still waiting."""
        out = []
        tagged = self._imap.tagged_commands
        while self._pending and tagged.get(self._pending[0]) is not None:
            tag = self._pending.popleft()
            out.append((tag, self._answer(tag)))
        if out:  # every APPEND into the selected folder brings EXISTS/RECENT: keep them bounded
            for key in ("EXISTS", "RECENT"):
                self._imap.untagged_responses.pop(key, None)
        return out

    def drain(self) -> list[tuple[bytes, Answer]]:
        """Wait for every answer."""
        out = []
        while self._pending:
            out += self.wait_oldest()
        return out

    def abandon(self) -> list[bytes]:
        """Forget every unanswered command (the connection broke); return their tags."""
        tags = list(self._pending)
        self._pending.clear()
        self._out, self._out_bytes = [], 0
        return tags
