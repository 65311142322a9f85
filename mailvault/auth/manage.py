"""`mailvault login`, `logout` and `accounts`, as library functions (the CLI only renders them).

An ACCOUNT is a config account (``[accounts.NAME]`` with ``auth = "oauth2"``) or a provider address
``PROVIDER:ADDRESS``. Its tokens go to every vault the config's jobs use for it (or the one
``--vault`` names: a config vault name or a location), or to the keyring (``token_store``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mailvault.auth import login as flows
from mailvault.auth import oauth
from mailvault.auth.access import login_command, open_store
from mailvault.auth.store import TokenRecord, TokenStore, token_key
from mailvault.auth.tokens import record_from_token
from mailvault.config import AccountConfig, Config
from mailvault.errors import ConfigError, MailvaultError
from mailvault.net.providers import Provider, presets, split_address
from mailvault.net.session import Endpoint, parse_url

PasswordProvider = Callable[[], bytes]


@dataclass
class VaultRef:
    name: str
    location: str
    password: PasswordProvider


@dataclass
class Target:
    """What login/logout/accounts act on."""

    label: str
    endpoint: Endpoint
    auth: str  # oauth2 | password
    provider: Provider | None
    store_kind: str = "vault"
    vaults: list[VaultRef] = field(default_factory=list)
    login: str = ""  # the command that signs it in

    @property
    def key(self) -> str:
        assert self.provider is not None
        return token_key(self.provider.name, self.endpoint.user)


def _config_vault(config: Config, name: str) -> VaultRef:
    from mailvault.runner import vault_password

    v = config.vaults[name]
    return VaultRef(name, v.path, vault_password(v))


def _vaults_of(
    config: Config | None, acc: str | None, vault: str | None, password: PasswordProvider
) -> list[VaultRef]:
    if vault is not None:
        if config is not None and vault in config.vaults:
            return [_config_vault(config, vault)]
        return [VaultRef(vault, vault, password)]
    if config is None or acc is None:
        return []
    names = sorted({j.vault for j in config.jobs.values() if acc in j.accounts})
    return [_config_vault(config, n) for n in names]


def resolve(
    spec: str,
    config: Config | None,
    *,
    vault: str | None = None,
    vault_password: PasswordProvider,
    overrides: dict[str, str] | None = None,
) -> Target:
    """A config account name or ``PROVIDER:ADDRESS`` -> :class:`Target` (provider overrides applied)."""
    acc: AccountConfig | None = config.accounts.get(spec) if config is not None else None
    changes = {k: v for k, v in (overrides or {}).items() if v}
    if acc is not None:
        assert config is not None
        provider = config.providers.get(acc.oauth2_provider) if acc.oauth2_provider else None
        if provider is not None and changes:
            provider = provider.override(changes, "--")
        return Target(
            spec,
            acc.endpoint,
            acc.auth,
            provider,
            acc.token_store,
            _vaults_of(config, spec, vault, vault_password) if acc.auth == "oauth2" else [],
            login_command(spec, config.path),
        )
    if split_address(spec) is None:
        known = (
            f" (config accounts: {', '.join(config.accounts)})"
            if config is not None and config.accounts
            else ""
        )
        raise ConfigError(f"no account {spec!r}: give a config account name or PROVIDER:ADDRESS{known}")
    providers = config.providers if config is not None else dict(presets())
    ep = parse_url(spec, providers)
    provider = providers[ep.provider]
    if changes:
        provider = provider.override(changes, "--")
    auth = "oauth2" if provider.auth[:1] == ("oauth2",) and provider.token_url else "password"
    cmd = login_command(spec, config.path if config is not None else None)
    return Target(spec, ep, auth, provider, "vault", _vaults_of(config, None, vault, vault_password), cmd)


@contextlib.contextmanager
def stores(target: Target) -> Iterator[list[TokenStore]]:
    """The token stores of ``target``, open while the block runs."""
    from mailvault.vault.repository import Repository

    if target.store_kind == "keyring":
        yield [open_store("keyring", None, None)]
        return
    if not target.vaults:
        raise ConfigError(
            f"{target.label}: tokens are kept in a vault: give --vault "
            "(no job of the config uses this account)"
        )
    repos = []
    try:
        for v in target.vaults:
            repos.append(Repository.open(v.location, v.password))
        yield [open_store("vault", r.backend, r.sealer) for r in repos]
    finally:
        for r in repos:
            r.close()


@dataclass
class LoginOutcome:
    account: str
    provider: str
    user: str
    grant: str
    expires_at: float
    stores: list[str]
    refresh_token: bool


def login(
    target: Target,
    *,
    device: bool = False,
    open_browser: bool = True,
    emit: flows.Emit,
    timeout: float = flows.LOGIN_TIMEOUT,
) -> LoginOutcome:
    if target.auth != "oauth2" or target.provider is None:
        raise ConfigError(f'{target.label} does not sign in with OAuth2 (auth = "{target.auth}")')
    provider = target.provider
    user = target.endpoint.user
    if provider.grant != "authorization_code":
        # App-only access: nothing to sign in; prove the credentials work, store nothing.
        token = oauth.app_token(provider, user)
        return LoginOutcome(
            target.label, provider.name, user, provider.grant, oauth.expires_at(token), [], False
        )
    if device:
        token = flows.device_flow(provider, user, emit=emit, timeout=timeout)
        grant = "device_code"
    else:
        token = flows.code_flow(provider, user, emit=emit, open_browser=open_browser, timeout=timeout)
        grant = "authorization_code"
    record = record_from_token(provider, user, token, grant)
    where = []
    with stores(target) as opened:
        for store in opened:
            store.save(dataclasses.replace(record, generation=0))
            where.append(store.where)
    return LoginOutcome(
        target.label, provider.name, user, grant, record.expires_at, where, bool(record.refresh_token)
    )


def logout(target: Target) -> list[str]:
    """Forget the tokens of ``target``; the stores that held one."""
    if target.auth != "oauth2" or target.provider is None:
        raise ConfigError(f'{target.label} does not sign in with OAuth2 (auth = "{target.auth}")')
    removed = []
    with stores(target) as opened:
        for store in opened:
            if store.delete(target.key):
                removed.append(store.where)
    return removed


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).astimezone().isoformat(timespec="seconds")


def token_state(rec: TokenRecord | None, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    if rec is None:
        return {"state": "needs login"}
    out: dict[str, Any] = {"grant": rec.grant, "obtained": _iso(rec.obtained_at)}
    if rec.expires_at > now:
        out.update(state="valid", valid_until=_iso(rec.expires_at))
    elif rec.refresh_token:
        out.update(state="expired, refreshes on next use", valid_until=_iso(rec.expires_at))
    else:
        out.update(state="needs login", valid_until=_iso(rec.expires_at))
    out["refresh_token"] = bool(rec.refresh_token)
    return out


def describe(target: Target, *, read_tokens: bool = True) -> dict[str, Any]:
    """One row of `mailvault accounts`: server, auth method, token state (never a secret)."""
    ep, p = target.endpoint, target.provider
    row: dict[str, Any] = {
        "account": target.label,
        "address": ep.address,
        "user": ep.user,
        "protocol": ep.protocol,
        "scheme": ep.scheme,
        "host": ep.host,
        "port": ep.port,
        "tls": "implicit" if ep.implicit_tls else "starttls",
        "auth": target.auth,
        "provider": p.name if p else (ep.provider or None),
    }
    if p is not None:
        row.update(
            provider_title=p.title,
            provider_auth=list(p.auth),
            sasl=p.sasl or "auto",
            client_id=p.client_id or None,
            scopes=list(p.scopes),
            max_connections=p.max_connections or None,
            upload_mb_per_day=p.upload_mb_per_day or None,
            hints=list(p.hints),
        )
    if target.auth != "oauth2" or p is None:
        row["token"] = None
        return row
    if p.grant != "authorization_code":
        row["token"] = {"state": f"app-only ({p.grant}); no sign-in needed"}
        return row
    row["login"] = target.login
    row["token_store"] = target.store_kind
    if not read_tokens:
        row["token"] = {"state": "not read"}
        return row
    try:
        with stores(target) as opened:
            states = []
            for store in opened:
                states.append({"store": store.where, **token_state(store.load(target.key))})
        row["token"] = states[0] if len(states) == 1 else {"state": states[0]["state"], "stores": states}
    except MailvaultError as exc:
        row["token"] = {"state": f"unknown ({exc})"}
    return row
