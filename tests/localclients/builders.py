"""Build client mail stores in tests: Apple Mail V10 trees (.emlx, .partial.emlx + Attachments/)
and Google Takeout mbox files, from given message bytes."""

from __future__ import annotations

import email
import email.policy
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

#: emlx flag bits used by the tests (see docs/LOCAL-CLIENTS.md).
BITS = {
    "\\Seen": 0,
    "\\Deleted": 1,
    "\\Answered": 2,
    "\\Flagged": 4,
    "\\Draft": 6,
    "$Forwarded": 8,
    "$Junk": 24,
}
#: Bits Apple Mail sets that mailvault must ignore (encrypted, recent, attachment count, bits >= 32).
NOISE = (1 << 3) | (1 << 5) | (63 << 10) | (1 << 33) | (1 << 34)


def emlx(raw: bytes, flags: Sequence[str] = (), received: int | None = None, *, pad: bool = True) -> bytes:
    """An ``.emlx`` file: count line, the message, a plist with flags and date-received."""
    bits = NOISE
    for flag in flags:
        bits |= 1 << BITS[flag]
    count = str(len(raw)).ljust(10) if pad else str(len(raw))
    plist = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n'
        '<plist version="1.0">\n<dict>\n'
        + (f"\t<key>date-received</key>\n\t<integer>{received}</integer>\n" if received is not None else "")
        + f"\t<key>flags</key>\n\t<integer>{bits}</integer>\n"
        "\t<key>remote-id</key>\n\t<string>4711</string>\n</dict>\n</plist>\n"
    )
    return count.encode() + b"\n" + raw + plist.encode()


def strip_envelope(raw: bytes) -> bytes:
    """Corpus A files start with an mbox ``From`` line; a mail client's copy does not."""
    if raw.startswith(b"From "):
        return raw.split(b"\n", 1)[1]
    return raw


@dataclass
class Partial:
    """A message cut into an Apple Mail ``.partial.emlx`` stub plus its attachment files."""

    original: bytes
    stub: bytes
    files: dict[str, tuple[str, bytes]]  # IMAP part number -> (file name, decoded bytes)


def _numbered_leaves(msg: email.message.Message, number: str = "") -> list[tuple[str, email.message.Message]]:
    if not msg.is_multipart():
        return [(number or "1", msg)]
    out = []
    for i, part in enumerate(msg.get_payload(), 1):  # type: ignore[union-attr]
        child = f"{number}.{i}" if number else str(i)
        if part.get_content_maintype() == "message":
            continue
        out.extend(_numbered_leaves(part, child))
    return out


def make_partial(raw: bytes) -> Partial | None:
    """Stub every base64 leaf part with a file name, as Apple Mail does; None if there is none."""
    msg = email.message_from_bytes(raw)
    if not msg.is_multipart():
        return None
    text = raw.decode("latin-1")
    files: dict[str, tuple[str, bytes]] = {}
    for number, part in _numbered_leaves(msg):
        if str(part.get("Content-Transfer-Encoding", "")).strip().lower() != "base64":
            continue
        payload = part.get_payload()
        if not isinstance(payload, str) or len(payload) < 40 or text.count(payload) != 1:
            continue
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes) or not data:
            continue
        idx = text.index(payload)
        eol = "\r\n" if text[idx - 2 : idx] == "\r\n" else "\n"
        head_end = idx - len(eol)  # just after the last header line's line break
        if text[head_end - len(eol) : head_end] != eol:
            continue
        stub_header = f"X-Apple-Content-Length: {len(payload)}{eol}"
        text = text[:head_end] + stub_header + eol + text[idx + len(payload) :]
        files[number] = (part.get_filename() or "Mail-Anhang.bin", data)
    if not files:
        return None
    return Partial(raw, text.encode("latin-1"), files)


@dataclass
class AppleTree:
    root: Path
    #: folder name -> [(emlx file, message bytes expected in the vault or None for partial, flags)]
    full: dict[str, list[tuple[bytes, set[str]]]] = field(default_factory=dict)
    partial: dict[str, list[Partial]] = field(default_factory=dict)


