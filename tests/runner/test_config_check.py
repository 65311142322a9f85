"""``mailvault config check FILE``: the example passes; each broken file fails with exit 2 and ONE
stderr line ``mailvault: FILE:LINE: dotted.key: ...`` naming the right line."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from mailvault.cli import app
from mailvault.config import load_config
from mailvault.errors import ConfigError
from tests.common import REPO_ROOT, mv
from tests.runner.helpers import mv_cmd, proc_env

_runner = CliRunner()

BASE = """\
# a small but complete config
[vaults.home]
path = "/srv/mailvault"
password_env = "MAILVAULT_PASSWORD"

[vaults.offsite]
path = "s3://bucket/prefix"
password_command = "cat /etc/pw"

[accounts.alice]
url = "imaps://alice@mail.example.org:993"
password_env = "ALICE_PW"
folders = ["*"]
exclude_folders = ["Trash"]

[accounts.shop]
url = "pop3s://orders@pop.example.net"
password_command = "pass show orders"
delete_after_days = 30

[jobs.nightly]
kind = "backup"
accounts = ["alice", "shop"]
vault = "home"
schedule = "daily 02:30"
keep_last = 7
keep_daily = 14
prune = true
on_success = "true"

[jobs.weekly]
kind = "backup"
accounts = ["alice"]
vault = "offsite"
schedule = "weekly sun 04:00"
keep_weekly = 26

