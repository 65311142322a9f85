"""Servers that push back: ``NO [UNAVAILABLE]`` / ``NO [LIMIT]`` / ``NO [THROTTLED]`` on APPEND (back off,
retry, no duplicate), ``* BYE`` in the middle of an APPEND (before or after its OK), and a server that
stalls mid-FETCH (the socket timeout fires, the run reconnects: no hang)."""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import mailvault.backup.connect as backup_module
import mailvault.restore
from mailvault.backup import BackupOptions
from mailvault.backup import backup as core_backup
from mailvault.net.session import Credentials, TLSPolicy, connect_imap, parse_url
from mailvault.restore import RestoreOptions, restore
from mailvault.targets.imap import ImapTarget
from mailvault.vault.repository import Repository
from tests.common import FAST_SCRYPT, DovecotAccount, init_vault
from tests.faults.harness import (
    SMALL_PACKS,
    VAULT_PASSWORD,
    assert_clean_vault,
    ls_by_folder,
    report,
    seed_account,
    timed,
    trials,
)
from tests.gmail.fakegmail import FakeGmail
from tests.gmail.helpers import Msg, access, make_message, write_snapshot
from tests.servers.dovecot import Dovecot
from tests.servers.proxy import FaultProxy


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The restore target's back-off waits, recorded instead of slept."""
    waited: list[float] = []
    monkeypatch.setattr(mailvault.restore, "ImapTarget", functools.partial(ImapTarget, sleep=waited.append))
    return waited


@pytest.fixture
def gmail() -> Iterator[FakeGmail]:
    with FakeGmail() as g:
        yield g


def _snapshot(tmp_path: Path, n: int, seed: int) -> tuple[Repository, list[bytes]]:
    repo = Repository.init(str(tmp_path / f"vault-{seed}"), VAULT_PASSWORD.encode(), scrypt=FAST_SCRYPT)
    msgs = [make_message(i, seed=seed) for i in range(n)]
    work = [Msg(m, ("\\Seen",)) for m in msgs[: n // 2]]
    write_snapshot(
        repo, [("INBOX", None, msgs[: n // 2]), ("Work", None, work + [Msg(m, ()) for m in msgs[n // 2 :]])]
    )
    return repo, msgs


def _assert_exactly_once(g: FakeGmail, msgs: list[bytes]) -> None:
    raws = [m.raw for m in g.messages.values()]
    assert sorted(raws) == sorted(msgs), f"{len(raws)} messages on the server, {len(msgs)} in the snapshot"


@pytest.mark.parametrize("code", ["UNAVAILABLE", "LIMIT", "THROTTLED"])
def test_push_back_on_append_backs_off(tmp_path: Path, sleeps: list[float], code: str) -> None:
    n = trials(2, 10)
    rng = random.Random(code)
    waited = 0.0
    with timed() as elapsed:
        for t in range(n):
            repo, msgs = _snapshot(tmp_path, 12, seed=t)
            with FakeGmail() as g:
                g.throttle_next(rng.randint(1, 3), after=rng.randint(0, 8), code=code)
                before = len(sleeps)
                r = restore(repo, *access(g), RestoreOptions())  # type: ignore[arg-type]
                assert r.exit_code == 0, r.failures
                assert len(sleeps) > before, "no back-off"
                waited += sum(sleeps[before:])
                _assert_exactly_once(g, msgs)
            repo.close()
    report(f"NO [{code}] on APPEND", f"fake Gmail answers 1-3 APPENDs (after 0-8 good ones) with NO [{code}]", n,
           f"backed off (exponential, {waited:.0f} s waited in all) and retried; exit 0; every message exactly once",
           group="net", seconds=elapsed())  # fmt: skip


def test_bye_mid_append(tmp_path: Path, sleeps: list[float]) -> None:
    n = trials(2, 30)
    rng = random.Random(71)
    before_ok = 0
    with timed() as elapsed:
        for t in range(n):
            repo, msgs = _snapshot(tmp_path, 12, seed=100 + t)
            with FakeGmail() as g:
                ok_first = rng.random() < 0.5
                before_ok += not ok_first
                g.bye_after_appends(rng.randint(1, 11), before_ok=not ok_first)
                r = restore(repo, *access(g), RestoreOptions())  # type: ignore[arg-type]
                assert r.exit_code == 0, r.failures
                assert g.connections >= 2, "no reconnect after the BYE"
                _assert_exactly_once(g, msgs)
            repo.close()
    report("* BYE mid-APPEND", f"fake Gmail sends * BYE [UNAVAILABLE] and closes after a random APPEND ({before_ok} of them before its OK: stored but unconfirmed)", n,
           "reconnected, looked before re-sending; exit 0; every message exactly once", group="net", seconds=elapsed())  # fmt: skip


def test_stalled_server_mid_fetch(dovecot: Dovecot, make_fault_proxy, monkeypatch: pytest.MonkeyPatch, fresh_cache, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    """The proxy stops forwarding (both ways) at a random byte offset for longer than the socket timeout."""
    user = f"st{random.getrandbits(32):x}"
    dovecot.add_user(user, f"secret-{user}")
    source = DovecotAccount(dovecot, user, f"secret-{user}")
    expected = seed_account(source, {"INBOX": 80, "Archive": 40}, "stall", 72)
    assert dovecot.imaps_port is not None
    proxy: FaultProxy = make_fault_proxy(dovecot.host, dovecot.imaps_port)
    real: Callable = connect_imap
    monkeypatch.setattr(
        backup_module, "connect_imap", lambda ep, creds, tls: real(ep, creds, tls, timeout=1.5)
    )
    endpoint = parse_url(source.url("imaps", proxy.port))
    creds = Credentials(password=source.password.encode)
    tls = TLSPolicy(str(dovecot.ca_file))
    location = str(tmp_path / "calib")
    init_vault(location, VAULT_PASSWORD, SMALL_PACKS)
    fresh_cache("calib")
    with Repository.open(location, VAULT_PASSWORD.encode) as repo:
        core_backup(repo, endpoint, creds, tls, BackupOptions(account="src"))
    total = proxy.bytes_s2c
    rng = random.Random(73)
    n = trials(1, 5)
    longest = 0.0
    with timed() as elapsed:
        for t in range(n):
            location = str(tmp_path / f"v{t}")
            init_vault(location, VAULT_PASSWORD, SMALL_PACKS)
            fresh_cache(f"s{t}")
            proxy.reset()
            proxy.stall_after(rng.randrange(0, total), 5.0)
            started = time.monotonic()
            with Repository.open(location, VAULT_PASSWORD.encode) as repo:
                result = core_backup(repo, endpoint, creds, tls, BackupOptions(account="src"))
            took = time.monotonic() - started
            longest = max(longest, took)
            assert proxy.stalls == 1
            assert took < 30, f"the stalled run took {took:.0f} s"
            assert result.exit_code in (0, 1)
            proxy.reset()
            with Repository.open(location, VAULT_PASSWORD.encode) as repo:
                again = core_backup(repo, endpoint, creds, tls, BackupOptions(account="src"))
            assert again.exit_code == 0, again.failures
            assert ls_by_folder(location, account="src") == expected
            assert_clean_vault(location, messages=sum(len(c) for c in expected.values()))
    report("stalled IMAP server mid-FETCH", "FaultProxy forwards nothing for 5 s from a random byte offset; socket timeout 1.5 s", n,
           f"timeout fired, reconnected or named what was missed (longest run {longest:.0f} s, no hang); the rerun completed; 0 lost, 0 duplicated",
           group="net", seconds=elapsed())  # fmt: skip
