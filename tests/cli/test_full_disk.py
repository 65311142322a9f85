"""A really full disk (a 3 MiB tmpfs) during import: one clear line, exit 2, a vault that still checks
clean and takes the import once there is room. Needs root (mount); skipped otherwise."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _mv(*args: str | Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailvault", *map(str, args)],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.fixture
def tiny_fs(tmp_path: Path):  # type: ignore[no-untyped-def]
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs")
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], check=False, capture_output=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_during_import(tiny_fs: Path, tmp_path: Path) -> None:
    rng = random.Random(4)
    src = tmp_path / "mail"
    for folder in ("INBOX", "Archive"):
        d = src / folder
        d.mkdir(parents=True)
        for i in range(400):  # ~12 MB of poorly compressible text: more than the 3 MiB disk holds
            body = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789 \n") for _ in range(15000))
            (d / f"{i:05d}.eml").write_text(f"Subject: m{i}\nMessage-ID: <{folder}{i}@x>\n\n{body}\n")
    env = dict(os.environ, MAILVAULT_PASSWORD="pw", MAILVAULT_CACHE_DIR=str(tmp_path / "cache"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    vault = tiny_fs / "vault"
    assert _mv("init", vault, env=env).returncode == 0

    proc = _mv("import", vault, src, "--account", "a", env=env)
    assert proc.returncode == 2, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no space left" in lines[0], proc.stderr
    # No snapshot was committed, nothing is damaged, no lock or temp file is left behind.
    check = _mv("check", vault, "--read-data", env=env)
    assert check.returncode == 0, check.stderr
    assert "0 snapshots" in check.stdout
    assert not list((vault / "locks").iterdir())
    assert not [p for p in vault.rglob(".tmp-*")]

    # With room again (a bigger disk: move the vault), the same import completes.
    roomy = tmp_path / "vault"
    subprocess.run(["cp", "-a", str(vault), str(roomy)], check=True)
    done = _mv("import", roomy, src, "--account", "a", env=env)
    assert done.returncode == 0, done.stderr
    assert _mv("check", roomy, "--read-data", env=env).returncode == 0
