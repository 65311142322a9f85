"""Keep policies (``forget``): which snapshots to keep, as a pure function.

Semantics (as restic's): ``keep_last N`` keeps the N newest snapshots; ``keep_daily N``
keeps, for each of the N most recent days that have snapshots, the newest snapshot of
that day; likewise hourly, weekly (ISO weeks), monthly and yearly. A snapshot kept by
any rule is kept. Policies apply per account. A policy that keeps nothing is refused:
forgetting everything is never what a typo meant.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from mailvault.errors import ConfigError
from mailvault.vault.repository import Repository
from mailvault.vault.snapshots import Snapshot


@dataclass(frozen=True)
class KeepPolicy:
    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0

    def empty(self) -> bool:
        return not any((self.last, self.hourly, self.daily, self.weekly, self.monthly, self.yearly))

    def validate(self) -> None:
        for name in ("last", "hourly", "daily", "weekly", "monthly", "yearly"):
            if getattr(self, name) < 0:
                raise ConfigError(f"keep_{name} must be 0 or more")
        if self.empty():
            raise ConfigError("the keep policy keeps nothing: give at least one --keep-* (or keep_*) value")


_BUCKETS: list[tuple[str, Callable[[datetime], tuple[int, ...]]]] = [
    ("hourly", lambda t: (t.year, t.month, t.day, t.hour)),
    ("daily", lambda t: (t.year, t.month, t.day)),
    ("weekly", lambda t: tuple(t.isocalendar()[:2])),
    ("monthly", lambda t: (t.year, t.month)),
    ("yearly", lambda t: (t.year,)),
]


@dataclass
class Decision:
    snapshot: Snapshot
    keep: bool
    reasons: list[str]


def apply_policy(snapshots: Sequence[Snapshot], policy: KeepPolicy) -> list[Decision]:
    """Decide for the snapshots of ONE account; newest first in the result."""
    policy.validate()
    ordered = sorted(snapshots, key=lambda s: (s.datetime, s.id), reverse=True)
    reasons: dict[str, list[str]] = {s.id: [] for s in ordered}
    for s in ordered[: policy.last]:
        reasons[s.id].append("last")
    for name, bucket in _BUCKETS:
        count = getattr(policy, name)
        seen: set[tuple[int, ...]] = set()
        for s in ordered:
            if len(seen) >= count:
                break
            b = bucket(s.datetime.astimezone())
            if b in seen:
                continue
            seen.add(b)
            reasons[s.id].append(name)
    return [Decision(s, bool(reasons[s.id]), reasons[s.id]) for s in ordered]


def plan_forget(
    snapshots: Sequence[Snapshot], policy: KeepPolicy, account: str | None = None
) -> list[Decision]:
    """Apply the policy per account (or to one account)."""
    by_account: dict[str, list[Snapshot]] = {}
    for s in snapshots:
        if account is None or s.account == account:
            by_account.setdefault(s.account, []).append(s)
    out: list[Decision] = []
    for acc in sorted(by_account):
        out.extend(apply_policy(by_account[acc], policy))
    return out


@dataclass
class ForgetResult:
    dry_run: bool
    kept: list[Decision]
    removed: list[Decision]


def forget(
    repo: Repository, policy: KeepPolicy, *, account: str | None = None, dry_run: bool = False
) -> ForgetResult:
    """Delete the snapshot files the policy does not keep (their data stays until prune)."""
    policy.validate()
    with repo.lock():
        decisions = plan_forget(repo.snapshots(), policy, account)
        removed = [d for d in decisions if not d.keep]
        if not dry_run:
            for d in removed:
                repo.delete_snapshot(bytes.fromhex(d.snapshot.id))
    return ForgetResult(dry_run, [d for d in decisions if d.keep], removed)