[jobs.move]
kind = "migrate"
accounts = ["alice"]
vault = "home"
target = "imaps://alice@new.example.org"
target_password_env = "NEW_PW"
schedule = "hourly"
"""


def test_example_config_checks_ok() -> None:
    res = mv("config", "check", REPO_ROOT / "config.example.toml")
    assert res.returncode == 0
    assert "ok" in res.stdout and res.stderr == ""
    info = json.loads(cli("config", "check", REPO_ROOT / "config.example.toml", "--json").stdout)
    assert info["ok"] and info["jobs"] == 4 and info["accounts"] == 5 and info["vaults"] == 2


def test_base_config_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "base.toml"
    path.write_text(BASE)
    cfg = load_config(path)
    assert set(cfg.jobs) == {"nightly", "weekly", "move"}
    assert cfg.jobs["nightly"].keep is not None and cfg.jobs["nightly"].keep.daily == 14
    assert cfg.accounts["shop"].delete_after_days == 30


def edit(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


# (case id, edited text, the line (text) the error must point at, dotted key, message fragment)
CASES = [
    (
        "bad-type-int",
        edit(BASE, "keep_daily = 14", 'keep_daily = "14"'),
        'keep_daily = "14"',
        "jobs.nightly.keep_daily",
        'expected a whole number >= 0, got "14"',
    ),
    (
        "bad-type-bool",
        edit(BASE, "prune = true", 'prune = "yes"'),
        'prune = "yes"',
        "jobs.nightly.prune",
        "expected true or false",
    ),
    (
        "bad-type-list",
        edit(BASE, 'folders = ["*"]', "folders = [1, 2]"),
        "folders = [1, 2]",
        "accounts.alice.folders",
        "expected a list of strings",
    ),
    (
        "negative",
        edit(BASE, "keep_weekly = 26", "keep_weekly = -1"),
        "keep_weekly = -1",
        "jobs.weekly.keep_weekly",
        "expected a whole number >= 0",
    ),
    (
        "unknown-key-job",
        edit(BASE, "keep_last = 7", "keep_lats = 7"),
        "keep_lats = 7",
        "jobs.nightly.keep_lats",
        "unknown key",
    ),
    (
        "unknown-key-account",
        edit(BASE, 'password_command = "pass show orders"', 'password_comand = "pass show orders"'),
        'password_comand = "pass show orders"',
        "accounts.shop.password_comand",
        "unknown key",
    ),
    (
        "unknown-account",
        edit(BASE, 'accounts = ["alice", "shop"]', 'accounts = ["alice", "shopp"]'),
        'accounts = ["alice", "shopp"]',
        "jobs.nightly.accounts",
        "no [accounts.shopp] table",
    ),
    (
        "unknown-vault",
        edit(BASE, 'vault = "offsite"', 'vault = "ofsite"'),
        'vault = "ofsite"',
        "jobs.weekly.vault",
        "no [vaults.ofsite] table",
    ),
    (
        "bad-url-scheme",
        edit(BASE, 'url = "pop3s://orders@pop.example.net"', 'url = "https://orders@pop.example.net"'),
        'url = "https://orders@pop.example.net"',
        "accounts.shop.url",
        "expected imap[s]://",
    ),
    (
        "bad-url-port",
        edit(
            BASE, 'url = "imaps://alice@mail.example.org:993"', 'url = "imaps://alice@mail.example.org:99x"'
        ),
        'url = "imaps://alice@mail.example.org:99x"',
        "accounts.alice.url",
        "expected imap[s]://",
    ),
    (
        "bad-target-url",
        edit(BASE, 'target = "imaps://alice@new.example.org"', 'target = "pop3s://alice@new.example.org"'),
        'target = "pop3s://alice@new.example.org"',
        "jobs.move.target",
        "expected an imap:// or imaps:// URL",
    ),
    (
        "bad-schedule",
        edit(BASE, 'schedule = "daily 02:30"', 'schedule = "daily 25:30"'),
        'schedule = "daily 25:30"',
        "jobs.nightly.schedule",
        "bad time",
    ),
    (
        "bad-schedule-cron",
        edit(BASE, 'schedule = "hourly"', 'schedule = "every hour"'),
        'schedule = "every hour"',
        "jobs.move.schedule",
        "bad schedule",
    ),
    (
        "secret-in-account",
        edit(BASE, 'password_env = "ALICE_PW"', 'password = "hunter2-secret"'),
        'password = "hunter2-secret"',
        "accounts.alice.password",
        "",
    ),
    (
        "secret-in-vault",
        edit(BASE, 'password_command = "cat /etc/pw"', 'password = "hunter2-secret"'),
        'password = "hunter2-secret"',
        "vaults.offsite.password",
        "",
    ),
    (
        "secret-in-job-target",
        edit(BASE, 'target_password_env = "NEW_PW"', 'target_password = "hunter2-secret"'),
        'target_password = "hunter2-secret"',
        "jobs.move.target_password",
        "",
    ),
    (
        "two-secret-sources",
        edit(BASE, 'password_env = "ALICE_PW"', 'password_env = "ALICE_PW"\npassword_command = "pass x"'),
        'password_command = "pass x"',
        "accounts.alice.password_command",
        "give only one of",
    ),
    (
        "delete-after-on-imap",
        edit(BASE, 'exclude_folders = ["Trash"]', 'exclude_folders = ["Trash"]\ndelete_after_days = 3'),
        "delete_after_days = 3",
        "accounts.alice.delete_after_days",
        "only applies to pop3",
    ),
    (
        "bad-kind",
        edit(BASE, 'kind = "migrate"', 'kind = "copy"'),
        'kind = "copy"',
        "jobs.move.kind",
        "expected one of backup, restore, migrate",
    ),
    (
        "prune-without-keep",
        edit(edit(BASE, "keep_last = 7\n", ""), "keep_daily = 14\n", ""),
        "prune = true",
        "jobs.nightly.prune",
        "prune needs at least one keep_",
    ),
]


def cli(*args: str | Path) -> Result:
    """``mailvault ARGS`` in-process (the same code path as the real process, minus the startup cost)."""
    return _runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def run_check(tmp_path: Path, text: str) -> tuple[Path, str]:
    path = tmp_path / "mailvault.toml"
    path.write_text(text)
    res = cli("config", "check", path)
    assert res.exit_code == 2, (res.stdout, res.stderr)
    assert res.stdout == ""
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    return path, lines[0]


def line_of(text: str, needle: str) -> int:
    hits = [i for i, line in enumerate(text.splitlines(), 1) if line.strip() == needle]
    assert len(hits) == 1, (needle, hits)
    return hits[0]


@pytest.mark.parametrize(
    ("text", "needle", "key", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_broken_config_names_file_line_and_key(
    tmp_path: Path, text: str, needle: str, key: str, fragment: str
) -> None:
    path, line = run_check(tmp_path, text)
    expected = f"mailvault: {path}:{line_of(text, needle)}: {key}: "
    assert line.startswith(expected), f"\n got:  {line}\n want: {expected}..."
    assert fragment in line
    assert "hunter2" not in line  # a secret written into the file is never echoed
    # The library raises the same message (without the CLI's prefix).
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert f"mailvault: {info.value}" == line


def test_missing_required_key_names_the_table_line(tmp_path: Path) -> None:
    text = edit(BASE, 'vault = "offsite"\n', "")
    path, line = run_check(tmp_path, text)
    assert line.startswith(f"mailvault: {path}:{line_of(text, '[jobs.weekly]')}: jobs.weekly: ")
    assert "missing required key 'vault'" in line


SECRET_CASES = [c for c in CASES if c[0].startswith("secret-")]


@pytest.mark.parametrize("case", SECRET_CASES, ids=[c[0] for c in SECRET_CASES])
def test_secret_in_file_gets_the_dedicated_message(tmp_path: Path, case: tuple[str, ...]) -> None:
    _, line = run_check(tmp_path, case[1])
    assert "secrets do not belong in the config" in line


def test_unknown_top_level_table_names_its_header_line(tmp_path: Path) -> None:
    """A misspelt table header (``[job.nightly]``) must point at the header's line, not line 0."""
    text = edit(BASE, "[jobs.weekly]", "[job.weekly]")
    # (the remaining [jobs.*] tables still exist, the typo'd one is an unknown top-level key)
    path, line = run_check(tmp_path, text)
    m = re.match(rf"mailvault: {re.escape(str(path))}:(\d+): job: unknown key", line)
    assert m, line
    assert int(m.group(1)) == line_of(text, "[job.weekly]"), line


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (edit(BASE, "keep_last = 7", "keep_last = = 7"), "keep_last = = 7"),
        (edit(BASE, 'kind = "migrate"', 'kind = "migrate'), 'kind = "migrate'),
        (edit(BASE, "[accounts.shop]", "[accounts.shop"), "[accounts.shop"),
        (BASE + '\n[accounts.alice]\nurl = "imaps://a@b"\n', "[accounts.alice]\nurl"),
    ],
    ids=["double-equals", "unterminated-string", "unclosed-header", "duplicate-table"],
)
def test_invalid_toml_names_the_line(tmp_path: Path, text: str, needle: str) -> None:
    path, line = run_check(tmp_path, text)
    if "\n" in needle:  # the second occurrence of a duplicated table
        first = needle.split("\n", maxsplit=1)[0]
        expected = [i for i, s in enumerate(text.splitlines(), 1) if s == first][-1]
    else:
        expected = line_of(text, needle)
    assert line.startswith(f"mailvault: {path}:{expected}: not valid TOML: "), line


