"""bench/latency_bench.py end to end on a tiny generated corpus: its own Dovecot and proxies, a
fresh and a no-op backup by mailvault, what the tools pulled written to ``--store-dir``, the store's
file system and a timed Maildir delivery in the report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers.dovecot import find_binary

ROOT = Path(__file__).resolve().parents[2]


def _corpus(top: Path) -> Path:
    corpus = top / "corpus"
    for folder, n in (("inbox-ish", 6), ("lists", 4)):
        d = corpus / folder
        d.mkdir(parents=True)
        for i in range(n):
            (d / f"{i}.eml").write_bytes(
                b"From: a@example.org\r\nTo: b@example.org\r\nSubject: smoke %d\r\n"
                b"Message-ID: <smoke-%s-%d@example.org>\r\nDate: Thu, 3 Dec 2026 10:%02d:00 +0000\r\n\r\n"
                b"body %d\r\n" % (i, folder.encode(), i, i, i)
            )
    return corpus


@pytest.mark.skipif(
    find_binary("dovecot") is None, reason="Dovecot not installed (apt-get install dovecot-imapd)"
)
def test_latency_bench_runs_with_a_store_dir_and_reports_it(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    cmd = [
        sys.executable,
        str(ROOT / "bench" / "latency_bench.py"),
        "--corpus", str(_corpus(tmp_path)),
        "--rtt-ms", "2",
        "--tools", "mailvault",
        "--ops", "fresh,noop",
        "--gmail-messages", "2",
        "--store-dir", str(store),
        "--workdir", str(tmp_path / "work"),
        "--keep",
        "--json",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    mv = report["results"]["mailvault"]
    assert mv["fresh"]["status"] == "ok" and mv["noop"]["status"] == "ok", mv
    assert report["results"]["mbsync"]["fresh"]["status"] == "n/a"
    where = report["conditions"]["store"]
    assert Path(where["path"]).parent == store
    assert where["files"] == 10 and where["fsync"] is True
    assert isinstance(where["fs"], str) and where["fs"]
    assert where["delivery_s"] > 0
    # mailvault's vault went to the store, not to the bench's temp dir (kept by --keep)
    assert (Path(where["path"]) / "mv-vault" / "config").exists()
    work = [p for p in (tmp_path / "work").iterdir() if p.is_dir()]
    assert work and not any((w / "mv-vault").exists() for w in work)
