"""A full disk (a small tmpfs) during backup, during restore's journal, during prune; a read-only
vault; the clock moved back and forward under ``run --due``.

Full disk and read-only need root (mount); they are skipped with the reason otherwise. Each trial:
one line on stderr, exit 2, nothing damaged (``check --read-data`` clean); once there is room (or
the vault is writable again) the rerun completes and the result equals the source, nothing twice.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.backup.helpers import SERVER_PW_ENV
from tests.common import DovecotAccount, assert_one_line_error, init_vault, mv, sha
from tests.faults.harness import (
    SMALL_PACKS,
    VAULT_PASSWORD,
    assert_checks,
    assert_clean_vault,
    ls_by_folder,
    noisy_message,
    ok,
    ok_json,
    report,
    seed_account,
    timed,
    trials,
)
from tests.servers.dovecot import Dovecot

FOLDERS = {"INBOX": 120, "Archive": 60}


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str, str], Path]]:
    """``tmpfs(name, size)``: a new tmpfs of that size (e.g. ``"600k"``), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs")
    mounted: list[Path] = []

    def make(name: str, size: str) -> Path:
        mnt = tmp_path / f"fs-{name}"
        mnt.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mnt)],
                              check=False, capture_output=True)  # fmt: skip
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
        mounted.append(mnt)
        return mnt

    try:
        yield make
    finally:
        for mnt in mounted:
            subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(mnt: Path, leave_kib: int) -> Path:
    """A filler file that leaves about ``leave_kib`` KiB free on ``mnt``."""
    st = os.statvfs(mnt)
    free = st.f_bavail * st.f_frsize
    filler = mnt / "filler"
    with filler.open("wb") as f:
        f.write(b"\0" * max(0, free - leave_kib * 1024))
    return filler


def _account(dovecot: Dovecot, prefix: str) -> DovecotAccount:
    user = f"{prefix}{random.getrandbits(32):x}"
    dovecot.add_user(user, f"secret-{user}")
    return DovecotAccount(dovecot, user, f"secret-{user}")


def _backup_args(location: str | Path, account: DovecotAccount) -> list[str | Path]:
    return ["backup", location, account.url(), "--password-env", SERVER_PW_ENV, "--ca-file", account.server.ca_file,
            "--account", "src", "--quiet"]  # fmt: skip


