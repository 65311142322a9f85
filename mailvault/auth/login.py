"""Interactive sign-in: authorization code + PKCE through a loopback listener, or the device grant.

**Authorization code** (RFC 6749 + PKCE S256, RFC 7636; native apps, RFC 8252): a one-shot HTTP
listener on ``127.0.0.1`` (an ephemeral port) is the redirect URI. The authorization URL carries a
random ``state`` and the S256 code challenge; the URL is opened in a browser where one exists and
always printed (``emit``) on a line of its own. The redirect's ``state`` must match, or the sign-in
is refused and nothing is saved; the code is exchanged with the verifier.

**Device grant** (RFC 8628): for machines without a browser where the provider allows it
(Microsoft does; Google does not for mail scopes). Polls honouring ``interval``,
``authorization_pending`` and ``slow_down`` (+5 s).
"""

from __future__ import annotations

import contextlib
import html
import os
import secrets
import sys
import threading
import time
import webbrowser
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from mailvault.auth import oauth
from mailvault.errors import AuthError, ConfigError
from mailvault.net.providers import Provider

LOGIN_TIMEOUT = 300.0
CONSENT_MARKERS = ("aadsts65001", "aadsts90094", "aadsts90095", "admin approval", "admin consent")

Emit = Callable[[str], None]


class _Listener(HTTPServer):
    result: dict[str, str] | None = None
    expected_state = ""
    done: threading.Event


class _Handler(BaseHTTPRequestHandler):
    server: _Listener

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if parts.path != "/" or not ({"code", "error"} & set(query)):
            self._page(404, "Not the sign-in redirect.")
            return
        if self.server.result is not None:
            self._page(409, "This sign-in is already finished.")
            return
        if "error" in query:
            self._page(400, "Sign-in failed: " + query["error"] + ". You can close this window.")
        elif not secrets.compare_digest(query.get("state", ""), self.server.expected_state):
            query = {"error": "state_mismatch"}
            self._page(400, "Sign-in refused: the answer does not belong to this sign-in (state mismatch).")
        else:
            self._page(200, "mailvault is signed in. You can close this window.")
        self.server.result = query
        self.server.done.set()

    def _page(self, status: int, text: str) -> None:
        body = f"<!doctype html><title>mailvault</title><p>{html.escape(text)}</p>".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # the query holds the code: no log
        pass


