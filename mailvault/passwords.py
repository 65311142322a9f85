"""Where secrets come from: a file, a command, an environment variable or a prompt.

Secrets are never logged, never put in an error message and never stored in
the vault. The one place that turns user options into a password.
"""

from __future__ import annotations

import getpass
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from mailvault.errors import PasswordError

VAULT_PASSWORD_ENV = "MAILVAULT_PASSWORD"  # noqa: S105 - the name of a variable, not a secret


def _strip_newline(value: bytes) -> bytes:
    if value.endswith(b"\r\n"):
        return value[:-2]
    if value.endswith(b"\n"):
        return value[:-1]
    return value


def from_file(path: Path) -> bytes:
    try:
        return _strip_newline(path.read_bytes())
    except OSError as exc:
        raise PasswordError(f"cannot read password file {path}: {exc.strerror}") from None


def from_command(command: str, *, what: str = "password") -> bytes:
    """Run ``command`` (split like a shell, no shell) and take its standard output."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise PasswordError(f"{what} command cannot be parsed: {exc}") from None
    if not argv:
        raise PasswordError(f"{what} command is empty")
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=120, check=False)
    except FileNotFoundError:
        raise PasswordError(f"{what} command not found: {argv[0]}") from None
    except subprocess.TimeoutExpired:
        raise PasswordError(f"{what} command timed out: {argv[0]}") from None
    if proc.returncode != 0:
        raise PasswordError(f"{what} command {argv[0]} failed with exit code {proc.returncode}")
    value = _strip_newline(proc.stdout)
    if not value:
        raise PasswordError(f"{what} command {argv[0]} printed nothing")
    return value


def from_env(var: str) -> bytes | None:
    value = os.environ.get(var)
    return value.encode() if value is not None else None


def prompt(label: str, *, confirm: bool = False, hint: str = "") -> bytes:
    if not sys.stdin.isatty():
        raise PasswordError(f"no {label} given{': ' + hint if hint else ''}")
    first = getpass.getpass(f"{label.capitalize()}: ")
    if confirm and getpass.getpass(f"Repeat {label}: ") != first:
        raise PasswordError(f"the two {label}s differ")
    return first.encode()


def vault_password_provider(
    password_file: Path | None = None,
    password_command: str | None = None,
    *,
    confirm: bool = False,
) -> Callable[[], bytes]:
    """A callable giving the vault password, asked for only when needed (and only once)."""
    cached: list[bytes] = []

    def provide() -> bytes:
        if cached:
            return cached[0]
        if password_file is not None:
            value = from_file(password_file)
        elif password_command is not None:
            value = from_command(password_command)
        else:
            env = from_env(VAULT_PASSWORD_ENV)
            hint = f"set {VAULT_PASSWORD_ENV}, or use --password-file or --password-command"
            value = env if env is not None else prompt("vault password", confirm=confirm, hint=hint)
        if not value:
            raise PasswordError("the vault password is empty")
        cached.append(value)
        return value

    return provide


def secret_provider(
    *,
    env_var: str | None = None,
    command: str | None = None,
    label: str = "password",
    cache: bool = True,
) -> Callable[[], bytes]:
    """A callable giving a server secret from ``$env_var``, a command, or a prompt on a TTY.

    With ``cache=False`` the command runs on every call (OAuth2 tokens expire).
    """
    cached: list[bytes] = []

    def provide() -> bytes:
        if cached:
            return cached[0]
        if env_var is not None:
            value = from_env(env_var)
            if value is None:
                raise PasswordError(f"environment variable {env_var} (the {label}) is not set")
        elif command is not None:
            value = from_command(command, what=label)
        else:
            value = prompt(label, hint="use --password-env or --password-command")
        if not value:
            raise PasswordError(f"the {label} is empty")
        if cache:
            cached.append(value)
        return value

    return provide
