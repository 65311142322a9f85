"""A restore creates every missing target folder in one round trip before uploading (the CREATEs
pipelined: ``ImapTarget.create_many``), not one round trip per folder on each connection's way;
a folder the server refuses fails once, with the server's reason, and the others are restored."""

from __future__ import annotations

import random
from pathlib import Path

from bench.latency_proxy import LatencyProxy
from mailvault.net.session import Credentials, TLSPolicy, connect_imap, parse_url
from mailvault.targets.imap import ImapTarget
from tests.common import mv_json
from tests.restore.helpers import PW_ENV, Account, assert_same, backup, read_account, restore_args, seed_set

#: Dovecot refuses a mailbox name this long ("Mailbox name too long").
TOO_LONG = "x" * 300
FOLDERS = [f"Projects/p{i}" for i in range(6)] + ["Lists", "Lists/weekly"]


def _target(account: Account) -> ImapTarget:
    ep = parse_url(account.url())
    creds = Credentials(password=account.password.encode)
    return ImapTarget(lambda: connect_imap(ep, creds, TLSPolicy(str(account.server.ca_file))))


def test_create_many_reports_only_refusals(target: Account) -> None:
    t = _target(target)
    try:
        t.create("Existing")
        refused = t.create_many(["New", "New/child", "Existing", "INBOX", TOO_LONG])
        assert refused is not None
        assert list(refused) == [TOO_LONG]
        assert "too long" in refused[TOO_LONG].lower()
        names = {f.name for f in t.folders()}
        assert {"New", "New/child", "Existing"} <= names
        assert TOO_LONG not in names
        assert t.create_many([]) == {}
    finally:
        t.close()


def test_restore_creates_folders_in_one_turn_and_reports_a_refused_one(
    source: Account, target: Account, vault: Path
) -> None:
    rng = random.Random(5)
    layout = {name: seed_set(3, rng, tag=f"{name}-") for name in [*FOLDERS, "Refused"]}
    source.seed(layout)
    backup(vault, source)
    # The Gmail profile hides STARTTLS, so the proxy reads the commands; 200 ms RTT: a wait is a turn.
    with LatencyProxy("127.0.0.1", target.server.imap_port, rtt_ms=200, gmail=True) as proxy:
        args = restore_args(
            vault, target, "--allow-plaintext", "--connections", "1", "--map", f"Refused={TOO_LONG}"
        )
        args[2] = target.url("imap", proxy.port)
        out = mv_json(*args, env={PW_ENV: target.password}, code=None)
        stats = proxy.stats
    assert isinstance(out, dict)
    assert out["exit_code"] != 0
    # The refused folder: one failure line with the server's reason and a --map suggestion.
    refusals = [f for f in out["failures"] if "refused to create" in f]
    assert len(refusals) == 1 and "too long" in refusals[0].lower() and "--map" in refusals[0], out[
        "failures"
    ]
    plans = {f["source"]: f for f in out["folders"]}
    assert plans["Refused"]["failed"] == 3 and plans["Refused"]["pending"] == 0
    assert out["uploaded"] == 3 * len(FOLDERS)
    # Every CREATE (the eight folders, the refused one and the parents) went in one client turn.
    assert stats.verbs["CREATE"] >= len(FOLDERS) + 1, stats.verbs
    assert len(stats.verb_turns["CREATE"]) == 1, stats.verb_turns["CREATE"]
    want, got = read_account(source, FOLDERS), read_account(target, FOLDERS)
    for folder in FOLDERS:
        assert_same(want[folder], got[folder], folder)
