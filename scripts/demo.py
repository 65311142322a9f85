"""The newcomer's first run: a throwaway Dovecot with sample mail, backed up and restored.

Starts a private Dovecot on loopback (no system service is touched), seeds an account with
generated sample mail in several folders (Unicode names, flags, keywords), runs
``mailvault backup`` over IMAPS into a fresh vault, lists the snapshot, backs up again
(nothing new is fetched), checks the vault, restores the snapshot into a second, empty
account and shows that both accounts hold the same messages, flags and dates.
Everything lives in one temp directory, removed at the end (``--keep`` keeps it).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, make_msgid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers.dovecot import Dovecot  # noqa: E402

FOLDERS = {
    "INBOX": 40,
    "Sent": 15,
    "Entwürfe": 5,
    "Projects/2002/Q1 & Q2": 12,
    "日本語": 6,
    "Archive/2023": 22,
}
WORDS = (
    "backup restore mailbox folder server message archive snapshot vault flag date label "
    "meeting invoice report travel family photo project budget release weekend"
).split()


def sample_messages(folder: str, count: int, rng: random.Random) -> list[tuple[bytes, list[str], datetime]]:
    out = []
    start = datetime(2023, 1, 1, 9, 0, tzinfo=UTC)
    for i in range(count):
        when = start + timedelta(hours=rng.randint(0, 24 * 600))
        subject = " ".join(rng.choice(WORDS) for _ in range(4)).capitalize()
        body = "\n".join(" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(rng.randint(3, 30)))
        raw = (
            f"From: Demo Sender <sender{i % 7}@example.org>\r\n"
            f"To: Alice <alice@example.org>\r\n"
            f"Subject: {subject}\r\n"
            f"Date: {format_datetime(when)}\r\n"
            f"Message-ID: {make_msgid(domain='demo.mailvault.invalid')}\r\n"
            f"X-Folder: {folder}\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            f"{body}\r\n"
        ).encode()
        flags = []
        if rng.random() < 0.7:
            flags.append("\\Seen")
        if rng.random() < 0.2:
            flags.append("\\Flagged")
        if rng.random() < 0.15:
            flags.append("\\Answered")
        if rng.random() < 0.1:
            flags.append("$Forwarded")
        out.append((raw, flags, when))
    return out


def account_view(server: Dovecot, user: str) -> dict[str, list[tuple[bytes, tuple[str, ...], str]]]:
    """Every folder's messages as sorted (bytes, flags, INTERNALDATE) — read with plain imapclient."""
    client = server.imap_client(user)
    view: dict[str, list[tuple[bytes, tuple[str, ...], str]]] = {}
    try:
        for flags, _delim, name in client.list_folders():
            if b"\\Noselect" in flags or b"\\NonExistent" in flags:
                continue
            info = client.select_folder(name, readonly=True)
            if not info.get(b"EXISTS"):
                continue
            data = client.fetch(client.search("ALL"), ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"])
            view[name] = sorted(
                (
                    d[b"BODY[]"],
                    tuple(sorted(f.decode() for f in d[b"FLAGS"] if f != b"\\Recent")),
                    d[b"INTERNALDATE"].isoformat(),
                )
                for d in data.values()
            )
    finally:
        client.logout()
    return view


def run(cmd: list[str], env: dict[str, str]) -> None:
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, env=env, check=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--keep", action="store_true", help="keep the temp directory (vault, server)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mailvault-demo-"))
    beside = Path(sys.executable).parent / "mailvault"  # the one installed with this interpreter
    mailvault = str(beside) if beside.exists() else (shutil.which("mailvault") or "mailvault")
    server = Dovecot(work / "dovecot")
    try:
        server.start()
        server.clear_auth_penalty()
        server.add_user("alice", "demo-password")
        server.add_user("bob", "demo-password-bob")
        rng = random.Random(2026)
        total = 0
        for folder, count in FOLDERS.items():
            server.seed("alice", folder, sample_messages(folder, count, rng))
            total += count
        print(f"== Dovecot on 127.0.0.1:{server.imaps_port} (IMAPS), user alice, {total} sample messages")
        vault = work / "vault"
        env = dict(
            os.environ,
            MAILVAULT_PASSWORD="demo vault passphrase",
            MAILVAULT_CACHE_DIR=str(work / "cache"),
            ALICE_PASSWORD="demo-password",
            BOB_PASSWORD="demo-password-bob",
        )
        url = f"imaps://alice@127.0.0.1:{server.imaps_port}"
        common = ["--password-env", "ALICE_PASSWORD", "--ca-file", str(server.ca_file), "--account", "alice"]
        run([mailvault, "init", str(vault)], env)
        run([mailvault, "backup", str(vault), url, *common], env)
        run([mailvault, "snapshots", str(vault)], env)
        run([mailvault, "ls", str(vault), "latest", "--account", "alice", "--folder", "Entwürfe"], env)
        print("== a second backup fetches nothing new:")
        run([mailvault, "backup", str(vault), url, *common], env)
        run([mailvault, "check", str(vault), "--read-data"], env)
        run([mailvault, "stats", str(vault)], env)
        print("== restore the snapshot into bob's empty account:")
        bob = f"imaps://bob@127.0.0.1:{server.imaps_port}"
        restore_opts = [
            "--password-env",
            "BOB_PASSWORD",
            "--ca-file",
            str(server.ca_file),
            "--account",
            "alice",
        ]
        run([mailvault, "restore", str(vault), bob, *restore_opts], env)
        a, b = account_view(server, "alice"), account_view(server, "bob")
        for folder in sorted(a):
            same = "identical" if a[folder] == b.get(folder) else "DIFFERENT"
            print(f"   {folder:28} alice {len(a[folder]):3}  bob {len(b.get(folder, [])):3}  {same}")
        if a != b:
            print("== demo FAILED: the restored account differs")
            return 1
        print("== a second restore uploads nothing:")
        run([mailvault, "restore", str(vault), bob, *restore_opts], env)
        print(f"== demo OK ({work if args.keep else 'temp files removed'})")
        return 0
    finally:
        server.stop()
        server.cleanup()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
