"""bench/fscost.py: the per-file cost a Maildir anchor pays where the tools store."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from fscost import describe, file_create_us, fs_type


def test_file_create_cost_is_measured_and_leaves_nothing_behind(tmp_path: Path) -> None:
    cost = file_create_us(tmp_path, files=20)
    assert cost > 0
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError):
        file_create_us(tmp_path, files=0)


def test_fs_type_names_the_innermost_mount() -> None:
    proc = Path("/proc/mounts")
    if not proc.exists():
        pytest.skip("no /proc/mounts on this system")
    mounts = [line.split() for line in proc.read_text().splitlines()]
    root = next(f[2] for f in mounts if f[1] == "/")
    assert fs_type(Path("/")) == root
    proc_kind = next((f[2] for f in mounts if f[1] == "/proc"), None)
    if proc_kind is not None:  # /proc/self is under the /proc mount, not the root's
        assert fs_type(Path("/proc/self")) == proc_kind


def test_describe_reports_path_fs_and_cost(tmp_path: Path) -> None:
    d = describe(tmp_path)
    assert d["path"] == str(tmp_path)
    assert isinstance(d["fs"], str) and d["fs"]
    assert isinstance(d["file_create_us"], float) and d["file_create_us"] > 0


def test_latency_bench_names_the_store_in_its_header() -> None:
    from latency_bench import _store_line

    line = _store_line({"path": "/dev/shm/store-1", "fs": "tmpfs", "file_create_us": 9.2})
    assert "/dev/shm/store-1 (tmpfs)" in line and ": 9 us" in line
    assert _store_line(None) == "where the tools store: not recorded"
