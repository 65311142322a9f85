"""The one OAuth 2.0 client (Authlib over requests), set up from a :class:`Provider`.

Everything that talks to an authorization server goes through here: the authorization-code
exchange, the device grant, refresh, client credentials (secret or certificate) and the JWT bearer
grant of Google service accounts. Secrets (client secret, tokens, private keys) never appear in an
error message: errors name the endpoint and the OAuth ``error`` code only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mailvault.errors import ConfigError, ConnectError, LoginRequired, MailvaultError
from mailvault.net.providers import Provider

TIMEOUT = 30.0
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


class OAuthFailure(MailvaultError):
    """An authorization server answered with an OAuth error (``error`` holds its code)."""

    def __init__(self, message: str, error: str = "", description: str = "") -> None:
        super().__init__(message)
        self.error = error
        self.description = description


def check_endpoint(url: str, what: str) -> str:
    """Endpoints must be https:// (plain http only on loopback, for a local test IdP)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS:
        return url
    raise ConfigError(f"{what} {url!r} must be an https:// URL")


def client_secret(provider: Provider) -> str | None:
    """The client secret, from the environment variable the config names (never from the file)."""
    if not provider.client_secret_env:
        return None
    value = os.environ.get(provider.client_secret_env)
    if not value:
        raise ConfigError(
            f"provider {provider.name}: environment variable {provider.client_secret_env} "
            "(the client secret) is not set"
        )
    return value


def require_client(provider: Provider) -> str:
    if not provider.client_id:
        raise ConfigError(
            f"provider {provider.name}: no client_id; register your own OAuth client "
            f"(docs/providers/) and set client_id in [oauth2_providers.{provider.name}] or pass --client-id"
        )
    if not provider.token_url:
        raise ConfigError(f"provider {provider.name} has no token_url (it does not offer OAuth2 sign-in)")
    return provider.client_id


def session(provider: Provider, *, redirect_uri: str | None = None, scopes: list[str] | None = None) -> Any:
    """An Authlib ``OAuth2Session`` for this provider (public client unless a secret is configured)."""
    from authlib.integrations.requests_client import OAuth2Session

    client_id = require_client(provider)
    check_endpoint(provider.token_endpoint, "token_url")
    secret = client_secret(provider)
    sess = OAuth2Session(
        client_id,
        secret,
        token_endpoint_auth_method="client_secret_post" if secret else "none",
        scope=" ".join(scopes if scopes is not None else provider.scopes) or None,
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        token_endpoint=provider.token_endpoint,
    )
    sess.trust_env = True  # proxies from the environment, as curl would
    return sess


def failure(provider: Provider, exc: BaseException, doing: str) -> MailvaultError:
    """A one-line error for a failed token request (never includes a token or secret)."""
    import requests
    from authlib.common.errors import AuthlibBaseError

    if isinstance(exc, AuthlibBaseError):  # an OAuth error answer (any Authlib client)
        error = str(exc.error or "")
        desc = str(exc.description or "").splitlines()[0] if exc.description else ""
        shown = f"{error}" + (f": {desc[:200]}" if desc else "")
        return OAuthFailure(f"{provider.name}: {doing} refused ({shown})", error, desc)
    if isinstance(exc, requests.RequestException):
        host = urlsplit(provider.token_endpoint).netloc
        return ConnectError(f"{provider.name}: {doing}: cannot reach {host} ({type(exc).__name__})")
    if isinstance(exc, MailvaultError):
        return exc
    if isinstance(exc, ValueError | KeyError):  # a non-JSON or malformed answer
        return OAuthFailure(f"{provider.name}: {doing}: the server's answer is not an OAuth token response")
    raise exc


def refresh(provider: Provider, refresh_token: str, scopes: list[str]) -> dict[str, Any]:
    """A refresh-token grant; returns the token response (may hold a rotated refresh token)."""
    sess = session(provider, scopes=scopes)
    try:
        return dict(sess.refresh_token(provider.token_endpoint, refresh_token=refresh_token, timeout=TIMEOUT))
    except Exception as exc:
        raise failure(provider, exc, "token refresh") from None
    finally:
        sess.close()


