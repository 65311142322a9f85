"""The command line: parse, call the core, render text or JSON, map errors to exit codes.

Nothing here does mail or vault work itself; every command is a thin shell over a function
of the core library. One module per group of commands; importing them registers the commands
on :data:`app` in the order ``mailvault --help`` lists them.
"""

from __future__ import annotations

import sys

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


def main() -> None:
    from mailvault.memory import tune_malloc

    tune_malloc()
    try:
        app()
    except BrokenPipeError:  # e.g. `mailvault ls ... | head`
        sys.stderr.close()
        sys.exit(0)
