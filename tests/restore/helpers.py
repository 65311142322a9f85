"""Helpers for the restore tests: run the real CLI, generate mail, and read accounts independently.

The reader (:func:`read_account`) is plain imapclient against the test Dovecot: it shares no code with
mailvault, so a restore that is "identical" by its measure is identical by the server's own account.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from tests.common import MAIL_WORDS, DovecotAccount, mv_json
from tests.servers.dovecot import SeedMessage

VAULT_PASSWORD = "restore tests vault password"
#: Environment variables the tests hand server passwords in (``--password-env`` and friends).
PW_ENV = "MV_RESTORE_TEST_PW"
SOURCE_PW_ENV = "MV_RESTORE_TEST_SOURCE_PW"

#: One message as the independent reader sees it: (BODY[] bytes, sorted FLAGS, INTERNALDATE as a UTC instant).
Msg = tuple[bytes, tuple[str, ...], datetime]


# ----------------------------------------------------------------------------- accounts


class Account(DovecotAccount):
    """A user on the test Dovecot, and how to reach it."""

    def seed(self, folders: Mapping[str, Sequence[SeedMessage]]) -> None:
        for folder, msgs in folders.items():
            self.server.seed(self.user, folder, msgs)


# ----------------------------------------------------------------------------- the CLI, as a real process


def backup(vault: Path, account: Account, *extra: str | Path, scheme: str = "imaps") -> dict[str, Any]:
    """``mailvault backup VAULT URL --json``; must exit 0."""
    return dict(
        mv_json(
            "backup", vault, account.url(scheme), "--password-env", PW_ENV,
            "--ca-file", account.server.ca_file, *extra,
            env={PW_ENV: account.password},
        )
    )  # fmt: skip


def restore_args(vault: Path, target: Account, *extra: str | Path) -> list[str | Path]:
    return [
        "restore",
        vault,
        target.url(),
        "--password-env",
        PW_ENV,
        "--ca-file",
        target.server.ca_file,
        *extra,
    ]


def restore(
    vault: Path, target: Account, *extra: str | Path, code: int | None = 0, password: str | None = None
) -> dict[str, Any]:
    """``mailvault restore VAULT imaps://TARGET ... --json``; returns the JSON result."""
    pw = target.password if password is None else password
    out = mv_json(*restore_args(vault, target, *extra), env={PW_ENV: pw}, code=code)
    assert isinstance(out, dict)
    if code is not None:
        assert out["exit_code"] == code, out
    return out


# ----------------------------------------------------------------------------- generated mail

#: MAIL_WORDS with "restore" in place of "backup".
_WORDS = [
    *MAIL_WORDS[:2],
    "restore",
    *MAIL_WORDS[3:],
    "Grüße",
    "Köln",
    "日本語",
    "テキスト",
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
]
#: Non-UTC offsets (and UTC) for dates in the past.
TZS = [
    UTC,
    timezone(timedelta(hours=2)),
    timezone(timedelta(hours=-7, minutes=-30)),
    timezone(timedelta(hours=9)),
    timezone(timedelta(hours=5, minutes=45)),
]
FLAG_POOL = ["\\Seen", "\\Answered", "\\Flagged", "$Forwarded", "$label1", "Work", "project-x"]


def random_date(rng: random.Random) -> datetime:
    """A whole-second instant between 2001 and 2021 with a random (mostly non-UTC) offset."""
    return datetime(2001, 1, 1, tzinfo=rng.choice(TZS)) + timedelta(
        seconds=rng.randrange(0, 20 * 365 * 86400)
    )


def rfc2822(when: datetime) -> str:
    return when.strftime("%a, %d %b %Y %H:%M:%S %z")