def _x5t(cert_pem: bytes) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    cert = x509.load_pem_x509_certificate(cert_pem)
    digest = hashlib.sha1(cert.public_bytes(Encoding.DER)).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def app_token(provider: Provider, user: str) -> dict[str, Any]:
    """App-only access: Microsoft client credentials (secret or certificate) or a Google service
    account with domain-wide delegation (JWT bearer grant, impersonating ``user``)."""
    scopes = list(provider.app_scopes or provider.scopes)
    if provider.grant == "jwt_bearer":
        return _service_account_token(provider, user, scopes)
    from authlib.integrations.requests_client import OAuth2Session
    from authlib.oauth2.rfc7523 import PrivateKeyJWT

    client_id = require_client(provider)
    check_endpoint(provider.token_endpoint, "token_url")
    if provider.client_certificate_file:
        try:
            pem = Path(provider.client_certificate_file).read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"provider {provider.name}: cannot read client_certificate_file: {exc.strerror}"
            ) from None
        try:
            headers = {"x5t": _x5t(pem)}
        except ValueError:
            raise ConfigError(
                f"provider {provider.name}: client_certificate_file holds no PEM certificate"
            ) from None
        method = "private_key_jwt"
        sess = OAuth2Session(
            client_id, pem.decode(), token_endpoint_auth_method=method, scope=" ".join(scopes)
        )
        sess.register_client_auth_method(PrivateKeyJWT(provider.token_endpoint, headers=headers))
    else:
        secret = client_secret(provider)
        if secret is None:
            raise ConfigError(
                f"provider {provider.name}: client credentials need client_secret_env "
                "or client_certificate_file"
            )
        method = "client_secret_post"
        sess = OAuth2Session(client_id, secret, token_endpoint_auth_method=method, scope=" ".join(scopes))
    try:
        return dict(
            sess.fetch_token(provider.token_endpoint, grant_type="client_credentials", timeout=TIMEOUT)
        )
    except Exception as exc:
        raise failure(provider, exc, "client credentials grant") from None
    finally:
        sess.close()


def _service_account_token(provider: Provider, user: str, scopes: list[str]) -> dict[str, Any]:
    from authlib.integrations.requests_client import AssertionSession

    if not provider.service_account_file:
        raise ConfigError(f'provider {provider.name}: grant = "jwt_bearer" needs service_account_file')
    try:
        info = json.loads(Path(provider.service_account_file).read_text(encoding="utf-8"))
        email, key = info["client_email"], info["private_key"]
        token_uri = info.get("token_uri") or provider.token_endpoint
    except OSError as exc:
        raise ConfigError(
            f"provider {provider.name}: cannot read service_account_file: {exc.strerror}"
        ) from None
    except (ValueError, KeyError, TypeError):
        raise ConfigError(
            f"provider {provider.name}: service_account_file is not a service account JSON key"
        ) from None
    check_endpoint(token_uri, "token_uri")
    sess = AssertionSession(
        token_endpoint=token_uri,
        issuer=email,
        subject=user,  # domain-wide delegation: act as this user
        audience=token_uri,
        claims={"scope": " ".join(scopes)},
        key=key,
        header={"alg": "RS256"},
    )
    try:
        return dict(sess.refresh_token())
    except Exception as exc:
        raise failure(provider, exc, "service account grant") from None
    finally:
        sess.close()


def expires_at(token: dict[str, Any], now: float | None = None) -> float:
    now = time.time() if now is None else now
    if token.get("expires_at"):
        return float(token["expires_at"])
    return now + float(token.get("expires_in") or 3600)


def sign_in_again(provider: Provider, login_command: str, why: str = "") -> LoginRequired:
    hint = f" ({provider.invalid_grant_hint})" if provider.invalid_grant_hint else ""
    return LoginRequired(f"{why + ': ' if why else ''}sign in again with `{login_command}`{hint}")
