"""Key commands: several passwords for one vault (list, add, remove, passwd)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from mailvault.cli.common import (
    Json,
    PasswordCommand,
    PasswordFile,
    VaultArg,
    _emit_json,
    _open,
    app,
    on_vault,
    run,
)

key_app = typer.Typer(help="Manage the vault's passwords (key files).", no_args_is_help=True)
app.add_typer(key_app, name="key")

NewPasswordFile = Annotated[
    Path | None,
    typer.Option("--new-password-file", help="Read the new password from this file (else a prompt)."),
]
Wait = Annotated[float, typer.Option("--wait", help="Seconds to wait for other processes' locks.")]


def _new_password(path: Path | None) -> bytes:
    from mailvault.errors import PasswordError
    from mailvault.passwords import from_file, prompt

    value = from_file(path) if path is not None else prompt("new vault password", confirm=True)
    if not value:
        raise PasswordError("the new password must not be empty")
    return value


@key_app.command("list")
def key_list(
    vault: VaultArg,
    password_file: PasswordFile = None,
    password_command: PasswordCommand = None,
    as_json: Json = False,
) -> None:
    """List the key files; `current` is the one the given password opened."""
    from mailvault.vault.keys import list_keys

    keys = on_vault(vault, password_file, password_command, list_keys)
    if as_json:
        _emit_json([asdict(k) for k in keys])
        return
    typer.echo(f"  {'ID':12}  {'CREATED':25}  {'HOST':20}  KDF")
    for k in keys:
        typer.echo(
            f"{'*' if k.current else ' '} {k.id[:12]}  {k.created or '-':25}  {k.host[:20]:20}  "
            f"{k.kdf} n={k.n} r={k.r} p={k.p}"
        )


@key_app.command("add")
def key_add(
    vault: VaultArg,
    new_password_file: NewPasswordFile = None,
    password_file: PasswordFile = None,
    password_command: PasswordCommand = None,
    as_json: Json = False,
) -> None:
    """Add a password (a new key file for the same master key)."""
    from mailvault.vault.keys import add_key

    key_id = on_vault(
        vault, password_file, password_command, lambda repo: add_key(repo, _new_password(new_password_file))
    )
    if as_json:
        _emit_json({"id": key_id})
    else:
        typer.echo(f"added key {key_id[:12]}")


@key_app.command("remove")
def key_remove(
    vault: VaultArg,
    key_id: Annotated[str, typer.Argument(help="Key id or unique prefix (see 'key list').")],
    password_file: PasswordFile = None,
    password_command: PasswordCommand = None,
    wait: Wait = 0.0,
    as_json: Json = False,
) -> None:
    """Remove a key file (not the one the given password opened; never the last one)."""
    from mailvault.vault.keys import remove_key

    removed = on_vault(
        vault, password_file, password_command, lambda repo: remove_key(repo, key_id, wait=wait)
    )
    if as_json:
        _emit_json({"removed": removed})
    else:
        typer.echo(f"removed key {removed[:12]}")


@key_app.command("passwd")
def key_passwd(
    vault: VaultArg,
    new_password_file: NewPasswordFile = None,
    password_file: PasswordFile = None,
    password_command: PasswordCommand = None,
    wait: Wait = 0.0,
    as_json: Json = False,
) -> None:
    """Change the password of the key the given password opened."""
    from mailvault.vault.keys import change_password

    def go() -> Any:
        with _open(vault, password_file, password_command) as repo:
            return change_password(repo, _new_password(new_password_file), wait=wait)

    new, old = run(go)
    if as_json:
        _emit_json({"id": new, "replaced": old})
    else:
        typer.echo(f"password changed: key {old[:12]} replaced by {new[:12]}")
