"""A test OAuth 2.0 identity provider on loopback, sharing its tokens with the introspection endpoint.

:class:`TestIdP` adds authorization-server endpoints to an
:class:`~tests.servers.oauth2.IntrospectionServer` (same HTTP server, same token table), so the
access tokens it issues are exactly the ones Dovecot's oauth2 passdb accepts:

* ``GET /authorize`` — authorization code grant. Auto-approves (as ``login_hint`` or
  :attr:`default_user`) and redirects to the loopback ``redirect_uri`` with ``code`` and ``state``.
  PKCE is enforced: a ``code_challenge`` with method ``S256`` is required.
* ``POST /token`` — ``authorization_code`` (checks client, redirect URI and the PKCE verifier),
  ``refresh_token`` (rotates: the old refresh token dies), ``urn:ietf:params:oauth:grant-type:device_code``
  (``authorization_pending`` until approved, ``slow_down`` when polled too fast) and
  ``client_credentials`` (confidential clients; tokens for :attr:`app_user`).
* ``POST /device`` — device authorization (RFC 8628); ``GET /device?user_code=X`` approves it.
* ``POST /introspect`` — RFC 7662, inherited; tokens past their lifetime are inactive.

Faults to inject: :attr:`access_ttl` (seconds an access token lives), :meth:`revoke_refresh_tokens`
(the next refresh gets ``invalid_grant``), :attr:`consent_error` (the authorize step answers
``consent_required``, as Microsoft does for "Need admin approval"), :attr:`slow_down_once`.
Everything asked is recorded (:attr:`grants`, :attr:`pkce_methods`, :attr:`client_secrets_seen`).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


class TestIdP:
    """Authorization-server state and logic; HTTP is served by the introspection server."""

    __test__ = False  # not a pytest class

    def __init__(self, tokens: Any) -> None:
        self.tokens = tokens  # the IntrospectionServer: issue()/revoke() of access tokens
        self._lock = threading.Lock()
        self.clients: dict[str, str | None] = {}  # client_id -> secret (None: public client)
        self.client_keys: dict[str, bytes] = {}  # client_id -> PEM public key (private_key_jwt)
        self.service_accounts: dict[str, bytes] = {}  # issuer e-mail -> PEM public key (jwt-bearer)
        self.assertion_headers: list[dict[str, Any]] = []
        self.default_user = ""
        self.app_user = ""
        self.access_ttl = 3600.0
        self.rotate = True
        self.device_interval = 1
        self.slow_down_once = False
        self.consent_error = False
        self._codes: dict[str, dict[str, Any]] = {}
        self._refresh: dict[str, tuple[str, str, str]] = {}  # refresh token -> (client, user, scope)
        self._devices: dict[str, dict[str, Any]] = {}  # device_code -> state
        self._expiry: dict[str, float] = {}  # access token -> expiry (monotonic-free: time.time)
        self.grants: list[str] = []
        self.pkce_methods: list[str] = []
        self.client_secrets_seen: list[str] = []

    # ------------------------------------------------------------- test controls
    def register_client(
        self, client_id: str, secret: str | None = None, public_key: bytes | None = None
    ) -> None:
        with self._lock:
            self.clients[client_id] = secret
            if public_key is not None:
                self.client_keys[client_id] = public_key

    def register_service_account(self, email: str, public_key: bytes) -> None:
        with self._lock:
            self.service_accounts[email] = public_key

    def _verify_jwt(self, assertion: str, key: bytes) -> dict[str, Any] | None:
        """Claims of a JWT signed with ``key`` and meant for our token endpoint, else None."""
        from authlib.jose import JsonWebToken
        from authlib.jose.errors import JoseError

        try:
            claims = JsonWebToken(["RS256"]).decode(assertion, key)
            claims.validate()
        except (JoseError, ValueError):
            return None
        if claims.get("aud") not in (self.token_url, [self.token_url]):
            return None
        with self._lock:
            self.assertion_headers.append(dict(claims.header))
        return dict(claims)

    @property
    def token_url(self) -> str:
        return self.tokens.url.rsplit("/", 1)[0] + "/token"

    def revoke_refresh_tokens(self, user: str | None = None) -> int:
        with self._lock:
            dead = [t for t, (_, u, _) in self._refresh.items() if user is None or u == user]
            for t in dead:
                del self._refresh[t]
        return len(dead)

    def refresh_tokens_of(self, user: str) -> list[str]:
        with self._lock:
            return [t for t, (_, u, _) in self._refresh.items() if u == user]

    def expired(self, token: str) -> bool:
        with self._lock:
            exp = self._expiry.get(token)
        return exp is not None and time.time() >= exp

    def count(self, grant: str) -> int:
        with self._lock:
            return self.grants.count(grant)

    # ------------------------------------------------------------- endpoints
    def authorize(self, q: dict[str, str]) -> tuple[int, dict[str, str], dict[str, Any] | None]:
        """(status, headers, json body) for GET /authorize."""
        client, redirect = q.get("client_id", ""), q.get("redirect_uri", "")
        parts = urlsplit(redirect)
        if client not in self.clients:
            return 400, {}, {"error": "invalid_client"}
        if parts.scheme != "http" or parts.hostname != "127.0.0.1":
            return 400, {}, {"error": "invalid_request", "error_description": "redirect_uri must be loopback"}

        def back(**params: str) -> tuple[int, dict[str, str], None]:
            if "state" in q:
                params["state"] = q["state"]
            return 302, {"Location": f"{redirect}?{urlencode(params)}"}, None

        method = q.get("code_challenge_method", "")
        with self._lock:
            self.pkce_methods.append(method)
        if q.get("response_type") != "code":
            return back(error="unsupported_response_type")
        if not q.get("code_challenge") or method != "S256":
            return back(error="invalid_request", error_description="PKCE with S256 is required")
        if self.consent_error:
            return back(
                error="consent_required",
                error_description="AADSTS65001: The user or administrator has not consented (admin approval)",
            )
        user = q.get("login_hint") or self.default_user
        code = secrets.token_urlsafe(16)
        with self._lock:
            self._codes[code] = {
                "client": client,
                "redirect": redirect,
                "challenge": q["code_challenge"],
                "user": user,
                "scope": q.get("scope", ""),
            }
        return back(code=code)

    def device(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if form.get("client_id") not in self.clients:
            return 400, {"error": "invalid_client"}
        code, user_code = secrets.token_urlsafe(24), secrets.token_hex(4).upper()
        with self._lock:
            self._devices[code] = {
                "client": form["client_id"],
                "user_code": user_code,
                "user": None,
                "scope": form.get("scope", ""),
                "last_poll": 0.0,
                "interval": self.device_interval,
            }
        base = self.tokens.url.rsplit("/", 1)[0]
        return 200, {
            "device_code": code,
            "user_code": user_code,
            "verification_uri": f"{base}/device",
            "verification_uri_complete": f"{base}/device?user_code={user_code}",
            "expires_in": 300,
            "interval": self.device_interval,
        }

    def approve_device(self, user_code: str, user: str | None = None) -> bool:
        with self._lock:
            for d in self._devices.values():
                if d["user_code"] == user_code and d["user"] is None:
                    d["user"] = user or self.default_user
                    return True
        return False

    def token(self, form: dict[str, str], basic: tuple[str, str] | None) -> tuple[int, dict[str, Any]]:
        grant = form.get("grant_type", "")
        client = form.get("client_id") or (basic[0] if basic else "")
        secret = form.get("client_secret") or (basic[1] if basic else None)
        with self._lock:
            self.grants.append(grant)
            if secret:
                self.client_secrets_seen.append(secret)
        if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return self._jwt_bearer_grant(form)
        if form.get("client_assertion_type") == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            if not client:  # RFC 7523: the client is the assertion's issuer
                client = str(_unverified_claims(form.get("client_assertion", "")).get("iss", ""))
            key = self.client_keys.get(client)
            claims = self._verify_jwt(form.get("client_assertion", ""), key) if key else None
            if claims is None or claims.get("iss") != client or claims.get("sub") != client:
                return 401, {"error": "invalid_client", "error_description": "bad client assertion"}
            if grant != "client_credentials":
                return 400, {"error": "unsupported_grant_type"}
            return 200, self._issue(self.app_user, client, form.get("scope", ""), refresh=False)
        if client not in self.clients:
            return 401, {"error": "invalid_client"}
        if self.clients[client] is not None and secret != self.clients[client]:
            return 401, {"error": "invalid_client", "error_description": "bad client secret"}
        if grant == "authorization_code":
            return self._code_grant(form, client)
        if grant == "refresh_token":
            return self._refresh_grant(form, client)
        if grant == DEVICE_GRANT:
            return self._device_grant(form, client)
        if grant == "client_credentials":
            if self.clients[client] is None:
                return 400, {"error": "unauthorized_client"}
            return 200, self._issue(self.app_user, client, form.get("scope", ""), refresh=False)
        return 400, {"error": "unsupported_grant_type"}

    def _jwt_bearer_grant(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """RFC 7523 authorization grant, as a Google service account with domain-wide delegation."""
        assertion = form.get("assertion", "")
        unverified = _unverified_claims(assertion)
        issuer = unverified.get("iss", "")
        key = self.service_accounts.get(issuer)
        claims = self._verify_jwt(assertion, key) if key else None
        if claims is None or not claims.get("sub"):
            return 400, {"error": "invalid_grant", "error_description": "bad assertion"}
        return 200, self._issue(claims["sub"], issuer, str(claims.get("scope", "")), refresh=False)

    def _code_grant(self, form: dict[str, str], client: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            entry = self._codes.pop(form.get("code", ""), None)  # one use only
        if entry is None or entry["client"] != client or entry["redirect"] != form.get("redirect_uri"):
            return 400, {"error": "invalid_grant", "error_description": "unknown code or redirect_uri"}
        verifier = form.get("code_verifier", "")
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if not verifier or digest != entry["challenge"]:
            return 400, {"error": "invalid_grant", "error_description": "PKCE verification failed"}
        return 200, self._issue(entry["user"], client, entry["scope"])

    def _refresh_grant(self, form: dict[str, str], client: str) -> tuple[int, dict[str, Any]]:
        old = form.get("refresh_token", "")
        with self._lock:
            entry = self._refresh.get(old)
            if entry is None or entry[0] != client:
                return 400, {
                    "error": "invalid_grant",
                    "error_description": "refresh token revoked or unknown",
                }
            if self.rotate:
                del self._refresh[old]
        out = self._issue(entry[1], client, entry[2], refresh=self.rotate)
        if not self.rotate:
            out["refresh_token"] = old
        return 200, out

    def _device_grant(self, form: dict[str, str], client: str) -> tuple[int, dict[str, Any]]:
        now = time.time()
        with self._lock:
            d = self._devices.get(form.get("device_code", ""))
            if d is None or d["client"] != client:
                return 400, {"error": "invalid_grant"}
            too_fast = now - d["last_poll"] < d["interval"] - 0.05
            d["last_poll"] = now
            if self.slow_down_once or too_fast:
                self.slow_down_once = False
                d["interval"] += 5
                return 400, {"error": "slow_down"}
            if d["user"] is None:
                return 400, {"error": "authorization_pending"}
            del self._devices[form["device_code"]]
        return 200, self._issue(d["user"], client, d["scope"])

    def _issue(self, user: str, client: str, scope: str, *, refresh: bool = True) -> dict[str, Any]:
        access = self.tokens.issue(user)
        ttl = self.access_ttl
        with self._lock:
            self._expiry[access] = time.time() + ttl
        out: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": max(1, round(ttl)),
            "scope": scope,
        }
        if refresh:
            rt = f"mvrt-{secrets.token_urlsafe(24)}"
            with self._lock:
                self._refresh[rt] = (client, user, scope)
            out["refresh_token"] = rt
        return out


def _unverified_claims(jwt: str) -> dict[str, Any]:
    """The payload of a JWT, not yet verified (to find out whose key verifies it)."""
    import json

    try:
        payload = jwt.split(".")[1]
        return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))
    except (IndexError, ValueError, TypeError):
        return {}
