"""What creating a file costs where a tool stores what it pulls.

A Maildir tool (mbsync, offlineimap) creates one file per message; mailvault writes a few pack
files. So a pull's wall time depends on the file system's per-file cost as much as on the
network. Measured on this VM (2026-12-03): 0.7 ms per created 4 KiB file on the root ext4 disk,
9 us on tmpfs, which is 6 s of an 8,596-message pull. A report that compares the tools carries
the figure for the directory they wrote to (``--store-dir`` of latency_bench.py).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

#: Files created per measurement, and the size of each (about a corpus A message).
SAMPLE_FILES = 300
SAMPLE_BYTES = 4096


def file_create_us(directory: Path, files: int = SAMPLE_FILES) -> float:
    """Microseconds per file to create, write 4 KiB to and close ``files`` new files (no fsync)
    in a fresh sub-directory of ``directory``, removed afterwards."""
    if files < 1:
        raise ValueError("files must be at least 1")
    work = Path(tempfile.mkdtemp(prefix="fscost-", dir=directory))
    payload = b"x" * SAMPLE_BYTES
    try:
        start = time.perf_counter()
        for i in range(files):
            fd = os.open(work / f"m{i}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            try:
                os.write(fd, payload)
            finally:
                os.close(fd)
        return (time.perf_counter() - start) / files * 1e6
    finally:
        shutil.rmtree(work, ignore_errors=True)


def fs_type(path: Path) -> str:
    """The type of the file system holding ``path`` (from /proc/mounts; "unknown" elsewhere)."""
    target = os.path.realpath(path)
    best, kind = "", "unknown"
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        mount = fields[1].replace("\\040", " ")
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, kind = mount, fields[2]
    return kind


def describe(directory: Path) -> dict[str, object]:
    """Where a bench's tools store, for its report: the path, its file system, the create cost."""
    return {
        "path": str(directory),
        "fs": fs_type(directory),
        "file_create_us": round(file_create_us(directory), 1),
    }
