"""The job runner's configuration file (TOML): vaults, accounts, jobs — validated.

TOML is parsed by ``tomllib``; this module only checks what the file says. Every error
names the file, the line, the key and what was expected, e.g.::

    config.toml:14: jobs.nightly.keep_daily: expected a whole number >= 0, got "7"

Secrets never live in the file: only the name of an environment variable, a file or a
command that produces them.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailvault.config_oauth import account_auth, provider_tables
from mailvault.errors import ConfigError
from mailvault.net.providers import Provider, registry
from mailvault.net.session import Endpoint, parse_url
from mailvault.retention import KeepPolicy

CONFIG_ENV = "MAILVAULT_CONFIG"
JOB_KINDS = ("backup", "restore", "migrate")
_KEEP = ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")


@dataclass
class VaultConfig:
    name: str
    path: str
    password_env: str | None = None
    password_command: str | None = None
    password_file: str | None = None


@dataclass
class AccountConfig:
    name: str
    url: str
    endpoint: Endpoint
    password_env: str | None = None
    password_command: str | None = None
    oauth2_token_command: str | None = None
    ca_file: str | None = None
    allow_plaintext: bool = False
    folders: list[str] = field(default_factory=list)
    exclude_folders: list[str] = field(default_factory=list)
    delete_after_days: int | None = None
    #: "password" (password_env / password_command / oauth2_token_command) or "oauth2" (built in).
    auth: str = "password"
    oauth2_provider: str | None = None
    token_store: str = "vault"  # noqa: S105 - where tokens are kept, not a secret


@dataclass
class JobConfig:
    name: str
    kind: str
    accounts: list[str]
    vault: str
    target: str | None = None
    target_password_env: str | None = None
    target_password_command: str | None = None
    target_oauth2_token_command: str | None = None
    target_ca_file: str | None = None
    schedule: str | None = None
    keep: KeepPolicy | None = None
    prune: bool = False
    snapshot: str = "latest"
    maps: list[str] = field(default_factory=list)
    into: str | None = None
    on_success: str | None = None
    on_failure: str | None = None
    max_upload_mb_per_day: int | None = None


@dataclass
class Config:
    path: Path
    vaults: dict[str, VaultConfig]
    accounts: dict[str, AccountConfig]
    jobs: dict[str, JobConfig]
    #: Provider presets with this file's [oauth2_providers.NAME] tables applied.
    providers: dict[str, Provider] = field(default_factory=registry)


def default_config_path() -> Path:
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_config_dir("mailvault")) / "config.toml"


class _Locator:
    """Finds the line of a table or key in the TOML text, for error messages."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def table(self, *path: str) -> int:
        pattern = re.compile(
            r"^\s*\[\s*"
            + r"\s*\.\s*".join(rf"(?:{re.escape(p)}|\"{re.escape(p)}\"|'{re.escape(p)}')" for p in path)
            + r"\s*\]"
        )
        for i, line in enumerate(self.lines, 1):
            if pattern.match(line):
                return i
        return 0

    def key(self, path: tuple[str, ...], key: str) -> int:
        if not path:  # a top-level name: a table header such as [job.weekly], or a bare key
            head = re.compile(rf"^\s*\[\s*(?:{re.escape(key)}|\"{re.escape(key)}\")\s*[.\]]")
            for i, line in enumerate(self.lines, 1):
                if head.match(line):
                    return i
        start = self.table(*path)
        keyre = re.compile(rf"^\s*(?:{re.escape(key)}|\"{re.escape(key)}\"|'{re.escape(key)}')\s*=")
        for i in range(start, len(self.lines)):
            line = self.lines[i]
            if i >= start and line.lstrip().startswith("[") and i + 1 != start:
                break
            if keyre.match(line):
                return i + 1
        return start


