"""Backup over latency (issue 12), against the real Dovecot: pipelined body FETCH, a large folder split
over parallel connections, and the round trips of a no-op run.

* bodies are mapped to their UIDs by the UID in each response: a server that answers a command's
  FETCH responses in reverse order, with unsolicited FETCH responses in between, still gives the
  exact snapshot, and several body FETCH commands were in flight at once;
* one large folder over 4 connections gives the same snapshot (folders, UIDs, flags, INTERNALDATE,
  manifest ids) as over one, and every connection took part;
* a no-op backup asks ENABLE, NAMESPACE and LIST-STATUS in one round trip after login.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from bench.latency_proxy import LatencyProxy
from tests.backup.helpers import (
    SERVER_PW_ENV,
    Account,
    backup,
    backup_args,
    cli_json,
    cli_proc,
    ls,
    make_message,
    open_vault,
    random_date,
    server_messages,
)
from tests.backup.reorder_proxy import ReorderProxy
from tests.common import assert_one_line_error, sha, vault_files
from tests.common import invoke as cli

FLAG_POOL = ["\\Seen", "\\Answered", "\\Flagged", "$label1"]


def _seed(account: Account, folder: str, n: int, seed: int, size: int | None = None) -> None:
    rng = random.Random(seed)
    msgs = []
    for i in range(n):
        flags = [f for f in FLAG_POOL if rng.random() < 0.3]
        msgs.append((make_message(i, rng, tag=f"pf{seed}-", size=size), flags, random_date(rng)))
    account.server.seed(account.user, folder, msgs)


def _assert_exact(rows: list[dict], account: Account, folder: str) -> None:
    """Every message of the folder is listed under its UID with the hash of its served bytes, its
    flags and INTERNALDATE; nothing else is listed."""
    served = server_messages(account, folder)
    listed = {r["uid"]: r for r in rows if r["folder"] == folder}
    assert set(listed) == set(served)
    for uid, m in served.items():
        row = listed[uid]
        assert row["blob"] == sha(m.body), uid
        assert frozenset(row["flags"]) == m.flags, (uid, row["flags"], m.flags)
        assert row["internaldate"] is not None


def test_pipelined_fetch_maps_reordered_and_unsolicited_responses_to_the_right_uids(
    account: Account, vault: Path
) -> None:
    _seed(account, "INBOX", 400, seed=5, size=6000)  # ~2.4 MB: several 512 KiB batches
    with ReorderProxy("127.0.0.1", account.server.imap_port) as proxy:
        args = backup_args(vault, account, "--connections", "1", "--allow-plaintext", "--json",
                           scheme="imap", port=proxy.port, ca=False)  # fmt: skip
        result = cli_json(*args[:-1], env=account.env())
    assert result["messages_fetched"] == 400 and result["failures"] == [], result
    assert proxy.stats.body_fetches >= 3, proxy.stats
    assert proxy.stats.max_in_flight >= 2, proxy.stats  # pipelined, not one command at a time
    assert proxy.stats.reversed_responses >= 100 and proxy.stats.injected >= 3, proxy.stats
    rows = ls(vault, result["snapshot"])
    _assert_exact(rows, account, "INBOX")
    assert not any("$Unsolicited" in r["flags"] for r in rows)  # a flag-only response is no body


def test_large_folder_split_over_connections_gives_the_same_snapshot(account: Account, vault: Path) -> None:
    _seed(account, "INBOX", 60, seed=6)
    _seed(account, "Archive/2001", 2000, seed=7)
    one = backup(vault, account, "--connections", "1", "--account", "one")
    with LatencyProxy("127.0.0.1", account.server.imap_port, rtt_ms=2, gmail=True) as proxy:
        args = backup_args(vault, account, "--connections", "4", "--account", "four", "--allow-plaintext",
                           scheme="imap", port=proxy.port, ca=False)  # fmt: skip
        four = cli_json(*args, env=account.env())
        stats = proxy.stats
    assert one["messages"] == four["messages"] == 2060
    assert four["messages_fetched"] == 2060 and four["failures"] == []
    assert stats.connections == 4, stats
    # The large folder was EXAMINEd on more than one connection: its chunks were shared.
    assert stats.verbs["EXAMINE"] >= 3, stats.verbs
    with open_vault(vault) as repo:
        a = repo.resolve_snapshot(one["snapshot"])
        b = repo.resolve_snapshot(four["snapshot"])
        fields = (
            "name",
            "name_raw",
            "uidvalidity",
            "uidnext",
            "highestmodseq",
            "messages",
            "bytes",
            "manifest",
        )
        assert [[getattr(f, k) for k in fields] for f in a.folders] == [
            [getattr(f, k) for k in fields] for f in b.folders
        ]
    _assert_exact(ls(vault, four["snapshot"]), account, "Archive/2001")


def test_noop_backup_needs_one_round_trip_after_login(account: Account, vault: Path) -> None:
    _seed(account, "INBOX", 30, seed=8)
    _seed(account, "Work", 20, seed=9)
    backup(vault, account)
    with LatencyProxy("127.0.0.1", account.server.imap_port, rtt_ms=200, gmail=True) as proxy:
        args = backup_args(vault, account, "--allow-plaintext", scheme="imap", port=proxy.port, ca=False)
        again = cli_json(*args, env={SERVER_PW_ENV: account.password})
        stats = proxy.stats
    assert again["messages_fetched"] == 0 and again["folders_unchanged"] == again["folders"]
    assert stats.connections == 1, stats
    assert stats.verbs["ENABLE"] == stats.verbs["NAMESPACE"] == stats.verbs["LIST"] == 1, stats.verbs
    assert stats.verbs["EXAMINE"] == 0, stats.verbs
    # LOGIN; ENABLE + NAMESPACE + LIST together; LOGOUT (CAPABILITY too when the greeting lacks it).
    assert stats.client_turns <= 4, stats


def test_migrate_backs_up_a_large_folder_over_parallel_connections(account: Account, vault: Path) -> None:
    _seed(account, "INBOX", 1200, seed=10, size=1500)
    target = Account(account.server, account.user + "-to", "secret-to")
    account.server.add_user(target.user, target.password)
    with LatencyProxy("127.0.0.1", account.server.imap_port, rtt_ms=2, gmail=True) as proxy:
        out = cli_json(
            "migrate", account.url("imap", proxy.port), target.url(), "--vault", vault / "migrate",
            "--source-password-env", "MV_SRC_PW", "--target-password-env", "MV_DST_PW",
            "--ca-file", account.server.ca_file, "--allow-plaintext", "--quiet",
            env={"MV_SRC_PW": account.password, "MV_DST_PW": target.password},
        )  # fmt: skip
        stats = proxy.stats
    assert out["exit_code"] == 0, out
    assert out["backup"]["messages_fetched"] == 1200 and out["restore"]["uploaded"] == 1200
    assert stats.connections >= 3, stats  # auto: about one per 500 messages to fetch
    assert stats.verbs["EXAMINE"] >= 3, stats.verbs  # the one folder was shared by the connections
    assert {sha(m.body) for m in server_messages(target, "INBOX").values()} == {
        sha(m.body) for m in server_messages(account, "INBOX").values()
    }


def test_connection_opened_during_key_derivation_fails_cleanly(account: Account, vault: Path) -> None:
    """The IMAP login runs while the vault key is derived: a wrong vault password still reports the
    vault (and the connection is dropped), a wrong server password the login; the vault is untouched."""
    _seed(account, "INBOX", 5, seed=11)
    before = vault_files(vault)
    wrong_vault = cli_proc(
        *backup_args(vault, account), env={**account.env(), "MAILVAULT_PASSWORD": "not it"}
    )
    assert_one_line_error(wrong_vault, 2, "password")
    wrong_server = cli_proc(*backup_args(vault, account), env=account.env("not the password"))
    assert_one_line_error(wrong_server, 2, "refused")
    assert vault_files(vault) == before
    assert backup(vault, account)["messages"] == 5  # and the right ones work


def test_an_unreadable_fetch_response_fails_only_its_message(account: Account, vault: Path) -> None:
    """One message's FETCH responses cannot be parsed: the pipeline gives way to one command at a time,
    halved down to that message, which is reported; every other message is stored; the next run
    (through a sane path) fetches it."""
    _seed(account, "INBOX", 120, seed=12, size=3000)
    with ReorderProxy("127.0.0.1", account.server.imap_port, corrupt_uid=37) as proxy:
        args = backup_args(vault, account, "--connections", "1", "--allow-plaintext", "--json",
                           scheme="imap", port=proxy.port, ca=False)  # fmt: skip
        result = json.loads(cli(*args, env=account.env(), code=1).stdout)
    assert result["exit_code"] == 1
    assert len(result["failures"]) == 1 and "UID 37" in result["failures"][0], result["failures"]
    assert result["messages"] == 119
    rows = ls(vault, result["snapshot"])
    assert 37 not in {r["uid"] for r in rows}
    served = server_messages(account, "INBOX")
    assert all(r["blob"] == sha(served[r["uid"]].body) for r in rows)
    again = backup(vault, account)
    assert again["messages"] == 120 and again["messages_fetched"] == 1
    _assert_exact(ls(vault, again["snapshot"]), account, "INBOX")
