"""Helpers shared by the test packages: the CLI (in-process and as a real process), one-line errors,
vault files, hashes, cheap test vaults.

Fixtures built on these live in :mod:`tests.fixtures_env` (a plugin of ``tests/conftest.py``).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from typer.testing import CliRunner, Result

from mailvault.cli import app
from mailvault.vault.repository import Repository, VaultParams

if TYPE_CHECKING:
    from tests.servers.dovecot import Dovecot

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Cheap key derivation for the test vaults (the cost is stored in the key file, so later opens,
#: also by subprocesses, are cheap too).
FAST_SCRYPT = {"n": 2**12, "r": 8, "p": 1}
#: Filler words for generated message bodies (packages extend this with their own).
MAIL_WORDS = (
    *("mail", "vault", "backup", "archive", "invoice", "meeting"),
    *("report", "draft", "budget", "quarter", "project", "review"),
)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class DovecotAccount:
    """A user on a test Dovecot, and how to reach it (the packages subclass it as ``Account``)."""

    server: Dovecot
    user: str
    password: str

    def url(self, scheme: str = "imaps", port: int | None = None, host: str | None = None) -> str:
        default = {
            "imaps": self.server.imaps_port,
            "imap": self.server.imap_port,
            "pop3s": self.server.pop3s_port,
            "pop3": self.server.pop3_port,
        }[scheme]
        return f"{scheme}://{self.user}@{host or self.server.host}:{port or default}"

    @property
    def account_name(self) -> str:
        return f"{self.user}@{self.server.host}"


# ----------------------------------------------------------------------------- the CLI, in-process

_runner = CliRunner()


def invoke(*args: str | Path, code: int | None = 0, env: dict[str, str] | None = None) -> Result:
    """``mailvault ARGS`` in-process (typer's CliRunner); checks the exit code unless ``code`` is None."""
    result = _runner.invoke(app, [str(a) for a in args], env=env, catch_exceptions=False)
    if code is not None:
        assert result.exit_code == code, (
            f"mailvault {' '.join(map(str, args))} exited {result.exit_code}, expected {code}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}"
        )
    return result


# ----------------------------------------------------------------------------- the CLI, as a real process


def proc_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment with the repository on PYTHONPATH, plus ``extra``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


def mv_argv(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "mailvault", *map(str, args)]


def mv(
    *args: str | Path,
    code: int | None = 0,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
    **kw: Any,
) -> subprocess.CompletedProcess[str]:
    """``python -m mailvault ARGS`` as a real process (real exit code, real stderr); checks the exit
    code unless ``code`` is None. ``env`` is added to this process's environment."""
    proc = subprocess.run(
        mv_argv(*args), capture_output=True, text=True, env=proc_env(env), timeout=timeout, check=False, **kw
    )
    if code is not None:
        assert proc.returncode == code, (
            f"mailvault {' '.join(map(str, args))} exited {proc.returncode}, expected {code}\n"
            f"stdout: {proc.stdout[-4000:]}\nstderr: {proc.stderr[-4000:]}"
        )
    return proc


def mv_json(*args: str | Path, code: int | None = 0, env: Mapping[str, str] | None = None) -> Any:
    """``python -m mailvault ARGS --json`` (see :func:`mv`); the parsed output."""
    proc = mv(*args, "--json", code=code, env=env)
    try:
        return json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"not JSON: {proc.stdout[:2000]!r}; stderr: {proc.stderr[-2000:]!r}") from None


def mv_popen(*args: str | Path, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``python -m mailvault ARGS`` started in the background: stdout discarded, stderr piped."""
    return subprocess.Popen(
        mv_argv(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=proc_env(env)
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """Exit ``code``, nothing on stdout, exactly one ``mailvault: ...`` line on stderr holding the needles."""
    lines = proc.stderr.splitlines()
    assert proc.returncode == code, (
        f"exit {proc.returncode}, expected {code}; stdout: {proc.stdout!r}; stderr: {proc.stderr!r}"
    )
    assert len(lines) == 1, f"expected one line on stderr, got: {proc.stderr!r}"
    line = lines[0]
    assert line.startswith("mailvault: "), line
    assert "Traceback" not in line and "internal error" not in line, line
    for needle in needles:
        assert needle.lower() in line.lower(), f"{needle!r} not in {line!r}"
    assert proc.stdout == "", proc.stdout
    return line


# ----------------------------------------------------------------------------- vaults


def init_vault(location: str | Path, password: str, params: VaultParams | None = None) -> str:
    """A new, empty, encrypted vault with cheap key derivation; returns its location string."""
    Repository.init(str(location), password.encode(), params, scrypt=FAST_SCRYPT).close()
    return str(location)


def vault_files(vault: Path) -> dict[str, tuple[int, int]]:
    """Every file under the vault directory -> (size, mtime_ns): 'untouched' means this is equal."""
    return {
        str(p.relative_to(vault)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(vault.rglob("*"))
        if p.is_file()
    }
