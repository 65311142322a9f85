"""bench/fscost.py: the per-file cost a Maildir anchor pays where the tools store."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from fscost import describe, fs_type, maildir_delivery_s


@pytest.mark.parametrize("fsync", [False, True])
def test_a_delivery_is_timed_and_leaves_nothing_behind(tmp_path: Path, fsync: bool) -> None:
    seconds = maildir_delivery_s(tmp_path, 20, fsync=fsync)
    assert seconds > 0
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError):
        maildir_delivery_s(tmp_path, 0, fsync=fsync)


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
    d = describe(tmp_path, 200, fsync=False)
    assert d["path"] == str(tmp_path)
    assert isinstance(d["fs"], str) and d["fs"]
    assert d["files"] == 200 and d["fsync"] is False
    assert isinstance(d["delivery_s"], float) and d["delivery_s"] > 0


def test_latency_bench_names_the_store_in_its_header() -> None:
    from latency_bench import _store_line

    line = _store_line(
        {"path": "/dev/shm/s", "fs": "tmpfs", "files": 8596, "fsync": True, "delivery_s": 0.17}
    )
    assert (
        "/dev/shm/s (tmpfs); a bare Maildir delivery of 8,596 files there (fsync each: yes): 0.17 s" in line
    )
    assert _store_line(None) == "where the tools store: not recorded"
