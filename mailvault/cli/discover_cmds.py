"""``mailvault discover PATH [--json] [--import VAULT]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mailvault.cli.common import (
    Json,
    PasswordCommand,
    PasswordFile,
    Quiet,
    _emit_json,
    _human,
    _open,
    _progress,
    app,
    run,
)
from mailvault.errors import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL


@app.command()
def discover(
    path: Annotated[Path, typer.Argument(help="A home directory or a mounted old disk.")],
    import_to: Annotated[
        str | None,
        typer.Option("--import", help="Import every store found into this vault, each as its own account."),
    ] = None,
    password_file: PasswordFile = None,
    password_command: PasswordCommand = None,
    quiet: Quiet = False,
    as_json: Json = False,
) -> None:
    """Find mail stores (Thunderbird, Outlook PST/OST, Apple Mail, Maildir, mbox, Takeout…) below PATH."""
    from mailvault.discover import discover as scan
    from mailvault.discover import import_stores

    stores = run(lambda: scan(path))
    if import_to is None:
        if as_json:
            _emit_json([s.to_json() for s in stores])
        elif not quiet:
            _print_stores(stores)
        return
    if not as_json and not quiet:
        _print_stores(stores)

    def start(i: int, store: Any) -> None:
        if not as_json and not quiet:
            typer.echo(f"[{i}/{len(stores)}] {store.client} {store.path} -> account {store.account}")

    def done(item: Any) -> None:
        r = item.result
        if item.error:
            typer.echo(f"mailvault: {item.error}", err=True)
        for problem in item.problems:
            typer.echo(f"mailvault: {problem}", err=True)
        if r is not None and not as_json and not quiet:
            typer.echo(
                f"    snapshot {r.snapshot[:12]}: {r.folders} folders, {r.messages} messages, "
                f"{_human(r.bytes)}; new {r.new_messages}"
            )

    def go() -> Any:
        with _open(import_to, password_file, password_command) as repo:
            return import_stores(
                repo, stores, progress=_progress(quiet, as_json), on_start=start, on_done=done
            )

    finished = run(go)
    code = EXIT_OK
    rows = []
    for item in finished:
        r = item.result
        if item.error or item.problems:
            code = EXIT_PARTIAL
        row = {**item.store.to_json(), "error": item.error or None, "problems": item.problems}
        if r is not None:
            row.update(
                snapshot=r.snapshot, imported=r.messages, new_messages=r.new_messages, folders=r.folders
            )
        rows.append(row)
    if as_json:
        _emit_json(rows)
    if finished and all(item.error for item in finished):
        code = EXIT_ERROR
    if code:
        raise typer.Exit(code)


def _print_stores(stores: list[Any]) -> None:
    if not stores:
        typer.echo("no mail stores found")
        return
    typer.echo(f"{'CLIENT':18} {'FORMAT':11} {'MESSAGES':>9} {'SIZE':>10}  {'ACCOUNT':32} PATH")
    for s in stores:
        count = f"~{s.messages}" if s.estimate else str(s.messages)
        typer.echo(f"{s.client:18} {s.format:11} {count:>9} {_human(s.bytes):>10}  {s.account:32} {s.path}")
