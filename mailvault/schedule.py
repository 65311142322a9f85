"""Job schedules: ``hourly``, ``daily``, ``daily HH:MM``, ``weekly``, ``weekly DAY HH:MM``, or a
five-field cron expression (evaluated by ``croniter``) — in the machine's local time.

A job is *due* when it never succeeded, or when a fire time of its schedule lies after its
last successful run and not after now. A runner started every few minutes by cron or a
systemd timer (``mailvault run --due``) thus runs each job once per period. A last success
stamped in the future (the clock was set back since) makes the job due, and such records are
passed over when a success stamped before now exists.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from croniter import croniter

from mailvault.errors import ConfigError

_DAYS = {"mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6, "sun": 0}


@dataclass(frozen=True)
class Schedule:
    text: str
    cron: str

    def next_after(self, when: datetime) -> datetime:
        result: datetime = croniter(self.cron, when.astimezone()).get_next(datetime)
        return result

    def is_due(self, last_success: datetime | None, now: datetime | None = None) -> bool:
        if last_success is None:
            return True
        now = now or datetime.now().astimezone()
        if last_success > now:
            # Recorded while the clock ran ahead (it has since been set back): waiting until the
            # clock catches up could skip backups for days, so run now.
            return True
        return self.next_after(last_success) <= now


def _hhmm(text: str, original: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", text)
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise ConfigError(f"bad time {text!r} in schedule {original!r} (expected HH:MM)")
    return int(m.group(1)), int(m.group(2))


def parse_schedule(text: str) -> Schedule:
    words = text.strip().lower().split()
    if words == ["hourly"]:
        return Schedule(text, "0 * * * *")
    if words == ["daily"]:
        return Schedule(text, "0 0 * * *")
    if len(words) == 2 and words[0] == "daily":
        h, m = _hhmm(words[1], text)
        return Schedule(text, f"{m} {h} * * *")
    if words == ["weekly"]:
        return Schedule(text, "0 0 * * 1")
    if len(words) == 3 and words[0] == "weekly" and words[1][:3] in _DAYS:
        h, m = _hhmm(words[2], text)
        return Schedule(text, f"{m} {h} * * {_DAYS[words[1][:3]]}")
    if len(words) == 5 and croniter.is_valid(text.strip()):
        schedule = Schedule(text, text.strip())
        try:  # "0 0 30 2 *" is valid syntax but never fires
            schedule.next_after(datetime.now().astimezone())
        except (ValueError, KeyError, ArithmeticError, RuntimeError) as exc:
            raise ConfigError(f"schedule {text!r} never fires ({exc})") from None
        return schedule
    raise ConfigError(
        f"bad schedule {text!r}: expected hourly, daily, 'daily HH:MM', weekly, 'weekly DAY HH:MM' "
        "or a cron expression like '30 2 * * *'"
    )


def schedule_units(kind: str, config_path: Path, every_minutes: int, executable: str) -> str:
    cmd = f"{shlex.quote(executable)} run --due --quiet --config {shlex.quote(str(config_path))}"
    if kind == "cron":
        return (
            "# mailvault: run due jobs every few minutes (add with `crontab -e`)\n"
            f"*/{every_minutes} * * * * {cmd}\n"
        )
    return (
        "# /etc/systemd/system/mailvault-run.service\n"
        "[Unit]\n"
        "Description=mailvault: run due backup/restore jobs\n"
        "Wants=network-online.target\nAfter=network-online.target\n\n"
        "[Service]\nType=oneshot\n"
        f"ExecStart={cmd}\n"
        "# secrets: EnvironmentFile=/etc/mailvault/secrets.env (mode 0600)\n"
        "Nice=10\nIOSchedulingClass=idle\n\n"
        "# /etc/systemd/system/mailvault-run.timer\n"
        "[Unit]\nDescription=mailvault: run due jobs every few minutes\n\n"
        "[Timer]\n"
        f"OnCalendar=*:0/{every_minutes}\n"
        "Persistent=true\nRandomizedDelaySec=60\n\n"
        "[Install]\nWantedBy=timers.target\n"
        "# enable with: systemctl daemon-reload && systemctl enable --now mailvault-run.timer\n"
    )
