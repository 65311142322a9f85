"""``NO [OVERQUOTA]`` on APPEND from Dovecot's real quota plugin (quota = maildir, a per-user
quota_rule): the restore stops filling that account, reports per folder what was not restored, exits 1;
a rerun after the quota is raised completes, and the account then equals the source exactly (nothing
uploaded twice)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.backup.helpers import SERVER_PW_ENV
from tests.common import DovecotAccount, init_vault
from tests.faults.harness import SMALL_PACKS, VAULT_PASSWORD, ok, ok_json, report, seed_account, timed, trials
from tests.servers.dovecot import Dovecot

FOLDERS = {"INBOX": 50, "Archive": 30, "Lists/python": 20}


class QuotaDovecot(Dovecot):
    """A Dovecot with the quota plugin (maildir backend); a user's limit is a userdb field."""

    def _config_text(self) -> str:
        text = super()._config_text()
        text = text.replace(
            "mail_plugins = $mail_plugins listescape\n", "mail_plugins = $mail_plugins listescape quota\n"
        )
        return text + "\nplugin {\n  quota = maildir:User quota\n  quota_rule = *:storage=1G\n}\n"

    def set_quota(self, user: str, kib: int) -> None:
        """Rewrite the user's passwd-file line with ``userdb_quota_rule=*:storage=<kib>K``."""
        path = self.users_dir / user
        line = path.read_text().rstrip("\n")
        fields = [f for f in line.split(":", 7)[7].split(" ") if f and not f.startswith("userdb_quota_rule=")]
        head = ":".join(line.split(":", 7)[:7])
        tmp = path.with_name(f".{user}.quota")
        tmp.write_text(f"{head}:{' '.join([*fields, f'userdb_quota_rule=*:storage={kib}K'])}\n")
        tmp.chmod(0o644)
        tmp.replace(path)
        time.sleep(1.1)  # Dovecot re-reads a changed passwd-file at most once a second


@pytest.fixture(scope="module")
def quota_dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QuotaDovecot]:
    from tests.fixtures_dovecot import _require_dovecot

    _require_dovecot()
    server = QuotaDovecot(tmp_path_factory.mktemp("dovecot-quota"))
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


def test_overquota_on_append_then_rerun_after_raising_it(
    dovecot: Dovecot, quota_dovecot: QuotaDovecot, fresh_cache: Callable[[str], Path], tmp_path: Path
) -> None:
    from tests.restore.helpers import read_account

    user = f"qs{random.getrandbits(32):x}"
    dovecot.add_user(user, f"secret-{user}")
    source = DovecotAccount(dovecot, user, f"secret-{user}")
    seed_account(source, FOLDERS, "quota", 51)
    want = read_account(source, FOLDERS)  # type: ignore[arg-type]
    total_kib = sum(len(m[0]) for bag in want.values() for m in bag) // 1024
    location = str(tmp_path / "vault")
    init_vault(location, VAULT_PASSWORD, SMALL_PACKS)
    fresh_cache("backup")
    ok("backup", location, source.url(), "--password-env", SERVER_PW_ENV, "--ca-file", dovecot.ca_file,
       "--account", "src", "--quiet", env={SERVER_PW_ENV: source.password})  # fmt: skip
    rng = random.Random(52)
    n = trials(1, 5)
    with timed() as elapsed:
        for t in range(n):
            tuser = f"qt{t}{random.getrandbits(24):x}"
            quota_dovecot.add_user(tuser, f"secret-{tuser}")
            target = DovecotAccount(quota_dovecot, tuser, f"secret-{tuser}")
            limit = rng.randint(total_kib // 5, total_kib * 2 // 3)
            quota_dovecot.set_quota(tuser, limit)
            fresh_cache(f"t{t}")
            args = ["restore", location, target.url(), "--password-env", SERVER_PW_ENV, "--ca-file",
                    quota_dovecot.ca_file, "--account", "src"]  # fmt: skip
            env = {SERVER_PW_ENV: target.password}
            started = time.monotonic()
            out = ok_json(*args, env=env, code=1)
            assert time.monotonic() - started < 60
            assert out["failures"], out
            text = " ".join(out["failures"]).lower()
            assert "quota" in text, out["failures"]
            # The report names the folders that are not complete (per folder, not one line per message).
            assert len(out["failures"]) <= len(FOLDERS), out["failures"]
            quota_dovecot.set_quota(tuser, total_kib * 4)
            again = ok_json(*args, env=env)
            assert again["failures"] == [], again
            got = read_account(target, FOLDERS)  # type: ignore[arg-type]
            for folder in FOLDERS:
                assert got[folder] == want[folder], (
                    f"{folder}: {sum(got[folder].values())} vs {sum(want[folder].values())}"
                )
    report(
        "NO [OVERQUOTA] on APPEND (restore)",
        f"Dovecot quota plugin (maildir), per-user quota_rule between 1/5 and 2/3 of the {total_kib} KiB restored",
        n,
        "exit 1 with one line per incomplete folder; rerun after raising the quota: exit 0, account = source, 0 duplicated",
        group="net",
        seconds=elapsed(),
    )
