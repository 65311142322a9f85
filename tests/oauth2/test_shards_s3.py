"""N machines, one S3 vault, one sign-in: `login` once, then `run --shard 1/2` and `--shard 2/2` at the
same moment refresh the same (expired, rotating) token and both back up."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from mailvault.runner import in_shard
from tests import common
from tests.oauth2.conftest import SEEDED, VAULT_PASSWORD
from tests.oauth2.helpers import LoginProcess, Setup, get, new_client, toml
from tests.servers.dovecot import Dovecot

pytestmark = [pytest.mark.s3, pytest.mark.dovecot]


def test_one_login_two_shards_one_s3_vault(
    oauth2_dovecot: Dovecot, oauth2_source: str, s3_vault_url: str, tmp_path: Path
) -> None:
    server = oauth2_dovecot
    assert server.oauth2 is not None
    idp = server.oauth2.idp
    common.init_vault(s3_vault_url, VAULT_PASSWORD)
    names = [f"box-{c}" for c in "abcdefgh"]
    imap_name = next(n for n in names if in_shard(n, (1, 2)))
    pop_name = next(n for n in names if in_shard(n, (2, 2)))
    client_id, _ = new_client(idp)
    base = server.oauth2.base_url
    config = tmp_path / "config.toml"
    accounts = {imap_name: f"imaps://{oauth2_source}@{server.host}:{server.imaps_port}",
                pop_name: f"pop3s://{oauth2_source}@{server.host}:{server.pop3s_port}"}  # fmt: skip
    lines = [
        f"[vaults.shared]\npath = {toml(s3_vault_url)}\n",
        "[oauth2_providers.testidp]",
        f"authorize_url = {toml(base + '/authorize')}",
        f"token_url = {toml(base + '/token')}",
        'scopes = ["mail", "offline_access"]',
        f"client_id = {toml(client_id)}",
        "",
    ]
    for name, url in accounts.items():
        lines += [f"[accounts.{name}]", f"url = {toml(url)}", 'oauth2_provider = "testidp"',
                  f"ca_file = {toml(server.ca_file)}", ""]  # fmt: skip
    lines += ["[jobs.nightly]", 'kind = "backup"', f"accounts = {toml(list(accounts))}", 'vault = "shared"']
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    saved_ttl = idp.access_ttl
    idp.access_ttl = 3
    try:
        # one sign-in serves both accounts (same provider and user), from any machine
        s = Setup(server, idp, oauth2_source, tmp_path / "unused", config, client_id)
        lp = LoginProcess(s, imap_name, "--config", config, "--no-browser")
        assert get(lp.wait_line(lambda x: x.startswith(f"{base}/authorize?")))[0] == 200
        code, out, err = lp.finish()
        assert code == 0 and "s3://" in out, err
        time.sleep(3.2)  # the access token has expired: both shards must refresh
        before = idp.count("refresh_token")
        procs = [
            subprocess.Popen(
                common.mv_argv("run", "--config", config, "--shard", shard, "--json"),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=common.proc_env(),
            )
            for shard in ("1/2", "2/2")
        ]
        results = []
        for p in procs:
            out, err = p.communicate(timeout=180)
            assert p.returncode == 0, out + err
            results += json.loads(out)["results"]
    finally:
        idp.access_ttl = saved_ttl
    by_account = {r["account"]: r for r in results}
    assert set(by_account) == {imap_name, pop_name}
    assert by_account[imap_name]["messages"] == sum(SEEDED.values())
    assert by_account[pop_name]["messages"] == SEEDED["INBOX"]
    assert idp.count("refresh_token") > before
    rows = json.loads(common.mv("accounts", "--config", config, "--json").stdout)
    assert {r["token"]["state"] for r in rows} <= {"valid", "expired, refreshes on next use"}
