"""The command line: parse, call the core, render text or JSON, map errors to exit codes.

Nothing here does mail or vault work itself; every command is a thin shell over a function
of the core library. One module per group of commands; importing them registers the commands
on :data:`app` in the order ``mailvault --help`` lists them.
"""

from __future__ import annotations

import sys

import typer

from mailvault.cli.common import app

# The order of these imports is the order of `mailvault --help`.
# isort: off
from mailvault.cli import vault_cmds
from mailvault.cli import mail_cmds
from mailvault.cli import discover_cmds
from mailvault.cli import runner_cmds
from mailvault.cli import auth_cmds
from mailvault.cli import maintenance_cmds
from mailvault.cli import repair_cmds
from mailvault.cli import key_cmds
from mailvault.cli import search_cmds
from mailvault.cli import web_cmds

# isort: on

__all__ = [
    "app",
    "auth_cmds",
    "discover_cmds",
    "key_cmds",
    "mail_cmds",
    "main",
    "maintenance_cmds",
    "repair_cmds",
    "runner_cmds",
    "search_cmds",
    "vault_cmds",
    "web_cmds",
]


def _command_name(info: typer.models.CommandInfo) -> str:
    if info.name:
        return info.name
    assert info.callback is not None
    return info.callback.__name__.lower().replace("_", "-")


def command_app(argv: list[str]) -> typer.Typer:
    """The app holding only the command ``argv`` names (the whole app when it names none).

    typer builds the click command of every registered command on each start (about 0.1 s of
    CPU for ~30 commands, measured): a backup or restore run from cron or a job runner should
    not pay for the other commands. Usage, help and errors of that command are unchanged;
    ``mailvault``, ``mailvault --help`` and an unknown name get the whole app."""
    name = next((a for a in argv if not a.startswith("-")), None)
    commands = [c for c in app.registered_commands if name and _command_name(c) == name]
    groups = [g for g in app.registered_groups if name and g.name == name]
    if not commands and not groups:
        return app
    only = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    only.info = app.info
    only.registered_callback = app.registered_callback
    only.registered_commands = commands
    only.registered_groups = groups
    return only


def main() -> None:
    from mailvault.memory import tune_gc, tune_malloc

    tune_malloc()
    app_ = command_app(sys.argv[1:])  # the command's modules imported: frozen by tune_gc
    tune_gc()
    try:
        app_()
    except BrokenPipeError:  # e.g. `mailvault ls ... | head`
        sys.stderr.close()
        sys.exit(0)
