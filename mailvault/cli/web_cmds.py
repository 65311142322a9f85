"""``mailvault serve``: the local web UI."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from mailvault.cli.common import PasswordCommand, PasswordFile, VaultArg, _open, app, run


@app.command("serve")
def serve_cmd(
    vault: VaultArg,
    port: Annotated[int, typer.Option("--port", help="Port to listen on (default: any free port).")] = 0,
    open_: Annotated[bool, typer.Option("--open", help="Open the UI in the default browser.")] = False,
    listen: Annotated[
        str,
        typer.Option(
            "--listen",
            help="Address to listen on. Default 127.0.0.1; anything else exposes the vault to that network.",
        ),
    ] = "127.0.0.1",
    password_file: PasswordFile = None,
    password_command: PasswordCommand = None,
) -> None:
    """Browse, search and restore from the vault in a local web UI (127.0.0.1 only by default)."""
    from mailvault.web.server import serve

    def announce(url: str) -> None:
        typer.echo(f"mailvault UI: {url}")
        typer.echo("(the link works once; stop with Ctrl-C)", err=True)
        sys.stdout.flush()

    def go() -> None:
        with _open(vault, password_file, password_command) as repo:
            if listen not in ("127.0.0.1", "localhost", "::1"):
                typer.echo(f"warning: listening on {listen}: reachable beyond this machine", err=True)
            serve(repo, host=listen, port=port, open_browser=open_, announce=announce)

    run(go)