def build_v10(
    home: Path,
    folders: dict[str, list[bytes]],
    *,
    seed: int = 0,
    partial_every: int = 5,
    account: str = "8E3A2C10-5D7B-4E11-9A3C-2B4F6D8E0A11",
) -> AppleTree:
    """``home/Library/Mail/V10/<account>/<a>.mbox/<b>.mbox/<UUID>/Data/<n>/Messages/<ROWID>.emlx``.

    Every ``partial_every``-th message that has a base64 attachment becomes a ``.partial.emlx``
    with its attachment under ``Attachments/<ROWID>/<part>/<file>``."""
    rng = random.Random(seed)
    mail = home / "Library" / "Mail"
    root = mail / "V10" / account
    (mail / "V10" / "MailData").mkdir(parents=True, exist_ok=True)
    (mail / "V10" / "MailData" / "Envelope Index").write_bytes(b"SQLite format 3\x00" + bytes(100))
    tree = AppleTree(mail / "V10")
    rowid = 1000
    candidates = 0
    for name, messages in folders.items():
        box = root.joinpath(*(part + ".mbox" for part in name.split("/")))
        messages_dir = (
            box / "6C0DB6A8-0A54-4B8A-8F2E-4C8E7D3A1B22" / "Data" / str(rng.randint(0, 9)) / "Messages"
        )
        messages_dir.mkdir(parents=True, exist_ok=True)
        (box / "Info.plist").write_bytes(b"<plist/>")
        for raw in messages:
            rowid += 1
            flags = {f for f in BITS if rng.random() < 0.3}
            received = 1_000_000_000 + rowid * 3600
            partial = make_partial(raw)
            if partial is not None:
                candidates += 1
            if partial is not None and (candidates - 1) % partial_every == 0:
                (messages_dir / f"{rowid}.partial.emlx").write_bytes(
                    emlx(partial.stub, sorted(flags), received)
                )
                for number, (filename, data) in partial.files.items():
                    d = messages_dir.parent / "Attachments" / str(rowid) / number
                    d.mkdir(parents=True, exist_ok=True)
                    (d / (Path(filename).name.lstrip(".") or "file.bin")).write_bytes(data)
                tree.partial.setdefault(name, []).append(partial)
                continue
            (messages_dir / f"{rowid}.emlx").write_bytes(
                emlx(raw, sorted(flags), received, pad=rowid % 2 == 0)
            )
            tree.full.setdefault(name, []).append((raw, flags))
    return tree


def received_date(rowid: int) -> datetime:
    return datetime.fromtimestamp(1_000_000_000 + rowid * 3600, tz=UTC)


def takeout_mbox(
    items: Sequence[tuple[bytes, Sequence[str]]], *, start_id: int = 1_600_000_000_000_000_000
) -> tuple[bytes, list[bytes]]:
    """A Takeout-shaped mbox (CRLF throughout, ``From <id>@xxx <date>``, X-GM-THRID and
    X-Gmail-Labels as the first headers) and the message bytes the vault must hold."""
    out = bytearray()
    expected = []
    for i, (raw, labels) in enumerate(items):
        msgid = start_id + i
        date = datetime.fromtimestamp(1_577_836_800 + i * 86_400, tz=UTC).strftime(
            "%a %b %d %H:%M:%S +0000 %Y"
        )
        body = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        label_value = ",".join(f'"{lab}"' if "," in lab or '"' in lab else lab for lab in labels)
        message = (
            f"X-GM-THRID: {msgid - i % 3}\r\n".encode()
            + b"X-Gmail-Labels: "
            + label_value.encode("utf-8")
            + b"\r\n"
            + body
        )
        if not message.endswith(b"\r\n"):
            message += b"\r\n"
        out += f"From {msgid}@xxx {date}\r\n".encode() + message + b"\r\n"
        expected.append(message)
    return bytes(out), expected


def takeout_date(i: int) -> datetime:
    return datetime.fromtimestamp(1_577_836_800 + i * 86_400, tz=UTC)