class _Checker:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.loc = _Locator(text)

    def fail(self, where: tuple[str, ...], key: str | None, expected: str, got: Any = None) -> ConfigError:
        line = self.loc.key(where, key) if key else self.loc.table(*where)
        dotted = ".".join([*where, key] if key else where)
        shown = "" if got is None else f", got {_show(got)}"
        return ConfigError(f"{self.path}:{line}: {dotted}: {expected}{shown}")

    def table(self, doc: dict[str, Any], where: tuple[str, ...]) -> dict[str, Any]:
        value = doc.get(where[-1], {})
        if not isinstance(value, dict):
            raise self.fail(where[:-1] or where, where[-1], "expected a table", value)
        return value

    def known(self, table: dict[str, Any], where: tuple[str, ...], allowed: set[str]) -> None:
        for key in table:
            if key not in allowed:
                raise self.fail(where, key, f"unknown key (expected one of: {', '.join(sorted(allowed))})")

    def string(
        self, table: dict[str, Any], where: tuple[str, ...], key: str, *, required: bool = False
    ) -> str | None:
        if key not in table:
            if required:
                raise self.fail(where, None, f"missing required key {key!r}")
            return None
        value = table[key]
        if not isinstance(value, str) or not value.strip():
            raise self.fail(where, key, "expected a non-empty string", value)
        return value

    def integer(
        self, table: dict[str, Any], where: tuple[str, ...], key: str, minimum: int = 0
    ) -> int | None:
        if key not in table:
            return None
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(where, key, f"expected a whole number >= {minimum}", value)
        return value

    def boolean(self, table: dict[str, Any], where: tuple[str, ...], key: str) -> bool:
        value = table.get(key, False)
        if not isinstance(value, bool):
            raise self.fail(where, key, "expected true or false", value)
        return value

    def strings(self, table: dict[str, Any], where: tuple[str, ...], key: str) -> list[str]:
        value = table.get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(where, key, "expected a list of strings", value)
        return list(value)

    def secret_source(self, table: dict[str, Any], where: tuple[str, ...], prefix: str = "") -> None:
        given = [k for k in (f"{prefix}password_env", f"{prefix}password_command") if k in table]
        if len(given) > 1:
            raise self.fail(where, given[1], f"give only one of {', '.join(given)}")
        if f"{prefix}password" in table:
            raise self.fail(
                where,
                f"{prefix}password",
                "secrets do not belong in the config; use password_env or password_command",
            )


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return "a table"
    return repr(value)


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        line = m.group(1) if m else "?"
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise ConfigError(f"{path}:{line}: not valid TOML: {msg}") from None
    c = _Checker(path, text)
    c.known(doc, (), {"vaults", "accounts", "jobs", "oauth2_providers"})
    providers = provider_tables(c, doc)
    vaults: dict[str, VaultConfig] = {}
    for name, t in c.table(doc, ("vaults",)).items():
        where = ("vaults", name)
        if not isinstance(t, dict):
            raise c.fail(("vaults",), name, "expected a table", t)
        c.secret_source(t, where)
        c.known(t, where, {"path", "password_env", "password_command", "password_file"})
        vaults[name] = VaultConfig(
            name,
            str(c.string(t, where, "path", required=True)),
            c.string(t, where, "password_env"),
            c.string(t, where, "password_command"),
            c.string(t, where, "password_file"),
        )
    accounts: dict[str, AccountConfig] = {}
    for name, t in c.table(doc, ("accounts",)).items():
        where = ("accounts", name)
        if not isinstance(t, dict):
            raise c.fail(("accounts",), name, "expected a table", t)
        c.secret_source(t, where)
        c.known(
            t,
            where,
            {
                "url", "password_env", "password_command", "oauth2_token_command", "ca_file",
                "allow_plaintext", "folders", "exclude_folders", "delete_after_days",
                "auth", "oauth2_provider", "token_store",
            },
        )  # fmt: skip
        url = str(c.string(t, where, "url", required=True))
        try:
            endpoint = parse_url(url, providers)
        except ConfigError as exc:
            raise c.fail(
                where,
                "url",
                f"expected imap[s]://user@host[:port], pop3[s]://... or PROVIDER:ADDRESS ({exc})",
            ) from None
        auth, oauth2_provider, token_store = account_auth(c, t, where, endpoint, providers)
        delete_after = c.integer(t, where, "delete_after_days")
        if delete_after is not None and endpoint.protocol != "pop3":
            raise c.fail(where, "delete_after_days", "only applies to pop3:// and pop3s:// accounts")
        accounts[name] = AccountConfig(
            name=name,
            url=url,
            endpoint=endpoint,
            password_env=c.string(t, where, "password_env"),
            password_command=c.string(t, where, "password_command"),
            oauth2_token_command=c.string(t, where, "oauth2_token_command"),
            ca_file=c.string(t, where, "ca_file"),
            allow_plaintext=c.boolean(t, where, "allow_plaintext"),
            folders=c.strings(t, where, "folders"),
            exclude_folders=c.strings(t, where, "exclude_folders"),
            delete_after_days=delete_after,
            auth=auth,
            oauth2_provider=oauth2_provider,
            token_store=token_store,
        )
    jobs: dict[str, JobConfig] = {}
    for name, t in c.table(doc, ("jobs",)).items():
        where = ("jobs", name)
        if not isinstance(t, dict):
            raise c.fail(("jobs",), name, "expected a table", t)
        c.secret_source(t, where, "target_")
        c.known(
            t,
            where,
            {
                "kind", "accounts", "vault", "target", "target_password_env", "target_password_command",
                "target_oauth2_token_command", "target_ca_file", "schedule", "prune", "snapshot", "map",
                "into", "on_success", "on_failure", "max_upload_mb_per_day", *_KEEP,
            },
        )  # fmt: skip
        kind = c.string(t, where, "kind", required=True)
        if kind not in JOB_KINDS:
            raise c.fail(where, "kind", f"expected one of {', '.join(JOB_KINDS)}", kind)
        job_accounts = c.strings(t, where, "accounts")
        if not job_accounts:
            raise c.fail(
                where, "accounts" if "accounts" in t else None, "expected a non-empty list of account names"
            )
        for acc in job_accounts:
            if acc not in accounts:
                raise c.fail(where, "accounts", f"no [accounts.{acc}] table", acc)
        vault = str(c.string(t, where, "vault", required=True))
        if vault not in vaults:
            raise c.fail(where, "vault", f"no [vaults.{vault}] table", vault)
        target = c.string(t, where, "target")
        if kind in ("restore", "migrate"):
            if target is None:
                raise c.fail(where, None, f"a {kind} job needs 'target'")
            try:
                tep = parse_url(target, providers)
            except ConfigError as exc:
                raise c.fail(where, "target", f"expected imap[s]://user@host[:port] ({exc})") from None
            if tep.protocol != "imap":
                raise c.fail(where, "target", "expected an imap:// or imaps:// URL", target)
        schedule = c.string(t, where, "schedule")
        if schedule is not None:
            from mailvault.schedule import parse_schedule

            try:
                parse_schedule(schedule)
            except ConfigError as exc:
                raise c.fail(where, "schedule", str(exc)) from None
        keep_values = {k: c.integer(t, where, k) for k in _KEEP}
        keep = None
        if any(v for v in keep_values.values()):
            keep = KeepPolicy(**{k[5:]: v or 0 for k, v in keep_values.items()})
        prune_flag = c.boolean(t, where, "prune")
        if prune_flag and keep is None:
            raise c.fail(where, "prune", "prune needs at least one keep_* value")
        if (keep is not None or prune_flag) and kind == "restore":
            raise c.fail(
                where, next(k for k in (*_KEEP, "prune") if k in t), "a restore job keeps no snapshots"
            )
        jobs[name] = JobConfig(
            name=name,
            kind=kind,
            accounts=job_accounts,
            vault=vault,
            target=target,
            target_password_env=c.string(t, where, "target_password_env"),
            target_password_command=c.string(t, where, "target_password_command"),
            target_oauth2_token_command=c.string(t, where, "target_oauth2_token_command"),
            target_ca_file=c.string(t, where, "target_ca_file"),
            schedule=schedule,
            keep=keep,
            prune=prune_flag,
            snapshot=c.string(t, where, "snapshot") or "latest",
            maps=c.strings(t, where, "map"),
            into=c.string(t, where, "into"),
            on_success=c.string(t, where, "on_success"),
            on_failure=c.string(t, where, "on_failure"),
            max_upload_mb_per_day=c.integer(t, where, "max_upload_mb_per_day", minimum=1),
        )
    return Config(path, vaults, accounts, jobs, providers)
