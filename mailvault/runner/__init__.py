"""``mailvault run``: the jobs of a config file — due or not, in parallel, sharded, with hooks.

Every (job, account) pair is one task. Tasks run in a thread pool (``--jobs N``); one
task's failure never stops the others. Each task records its outcome in the vault
(``runs/…``, sealed, written once), which is what ``--due`` and ``status`` read, so any
machine sharing the vault knows when an account was last backed up. The same account is
never processed by two runners at once: an account-scoped lock makes the second one skip
with a message. Retention (``keep_*``) runs after a successful backup; ``prune`` runs once
per vault at the end, when every task is done.

The package: ``run.py`` (:class:`Runner`, :class:`RunSummary`) · ``shards.py`` (``--shard``)
· ``credentials.py`` (vault passwords, account credentials) · ``hooks.py`` (``on_success`` /
``on_failure``) · ``status_rows.py`` (``mailvault status``). The run records themselves are
:mod:`mailvault.run_records`.
"""

from __future__ import annotations

from mailvault.run_records import KEEP_RECORDS, TaskResult, latest_records, read_records, write_record
from mailvault.runner.credentials import account_access, vault_password
from mailvault.runner.run import PRUNE_WAIT, Runner, RunSummary
from mailvault.runner.shards import in_shard, parse_shard
from mailvault.runner.status_rows import StatusRow, status
from mailvault.schedule import schedule_units

__all__ = [
    "KEEP_RECORDS",
    "PRUNE_WAIT",
    "RunSummary",
    "Runner",
    "StatusRow",
    "TaskResult",
    "account_access",
    "in_shard",
    "latest_records",
    "parse_shard",
    "read_records",
    "schedule_units",
    "status",
    "vault_password",
    "write_record",
]
