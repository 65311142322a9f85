"""The CLI in-process for these tests (typer's CliRunner: no interpreter start-up per call)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import Result

from tests.common import invoke


def mv(*args: str | Path, code: int | None = 0) -> Result:
    """``mailvault ARGS`` in-process; checks the exit code unless ``code`` is None."""
    return invoke(*args, code=code)


def mv_json(*args: str | Path, code: int | None = 0) -> Any:
    """``mailvault ARGS --json`` in-process; the parsed output."""
    return json.loads(invoke(*args, "--json", code=code).stdout)
