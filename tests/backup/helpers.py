"""Helpers for the backup integration tests: run the CLI, generate mail, ask the server directly."""

from __future__ import annotations

import json
import poplib
import random
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from mailvault.vault.repository import Repository
from tests.common import MAIL_WORDS, DovecotAccount, mv
from tests.common import invoke as cli
from tests.servers.dovecot import SeedMessage

VAULT_PASSWORD = "backup tests vault password"
#: The environment variable the tests hand the server password in (``--password-env``).
SERVER_PW_ENV = "MV_BACKUP_TEST_SERVER_PW"

# ----------------------------------------------------------------------------- accounts


class Account(DovecotAccount):
    """A user on a test Dovecot, and how to reach it."""

    def env(self, password: str | None = None) -> dict[str, str]:
        return {SERVER_PW_ENV: self.password if password is None else password}


# ----------------------------------------------------------------------------- the CLI


def cli_json(*args: str | Path, env: dict[str, str] | None = None) -> Any:
    return json.loads(cli(*args, "--json", env=env).stdout)


def cli_proc(
    *args: str | Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m mailvault ARGS`` as a real process: real exit code, real stderr."""
    return mv(*args, code=None, env=env, timeout=timeout)


def backup_args(vault: Path, account: Account, *extra: str | Path, scheme: str = "imaps", port: int | None = None,
                ca: bool = True) -> list[str | Path]:  # fmt: skip
    args: list[str | Path] = ["backup", vault, account.url(scheme, port), "--password-env", SERVER_PW_ENV]
    if ca:
        args += ["--ca-file", account.server.ca_file]
    return [*args, *extra]


def backup(
    vault: Path,
    account: Account,
    *extra: str | Path,
    scheme: str = "imaps",
    port: int | None = None,
    code: int | None = 0,
) -> dict[str, Any]:
    """One in-process ``mailvault backup ... --json``; returns the JSON result."""
    result = cli(*backup_args(vault, account, *extra, "--json", scheme=scheme, port=port), code=code,
                 env=account.env())  # fmt: skip
    return dict(json.loads(result.stdout))


def backup_proc(
    vault: Path, account: Account, *extra: str | Path, scheme: str = "imaps", port: int | None = None
) -> subprocess.CompletedProcess[str]:
    return cli_proc(*backup_args(vault, account, *extra, scheme=scheme, port=port), env=account.env())


def ls(vault: Path, snapshot: str = "latest", account: str | None = None) -> list[dict[str, Any]]:
    args: list[str | Path] = ["ls", vault, snapshot]
    if account:
        args += ["--account", account]
    return list(cli_json(*args))


def by_key(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, int | str], dict[str, Any]]:
    """``ls --json`` rows keyed by (decoded folder name, uid)."""
    out: dict[tuple[str, int | str], dict[str, Any]] = {}
    for r in rows:
        key = (r["folder"], r["uid"])
        assert key not in out, f"{key} listed twice"
        out[key] = r
    return out


def open_vault(vault: Path) -> Repository:
    """The vault, opened in-process (use as a context manager)."""
    return Repository.open(str(vault), VAULT_PASSWORD.encode)


def stats(vault: Path) -> dict[str, Any]:
    return dict(cli_json("stats", vault))


# ----------------------------------------------------------------------------- generated mail

_WORDS = [*MAIL_WORDS, *("Grüße", "Köln", "日本語", "テキスト", "lorem", "ipsum", "dolor", "sit", "amet")]
TZS = [
    UTC,
    timezone(timedelta(hours=2)),
    timezone(timedelta(hours=-7, minutes=-30)),
    timezone(timedelta(hours=9)),
]


def make_message(
    i: int,
    rng: random.Random,
    *,
    size: int | None = None,
    crlf: bool | None = None,
    date: datetime | None = None,
    received: datetime | None = None,
    tag: str = "",
) -> bytes:
    """A plausible message, unique per (i, tag, rng state); ends with a line ending."""
    nl = b"\r\n" if (crlf if crlf is not None else i % 3 == 0) else b"\n"
    lines: list[bytes] = []
    if received is not None:
        when = received.strftime("%a, %d %b %Y %H:%M:%S %z").encode()
        lines += [
            b"Received: from mx.example.org (mx.example.org [192.0.2.1])",
            b"\tby mail.example.net; " + when,
        ]
    lines += [
        f"From: Sender {i} <s{i}@example.org>".encode(),
        b"To: rcpt@example.net",
        f"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= {tag} #{i}".encode(),
        f"Message-ID: <{tag}{i}.{rng.getrandbits(48):x}@example.org>".encode(),
    ]
    if date is not None:
        lines.append(f"Date: {date.strftime('%a, %d %b %Y %H:%M:%S %z')}".encode())
    lines += [
        b"MIME-Version: 1.0",
        b"Content-Type: text/plain; charset=utf-8",
        b"Content-Transfer-Encoding: 8bit",
        b"",
    ]
    target = size if size is not None else rng.randrange(200, 5000)
    n = sum(len(x) + len(nl) for x in lines)
    while n < target:
        line = " ".join(rng.choices(_WORDS, k=rng.randint(4, 14))).encode()
        lines.append(line)
        n += len(line) + len(nl)
    return nl.join(lines) + nl


def random_date(rng: random.Random) -> datetime:
    return datetime(2001, 1, 1, tzinfo=rng.choice(TZS)) + timedelta(
        seconds=rng.randrange(0, 20 * 365 * 86400)
    )


# ----------------------------------------------------------------------------- the server, asked directly


@dataclass
class ServerMessage:
    uid: int
    body: bytes
    flags: frozenset[str]
    internaldate: datetime


def _flags(flags: Sequence[bytes | str]) -> frozenset[str]:
    return frozenset(f.decode() if isinstance(f, bytes) else f for f in flags)


def server_messages(account: Account, folder: str, *, bodies: bool = True) -> dict[int, ServerMessage]:
    """An independent UID FETCH (BODY.PEEK[], FLAGS, INTERNALDATE) of one folder, read-only."""
    client = account.server.imap_client(account.user)
    client.normalise_times = False  # aware datetimes, with the offset the server gives
    try:
        if not client.select_folder(folder, readonly=True)[b"EXISTS"]:
            return {}
        items = ["FLAGS", "INTERNALDATE"] + (["BODY.PEEK[]"] if bodies else [])
        data = client.fetch(client.search("ALL"), items)
    finally:
        client.logout()
    return {
        uid: ServerMessage(uid, d.get(b"BODY[]", b""), _flags(d[b"FLAGS"]), d[b"INTERNALDATE"])
        for uid, d in data.items()
    }


def server_flags(account: Account, folders: Iterable[str]) -> dict[tuple[str, int], frozenset[str]]:
    out = {}
    for folder in folders:
        for uid, m in server_messages(account, folder, bodies=False).items():
            out[(folder, uid)] = m.flags
    return out


def folder_state(account: Account, folder: str) -> dict[bytes, Any]:
    client = account.server.imap_client(account.user)
    try:
        return dict(client.select_folder(folder, readonly=True))
    finally:
        client.logout()


def pop3(account: Account) -> poplib.POP3:
    conn = poplib.POP3_SSL(
        account.server.host, account.server.pop3s_port, context=account.server.ssl_context(), timeout=30
    )
    conn.user(account.user)
    conn.pass_(account.password)
    return conn


def pop3_count(account: Account) -> int:
    conn = pop3(account)
    try:
        return int(conn.stat()[0])
    finally:
        conn.quit()


def seed_folders(account: Account, folders: dict[str, list[SeedMessage]]) -> None:
    for folder, msgs in folders.items():
        account.server.seed(account.user, folder, msgs)
