"""S3 faults: a proxy in front of the moto server answers 500 / 503 SlowDown, resets connections
(before or after the request took effect), stalls, and cuts response bodies short on a share of the
requests; a full outage mid-run; multipart uploads left behind by a killed writer.

Backup, restore and prune must still finish (exit 0), and afterwards (through a clean endpoint) the
vault checks clean, the snapshot and the restored account equal the source, nothing is stored twice.
"""

from __future__ import annotations

import base64
import random
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest

from tests.backup.helpers import SERVER_PW_ENV
from tests.common import DovecotAccount, assert_one_line_error, init_vault, mv
from tests.faults.harness import (
    SMALL_PACKS,
    VAULT_PASSWORD,
    assert_clean_vault,
    ls_by_folder,
    ok,
    ok_json,
    report,
    seed_account,
    timed,
    trials,
)
from tests.servers.dovecot import Dovecot
from tests.servers.s3proxy import S3FaultProxy

pytestmark = pytest.mark.s3

FOLDERS = {"INBOX": 90, "Archive": 40}
RATE = 0.08  # drawn per request; the measured share is reported


@pytest.fixture
def s3_proxy(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3FaultProxy]:
    """A fault proxy in front of moto; boto3 (in-process and in subprocesses) goes through it."""
    with S3FaultProxy(moto_server, rate=0.0, seed=1) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        yield proxy


def _account(dovecot: Dovecot, prefix: str) -> DovecotAccount:
    user = f"{prefix}{random.getrandbits(32):x}"
    dovecot.add_user(user, f"secret-{user}")
    return DovecotAccount(dovecot, user, f"secret-{user}")


def _backup_args(location: str, account: DovecotAccount, *extra: str) -> list[str | Path]:
    return ["backup", location, account.url(), "--password-env", SERVER_PW_ENV, "--ca-file",
            account.server.ca_file, "--account", "src", *extra]  # fmt: skip


def test_backup_restore_prune_through_faulty_s3(
    dovecot: Dovecot, s3_vault_url: str, s3_proxy: S3FaultProxy, fresh_cache: Callable[[str], Path]
) -> None:
    from tests.restore.helpers import read_account

    n = trials(1, 10)
    source = _account(dovecot, "s3src")
    expected = seed_account(source, FOLDERS, "s3f", 21)
    want = read_account(source, FOLDERS)  # type: ignore[arg-type]
    src_env = {SERVER_PW_ENV: source.password}
    total_requests = 0
    total_faults: dict[str, int] = {}
    with timed() as elapsed:
        for t in range(n):
            s3_proxy.set_rate(0.0)
            location = f"{s3_vault_url}-{t}"
            init_vault(location, VAULT_PASSWORD, SMALL_PACKS)
            fresh_cache(f"t{t}")
            before = s3_proxy.requests
            faults_before = sum(s3_proxy.faults.values())
            s3_proxy.set_rate(RATE)
            # backup, then a second backup after new mail, then restore, then forget + prune
            first = ok_json(*_backup_args(location, source), env=src_env)
            assert first["failures"] == [], first
            target = _account(dovecot, "s3dst")
            out = ok_json("restore", location, target.url(), "--password-env", SERVER_PW_ENV, "--ca-file",
                          dovecot.ca_file, "--account", "src", env={SERVER_PW_ENV: target.password})  # fmt: skip
            assert out["failures"] == [], out
            ok_json("forget", location, "--account", "src", "--keep-last", "1", "--prune")
            requests = s3_proxy.requests - before
            faults = sum(s3_proxy.faults.values()) - faults_before
            s3_proxy.set_rate(0.0)
            total_requests += requests
            for k, v in s3_proxy.faults.items():
                total_faults[k] = v
            # Verify through a clean endpoint.
            assert ls_by_folder(location, account="src") == expected
            assert_clean_vault(location, messages=sum(len(c) for c in expected.values()))
            got = read_account(target, FOLDERS)  # type: ignore[arg-type]
            for folder in FOLDERS:
                assert got[folder] == want[folder], folder
            assert faults >= 1, (requests, faults)
    share = sum(total_faults.values()) / max(1, total_requests)
    assert share >= 0.05, f"only {share:.1%} of {total_requests} requests faulted"
    report(
        "S3 faults during backup, restore, forget --prune",
        f"proxy in front of moto: each request faulted with p={RATE} — "
        + ", ".join(f"{k} {v}" for k, v in sorted(total_faults.items()))
        + f" of {total_requests} requests ({share:.1%})",
        n,
        "every run exit 0; 0 lost, 0 duplicated, check --read-data clean, restored account = source",
        group="s3",
        seconds=elapsed(),
    )


