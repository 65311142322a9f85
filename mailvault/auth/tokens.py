"""Access tokens for connections: read the stored sign-in, refresh it before it expires.

A :class:`TokenSource` is what :class:`~mailvault.net.session.Credentials` calls on every
(re)connect. It refreshes the access token when less than a margin of its lifetime is left, saves
a rotated refresh token at once (atomically: a new store generation), and asks for a fresh token
when the server refuses one it thought valid. ``invalid_grant`` (refresh token revoked, expired,
or the app's consent withdrawn) becomes one :class:`~mailvault.errors.LoginRequired` line naming
the `mailvault login` command; nothing else is changed.

Concurrency: the runner's threads share one source (a lock); other machines sharing the vault may
refresh the same sign-in at the same time: before refreshing, and after an ``invalid_grant``, the
source reads the store again and takes a newer generation another machine saved.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

from mailvault.auth import oauth
from mailvault.auth.store import TokenRecord, TokenStore, token_key
from mailvault.errors import LoginRequired
from mailvault.net.providers import Provider
from mailvault.net.session import Credentials

#: Refresh when less than this share of the token's lifetime is left (and at most 5 minutes early).
MARGIN_SHARE = 0.2
MARGIN_MAX = 300.0


def margin(rec: TokenRecord) -> float:
    lifetime = rec.expires_at - (rec.refreshed_at or rec.obtained_at)
    return min(MARGIN_MAX, max(1.0, lifetime * MARGIN_SHARE))


def record_from_token(
    provider: Provider, user: str, token: dict[str, Any], grant: str, scopes: list[str] | None = None
) -> TokenRecord:
    now = time.time()
    access = str(token.get("access_token") or "")
    if not access:
        raise oauth.OAuthFailure(f"{provider.name}: the token response holds no access_token")
    return TokenRecord(
        key=token_key(provider.name, user),
        provider=provider.name,
        user=user,
        token_url=provider.token_endpoint,
        client_id=provider.client_id,
        scopes=list(scopes if scopes is not None else provider.scopes),
        grant=grant,
        access_token=access,
        refresh_token=str(token.get("refresh_token") or ""),
        expires_at=oauth.expires_at(token, now),
        obtained_at=now,
    )


class TokenSource:
    """Gives a valid access token for one sign-in (``provider:user``), refreshing it as needed."""

    def __init__(self, store: TokenStore | None, provider: Provider, user: str, login_command: str) -> None:
        self.store = store
        self.provider = provider
        self.user = user
        self.key = token_key(provider.name, user)
        self.login_command = login_command
        self._lock = threading.Lock()
        self._record: TokenRecord | None = None

    @property
    def app_only(self) -> bool:
        return self.provider.grant in ("client_credentials", "jwt_bearer")

    def __call__(self) -> bytes:
        with self._lock:
            return self._token(force=False).encode()

    def force_refresh(self) -> bytes:
        """The server refused our token: get a new one now (or fail with "sign in again")."""
        with self._lock:
            return self._token(force=True).encode()

    def _token(self, *, force: bool) -> str:
        if self.app_only:
            return self._app_token(force)
        rec = self._record
        if rec is None or force or rec.valid_for() < margin(rec):
            assert self.store is not None
            stored = self.store.load(self.key)
            if stored is None:
                raise oauth.sign_in_again(
                    self.provider,
                    self.login_command,
                    f"no OAuth2 sign-in for {self.user} in {self.store.where}",
                )
            newer = rec is not None and stored.generation > rec.generation
            if rec is None or newer:
                rec = stored  # another process or machine may have refreshed already
            if (force and not newer) or rec.valid_for() < margin(rec):
                rec = self._refresh(rec)
        self._record = rec
        return rec.access_token

    def _provider_for(self, rec: TokenRecord) -> Provider:
        if self.provider.client_id or not rec.client_id:
            return self.provider
        return dataclasses.replace(self.provider, client_id=rec.client_id)

    def _refresh(self, rec: TokenRecord, *, again: bool = True) -> TokenRecord:
        assert self.store is not None
        provider = self._provider_for(rec)
        if not rec.refresh_token:
            raise oauth.sign_in_again(
                provider,
                self.login_command,
                f"the OAuth2 token of {self.user} expired and cannot be refreshed",
            )
        try:
            token = oauth.refresh(provider, rec.refresh_token, rec.scopes)
        except oauth.OAuthFailure as exc:
            if exc.error != "invalid_grant":
                raise
            newer = self.store.load(self.key)
            if again and newer is not None and newer.generation > rec.generation:
                # Another machine refreshed (and rotated the refresh token) first: take theirs.
                if newer.valid_for() >= margin(newer):
                    return newer
                return self._refresh(newer, again=False)
            raise oauth.sign_in_again(
                provider,
                self.login_command,
                f"the OAuth2 refresh token of {self.user} was refused (invalid_grant)",
            ) from None
        now = time.time()
        new = dataclasses.replace(
            rec,
            access_token=str(token.get("access_token") or ""),
            refresh_token=str(token.get("refresh_token") or rec.refresh_token),  # rotated, or kept
            expires_at=oauth.expires_at(token, now),
            refreshed_at=now,
        )
        if not new.access_token:
            raise oauth.OAuthFailure(f"{provider.name}: the refresh answer holds no access_token")
        return self.store.save(new)

    def _app_token(self, force: bool) -> str:
        rec = self._record
        if rec is None or force or rec.valid_for() < margin(rec):
            token = oauth.app_token(self.provider, self.user)
            rec = record_from_token(
                self.provider, self.user, token, self.provider.grant, list(self.provider.app_scopes)
            )
            self._record = rec
        return rec.access_token


def oauth2_credentials(source: TokenSource) -> Credentials:
    """Credentials that log in with ``source``'s tokens (XOAUTH2 or OAUTHBEARER)."""
    return Credentials(oauth2_token=source, oauth2_refresh=source.force_refresh, sasl=source.provider.sasl)


__all__ = ["LoginRequired", "TokenSource", "margin", "oauth2_credentials", "record_from_token"]
