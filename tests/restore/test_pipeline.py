"""Pipelined APPEND (mailvault/net/append.py, mailvault/targets/pipeline.py) against the real Dovecot,
directly (LITERAL+, MULTIAPPEND) and through bench/latency_proxy.py's Gmail profile (LITERAL-, no
MULTIAPPEND, no STARTTLS): the account afterwards is exactly the source, the profile's literal rules
hold, and the number of client *turns* (bursts after a wait, counted by the proxy at a 200 ms RTT)
does not grow with the number of messages beyond what the protocol forces (one ``+`` per literal over
4096 octets under LITERAL-).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.latency_proxy import LatencyProxy
from tests.common import mv_json
from tests.restore.helpers import (
    PW_ENV,
    Account,
    assert_same,
    backup,
    read_account,
    restore_args,
    seed_set,
)

RTT_MS = 200  # turn gap 160 ms: far above the client's own pauses between writes
#: Turns a restore needs whatever the message count: greeting, CAPABILITY, LOGIN, LIST, NAMESPACE,
#: and per folder CREATE, SELECT, the last APPEND answers, the verify FETCH; LOGOUT (with slack).
FIXED_TURNS = 30


def _seed(source: Account, n: int, rng: random.Random) -> dict[str, int]:
    """``n`` messages in two folders, a quarter of them over 4096 bytes (synchronising under LITERAL-)."""
    small = seed_set(n - n // 4, rng, tag="p-small-", size=1500)
    big = seed_set(n // 4, rng, tag="p-big-", size=9000)
    mixed = small + big
    rng.shuffle(mixed)
    layout = {"INBOX": mixed[: n // 2], "Lists/pipelined": mixed[n // 2 :]}
    source.seed(layout)
    return {f: len(m) for f, m in layout.items()}


def _run_restore(vault: Path, target: Account, url: str, *extra: str) -> dict[str, object]:
    args = restore_args(vault, target, *extra)
    args[2] = url
    out = mv_json(*args, env={PW_ENV: target.password})
    assert isinstance(out, dict)
    assert out["exit_code"] == 0 and out["failures"] == [], out
    return out


@pytest.mark.parametrize("messages", [40, 120])
def test_pipelined_restore_through_gmail_profile_is_exact_without_per_message_round_trips(
    source: Account, target: Account, vault: Path, messages: int
) -> None:
    layout = _seed(source, messages, random.Random(messages))
    backup(vault, source)
    with LatencyProxy("127.0.0.1", target.server.imap_port, rtt_ms=RTT_MS, gmail=True) as proxy:
        url = f"imap://{target.user}@127.0.0.1:{proxy.port}"
        out = _run_restore(vault, target, url, "--allow-plaintext", "--connections", "1")
        stats = proxy.stats
    assert out["uploaded"] == messages
    assert stats.literal_violations == []
    want, got = read_account(source, layout), read_account(target, layout)
    for folder in layout:
        assert_same(want[folder], got[folder], folder)
    # One wait per literal over 4096 octets (the server's "+"), nothing else per message.
    sync_literals = messages // 4
    assert stats.client_turns <= FIXED_TURNS + sync_literals, (stats, sync_literals)
    assert stats.commands >= messages  # one APPEND each (no MULTIAPPEND in this profile)


def test_pipelined_restore_with_literal_plus_has_a_constant_number_of_turns(
    source: Account, make_account: Callable[..., Account], vault: Path
) -> None:
    layout = _seed(source, 160, random.Random(7))
    backup(vault, source)
    turns = []
    for _ in range(2):
        target = make_account()
        with LatencyProxy("127.0.0.1", target.server.imaps_port, rtt_ms=RTT_MS) as proxy:
            url = f"imaps://{target.user}@127.0.0.1:{proxy.port}"
            folders = ["--folder", "INBOX"] if not turns else []  # 80 messages, then all 160
            out = _run_restore(vault, target, url, "--connections", "1", *folders)
            turns.append(proxy.stats.client_turns)
        assert out["uploaded"] == (80 if len(turns) == 1 else 160)
    want, got = read_account(source, layout), read_account(target, layout)
    for folder in layout:
        assert_same(want[folder], got[folder], folder)
    # LITERAL+: no wait per message at all; twice the messages (and one more folder: CREATE,
    # SELECT, answers, verify) adds a handful of turns (and the odd pause of a loaded machine),
    # not the 80 a wait per message would.
    assert turns[1] <= FIXED_TURNS, turns
    assert turns[1] - turns[0] <= 20, turns


def test_noop_backup_asks_list_status_and_examines_nothing(source: Account, vault: Path) -> None:
    """A backup with nothing new: one LIST (RETURN STATUS) tells every folder's state, so no
    folder is EXAMINEd and the number of turns does not depend on the number of folders."""
    layout = _seed(source, 24, random.Random(3))
    # The Gmail profile hides STARTTLS, so the proxy can read the commands (it keeps LIST-STATUS).
    with LatencyProxy("127.0.0.1", source.server.imap_port, rtt_ms=RTT_MS, gmail=True) as proxy:
        args = [
            "backup", vault, source.url("imap", proxy.port), "--password-env", PW_ENV, "--allow-plaintext",
            "--connections", "1",
        ]  # fmt: skip
        first = mv_json(*args, env={PW_ENV: source.password})
        assert isinstance(first, dict) and first["messages_fetched"] == sum(layout.values())
        assert proxy.stats.verbs["EXAMINE"] >= len(layout)  # the first backup looks into every folder
        proxy.stats.reset()
        again = mv_json(*args, env={PW_ENV: source.password})
        stats = proxy.stats
    assert isinstance(again, dict) and again["messages_fetched"] == 0
    assert stats.verbs["LIST"] == 1, stats.verbs
    assert stats.verbs["EXAMINE"] == 0 and stats.verbs["SELECT"] == 0, stats.verbs
    assert stats.client_turns <= 12, stats  # greeting, CAPABILITY, LOGIN, ENABLE, LIST, LOGOUT (+ slack)
