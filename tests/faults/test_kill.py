"""kill -9 at random moments of every long operation, on a local and on an S3 vault.

Each trial: a fresh starting state; the operation runs under :mod:`tests.faults.killhook`, which
SIGKILLs it at a random progress point (a random occurrence of a storage put/get/delete, a stored
blob, an IMAP or POP3 command or response line) plus a random 0-40 ms; then the rerun (in-process)
must complete, ``check --read-data`` pass, the snapshot (or target account) equal the source, and no
message be stored or uploaded twice.
"""

from __future__ import annotations

import random
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.backup.helpers import SERVER_PW_ENV, server_messages
from tests.common import DovecotAccount, init_vault, sha
from tests.faults.harness import (
    SMALL_PACKS,
    VAULT_PASSWORD,
    KillStats,
    assert_clean_vault,
    calibrate,
    ls_by_folder,
    noisy_message,
    ok,
    ok_json,
    pick_point,
    report,
    run_killed,
    seed_account,
    timed,
    trials,
)
from tests.servers.dovecot import Dovecot

CI_TRIALS, FULL_TRIALS = 3, 50
STORAGE = ("put", "get", "delete", "add")
IMAP = ("imap", "imapline")
POP = ("pop", "popline")
FOLDERS = {"INBOX": 40, "Archive": 20, "Sent": 10}


@dataclass
class Trial:
    args: list[str | Path]
    env: dict[str, str]
    rerun: Callable[[], Any]
    verify: Callable[[], None]


def kill_matrix(
    name: str, backend: str, make: Callable[[str], Trial], kinds: tuple[str, ...], scratch: Path, seed: int
) -> KillStats:
    """Calibrate on one run, then kill until ``trials()`` kills hit a running process."""
    want = trials(CI_TRIALS, FULL_TRIALS)
    rng = random.Random(seed)
    stats = KillStats()
    with timed() as elapsed:
        calibration = make("calibrate")
        counts = calibrate(calibration.args, calibration.env, scratch)
        while stats.kills < want:
            assert stats.attempts < 2 * want + 5, f"kills keep missing the run: {stats}"
            trial = make(f"t{stats.attempts}")
            stats.attempts += 1
            point = pick_point(rng, counts, kinds)
            killed, _code, _err = run_killed(trial.args, trial.env, point)
            trial.rerun()
            stats.reruns += 1
            try:
                trial.verify()
            except AssertionError as exc:
                raise AssertionError(
                    f"{name} ({backend}) trial {stats.attempts} killed at {point}: {exc}"
                ) from exc
            if killed:
                stats.kills += 1
                stats.by_kind[point.kind] += 1
                # A row after every verified kill: a run stopped midway still records what it showed.
                stats.seconds = elapsed()
                _report(name, backend, stats, want)
    return stats


def _report(name: str, backend: str, stats: KillStats, planned: int) -> None:
    report(
        f"kill -9: {name} ({backend} vault)",
        "SIGKILL at a random progress point + 0-40 ms ("
        + ", ".join(f"{k} {n}" for k, n in sorted(stats.by_kind.items()))
        + ")",
        stats.kills,
        "0 lost, 0 duplicated, every rerun completed, check --read-data clean",
        group="kill",
        attempts=stats.attempts,
        seconds=stats.seconds,
        planned=planned,
        quiet=stats.kills < planned,
    )


# ----------------------------------------------------------------------------- import