def test_missing_config_file(tmp_path: Path) -> None:
    res = cli("config", "check", tmp_path / "nope.toml")
    assert res.exit_code == 2
    assert res.stderr.strip() == f"mailvault: {tmp_path / 'nope.toml'}: no such config file"


def test_run_and_status_refuse_a_broken_config_the_same_way(tmp_path: Path) -> None:
    text = edit(BASE, "keep_daily = 14", 'keep_daily = "14"')
    path = tmp_path / "c.toml"
    path.write_text(text)
    lineno = line_of(text, 'keep_daily = "14"')
    want = f"mailvault: {path}:{lineno}: jobs.nightly.keep_daily: "
    for args in (("run", "--config", path), ("status", "--config", path)):
        res = cli(*args)
        assert res.exit_code == 2
        assert len(res.stderr.splitlines()) == 1 and res.stderr.startswith(want), res.stderr


def test_real_processes_exit_2_with_one_line(tmp_path: Path) -> None:
    """The real ``python -m mailvault`` (all cases of the brief at once, in parallel): exit 2, stdout
    empty, one stderr line — the same line as in-process."""
    wanted = {
        "bad-type-int",
        "unknown-key-job",
        "unknown-account",
        "bad-url-scheme",
        "bad-schedule",
        "secret-in-account",
    }
    jobs = []
    for case_id, text, needle, key, _fragment in CASES:
        if case_id not in wanted:
            continue
        path = tmp_path / f"{case_id}.toml"
        path.write_text(text)
        jobs.append((path, f"{path}:{line_of(text, needle)}: {key}: ", mv_cmd("config", "check", path)))
    bad_toml = tmp_path / "bad-toml.toml"
    bad_toml.write_text(edit(BASE, "keep_last = 7", "keep_last = = 7"))
    lineno = line_of(bad_toml.read_text(), "keep_last = = 7")
    jobs.append((bad_toml, f"{bad_toml}:{lineno}: not valid TOML: ", mv_cmd("config", "check", bad_toml)))
    procs = [
        (
            path,
            want,
            subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=proc_env()),
        )
        for path, want, cmd in jobs
    ]
    for path, want, p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 2, (path, out, err)
        assert out == ""
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"mailvault: {want}"), err
        assert "hunter2" not in err
        assert lines[0] == cli("config", "check", path).stderr.strip()