def make_message(
    i: int,
    rng: random.Random,
    *,
    tag: str = "",
    size: int | None = None,
    date: datetime | None = None,
    received: datetime | None = None,
) -> bytes:
    """A plausible CRLF message with a unique Message-ID (per tag, i and rng state)."""
    lines: list[str] = []
    if received is not None:
        lines += ["Received: from mx.example.org (mx.example.org [192.0.2.1])", f"\tby mail.example.net; {rfc2822(received)}"]  # fmt: skip
    lines += [
        f"From: Sender {i} <s{i}@example.org>",
        "To: rcpt@example.net",
        f"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= {tag} #{i}",
        f"Message-ID: <{tag}{i}.{rng.getrandbits(48):x}@example.org>",
        f"Date: {rfc2822(date or random_date(rng))}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "",
    ]
    target = size if size is not None else rng.randrange(300, 4000)
    n = sum(len(x.encode()) + 2 for x in lines)
    while n < target:
        line = " ".join(rng.choices(_WORDS, k=rng.randint(4, 14)))
        lines.append(line)
        n += len(line.encode()) + 2
    return ("\r\n".join(lines) + "\r\n").encode()


def seed_set(count: int, rng: random.Random, tag: str, *, size: int | None = None) -> list[SeedMessage]:
    """``count`` messages with random flags/keywords and INTERNALDATEs in the past."""
    out: list[SeedMessage] = []
    for i in range(count):
        flags = [f for f in FLAG_POOL if rng.random() < (0.6 if f == "\\Seen" else 0.25)]
        out.append((make_message(i, rng, tag=tag, size=size), flags, random_date(rng)))
    return out


# ----------------------------------------------------------------------------- the independent reader


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


def list_folders(account: Account, *, selectable_only: bool = True) -> dict[str, tuple[str, ...]]:
    """Folder name (decoded) -> LIST attributes, as the server lists them."""
    client = account.server.imap_client(account.user)
    try:
        listing = client.list_folders()
    finally:
        client.logout()
    out = {}
    for flags, _delim, name in listing:
        attrs = tuple(_s(f) for f in flags)
        if selectable_only and {a.lower() for a in attrs} & {"\\noselect", "\\nonexistent"}:
            continue
        out[_s(name)] = attrs
    return out


def read_account(account: Account, folders: Iterable[str] | None = None) -> dict[str, Counter[Msg]]:
    """Every selectable folder -> the multiset of (BODY[], sorted FLAGS without \\Recent, INTERNALDATE in UTC)."""
    names = list(folders) if folders is not None else list(list_folders(account))
    client = account.server.imap_client(account.user)
    client.normalise_times = False
    out: dict[str, Counter[Msg]] = {}
    try:
        for name in names:
            info = client.select_folder(name, readonly=True)
            bag: Counter[Msg] = Counter()
            if info[b"EXISTS"]:
                data = client.fetch(client.search("ALL"), ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"])
                for d in data.values():
                    flags = tuple(sorted(_s(f) for f in d[b"FLAGS"] if _s(f).lower() != "\\recent"))
                    bag[(d[b"BODY[]"], flags, d[b"INTERNALDATE"].astimezone(UTC))] += 1
            out[name] = bag
    finally:
        client.logout()
    return out


def counts(account: Account) -> dict[str, int]:
    """Folder -> message count (STATUS MESSAGES), selectable folders only."""
    client = account.server.imap_client(account.user)
    try:
        return {
            name: int(client.folder_status(name, ["MESSAGES"])[b"MESSAGES"]) for name in list_folders(account)
        }
    finally:
        client.logout()


def bodies(bag: Counter[Msg]) -> Counter[bytes]:
    out: Counter[bytes] = Counter()
    for (body, _, _), n in bag.items():
        out[body] += n
    return out


def describe_diff(want: Counter[Msg], got: Counter[Msg], limit: int = 5) -> str:
    """A short account of how two multisets differ (bodies are far too long for pytest's diff)."""
    missing = want - got
    extra = got - want
    lines = [f"{sum(missing.values())} missing, {sum(extra.values())} unexpected"]
    by_body = {m[0]: m for m in extra}
    for m, n in list(missing.items())[:limit]:
        near = by_body.get(m[0])
        what = f"same body on the target with flags={near[1]} date={near[2]}" if near else "body absent"
        lines.append(f"  missing x{n}: {m[0][:80]!r} flags={m[1]} date={m[2]} ({what})")
    for m, n in list(extra.items())[:limit]:
        lines.append(f"  unexpected x{n}: {m[0][:80]!r} flags={m[1]} date={m[2]}")
    return "\n".join(lines)


def assert_same(want: Counter[Msg], got: Counter[Msg], what: str) -> None:
    assert want == got, f"{what}: {describe_diff(want, got)}"