def test_full_outage_mid_backup(
    dovecot: Dovecot, s3_vault_url: str, s3_proxy: S3FaultProxy, fresh_cache: Callable[[str], Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Every request fails from the N-th on: one line, exit 2; the next run (endpoint back) completes."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")  # keep the retries of a dead endpoint short
    n = trials(2, 10)
    source = _account(dovecot, "s3out")
    expected = seed_account(source, FOLDERS, "s3o", 22)
    rng = random.Random(5)
    # Calibration: how many requests a whole backup makes here.
    init_vault(f"{s3_vault_url}-calib", VAULT_PASSWORD, SMALL_PACKS)
    fresh_cache("calib")
    before = s3_proxy.requests
    ok(*_backup_args(f"{s3_vault_url}-calib", source, "--quiet"), env={SERVER_PW_ENV: source.password})
    requests = s3_proxy.requests - before
    assert requests > 10, requests
    named: Counter[str] = Counter()
    with timed() as elapsed:
        for t in range(n):
            location = f"{s3_vault_url}-out{t}"
            s3_proxy.restore()
            init_vault(location, VAULT_PASSWORD, SMALL_PACKS)
            fresh_cache(f"o{t}")
            s3_proxy.outage_after(rng.randint(2, requests - 4))
            proc = mv(
                *_backup_args(location, source, "--quiet"), code=None, env={SERVER_PW_ENV: source.password}
            )
            line = assert_one_line_error(proc, 2)
            named["the S3 endpoint" if "s3" in line.lower() else line[:60]] += 1
            s3_proxy.restore()
            ok(*_backup_args(location, source, "--quiet"), env={SERVER_PW_ENV: source.password})
            assert ls_by_folder(location, account="src") == expected
            assert_clean_vault(location, messages=sum(len(c) for c in expected.values()))
    report(
        "S3 full outage mid-backup",
        f"every request reset from a random request on (2nd to {requests - 4}th of {requests}; AWS_MAX_ATTEMPTS=3)",
        n,
        "one line on stderr, exit 2 (naming: "
        + ", ".join(f"{k} {v}x" for k, v in named.items())
        + "); the next run completed; 0 lost, 0 duplicated",
        group="s3",
        seconds=elapsed(),
    )


def test_multipart_upload_left_by_a_kill_is_cleaned_up(
    s3_vault_url: str, moto_server: str, fresh_cache: Callable[[str], Path], tmp_path: Path
) -> None:
    """A pack bigger than the multipart threshold, the writer killed mid-upload: the upload is left
    in the bucket; the next import completes and prune aborts the leftover upload."""
    import json
    import subprocess

    from mailvault.vault.repository import VaultParams
    from tests.common import proc_env
    from tests.faults.harness import killhook_argv

    rng = random.Random(3)
    src = tmp_path / "mail"
    for sub in ("cur", "new", "tmp"):
        (src / sub).mkdir(parents=True)
    for i in range(36):  # 36 x ~800 KB of base64 (compresses to ~3/4): one ~21 MiB pack
        body = base64.encodebytes(rng.randbytes(600_000)).decode()
        (src / "cur" / f"{1400000000 + i}.M{i}P1.h:2,S").write_text(f"Subject: big {i}\n\n{body}\n")
    location = f"{s3_vault_url}-mp"
    init_vault(location, VAULT_PASSWORD, VaultParams(pack_size=32 << 20, block_size=1 << 20))
    fresh_cache("mp")
    bucket = s3_vault_url[5:].partition("/")[0]
    client = boto3.client("s3")
    # Killed as the second part of the multipart upload is about to go (the first is stored).
    proc = subprocess.run(killhook_argv("import", location, src, "--account", "big", "--quiet"),
                          env=proc_env({"MV_KILL_AT": "s3:UploadPart:2:0"}), capture_output=True, timeout=300,
                          check=False)  # fmt: skip
    assert proc.returncode == -9, proc.stderr
    left = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert left, "the kill did not leave a multipart upload behind"
    ok("import", location, src, "--account", "big", "--quiet")
    pruned = json.loads(ok("prune", location, "--json"))
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == [], pruned
    assert_clean_vault(location, messages=36)
    client.close()
    report(
        "S3 multipart upload left by kill -9",
        "SIGKILL 150 ms into a 21 MiB pack's multipart upload",
        1,
        "upload left behind; next import completed; prune aborted it; check --read-data clean",
        group="s3",
    )
