"""What a Maildir delivery costs where the tools store what they pull.

A Maildir tool (mbsync, offlineimap) creates one file per message and renames it into place;
mailvault writes a few pack files. So a pull's wall time depends on the file system's cost per
file as much as on the network. Measured on this VM (2026-12-03 afternoon), a bare delivery of
8,596 files of 4.9 KiB (create in tmp/, write, close, rename into cur/) took 2.7-3.5 s on the root
ext4 disk, 2.1-11.5 s with an fsync per file, and 0.17-0.28 s on tmpfs; mbsync's pull of corpus A
took 5.4-16.6 s into the disk and 2.3-2.9 s into tmpfs. A report that compares the tools carries the figure for
the directory they wrote to (``--store-dir`` of latency_bench.py).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

#: Bytes per delivered file (corpus A's mean message size).
SAMPLE_BYTES = 4900


def maildir_delivery_s(directory: Path, files: int, *, fsync: bool) -> float:
    """Seconds to deliver ``files`` files of :data:`SAMPLE_BYTES` as a Maildir tool does (create
    in ``tmp/``, write, fsync if ``fsync``, close, rename into ``cur/``) in a fresh
    sub-directory of ``directory``, removed afterwards. Nothing else runs: no network, no parsing."""
    if files < 1:
        raise ValueError("files must be at least 1")
    work = Path(tempfile.mkdtemp(prefix="fscost-", dir=directory))
    payload = b"x" * SAMPLE_BYTES
    try:
        (work / "tmp").mkdir()
        (work / "cur").mkdir()
        start = time.perf_counter()
        for i in range(files):
            tmp = work / "tmp" / str(i)
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            try:
                os.write(fd, payload)
                if fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, work / "cur" / str(i))
        return time.perf_counter() - start
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


def describe(directory: Path, files: int, *, fsync: bool) -> dict[str, object]:
    """Where a bench's tools store, for its report: the path, its file system, and what a bare
    Maildir delivery of ``files`` files there takes (one fsync per file if ``fsync``)."""
    os.sync()  # nothing left over from the tools' runs to write back
    return {
        "path": str(directory),
        "fs": fs_type(directory),
        "files": files,
        "fsync": fsync,
        "delivery_s": round(maildir_delivery_s(directory, files, fsync=fsync), 4),
    }