def test_kill_import(
    vault_at: Callable[[str], str],
    fresh_cache: Callable[[str], Path],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    rng = random.Random(11)
    root = tmp_path / "Maildir"
    expected: dict[str, Counter[str]] = {}
    for folder, count in FOLDERS.items():
        d = root if folder == "INBOX" else root / f".{folder}"
        for sub in ("cur", "new", "tmp"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            raw = noisy_message(rng, i, f"imp-{folder}", crlf=False)
            (d / "cur" / f"{1200000000 + i}.M{i}P9.faulthost:2,S").write_bytes(raw)
            expected.setdefault(folder, Counter())[sha(raw)] += 1

    def make(name: str) -> Trial:
        location = vault_at(name)
        init_vault(location, VAULT_PASSWORD, SMALL_PACKS)
        fresh_cache(name)

        def verify() -> None:
            assert ls_by_folder(location, account="local") == expected
            assert_clean_vault(location, messages=sum(len(c) for c in expected.values()))

        return Trial(
            ["import", location, root, "--account", "local", "--quiet"],
            {},
            lambda: ok("import", location, root, "--account", "local", "--quiet"),
            verify,
        )

    kill_matrix("import", request.node.callspec.params["vault_at"], make, STORAGE, tmp_path, 101)


# ----------------------------------------------------------------------------- IMAP backup


def test_kill_imap_backup(dovecot: Dovecot, fresh_user: tuple[str, str], vault_at: Callable[[str], str],
                          fresh_cache: Callable[[str], Path], tmp_path: Path, request: pytest.FixtureRequest) -> None:  # fmt: skip
    account = DovecotAccount(dovecot, *fresh_user)
    expected = seed_account(account, FOLDERS, "imap", 12)
    env = {SERVER_PW_ENV: account.password}

    def make(name: str) -> Trial:
        location = vault_at(name)
        init_vault(location, VAULT_PASSWORD, SMALL_PACKS)
        fresh_cache(name)
        args: list[str | Path] = ["backup", location, account.url(), "--password-env", SERVER_PW_ENV,
                                  "--ca-file", dovecot.ca_file, "--account", "imap", "--quiet"]  # fmt: skip

        def verify() -> None:
            assert ls_by_folder(location, account="imap") == expected
            assert_clean_vault(location, messages=sum(len(c) for c in expected.values()))

        return Trial(args, env, lambda: ok(*args, env=env), verify)

    kill_matrix("IMAP backup", request.node.callspec.params["vault_at"], make, STORAGE + IMAP, tmp_path, 102)


# ----------------------------------------------------------------------------- POP3 backup


def test_kill_pop3_backup_with_delete(dovecot: Dovecot, vault_at: Callable[[str], str],
                                      fresh_cache: Callable[[str], Path], tmp_path: Path,
                                      request: pytest.FixtureRequest) -> None:  # fmt: skip
    """POP3 with ``--delete-after-days 1`` (every message is older): a kill never loses a message — each
    one is either still on the server or in a committed snapshot — and after the rerun the server is
    empty and the vault holds every message once."""
    counter = iter(range(10**6))

    def make(name: str) -> Trial:
        user = f"pk{next(counter)}-{random.getrandbits(24):x}"
        dovecot.add_user(user, f"secret-{user}")
        account = DovecotAccount(dovecot, user, f"secret-{user}")
        expected = seed_account(account, {"INBOX": 30}, f"pop{user}", 13)["INBOX"]
        env = {SERVER_PW_ENV: account.password}
        location = vault_at(name)
        init_vault(location, VAULT_PASSWORD, SMALL_PACKS)
        fresh_cache(name)
        args: list[str | Path] = ["backup", location, account.url("pop3s"), "--password-env", SERVER_PW_ENV,
                                  "--ca-file", dovecot.ca_file, "--account", "pop", "--delete-after-days", "1",
                                  "--quiet"]  # fmt: skip

        def verify() -> None:
            assert server_messages(account, "INBOX") == {}, "the rerun left old mail on the server"
            held: Counter[str] = Counter()
            for snap in ok_json("snapshots", location, "--account", "pop"):
                for blobs in ls_by_folder(location, snap["id"], account="pop").values():
                    held |= blobs
            assert held == expected, "a message deleted from the server is in no snapshot"
            assert_clean_vault(location, messages=len(expected))

        return Trial(args, env, lambda: ok(*args, env=env), verify)

    kill_matrix("POP3 backup --delete-after-days", request.node.callspec.params["vault_at"], make,
                STORAGE + POP, tmp_path, 103)  # fmt: skip


# ----------------------------------------------------------------------------- restore and migrate


def _new_account(dovecot: Dovecot, prefix: str) -> DovecotAccount:
    user = f"{prefix}{random.getrandbits(32):x}"
    dovecot.add_user(user, f"secret-{user}")
    return DovecotAccount(dovecot, user, f"secret-{user}")


def test_kill_restore(dovecot: Dovecot, vault_at: Callable[[str], str], fresh_cache: Callable[[str], Path],
                      tmp_path: Path, request: pytest.FixtureRequest) -> None:  # fmt: skip
    """One vault (a backup of the source); each trial restores it into a new empty account."""
    from tests.restore.helpers import read_account

    source = _new_account(dovecot, "rs")
    seed_account(source, FOLDERS, "restore", 14)
    want = read_account(source, FOLDERS)  # type: ignore[arg-type]
    location = vault_at("restore")
    init_vault(location, VAULT_PASSWORD, SMALL_PACKS)
    fresh_cache("backup")
    ok("backup", location, source.url(), "--password-env", SERVER_PW_ENV, "--ca-file", dovecot.ca_file,
       "--account", "src", "--quiet", env={SERVER_PW_ENV: source.password})  # fmt: skip
    n_messages = sum(FOLDERS.values())

    def make(name: str) -> Trial:
        target = _new_account(dovecot, "rt")
        fresh_cache(name)  # a new restore journal too
        env = {SERVER_PW_ENV: target.password}
        args: list[str | Path] = ["restore", location, target.url(), "--password-env", SERVER_PW_ENV,
                                  "--ca-file", dovecot.ca_file, "--account", "src", "--quiet"]  # fmt: skip

        def rerun() -> None:
            out = ok_json(*args[:-1], env=env)
            assert out["failures"] == [], out

        def verify() -> None:
            got = read_account(target, FOLDERS)  # type: ignore[arg-type]
            for folder in FOLDERS:
                assert got[folder] == want[folder], f"{folder}: {len(got[folder])} vs {len(want[folder])}"
            assert_clean_vault(location, messages=n_messages)

        return Trial(args, env, rerun, verify)

    kill_matrix(
        "restore", request.node.callspec.params["vault_at"], make, ("get", "imap", "imapline"), tmp_path, 104
    )


def test_kill_migrate(dovecot: Dovecot, vault_at: Callable[[str], str], fresh_cache: Callable[[str], Path],
                      tmp_path: Path, request: pytest.FixtureRequest) -> None:  # fmt: skip
    """``migrate`` (backup + restore through a vault) into a new account per trial."""
    from tests.restore.helpers import read_account

    source = _new_account(dovecot, "ms")
    expected = seed_account(source, FOLDERS, "migrate", 15)
    want = read_account(source, FOLDERS)  # type: ignore[arg-type]

    def make(name: str) -> Trial:
        target = _new_account(dovecot, "mt")
        location = vault_at(name)
        init_vault(location, VAULT_PASSWORD, SMALL_PACKS)
        fresh_cache(name)
        env = {"MV_SRC_PW": source.password, "MV_DST_PW": target.password}
        args: list[str | Path] = ["migrate", source.url(), target.url(), "--vault", location, "--account", "mig",
                                  "--source-password-env", "MV_SRC_PW", "--target-password-env", "MV_DST_PW",
                                  "--ca-file", dovecot.ca_file, "--quiet"]  # fmt: skip

        def verify() -> None:
            got = read_account(target, FOLDERS)  # type: ignore[arg-type]
            for folder in FOLDERS:
                assert got[folder] == want[folder], f"{folder}: {len(got[folder])} vs {len(want[folder])}"
            assert ls_by_folder(location, account="mig") == expected
            assert_clean_vault(location, messages=sum(len(c) for c in expected.values()))

        return Trial(args, env, lambda: ok(*args, env=env), verify)

    kill_matrix("migrate", request.node.callspec.params["vault_at"], make, STORAGE + IMAP, tmp_path, 105)


# ----------------------------------------------------------------------------- forget + prune


def copy_vault(src: str, dst: str) -> None:
    """A copy of a whole vault (a directory, or every object under an S3 prefix)."""
    if not src.startswith("s3://"):
        shutil.copytree(src, dst)
        return
    import boto3

    client = boto3.client("s3")
    bucket, _, src_prefix = src[5:].partition("/")
    dst_prefix = dst[5:].partition("/")[2]
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=src_prefix + "/"):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                client.copy_object(Bucket=bucket, Key=dst_prefix + key[len(src_prefix):],
                                   CopySource={"Bucket": bucket, "Key": key})  # fmt: skip
    finally:
        client.close()


def test_kill_forget_prune(vault_at: Callable[[str], str], fresh_cache: Callable[[str], Path], tmp_path: Path,
                           request: pytest.FixtureRequest) -> None:  # fmt: skip
    """Snapshot 1 = common + old (interleaved: packs mix kept and forgotten mail), snapshot 2 = common +
    new; each trial runs ``forget --keep-last 1 --prune`` on a copy of that vault."""
    rng = random.Random(16)
    common = [noisy_message(rng, i, "common") for i in range(60)]
    old = [noisy_message(rng, i, "old") for i in range(60)]
    new = [noisy_message(rng, i, "new") for i in range(20)]
    template = vault_at("template")
    init_vault(template, VAULT_PASSWORD, SMALL_PACKS)
    fresh_cache("template")
    snaps = {}
    for label, msgs in (
        ("snap1", [m for pair in zip(common, old, strict=True) for m in pair]),
        ("snap2", common + new),
    ):
        d = tmp_path / label
        for sub in ("cur", "new", "tmp"):
            (d / sub).mkdir(parents=True)
        for i, raw in enumerate(msgs):
            (d / "cur" / f"{1300000000 + i}.M{i}P3.host:2,S").write_bytes(raw)
        snaps[label] = ok_json("import", template, d, "--account", "acct")["snapshot"]
    kept = {"INBOX": Counter(sha(m) for m in common + new)}
    assert ls_by_folder(template, snaps["snap2"]) == kept

    def make(name: str) -> Trial:
        location = vault_at(name)
        copy_vault(template, location)
        fresh_cache(name)
        args: list[str | Path] = [
            "forget",
            location,
            "--account",
            "acct",
            "--keep-last",
            "1",
            "--prune",
            "--quiet",
        ]

        def verify() -> None:
            assert [s["id"] for s in ok_json("snapshots", location)] == [snaps["snap2"]]
            assert ls_by_folder(location, snaps["snap2"]) == kept
            assert_clean_vault(location, messages=len(common) + len(new))

        return Trial(args, {}, lambda: ok(*args), verify)

    kill_matrix("forget --prune", request.node.callspec.params["vault_at"], make, STORAGE, tmp_path, 106)
