"""Helpers of the built-in OAuth2 tests: a config around the test IdP, `mailvault login` driven like a
browser would (the test follows the printed URL; the IdP auto-approves)."""

from __future__ import annotations

import json
import secrets
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests import common
from tests.servers.dovecot import Dovecot
from tests.servers.idp import TestIdP


def toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    return json.dumps(str(value))


@dataclass
class Setup:
    """One test's world: the IdP client, a vault, a config with account ``alice``."""

    server: Dovecot
    idp: TestIdP
    user: str
    vault: Path
    config: Path
    client_id: str
    secret_env: str = ""
    secret: str = ""
    hook_file: Path | None = None
    extra_provider: dict[str, Any] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        assert self.server.oauth2 is not None
        return self.server.oauth2.base_url

    def env(self) -> dict[str, str]:
        return {**({self.secret_env: self.secret} if self.secret_env else {}), **self.extra_env}

    def mv(
        self, *args: str | Path, code: int | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return common.mv(*args, code=code, env=self.env(), timeout=timeout)


def write_config(
    s: Setup, *, scheme: str = "imaps", sasl: str = "", grant: str = "", hooks: bool = True
) -> Path:
    port = {"imaps": s.server.imaps_port, "pop3s": s.server.pop3s_port}[scheme]
    provider = {
        "title": "Test IdP",
        "authorize_url": f"{s.base}/authorize",
        "token_url": f"{s.base}/token",
        "device_authorization_url": f"{s.base}/device",
        "scopes": ["mail", "offline_access"],
        "app_scopes": ["mail/.default"],
        "client_id": s.client_id,
        "device_grant": True,
        "admin_consent_url": f"{s.base}/adminconsent?client_id={{client_id}}",
        **({"client_secret_env": s.secret_env} if s.secret_env else {}),
        **({"sasl": sasl} if sasl else {}),
        **({"grant": grant} if grant else {}),
        **s.extra_provider,
    }
    lines = [f"[vaults.main]\npath = {toml(s.vault)}\n", "[oauth2_providers.testidp]"]
    lines += [f"{k} = {toml(v)}" for k, v in provider.items()]
    lines += [
        "",
        "[accounts.alice]",
        f'url = "{scheme}://{s.user}@{s.server.host}:{port}"',
        'auth = "oauth2"',
        'oauth2_provider = "testidp"',
        f"ca_file = {toml(s.server.ca_file)}",
        "",
        "[jobs.nightly]",
        'kind = "backup"',
        'accounts = ["alice"]',
        'vault = "main"',
    ]
    if hooks and s.hook_file is not None:
        hook = f"sh -c 'env >> {s.hook_file}'"
        lines += [f"on_success = {toml(hook)}", f"on_failure = {toml(hook)}"]
    s.config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return s.config


class LoginProcess:
    """`mailvault login ...` in the background; its stderr read line by line."""

    def __init__(self, s: Setup, *args: str | Path) -> None:
        self.proc = subprocess.Popen(
            common.mv_argv("login", *args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=common.proc_env(s.env()),
        )
        self.err_lines: list[str] = []
        self._got = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._got:
                self.err_lines.append(line.rstrip("\n"))
                self._got.notify_all()
        with self._got:
            self._got.notify_all()

    def wait_line(self, match: Callable[[str], bool], timeout: float = 30) -> str:
        with self._got:
            ok = self._got.wait_for(
                lambda: any(match(x) for x in self.err_lines) or self.proc.poll() is not None, timeout
            )
            found = [x for x in self.err_lines if match(x)]
        assert ok and found, f"no such line on stderr: {self.err_lines}"
        return found[0]

    def finish(self, timeout: float = 60) -> tuple[int, str, str]:
        assert self.proc.stdout is not None
        self.proc.wait(timeout=timeout)
        out = self.proc.stdout.read()  # stderr belongs to the reader thread
        self.proc.stdout.close()
        self._reader.join(5)
        return self.proc.returncode, out, "\n".join(self.err_lines)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kw: Any) -> None:
        return None


def authorize_redirect(url: str) -> str:
    """GET the authorization URL as a browser would, but stop at the IdP's redirect: its Location."""
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        opener.open(url, timeout=10)
    except urllib.error.HTTPError as exc:
        assert exc.code == 302, exc.code
        return str(exc.headers["Location"])
    raise AssertionError("the IdP did not redirect")


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:  # follows the redirect to the loopback
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def login_via_browser(s: Setup, *args: str | Path, page_status: int = 200) -> tuple[int, str, str]:
    """`mailvault login alice --config F --no-browser`: read the URL from stderr, follow it."""
    lp = LoginProcess(s, "alice", "--config", s.config, "--no-browser", *args)
    url = lp.wait_line(lambda x: x.startswith(f"{s.base}/authorize?"))
    status, _ = get(url)
    assert status == page_status
    return lp.finish()


def new_client(idp: TestIdP, confidential: bool = False) -> tuple[str, str]:
    client_id = f"mv-test-{secrets.token_hex(4)}"
    secret = f"mvsecret-{secrets.token_urlsafe(18)}" if confidential else ""
    idp.register_client(client_id, secret or None)
    return client_id, secret
