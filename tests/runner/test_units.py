"""Pure modules of the runner: retention (keep policies), schedules, shards."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from mailvault.errors import ConfigError
from mailvault.retention import KeepPolicy, apply_policy, plan_forget
from mailvault.runner import in_shard, parse_shard
from mailvault.schedule import parse_schedule
from mailvault.vault.snapshots import Snapshot

# ----------------------------------------------------------------------------- retention


def local(*args: int) -> datetime:
    """A local-time aware datetime (the policy buckets by local time)."""
    return datetime(*args).astimezone()  # type: ignore[arg-type]


def snap(when: datetime, account: str = "acct", sid: str | None = None) -> Snapshot:
    sid = sid or hashlib.sha256(f"{account} {when.isoformat()}".encode()).hexdigest()
    return Snapshot(
        time=when.isoformat(),
        host="h",
        account=account,
        source_kind="imap",
        source_address="x",
        folders=[],
        id=sid,
    )


def kept(decisions: list) -> list[datetime]:  # type: ignore[type-arg]
    return [d.snapshot.datetime for d in decisions if d.keep]


def test_keep_last_keeps_the_n_newest_whatever_the_input_order() -> None:
    times = [local(2024, 5, 1, 12) + timedelta(hours=7 * i) for i in range(10)]
    shuffled = [snap(t) for t in times[5:] + times[:5]]
    decisions = apply_policy(shuffled, KeepPolicy(last=3))
    assert [d.snapshot.datetime for d in decisions] == sorted(times, reverse=True)  # newest first
    assert kept(decisions) == sorted(times, reverse=True)[:3]
    assert all(d.reasons == ["last"] for d in decisions if d.keep)
    assert all(d.reasons == [] for d in decisions if not d.keep)


def test_keep_last_larger_than_the_count_keeps_all() -> None:
    snaps = [snap(local(2024, 5, 1, h)) for h in range(4)]
    assert all(d.keep for d in apply_policy(snaps, KeepPolicy(last=100)))


def test_keep_daily_keeps_the_newest_of_each_of_the_last_n_days_with_snapshots() -> None:
    # Three snapshots on each of 1, 2, 4 and 7 May (gaps: days without snapshots do not count).
    times = [local(2024, 5, d, h) for d in (1, 2, 4, 7) for h in (3, 11, 19)]
    decisions = apply_policy([snap(t) for t in times], KeepPolicy(daily=3))
    assert kept(decisions) == [local(2024, 5, 7, 19), local(2024, 5, 4, 19), local(2024, 5, 2, 19)]
    assert all(d.reasons == ["daily"] for d in decisions if d.keep)


def test_keep_hourly() -> None:
    times = [local(2024, 5, 1, 10, m) for m in (5, 50)] + [local(2024, 5, 1, 12, m) for m in (1, 2)]
    decisions = apply_policy([snap(t) for t in times], KeepPolicy(hourly=5))
    assert kept(decisions) == [local(2024, 5, 1, 12, 2), local(2024, 5, 1, 10, 50)]


def test_keep_weekly_uses_iso_weeks_across_the_year_end() -> None:
    # 2020-12-31 (Thu) and 2021-01-03 (Sun) are both in ISO week 2020-W53; 2021-01-04 starts W1.
    times = [
        local(2020, 12, 28, 9),  # W53 Mon
        local(2020, 12, 31, 9),  # W53 Thu
        local(2021, 1, 3, 9),  # W53 Sun -> newest of W53
        local(2021, 1, 4, 9),  # W1 Mon
        local(2021, 1, 10, 9),  # W1 Sun -> newest of W1
        local(2021, 1, 11, 9),  # W2 Mon -> newest of W2
    ]
    decisions = apply_policy([snap(t) for t in times], KeepPolicy(weekly=3))
    assert kept(decisions) == [local(2021, 1, 11, 9), local(2021, 1, 10, 9), local(2021, 1, 3, 9)]
    decisions = apply_policy([snap(t) for t in times], KeepPolicy(weekly=10))
    assert len(kept(decisions)) == 3  # only three distinct weeks exist


def test_keep_monthly_and_yearly() -> None:
    times = [local(y, m, d, 8) for y in (2021, 2022, 2023) for m in (1, 6, 12) for d in (2, 20)]
    decisions = apply_policy([snap(t) for t in times], KeepPolicy(monthly=4))
    assert kept(decisions) == [
        local(2023, 12, 20, 8),
        local(2023, 6, 20, 8),
        local(2023, 1, 20, 8),
        local(2022, 12, 20, 8),
    ]
    decisions = apply_policy([snap(t) for t in times], KeepPolicy(yearly=2))
    assert kept(decisions) == [local(2023, 12, 20, 8), local(2022, 12, 20, 8)]


def test_rules_combine_and_reasons_name_every_rule() -> None:
    # One snapshot a day at noon for 90 days, ending on a Sunday (2024-03-31).
    days = [datetime(2024, 3, 31) - timedelta(days=i) for i in range(90)]
    times = [local(d.year, d.month, d.day, 12) for d in days]
    end = times[0]
    decisions = apply_policy([snap(t) for t in times], KeepPolicy(last=2, daily=5, weekly=3, monthly=3))
    by_time = {d.snapshot.datetime: d for d in decisions}
    assert by_time[end].reasons == ["last", "daily", "weekly", "monthly"]
    assert by_time[local(2024, 3, 30, 12)].reasons == ["last", "daily"]
    assert by_time[local(2024, 3, 27, 12)].reasons == ["daily"]
    assert by_time[local(2024, 3, 24, 12)].reasons == ["weekly"]  # Sunday
    assert by_time[local(2024, 3, 17, 12)].reasons == ["weekly"]
    assert by_time[local(2024, 2, 29, 12)].reasons == ["monthly"]
    assert by_time[local(2024, 1, 31, 12)].reasons == ["monthly"]
    assert by_time[local(2024, 1, 30, 12)].reasons == []
    # last 2 + daily 3 more + weekly 2 more + monthly 2 more
    assert sum(d.keep for d in decisions) == 9


def test_same_time_snapshots_are_ordered_stably_by_id() -> None:
    t = local(2024, 5, 1, 12)
    a, b = snap(t, sid="a" * 64), snap(t, sid="b" * 64)
    for order in ([a, b], [b, a]):
        decisions = apply_policy(order, KeepPolicy(last=1))
        assert [d.snapshot.id for d in decisions if d.keep] == ["b" * 64]


def test_plan_forget_applies_the_policy_per_account() -> None:
    snaps = []
    for acc, n in (("alice", 5), ("bob", 3), ("carol", 1)):
        snaps += [snap(local(2024, 5, 1 + i, 9), acc) for i in range(n)]
    decisions = plan_forget(snaps, KeepPolicy(last=2))
    assert len(decisions) == 9
    keep = Counter(d.snapshot.account for d in decisions if d.keep)
    assert keep == {"alice": 2, "bob": 2, "carol": 1}
    for acc in ("alice", "bob"):
        newest = sorted((s for s in snaps if s.account == acc), key=lambda s: s.datetime)[-2:]
        assert {d.snapshot.id for d in decisions if d.keep and d.snapshot.account == acc} == {
            s.id for s in newest
        }
    only_bob = plan_forget(snaps, KeepPolicy(last=1), account="bob")
    assert {d.snapshot.account for d in only_bob} == {"bob"}
    assert sum(d.keep for d in only_bob) == 1
    assert plan_forget(snaps, KeepPolicy(last=1), account="nobody") == []


@pytest.mark.parametrize(
    "policy", [KeepPolicy(), KeepPolicy(last=0, daily=0), KeepPolicy(last=-1), KeepPolicy(last=3, weekly=-2)]
)
def test_empty_or_negative_policy_is_refused(policy: KeepPolicy) -> None:
    with pytest.raises(ConfigError):
        apply_policy([snap(local(2024, 5, 1, 9))], policy)
    with pytest.raises(ConfigError):
        plan_forget([snap(local(2024, 5, 1, 9))], policy)


# ----------------------------------------------------------------------------- schedules


@pytest.mark.parametrize(
    ("text", "cron"),
    [
        ("hourly", "0 * * * *"),
        ("daily", "0 0 * * *"),
        ("Daily", "0 0 * * *"),
        ("daily 02:30", "30 2 * * *"),
        ("daily 7:05", "5 7 * * *"),
        ("weekly", "0 0 * * 1"),
        ("weekly sun 04:00", "0 4 * * 0"),
        ("weekly Sunday 04:00", "0 4 * * 0"),
        ("weekly fri 23:59", "59 23 * * 5"),
        ("30 2 * * *", "30 2 * * *"),
        ("*/15 * * * 1-5", "*/15 * * * 1-5"),
    ],
)
def test_parse_schedule(text: str, cron: str) -> None:
    assert parse_schedule(text).cron == cron


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sometimes",
        "fortnightly",
        "daily 24:00",
        "daily 02:60",
        "daily 2",
        "daily 02:30 extra",
        "weekly funday 04:00",
        "weekly sun",
        "weekly sun 4pm",
        "* * *",
        "61 * * * *",
        "0 0 * * 8",
        "@daily",
        "0 0 * * * *",
    ],
)
def test_bad_schedule_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="schedule"):
        parse_schedule(text)


def test_cron_that_never_fires_is_refused_at_parse_time() -> None:
    with pytest.raises(ConfigError):
        parse_schedule("0 0 30 2 *")


@pytest.mark.parametrize(
    ("text", "last", "not_yet", "due_at"),
    [
        # hourly: next full hour after the last success
        ("hourly", local(2024, 1, 10, 9, 0, 1), local(2024, 1, 10, 9, 59, 59), local(2024, 1, 10, 10)),
        # daily: next midnight
        ("daily", local(2024, 1, 10, 0, 0, 5), local(2024, 1, 10, 23, 59), local(2024, 1, 11)),
        # daily 02:30, last success late at night: the same night's 02:30 is not yet due...
        ("daily 02:30", local(2024, 1, 10, 1, 0), local(2024, 1, 10, 2, 29), local(2024, 1, 10, 2, 30)),
        # ... and a success after 02:30 waits for tomorrow's
        ("daily 02:30", local(2024, 1, 10, 2, 31), local(2024, 1, 11, 2, 29), local(2024, 1, 11, 2, 30)),
        # weekly: Monday 00:00 (2024-01-10 is a Wednesday)
        ("weekly", local(2024, 1, 10, 12), local(2024, 1, 14, 23, 59), local(2024, 1, 15)),
        ("weekly sun 04:00", local(2024, 1, 10, 12), local(2024, 1, 14, 3, 59), local(2024, 1, 14, 4)),
        ("weekly sun 04:00", local(2024, 1, 14, 4, 1), local(2024, 1, 21, 3, 59), local(2024, 1, 21, 4)),
        ("30 2 * * *", local(2024, 1, 10, 3), local(2024, 1, 11, 2, 29), local(2024, 1, 11, 2, 30)),
        ("*/15 * * * *", local(2024, 1, 10, 3, 1), local(2024, 1, 10, 3, 14), local(2024, 1, 10, 3, 15)),
    ],
)
def test_is_due(text: str, last: datetime, not_yet: datetime, due_at: datetime) -> None:
    s = parse_schedule(text)
    assert s.is_due(None, last)  # never succeeded: due
    assert not s.is_due(last, last + timedelta(seconds=1))  # right after a success
    assert not s.is_due(last, not_yet)
    assert s.is_due(last, due_at)  # the next fire time itself
    assert s.is_due(last, due_at + timedelta(days=3))  # long overdue: still (once) due
    assert s.next_after(last) == due_at


def test_is_due_with_a_utc_last_success() -> None:
    """Run records store aware times; the comparison must not depend on their offset."""
    s = parse_schedule("hourly")
    last_local = local(2024, 1, 10, 9, 30)
    last_utc = last_local.astimezone(UTC)
    assert not s.is_due(last_utc, local(2024, 1, 10, 9, 59))
    assert s.is_due(last_utc, local(2024, 1, 10, 10, 0))


# ----------------------------------------------------------------------------- shards


@pytest.mark.parametrize(("text", "expected"), [("1/1", (1, 1)), ("1/3", (1, 3)), ("3/3", (3, 3))])
def test_parse_shard(text: str, expected: tuple[int, int]) -> None:
    assert parse_shard(text) == expected


def test_parse_shard_none() -> None:
    assert parse_shard(None) is None
    assert all(in_shard(a, None) for a in ("a", "b", ""))


@pytest.mark.parametrize("text", ["0/3", "4/3", "1/0", "-1/2", "a/b", "3", "1/2/3", "", "1/"])
def test_bad_shard_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="shard"):
        parse_shard(text)


ACCOUNTS = [f"user{i}@example.org" for i in range(300)] + ["alice", "bob", "shop-pop", "ünïcode"]


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_shards_partition_the_accounts(n: int) -> None:
    owners = {a: [i for i in range(1, n + 1) if in_shard(a, (i, n))] for a in ACCOUNTS}
    assert all(len(v) == 1 for v in owners.values()), {a: v for a, v in owners.items() if len(v) != 1}
    sizes = Counter(v[0] for v in owners.values())
    assert set(sizes) == set(range(1, n + 1))  # every shard gets work
    assert min(sizes.values()) > len(ACCOUNTS) / n / 2  # roughly balanced


def test_shard_choice_is_stable_across_processes() -> None:
    """Not Python's salted hash(): another interpreter (another PYTHONHASHSEED) agrees."""
    here = [i for a in ACCOUNTS[:40] for i in range(1, 4) if in_shard(a, (i, 3))]
    code = (
        "from mailvault.runner import in_shard\n"
        f"accs = {ACCOUNTS[:40]!r}\n"
        "print([i for a in accs for i in range(1, 4) if in_shard(a, (i, 3))])"
    )
    for seed in ("1", "12345"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        assert json.loads(out) == here
