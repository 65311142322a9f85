"""Helpers for the job-runner tests: the CLI as a real process, configs, vaults, generated mail."""

from __future__ import annotations

import base64
import json
import random
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from mailvault.vault.repository import VaultParams
from tests.common import MAIL_WORDS, init_vault, mv_json, proc_env
from tests.common import mv_argv as mv_cmd

VAULT_PASSWORD = "runner tests vault password"
#: The config's vaults name this variable (``password_env``); the plain CLI reads MAILVAULT_PASSWORD.
VAULT_PW_ENV = "MV_RUNNER_VAULT_PW"


# ----------------------------------------------------------------------------- the CLI


def spawn(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        mv_cmd(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=proc_env(env),
    )


def check_read_data(vault: str | Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    report = mv_json("check", vault, "--read-data", env=env)
    assert report["ok"], report
    assert not report["errors"], report
    return report


# ----------------------------------------------------------------------------- vaults


def make_vault(location: str | Path, params: VaultParams | None = None) -> str:
    """A new encrypted vault with cheap key derivation; returns its location string."""
    return init_vault(location, VAULT_PASSWORD, params)


def snapshots(vault: str | Path, account: str | None = None, env: dict[str, str] | None = None) -> list[Any]:
    args: list[str | Path] = ["snapshots", vault]
    if account:
        args += ["--account", account]
    rows: list[Any] = mv_json(*args, env=env)
    return rows


def per_account(rows: list[Any]) -> Counter[str]:
    return Counter(r["account"] for r in rows)


# ----------------------------------------------------------------------------- configs


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(value)


@dataclass
class ConfigBuilder:
    """Builds a config file: ``vaults``, ``accounts`` and ``jobs`` tables in that order."""

    vaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def text(self) -> str:
        out = []
        for section in ("vaults", "accounts", "jobs"):
            for name, table in getattr(self, section).items():
                out.append(f'[{section}."{name}"]')
                out.extend(f"{k} = {toml_value(v)}" for k, v in table.items())
                out.append("")
        return "\n".join(out)

    def write(self, path: Path) -> Path:
        path.write_text(self.text(), encoding="utf-8")
        return path


# ----------------------------------------------------------------------------- mail


_WORDS = [
    *MAIL_WORDS,
    *("schedule", "retention", "prune", "snapshot", "account", "shard", "runner", "hook", "lock", "daily"),
    "weekly",
]


def make_message(rng: random.Random, tag: str, body_bytes: int = 600, noise: int = 0) -> bytes:
    """A CRLF message (Dovecot serves it byte-identical). ``noise``: bytes of incompressible base64."""
    date = datetime(2023, 1, 1, tzinfo=UTC) + timedelta(minutes=rng.randrange(500_000))
    words = rng.choices(_WORDS, k=max(1, body_bytes // 7))
    lines = [" ".join(words[i : i + 12]) for i in range(0, len(words), 12)]
    if noise:
        blob = base64.b64encode(rng.randbytes(noise * 3 // 4)).decode()
        lines += [blob[i : i + 76] for i in range(0, len(blob), 76)]
    head = [
        f"From: Sender {rng.randrange(1000)} <s{rng.randrange(1000)}@example.org>",
        "To: someone@example.net",
        f"Subject: {tag} {rng.choice(_WORDS)}",
        f"Date: {format_datetime(date)}",
        f"Message-ID: <{tag}.{rng.randrange(10**12)}@runner.test>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
    ]
    return ("\r\n".join(head) + "\r\n\r\n" + "\r\n".join(lines) + "\r\n").encode()


def seed_set(rng: random.Random, tag: str, count: int, **kw: Any) -> list[tuple[bytes, list[str], datetime]]:
    base = datetime(2024, 3, 1, 12, 0)
    return [
        (make_message(rng, f"{tag}-{i}", **kw), ["\\Seen"] if i % 3 else [], base + timedelta(hours=i))
        for i in range(count)
    ]


def write_maildir(root: Path, messages: list[bytes], folder: str = "") -> None:
    """Messages as a Maildir (INBOX, or Maildir++ folder ``.folder``), in list order."""
    d = root / f".{folder}" if folder else root
    for sub in ("cur", "new", "tmp"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    if folder:
        (d / "maildirfolder").touch()
    for i, raw in enumerate(messages):
        (d / "cur" / f"{1700000000 + i:010d}.M{i}P1.runner:2,S").write_bytes(raw)


def write_mbox(path: Path, messages: list[bytes]) -> Path:
    """An mbox file (one file: fast to write, fast to import) holding ``messages`` in order."""
    with path.open("wb") as f:
        for raw in messages:
            f.write(b"From runner@test Mon Jan  1 00:00:00 2024\n")
            f.write(raw.replace(b"\r\n", b"\n"))
            f.write(b"\n")
    return path
