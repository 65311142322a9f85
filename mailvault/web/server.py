"""Bind, print the one-time URL, serve until interrupted."""

from __future__ import annotations

import socket
import webbrowser
from collections.abc import Callable

from mailvault.errors import ConfigError
from mailvault.vault.repository import Repository
from mailvault.web.app import WebUI
from mailvault.web.security import Guard

LOOPBACK = "127.0.0.1"


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


def serve(
    repo: Repository,
    *,
    host: str = LOOPBACK,
    port: int = 0,
    open_browser: bool = False,
    announce: Callable[[str], None] = print,
) -> None:
    import uvicorn

    sock = bind(host, port)
    real_port = sock.getsockname()[1]
    guard = Guard.for_address(host, real_port)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{real_port}/?token={guard.token}"
    app = WebUI(repo, guard).build()
    # No access log: the first request's URL carries the token.
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    announce(url)
    if open_browser:
        webbrowser.open(url)
    server.run(sockets=[sock])
