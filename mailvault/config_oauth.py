"""The OAuth2 part of the config file: ``[oauth2_providers.NAME]`` tables and an account's ``auth``,
``oauth2_provider`` and ``token_store`` (see docs/AUTH.md). Errors name file, line and key, as in
:mod:`mailvault.config`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mailvault.errors import ConfigError
from mailvault.net.providers import Provider, registry
from mailvault.net.session import Endpoint

if TYPE_CHECKING:
    from mailvault.config import _Checker

AUTH_KINDS = ("password", "oauth2")
TOKEN_STORES = ("vault", "keyring")


def provider_tables(c: _Checker, doc: dict[str, Any]) -> dict[str, Provider]:
    """Presets with the file's [oauth2_providers.NAME] tables applied; a bad key names its line."""
    overrides: dict[str, dict[str, Any]] = {}
    for name, t in c.table(doc, ("oauth2_providers",)).items():
        where = ("oauth2_providers", name)
        if not isinstance(t, dict):
            raise c.fail(("oauth2_providers",), name, "expected a table", t)
        if "client_secret" in t:
            raise c.fail(where, "client_secret", "secrets do not belong in the config; use client_secret_env")
        for key, value in t.items():  # one key at a time, so an error names its line
            try:
                registry({name: {key: value, **({"preset": t["preset"]} if "preset" in t else {})}})
            except ConfigError as exc:
                raise c.fail(where, key, str(exc).split(": ", 1)[-1]) from None
        overrides[name] = t
    return registry(overrides)


def account_auth(
    c: _Checker, t: dict[str, Any], where: tuple[str, ...], endpoint: Endpoint, providers: dict[str, Provider]
) -> tuple[str, str | None, str]:
    """(auth, oauth2_provider, token_store) of an account: ``auth = "oauth2"`` needs a provider that
    signs in with OAuth2 (named by ``oauth2_provider`` or by a ``PROVIDER:ADDRESS`` url)."""
    secrets = [k for k in ("password_env", "password_command", "oauth2_token_command") if k in t]
    auth = c.string(t, where, "auth")
    if auth is not None and auth not in AUTH_KINDS:
        raise c.fail(where, "auth", f"expected one of {', '.join(AUTH_KINDS)}", auth)
    name = c.string(t, where, "oauth2_provider") or endpoint.provider or None
    if auth is None:
        preset = providers.get(endpoint.provider) if endpoint.provider else None
        if "oauth2_provider" in t or (preset is not None and preset.auth[:1] == ("oauth2",) and not secrets):
            auth = "oauth2"
        else:
            auth = "password"
    store = c.string(t, where, "token_store") or "vault"
    if store not in TOKEN_STORES:
        raise c.fail(where, "token_store", f"expected one of {', '.join(TOKEN_STORES)}", store)
    if auth == "oauth2":
        if secrets:
            raise c.fail(where, secrets[0], 'not with auth = "oauth2" (mailvault signs in itself)')
        if name is None:
            raise c.fail(
                where,
                "auth",
                'auth = "oauth2" needs oauth2_provider (a preset or an [oauth2_providers] table)',
            )
        if name not in providers:
            raise c.fail(
                where, "oauth2_provider", f"no such provider (known: {', '.join(sorted(providers))})", name
            )
        if not providers[name].token_url:
            raise c.fail(where, "oauth2_provider", "this provider has no OAuth2 sign-in (token_url)", name)
        return auth, name, store
    if "oauth2_provider" in t:
        raise c.fail(where, "oauth2_provider", 'only with auth = "oauth2"')
    return auth, None, store
