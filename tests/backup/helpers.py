"""Helpers for the backup integration tests: run the CLI, generate mail, ask the server directly."""

from __future__ import annotations

import hashlib
import json
import os
import poplib
import random
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from mailvault.cli import app
from mailvault.vault.repository import Repository
from tests.servers.dovecot import Dovecot, SeedMessage

VAULT_PASSWORD = "backup tests vault password"
#: The environment variable the tests hand the server password in (``--password-env``).
SERVER_PW_ENV = "MV_BACKUP_TEST_SERVER_PW"
#: Cheap key derivation for the test vaults (the cost is stored in the key file).
FAST_SCRYPT = {"n": 2**12, "r": 8, "p": 1}
REPO_ROOT = Path(__file__).resolve().parents[2]

_runner = CliRunner()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ----------------------------------------------------------------------------- accounts


@dataclass
class Account:
    """A user on a test Dovecot, and how to reach it."""

    server: Dovecot
    user: str
    password: str

    def url(self, scheme: str = "imaps", port: int | None = None, host: str | None = None) -> str:
        default = {
            "imaps": self.server.imaps_port,
            "imap": self.server.imap_port,
            "pop3s": self.server.pop3s_port,
            "pop3": self.server.pop3_port,
        }[scheme]
        return f"{scheme}://{self.user}@{host or self.server.host}:{port or default}"

    @property
    def account_name(self) -> str:
        return f"{self.user}@{self.server.host}"

    def env(self, password: str | None = None) -> dict[str, str]:
        return {SERVER_PW_ENV: self.password if password is None else password}


# ----------------------------------------------------------------------------- the CLI


def cli(*args: str | Path, code: int | None = 0, env: dict[str, str] | None = None) -> Result:
    """``mailvault ARGS`` in-process (typer's CliRunner); checks the exit code unless ``code`` is None."""
    result = _runner.invoke(app, [str(a) for a in args], env=env, catch_exceptions=False)
    if code is not None:
        assert result.exit_code == code, (
            f"mailvault {' '.join(map(str, args))} exited {result.exit_code}, expected {code}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}"
        )
    return result


def cli_json(*args: str | Path, env: dict[str, str] | None = None) -> Any:
    return json.loads(cli(*args, "--json", env=env).stdout)


def cli_proc(
    *args: str | Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m mailvault ARGS`` as a real process: real exit code, real stderr."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), full_env.get("PYTHONPATH")]))
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "mailvault", *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )


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


def vault_files(vault: Path) -> dict[str, tuple[int, int]]:
    """Every file under the vault directory -> (size, mtime_ns): 'untouched' means this is equal."""
    return {
        str(p.relative_to(vault)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(vault.rglob("*"))
        if p.is_file()
    }


def assert_one_line_error(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """Exit ``code``, nothing on stdout, exactly one ``mailvault: ...`` line on stderr holding the needles."""
    lines = proc.stderr.splitlines()
    assert proc.returncode == code, f"exit {proc.returncode}, expected {code}; stderr: {proc.stderr!r}"
    assert len(lines) == 1, f"expected one line on stderr, got: {proc.stderr!r}"
    line = lines[0]
    assert line.startswith("mailvault: "), line
    assert "Traceback" not in line and "internal error" not in line, line
    for needle in needles:
        assert needle.lower() in line.lower(), f"{needle!r} not in {line!r}"
    assert proc.stdout == "", proc.stdout
    return line


# ----------------------------------------------------------------------------- generated mail

_WORDS = [
    *("mail", "vault", "backup", "archive", "invoice", "meeting", "report", "draft", "budget", "quarter"),
    *("project", "review", "Grüße", "Köln", "日本語", "テキスト", "lorem", "ipsum", "dolor", "sit", "amet"),
]
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