def test_full_disk_during_backup(dovecot: Dovecot, tmpfs, fresh_cache, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = _account(dovecot, "fd")
    expected = seed_account(source, FOLDERS, "fullbackup", 61)
    env = {SERVER_PW_ENV: source.password}
    rng = random.Random(62)
    n = trials(1, 5)
    with timed() as elapsed:
        for t in range(n):
            mnt = tmpfs(f"b{t}", "2m")
            vault = mnt / "vault"
            init_vault(vault, VAULT_PASSWORD, SMALL_PACKS)
            filler = _fill(mnt, rng.randint(60, 300))
            fresh_cache(f"b{t}")
            proc = mv(*_backup_args(vault, source), code=None, env=env)
            assert_one_line_error(proc, 2, "no space left")
            assert_checks(vault)
            assert not list(vault.rglob(".tmp-*")), "temp files left behind"
            filler.unlink()  # room again
            ok(*_backup_args(vault, source), env=env)
            assert ls_by_folder(vault, account="src") == expected
            assert_clean_vault(vault, messages=sum(len(c) for c in expected.values()))
    report("full disk during backup", "vault on a 2 MiB tmpfs with 60-300 KiB left free", n,
           "one line, exit 2, vault checks clean, no temp files; with room the rerun completed; 0 lost, 0 duplicated",
           group="disk", seconds=elapsed())  # fmt: skip


def test_full_disk_in_restore_journal(dovecot: Dovecot, tmpfs, monkeypatch: pytest.MonkeyPatch, fresh_cache, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    """The cache directory (index cache and restore journal) fills up mid-restore."""
    from tests.restore.helpers import read_account

    source = _account(dovecot, "fj")
    seed_account(source, FOLDERS, "fulljournal", 63)
    want = read_account(source, FOLDERS)  # type: ignore[arg-type]
    vault = tmp_path / "vault"
    init_vault(vault, VAULT_PASSWORD, SMALL_PACKS)
    fresh_cache("backup")
    ok(*_backup_args(vault, source), env={SERVER_PW_ENV: source.password})
    rng = random.Random(64)
    n = trials(1, 5)
    outcomes: dict[str, int] = {}
    with timed() as elapsed:
        for t in range(n):
            target = _account(dovecot, "fjt")
            env = {SERVER_PW_ENV: target.password}
            mnt = tmpfs(f"j{t}", "4m")
            cache = mnt / "cache"
            monkeypatch.setenv("MAILVAULT_CACHE_DIR", str(cache))
            ok("check", vault, "--quiet")  # the index cache fits; the journal is what fills up
            filler = _fill(mnt, rng.randint(4, 40))
            args = ["restore", vault, target.url(), "--password-env", SERVER_PW_ENV, "--ca-file", dovecot.ca_file,
                    "--account", "src", "--quiet"]  # fmt: skip
            proc = mv(*args, code=None, env=env)
            if proc.returncode == 0:
                outcomes["finished (journal fit)"] = outcomes.get("finished (journal fit)", 0) + 1
            else:
                assert_one_line_error(proc, 2, "no space left")
                outcomes["one line, exit 2"] = outcomes.get("one line, exit 2", 0) + 1
            filler.unlink()
            ok(*args, env=env)
            got = read_account(target, FOLDERS)  # type: ignore[arg-type]
            for folder in FOLDERS:
                assert got[folder] == want[folder], (
                    f"{folder}: {sum(got[folder].values())} vs {sum(want[folder].values())}"
                )
    assert outcomes.get("one line, exit 2", 0) >= 1, outcomes
    report("full disk in restore's journal", "cache dir (index cache + restore journal) on a 4 MiB tmpfs with 4-40 KiB left", n,
           ", ".join(f"{v} {k}" for k, v in outcomes.items()) + "; with room the rerun completed; target = source, 0 duplicated",
           group="disk", seconds=elapsed())  # fmt: skip


def test_full_disk_during_prune(tmpfs, fresh_cache, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(65)
    common = [noisy_message(rng, i, "pcommon") for i in range(150)]
    old = [noisy_message(rng, i, "pold") for i in range(150)]
    template = tmp_path / "template"
    init_vault(template, VAULT_PASSWORD, SMALL_PACKS)
    fresh_cache("template")
    snaps = []
    for label, msgs in (("s1", [m for pair in zip(common, old, strict=True) for m in pair]), ("s2", common)):
        d = tmp_path / label
        for sub in ("cur", "new", "tmp"):
            (d / sub).mkdir(parents=True)
        for i, raw in enumerate(msgs):
            (d / "cur" / f"{1500000000 + i}.M{i}P5.h:2,S").write_bytes(raw)
        snaps.append(ok_json("import", template, d, "--account", "acct")["snapshot"])
    ok("forget", template, "--account", "acct", "--keep-last", "1", "--quiet")
    kept = ls_by_folder(template, snaps[1])
    n = trials(1, 5)
    with timed() as elapsed:
        for t in range(n):
            mnt = tmpfs(f"p{t}", "4m")
            vault = mnt / "vault"
            shutil.copytree(template, vault)
            fresh_cache(f"p{t}")
            filler = _fill(mnt, rng.randint(8, 48))
            proc = mv("prune", vault, code=None)
            assert_one_line_error(proc, 2, "no space left")
            filler.unlink()
            ok_json("check", vault, "--read-data")
            ok("prune", vault, "--quiet")
            assert ls_by_folder(vault, snaps[1]) == kept
            assert_clean_vault(vault, messages=len(common))
    report("full disk during prune", "vault on a 4 MiB tmpfs with 8-48 KiB left when prune repacks", n,
           "one line, exit 2, vault checks clean; with room the rerun completed; kept snapshot whole, 0 duplicated",
           group="disk", seconds=elapsed())  # fmt: skip


def test_read_only_vault(dovecot: Dovecot, tmpfs, fresh_cache, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A vault on a filesystem mounted read-only (root ignores mode bits, so a mount it is): a backup
    fails with one line, exit 2; once writable again it completes."""
    source = _account(dovecot, "ro")
    expected = seed_account(source, FOLDERS, "readonly", 66)
    env = {SERVER_PW_ENV: source.password}
    mnt = tmpfs("ro", "16m")
    vault = mnt / "vault"
    init_vault(vault, VAULT_PASSWORD, SMALL_PACKS)
    fresh_cache("ro")
    subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
    try:
        proc = mv(*_backup_args(vault, source), code=None, env=env)
        assert_one_line_error(proc, 2, "read-only")
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(mnt)], check=True)
    ok(*_backup_args(vault, source), env=env)
    assert ls_by_folder(vault, account="src") == expected
    assert_clean_vault(vault, messages=sum(len(c) for c in expected.values()))
    report("read-only vault directory", "vault's filesystem remounted read-only, then writable again", 1,
           "one line naming the read-only file system, exit 2; the rerun completed; 0 lost, 0 duplicated",
           group="disk")  # fmt: skip


# ----------------------------------------------------------------------------- clock skew


def test_clock_moved_back_and_forward_under_run_due(
    dovecot_nostarttls: Dovecot, fresh_cache, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """A daily job under ``run --due`` (libfaketime moves the clock of the runner process): the clock
    ahead runs the job once, not on every tick; the clock set back again (records stamped in the
    future) does not stop backups until it catches up."""
    if shutil.which("faketime") is None:
        pytest.skip("faketime not installed (apt-get install faketime)")
    # A server without TLS (allow_plaintext): a certificate is not yet valid with the clock 2 days back.
    source = _account(dovecot_nostarttls, "ck")
    rng = random.Random(67)
    raws = [noisy_message(rng, i, "clock") for i in range(20)]
    dovecot_nostarttls.seed(source.user, "INBOX", [(r, [], datetime(2009, 9, 9, tzinfo=UTC)) for r in raws])
    expected = {"INBOX": Counter(sha(Dovecot.served_form(r)) for r in raws)}
    vault = tmp_path / "vault"
    init_vault(vault, VAULT_PASSWORD, SMALL_PACKS)
    fresh_cache("clock")
    cfg = tmp_path / "mailvault.toml"
    cfg.write_text(f"""
[vaults.v]
path = "{vault}"
password_env = "MAILVAULT_PASSWORD"

[accounts.src]
url = "{source.url("imap")}"
password_env = "{SERVER_PW_ENV}"
allow_plaintext = true

[jobs.nightly]
kind = "backup"
accounts = ["src"]
vault = "v"
schedule = "daily"
""")
    env = {SERVER_PW_ENV: source.password}
    seen: list[tuple[str, str]] = []
    messages: list[str] = []

    def run_due(offset: str | None) -> str:
        import json

        from tests.common import mv_argv, proc_env

        argv = mv_argv("run", "--config", cfg, "--due", "--json")
        if offset is not None:
            argv = ["faketime", "-f", offset, *argv]
        proc = subprocess.run(
            argv, capture_output=True, text=True, env=proc_env(env), timeout=120, check=False
        )
        assert proc.returncode == 0, (offset, proc.stdout[-2000:], proc.stderr[-2000:])
        (result,) = json.loads(proc.stdout)["results"]
        seen.append((offset or "now", result["status"]))
        messages.append(str(result["message"]))
        return str(result["status"])

    assert run_due(None) == "ok"  # never ran: due
    assert run_due(None) == "not-due"
    assert run_due("+3d") == "ok"  # clock forward: a day boundary passed, runs once ...
    assert run_due("+3d") == "not-due"  # ... not on every tick
    # The clock set back: the success stamped 3 days ahead does not count while an earlier one exists ...
    assert run_due(None) == "not-due"
    assert "+00:00" in messages[-1] and messages[-1] == messages[1], messages  # today's real success
    # ... so tomorrow the job is due again (not only once the clock reaches the future stamp).
    assert run_due("+1d") == "ok"
    assert run_due("+1d") == "not-due"
    assert run_due("-2d") == "ok"  # clock far back: every success is 'in the future': run
    assert run_due("-2d") == "not-due"  # and the run just made counts from then on
    assert ls_by_folder(vault, account="src") == expected
    assert_clean_vault(vault, messages=len(expected["INBOX"]))
    report("clock skew under run --due", "libfaketime: runner clock +3 days, back to now, +1 day, then -2 days (daily job)", len(seen),
           "runs once per period in each case (" + ", ".join(f"{o}: {s}" for o, s in seen) + "); never stuck waiting for the clock",
           group="schedule")  # fmt: skip
