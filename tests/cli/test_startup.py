"""The start-up fast path: a command line naming one command builds only that command."""

from __future__ import annotations

import subprocess
import sys

from mailvault.cli import app, command_app


def _names(t: object) -> list[str]:
    from mailvault.cli import _command_name

    return [_command_name(c) for c in t.registered_commands]  # type: ignore[attr-defined]


def test_one_command_is_built_alone() -> None:
    only = command_app(["restore", "VAULT", "imaps://u@h", "--account", "a", "-q"])
    assert only is not app
    assert _names(only) == ["restore"]
    assert only.registered_groups == []
    assert only.registered_callback is app.registered_callback


def test_a_group_is_kept_whole() -> None:
    only = command_app(["key", "list", "VAULT"])
    assert _names(only) == []
    assert [g.name for g in only.registered_groups] == ["key"]


def test_no_command_or_an_unknown_one_gets_the_whole_app() -> None:
    assert command_app([]) is app
    assert command_app(["--help"]) is app
    assert command_app(["--version"]) is app
    assert command_app(["no-such-command"]) is app
    assert len(_names(app)) > 20


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailvault", *args], check=False, capture_output=True, text=True, timeout=60
    )


def test_through_the_real_cli() -> None:
    full = _cli("--help")
    assert full.returncode == 0
    for name in ("backup", "restore", "prune", "search"):
        assert name in full.stdout
    one = _cli("restore", "--help")
    assert one.returncode == 0 and "mailvault restore [OPTIONS]" in one.stdout
    missing = _cli("restore")
    assert missing.returncode == 2 and "Missing argument" in missing.stderr
    unknown = _cli("no-such-command")
    assert unknown.returncode == 2 and "No such command" in unknown.stderr
    version = _cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("mailvault ")


def test_the_cli_freezes_its_imports_and_collects_young_objects_rarely() -> None:
    """``main`` calls ``memory.tune_gc``: the objects of the imported modules out of the
    collector's sight (a full collection would walk them all) and a young-generation threshold
    far above CPython's 700."""
    probe = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('gc', gc.get_threshold()[0], gc.get_freeze_count()))\n"
        "sys.argv = ['mailvault', 'snapshots', '--help']\n"
        "from mailvault.cli import main\n"
        "main()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], check=False, capture_output=True, text=True, timeout=60
    )
    line = next(x for x in out.stdout.splitlines() if x.startswith("gc "))
    _, threshold, frozen = line.split()
    from mailvault.memory import GC_GEN0_THRESHOLD

    assert int(threshold) == GC_GEN0_THRESHOLD > 700
    assert int(frozen) > 10_000  # typer, click and the command's modules
