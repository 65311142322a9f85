"""Credentials for configured accounts and provider addresses that sign in with built-in OAuth2.

The glue between the config (``auth = "oauth2"``, ``oauth2_provider``, ``token_store``), the token
stores and :class:`~mailvault.auth.tokens.TokenSource`. The runner, the CLI's backup/restore/migrate
and `mailvault accounts` all come through here.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path

from mailvault.auth.store import KeyringTokenStore, TokenStore, VaultTokenStore
from mailvault.auth.tokens import TokenSource, oauth2_credentials
from mailvault.config import AccountConfig, Config, JobConfig, default_config_path
from mailvault.errors import ConfigError
from mailvault.net.providers import Provider
from mailvault.net.session import Credentials, Endpoint
from mailvault.storage.base import Backend
from mailvault.vault.crypto import Sealer


def open_store(kind: str, backend: Backend | None, sealer: Sealer | None) -> TokenStore:
    if kind == "keyring":
        return KeyringTokenStore()
    if backend is None or sealer is None:
        raise ConfigError("tokens kept in the vault need a vault (--vault)")
    return VaultTokenStore(backend, sealer)


def login_command(account: str, config_path: Path | None = None) -> str:
    cmd = f"mailvault login {shlex.quote(account)}"
    if config_path is not None and config_path != default_config_path():
        cmd += f" --config {shlex.quote(str(config_path))}"
    return cmd


def account_provider(config: Config, acc: AccountConfig) -> Provider:
    if acc.oauth2_provider is None:
        raise ConfigError(f'account {acc.name} does not use auth = "oauth2"')
    return config.providers[acc.oauth2_provider]


def account_source(
    config: Config, acc: AccountConfig, backend: Backend | None, sealer: Sealer | None
) -> TokenSource:
    provider = account_provider(config, acc)
    store = None if provider.grant != "authorization_code" else open_store(acc.token_store, backend, sealer)
    return TokenSource(store, provider, acc.endpoint.user, login_command(acc.name, config.path))


def account_credentials(config: Config, acc: AccountConfig, backend: Backend, sealer: Sealer) -> Credentials:
    """Credentials of an ``auth = "oauth2"`` account, its tokens read from the job's vault."""
    return oauth2_credentials(account_source(config, acc, backend, sealer))


def signs_in_itself(ep: Endpoint, providers: Mapping[str, Provider]) -> Provider | None:
    """The provider of a ``PROVIDER:ADDRESS`` endpoint whose preferred login is OAuth2, else None."""
    provider = providers.get(ep.provider) if ep.provider else None
    if provider is not None and provider.auth[:1] == ("oauth2",) and provider.token_url:
        return provider
    return None


def address_credentials(
    ep: Endpoint, provider: Provider, backend: Backend, sealer: Sealer, config_path: Path | None = None
) -> Credentials:
    """Credentials of a ``PROVIDER:ADDRESS`` given on the command line: tokens from the vault."""
    spec = f"{ep.provider}{'+pop3' if ep.protocol == 'pop3' else ''}:{ep.user}"
    store = VaultTokenStore(backend, sealer)
    command = login_command(spec, config_path) + f" --vault {shlex.quote(backend.location)}"
    return oauth2_credentials(TokenSource(store, provider, ep.user, command))


def target_credentials(
    config: Config, job: JobConfig, target: Endpoint, backend: Backend, sealer: Sealer
) -> Credentials | None:
    """A job's ``PROVIDER:ADDRESS`` target that signs in with OAuth2 (no target secret configured):
    tokens from the job's vault. None: the job's target_password_* / target_oauth2_token_command apply."""
    provider = signs_in_itself(target, config.providers)
    if provider is None or job.target_password_env or job.target_password_command:
        return None
    if job.target_oauth2_token_command:
        return None
    return address_credentials(target, provider, backend, sealer, config.path)


class VaultTokens:
    """OAuth2 tokens of a ``PROVIDER:ADDRESS`` read from a vault that is opened later (the CLI's
    backup, restore and migrate parse the address before they open the vault)."""

    def __init__(self, ep: Endpoint, provider: Provider) -> None:
        self.ep = ep
        self.provider = provider
        self._creds: Credentials | None = None

    def bind(self, backend: Backend, sealer: Sealer) -> None:
        self._creds = address_credentials(self.ep, self.provider, backend, sealer)

    def _bound(self) -> Credentials:
        if self._creds is None:
            raise ConfigError(f"{self.ep.provider}:{self.ep.user}: no vault to read its OAuth2 tokens from")
        return self._creds

    def __call__(self) -> bytes:
        token = self._bound().oauth2_token
        assert token is not None
        return token()

    def refresh(self) -> bytes:
        refresh = self._bound().oauth2_refresh
        assert refresh is not None
        return refresh()

    def credentials(self) -> Credentials:
        return Credentials(oauth2_token=self, oauth2_refresh=self.refresh, sasl=self.provider.sasl)


def bind_vault(creds: Credentials, backend: Backend, sealer: Sealer) -> None:
    """Give :class:`VaultTokens` credentials the vault that now is open (no-op for other credentials)."""
    if isinstance(creds.oauth2_token, VaultTokens):
        creds.oauth2_token.bind(backend, sealer)