def graphical_session() -> bool:
    """Whether a browser can be shown here (on Linux/BSD: an X11 or Wayland display). Without one,
    Python's webbrowser may start a text-mode browser in this terminal: better only print the URL."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _open_quietly(url: str) -> None:
    with contextlib.suppress(webbrowser.Error, OSError):
        webbrowser.open(url, new=1)


def _consent_message(provider: Provider, error: str, description: str) -> str:
    text = f"{error} {description}".lower()
    if provider.admin_consent and (error == "consent_required" or any(m in text for m in CONSENT_MARKERS)):
        return (
            f"{provider.name}: an administrator of the organisation must approve this app first; "
            f"send them this admin-consent URL: {provider.admin_consent}"
        )
    return ""


def code_flow(
    provider: Provider,
    user: str,
    *,
    emit: Emit,
    open_browser: bool = True,
    timeout: float = LOGIN_TIMEOUT,
) -> dict[str, Any]:
    """Sign ``user`` in through the browser; returns the token response."""
    oauth.require_client(provider)
    authorize_url = oauth.check_endpoint(provider.authorize_endpoint, "authorize_url")
    listener = _Listener(("127.0.0.1", 0), _Handler)
    listener.done = threading.Event()
    listener.timeout = 0.2
    redirect_uri = f"http://127.0.0.1:{listener.server_address[1]}/"
    sess = oauth.session(provider, redirect_uri=redirect_uri)
    thread = threading.Thread(target=listener.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        verifier = secrets.token_urlsafe(64)  # 86 characters, RFC 7636 allows 43-128
        state = secrets.token_urlsafe(24)
        listener.expected_state = state
        extra = dict(provider.auth_params)
        if user and "login_hint" not in extra:
            extra["login_hint"] = user
        url, _ = sess.create_authorization_url(authorize_url, state=state, code_verifier=verifier, **extra)
        emit(f"Sign in as {user} with {provider.title or provider.name}: open this URL in a browser")
        emit(url)
        if open_browser and graphical_session():
            # In a thread: a browser launcher may wait for the browser to exit.
            threading.Thread(target=_open_quietly, args=(url,), daemon=True).start()
        if not listener.done.wait(timeout):
            raise AuthError(
                f"{provider.name}: no answer from the browser within {int(timeout)} s; nothing saved"
            )
        result = listener.result or {}
        if result.get("error") == "state_mismatch":
            raise AuthError(
                f"{provider.name}: sign-in refused: the redirect's state does not match this sign-in "
                "(a forged or stale answer); nothing saved"
            )
        if "error" in result:
            consent = _consent_message(provider, result["error"], result.get("error_description", ""))
            if consent:
                emit(provider.admin_consent)
                raise AuthError(consent)
            desc = (
                result.get("error_description", "").splitlines()[0][:200]
                if result.get("error_description")
                else ""
            )
            raise AuthError(
                f"{provider.name}: sign-in failed: {result['error']}" + (f" ({desc})" if desc else "")
            )
        response = redirect_uri + "?" + "&".join(f"{k}={_q(v)}" for k, v in result.items())
        try:
            token = sess.fetch_token(
                provider.token_endpoint,
                authorization_response=response,
                state=state,
                code_verifier=verifier,
                timeout=oauth.TIMEOUT,
            )
        except Exception as exc:
            err = oauth.failure(provider, exc, "code exchange")
            if isinstance(err, oauth.OAuthFailure):
                consent = _consent_message(provider, err.error, err.description)
                if consent:
                    emit(provider.admin_consent)
                    raise AuthError(consent) from None
            raise err from None
        return dict(token)
    finally:
        listener.shutdown()
        listener.server_close()
        sess.close()


def _q(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def device_flow(
    provider: Provider,
    user: str,
    *,
    emit: Emit,
    timeout: float = LOGIN_TIMEOUT,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Sign in with the device grant (RFC 8628); returns the token response."""
    if not provider.device_grant or not provider.device_authorization_url:
        raise ConfigError(
            provider.device_grant_refusal
            or f"provider {provider.name} does not offer the device flow; sign in without --device"
        )
    oauth.require_client(provider)
    device_url = oauth.check_endpoint(provider.device_endpoint, "device_authorization_url")
    sess = oauth.session(provider)
    try:
        try:
            resp = sess.post(
                device_url,
                data={"client_id": provider.client_id, "scope": " ".join(provider.scopes)},
                timeout=oauth.TIMEOUT,
                withhold_token=True,
            )
            doc = resp.json()
        except Exception as exc:
            raise oauth.failure(provider, exc, "device authorization") from None
        if not isinstance(doc, dict) or "error" in doc or "device_code" not in doc:
            err = doc.get("error", f"HTTP {resp.status_code}") if isinstance(doc, dict) else "bad answer"
            raise oauth.OAuthFailure(f"{provider.name}: device authorization refused ({err})", str(err))
        interval = float(doc.get("interval") or 5)
        deadline = time.monotonic() + min(timeout, float(doc.get("expires_in") or timeout))
        where = doc.get("verification_uri") or doc.get("verification_url") or ""
        title = provider.title or provider.name
        emit(f"Sign in as {user} with {title}: open {where} and enter the code {doc.get('user_code', '')}")
        if doc.get("verification_uri_complete"):
            emit(str(doc["verification_uri_complete"]))
        while True:
            sleep(interval)
            if time.monotonic() > deadline:
                raise AuthError(
                    f"{provider.name}: the device code expired before the sign-in finished; nothing saved"
                )
            try:
                token = sess.fetch_token(
                    provider.token_endpoint,
                    grant_type=oauth.DEVICE_GRANT,
                    device_code=doc["device_code"],
                    timeout=oauth.TIMEOUT,
                )
                return dict(token)
            except Exception as exc:
                err = oauth.failure(provider, exc, "device sign-in")
                code = err.error if isinstance(err, oauth.OAuthFailure) else ""
                if code == "authorization_pending":
                    continue
                if code == "slow_down":
                    interval += 5  # RFC 8628 section 3.5
                    continue
                if isinstance(err, oauth.OAuthFailure):
                    consent = _consent_message(provider, err.error, err.description)
                    if consent:
                        emit(provider.admin_consent)
                        raise AuthError(consent) from None
                raise err from None
    finally:
        sess.close()
