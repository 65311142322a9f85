"""Connections cut at random byte offsets (a FaultProxy in front of Dovecot): during FETCH (IMAP
backup), RETR (POP3 backup) and APPEND (restore). Each trial: the cut run reconnects and finishes or
names what it missed (exit 0/1, never a hang or a traceback); the next clean run completes; then the
snapshot or the target account equals the source, nothing stored or uploaded twice.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

from tests.backup.helpers import SERVER_PW_ENV
from tests.common import DovecotAccount, init_vault, invoke
from tests.faults.harness import (
    SMALL_PACKS,
    VAULT_PASSWORD,
    assert_clean_vault,
    ls_by_folder,
    ok,
    report,
    seed_account,
    timed,
    trials,
)
from tests.servers.dovecot import Dovecot
from tests.servers.proxy import FaultProxy

CI_TRIALS, FULL_TRIALS = 3, 30
FOLDERS = {"INBOX": 60, "Archive": 30}


def _account(dovecot: Dovecot, prefix: str) -> DovecotAccount:
    user = f"{prefix}{random.getrandbits(32):x}"
    dovecot.add_user(user, f"secret-{user}")
    return DovecotAccount(dovecot, user, f"secret-{user}")


def _faulty_run(args: list[str | Path], env: dict[str, str]) -> dict:
    """The run with the cut: exit 0 (reconnected) or 1 (named what it missed), JSON on stdout."""
    result = invoke(*args, "--json", code=None, env=env)
    assert result.exit_code in (0, 1), (result.exit_code, result.stdout[-2000:], result.stderr[-2000:])
    out = json.loads(result.stdout)
    if result.exit_code == 1:
        assert out["failures"], out
    return dict(out)


def _cut_matrix(
    name: str, proxy: FaultProxy, make: Callable[[str], tuple[list[str | Path], dict[str, str], Callable[[], None], Callable[[], None]]],
    direction: str, seed: int,
) -> None:  # fmt: skip
    want = trials(CI_TRIALS, FULL_TRIALS)
    rng = random.Random(seed)
    outcomes: dict[str, int] = {"reconnected": 0, "partial, named": 0}
    with timed() as elapsed:
        args, env, rerun, verify = make("calibrate")
        proxy.reset()
        ok(*args, env=env)
        total = proxy.bytes_s2c if direction == "s2c" else proxy.bytes_c2s
        assert total > 10_000, total
        for t in range(want):
            args, env, rerun, verify = make(f"t{t}")
            proxy.reset()
            offset = rng.randrange(0, total)
            proxy.cut_after(offset, rst=rng.random() < 0.5, direction=direction)
            out = _faulty_run(args, env)
            assert proxy.cuts == 1, f"the cut at byte {offset} of {total} did not fire"
            outcomes["partial, named" if out.get("failures") else "reconnected"] += 1
            proxy.reset()
            rerun()
            try:
                verify()
            except AssertionError as exc:
                raise AssertionError(f"{name} trial {t}, cut at byte {offset} of {total}: {exc}") from exc
    report(
        f"connection cut during {name}",
        f"FaultProxy closes the connection (FIN or RST) after a random byte offset of the {'server→client' if direction == 's2c' else 'client→server'} stream (0-{total} bytes)",
        want,
        f"cut run: {outcomes['reconnected']} reconnected and finished, {outcomes['partial, named']} exit 1 naming what was missed; every rerun completed; 0 lost, 0 duplicated",
        group="net",
        seconds=elapsed(),
    )


def test_cut_during_imap_fetch(dovecot: Dovecot, make_fault_proxy, fresh_cache: Callable[[str], Path], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    source = _account(dovecot, "cf")
    expected = seed_account(source, FOLDERS, "cutfetch", 31)
    assert dovecot.imaps_port is not None
    proxy = make_fault_proxy(dovecot.host, dovecot.imaps_port)
    env = {SERVER_PW_ENV: source.password}

    def make(name: str):  # type: ignore[no-untyped-def]
        location = str(tmp_path / f"v-{name}")
        init_vault(location, VAULT_PASSWORD, SMALL_PACKS)
        fresh_cache(name)
        # One connection: the cut's byte offset is counted per connection.
        args: list[str | Path] = ["backup", location, source.url("imaps", proxy.port), "--password-env", SERVER_PW_ENV,
                                  "--ca-file", dovecot.ca_file, "--account", "src", "--connections", "1"]  # fmt: skip

        def verify() -> None:
            assert ls_by_folder(location, account="src") == expected
            assert_clean_vault(location, messages=sum(len(c) for c in expected.values()))

        return args, env, lambda: ok(*args, "--quiet", env=env), verify

    _cut_matrix("IMAP FETCH (backup)", proxy, make, "s2c", 41)


def test_cut_during_pop3_retr(dovecot: Dovecot, make_fault_proxy, fresh_cache: Callable[[str], Path], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    source = _account(dovecot, "cr")
    expected = seed_account(source, {"INBOX": 80}, "cutretr", 32)
    assert dovecot.pop3s_port is not None
    proxy = make_fault_proxy(dovecot.host, dovecot.pop3s_port)
    env = {SERVER_PW_ENV: source.password}

    def make(name: str):  # type: ignore[no-untyped-def]
        location = str(tmp_path / f"v-{name}")
        init_vault(location, VAULT_PASSWORD, SMALL_PACKS)
        fresh_cache(name)
        args: list[str | Path] = ["backup", location, source.url("pop3s", proxy.port), "--password-env", SERVER_PW_ENV,
                                  "--ca-file", dovecot.ca_file, "--account", "pop"]  # fmt: skip

        def verify() -> None:
            assert ls_by_folder(location, account="pop") == expected
            assert_clean_vault(location, messages=len(expected["INBOX"]))

        return args, env, lambda: ok(*args, "--quiet", env=env), verify

    _cut_matrix("POP3 RETR (backup)", proxy, make, "s2c", 42)


def test_cut_during_imap_append(dovecot: Dovecot, make_fault_proxy, fresh_cache: Callable[[str], Path], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    from tests.restore.helpers import read_account

    source = _account(dovecot, "ca")
    seed_account(source, FOLDERS, "cutappend", 33)
    want = read_account(source, FOLDERS)  # type: ignore[arg-type]
    location = str(tmp_path / "vault")
    init_vault(location, VAULT_PASSWORD, SMALL_PACKS)
    fresh_cache("backup")
    ok("backup", location, source.url(), "--password-env", SERVER_PW_ENV, "--ca-file", dovecot.ca_file,
       "--account", "src", "--quiet", env={SERVER_PW_ENV: source.password})  # fmt: skip
    assert dovecot.imaps_port is not None
    proxy = make_fault_proxy(dovecot.host, dovecot.imaps_port)

    def make(name: str):  # type: ignore[no-untyped-def]
        target = _account(dovecot, "cat")
        fresh_cache(name)
        env = {SERVER_PW_ENV: target.password}
        # One connection: the cut's byte offset is counted per connection.
        args: list[str | Path] = ["restore", location, target.url("imaps", proxy.port), "--password-env", SERVER_PW_ENV,
                                  "--ca-file", dovecot.ca_file, "--account", "src", "--connections", "1"]  # fmt: skip

        def verify() -> None:
            got = read_account(target, FOLDERS)  # type: ignore[arg-type]
            for folder in FOLDERS:
                assert got[folder] == want[folder], (
                    f"{folder}: {sum(got[folder].values())} vs {sum(want[folder].values())} messages"
                )

        return args, env, lambda: ok(*args, "--quiet", env=env), verify

    _cut_matrix("IMAP APPEND (restore)", proxy, make, "c2s", 43)
