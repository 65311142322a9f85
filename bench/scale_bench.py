#!/usr/bin/env python3
"""Scale: many accounts per run, and a vault of a million messages.

``accounts``: a private Dovecot with N accounts (default 1,000) of M messages each (default 100),
seeded fast (Maildir files written directly, then ``doveadm force-resync``); one config with a
backup job over all of them; ``mailvault run --jobs J`` fresh, then again with nothing new (the
figure: wall time of the no-op run, and per account). The vault is local by default; with
``--s3`` it is on a moto S3 server started here, behind a counter of the requests each kind
(LIST, GET, PUT, DELETE, HEAD, POST) gets, reported per account per run. Also: the index cache's
bytes per blob.

``vault``: a vault of N generated messages (default 1,000,000) written by ``mailvault import`` of
mbox files (one per 100k messages, i.e. one snapshot per file), then ``stats``, ``check``,
``check --read-data`` (optional), ``forget`` of one snapshot (half of whose 100k messages the next one still has) and ``prune``: wall time and peak RSS
of each, the index cache's bytes per blob, the vault's size.

    python bench/scale_bench.py accounts [--accounts 1000] [--messages 100] [--jobs 8] [--s3]
    python bench/scale_bench.py vault [--messages 1000000] [--read-data]

Everything stays on loopback and in a temp dir. Record ``uptime`` beside the figures: the machine
is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from common import (
    IMAP_PASSWORD,
    PASSWORD_VAR,
    ROOT,
    VAULT_PASSWORD,
    BenchError,
    add_json_arg,
    add_tempdir_args,
    base_env,
    loadavg,
    log,
    mailvault_cmd,
    mailvault_env,
    measure,
    print_report,
    report_head,
    run_dovecot_bench,
    run_in_tempdir,
)

WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "you",
    "that",
    "it",
    "for",
    "on",
    "are",
    "with",
    "as",
    "at",
    "be",
    "this",
    "have",
    "from",
    "or",
    "one",
    "had",
    "by",
    "but",
    "not",
    "what",
    "all",
    "were",
    "we",
    "when",
    "your",
    "can",
    "said",
    "there",
    "use",
    "an",
    "each",
    "which",
    "she",
    "do",
    "how",
    "their",
    "if",
    "will",
    "up",
    "other",
    "about",
    "out",
    "many",
    "meeting",
    "budget",
    "quarter",
    "project",
    "review",
    "draft",
    "invoice",
    "report",
    "please",
    "attached",
    "thanks",
    "regards",
]


def message(rng: random.Random, i: int, account: int, size: int) -> bytes:
    head = (
        f"From: sender{rng.randrange(500)}@example.org\nTo: user{account}@example.net\n"
        f"Subject: {' '.join(rng.choices(WORDS, k=5))}\nMessage-ID: <{account}.{i}.{rng.getrandbits(48):x}@ex>\n"
        f"Date: Tue, 1 Mar 2022 10:{i % 60:02d}:00 +0100\n\n"
    )
    body = []
    n = len(head)
    while n < size:
        line = " ".join(rng.choices(WORDS, k=rng.randint(6, 14))) + "\n"
        body.append(line)
        n += len(line)
    return (head + "".join(body)).encode()


# --------------------------------------------------------------------------- S3 request counting


class CountingS3:
    """A moto S3 server whose requests are counted by kind (LIST, GET, PUT, DELETE, HEAD, POST)."""

    def __init__(self) -> None:
        from moto.server import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        app = DomainDispatcherApplication(create_backend_app)

        def counting(environ: dict[str, Any], start_response: Any) -> Any:
            kind = environ["REQUEST_METHOD"]
            path = environ.get("PATH_INFO", "")
            query = parse_qs(environ.get("QUERY_STRING", ""))
            if kind == "GET" and ("list-type" in query or path.strip("/").count("/") == 0):
                kind = "LIST"
            with self._lock:
                self.counts[kind] += 1
            return app(environ, start_response)

        self._server = make_server("127.0.0.1", 0, counting, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.counts)

    def stop(self) -> None:
        self._server.shutdown()


# --------------------------------------------------------------------------- accounts


def seed_accounts(server: Any, n_accounts: int, n_messages: int, size: int) -> list[str]:
    server.start()
    server.clear_auth_penalty()
    users = [f"acct{i:05d}" for i in range(n_accounts)]
    chown = server.mail_uid != os.getuid()
    now = int(time.time())

    def one(k: int) -> None:
        user = users[k]
        server.add_user(user, IMAP_PASSWORD)
        cur = server.home(user) / "Maildir" / "cur"
        for sub in ("cur", "new", "tmp"):
            (cur.parent / sub).mkdir(parents=True, exist_ok=True)
        rng = random.Random(k)
        for i in range(n_messages):
            raw = message(rng, i, k, size)
            vsize = len(raw) + raw.count(b"\n")
            path = cur / f"{now + i}.M{i}P{k}.scale,S={len(raw)},W={vsize}:2,S"
            path.write_bytes(raw)
            if chown:
                os.chown(path, server.mail_uid, server.mail_gid)
        if chown:
            for p in (cur.parent.parent, cur.parent, cur, cur.parent / "new", cur.parent / "tmp"):
                os.chown(p, server.mail_uid, server.mail_gid)
        server.doveadm("force-resync", "-u", user, "*")

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(one, range(n_accounts)))
    log(f"seeded {n_accounts} accounts x {n_messages} messages in {time.perf_counter() - t0:.1f} s")
    return users


def write_config(path: Path, vault: str, server: Any, users: list[str]) -> None:
    lines = ["[vaults.v]", f'path = "{vault}"', 'password_env = "MAILVAULT_PASSWORD"', ""]
    for u in users:
        lines += [
            f"[accounts.{u}]",
            f'url = "imaps://{u}@127.0.0.1:{server.imaps_port}"',
            f'password_env = "{PASSWORD_VAR}"',
            f'ca_file = "{server.ca_file}"',
            "",
        ]
    lines += ["[jobs.nightly]", 'kind = "backup"', f"accounts = {json.dumps(users)}", 'vault = "v"', ""]
    path.write_text("\n".join(lines))


def cache_bytes_per_blob(cache_root: Path) -> dict[str, Any]:
    dbs = list(cache_root.glob("*/index.sqlite"))
    if not dbs:
        return {}
    db = dbs[0]
    size = sum(p.stat().st_size for p in db.parent.glob("index.sqlite*"))
    con = sqlite3.connect(db)
    try:
        blobs = con.execute("SELECT COUNT(*) FROM blobs").fetchone()[0]
        snaps = con.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(sealed)),0) FROM snapshots").fetchone()
    finally:
        con.close()
    return {
        "cache_bytes": size,
        "blobs": blobs,
        "snapshots_cached": snaps[0],
        "snapshot_bytes": snaps[1],
        "bytes_per_blob": size / blobs if blobs else None,
        "bytes_per_blob_without_snapshots": (size - snaps[1]) / blobs if blobs else None,
    }


def bench_accounts(args: argparse.Namespace, top: Path, server: Any) -> int:
    mv = mailvault_cmd()
    if mv is None:
        raise BenchError("mailvault is not installed")
    users = seed_accounts(server, args.accounts, args.messages, args.size)
    s3 = CountingS3() if args.s3 else None
    env = mailvault_env(base_env(imap=True), top / "cache")
    if s3 is not None:
        import boto3

        env.update(s3.env())
        os.environ.update(s3.env())
        boto3.client("s3").create_bucket(Bucket="scale")
        vault = "s3://scale/vault"
    else:
        vault = str(top / "vault")
    measure([*mv, "init", vault, "--json"], env=env, cwd=top, timeout=args.timeout)
    cfg = top / "config.toml"
    write_config(cfg, vault, server, users)
    report = report_head(load_before=loadavg())
    report.update(accounts=args.accounts, messages_per_account=args.messages, jobs=args.jobs, s3=bool(s3))
    runs = []
    for label in ("fresh", *(["no-op"] * args.noop_runs)):
        before = s3.snapshot() if s3 else Counter()
        m = measure(
            [*mv, "run", "--config", str(cfg), "--jobs", str(args.jobs), "--quiet", "--json"],
            env=env,
            cwd=top,
            timeout=args.timeout,
            check=False,
        )
        try:
            out: dict[str, Any] = json.loads(m.stdout)
        except ValueError:
            out = {}
        statuses = Counter(r.get("status") for r in out.get("results", []))
        row: dict[str, Any] = {
            "run": label,
            "wall_s": round(m.wall, 2),
            "per_account_ms": round(1000 * m.wall / args.accounts, 1),
            "peak_rss_mib": round(m.rss_mib, 1),
            "rc": m.rc,
            "statuses": dict(statuses),
            "load": loadavg(),
        }
        if s3:
            diff = s3.snapshot() - before
            row["s3_requests"] = dict(diff)
            row["s3_per_account"] = {k: round(v / args.accounts, 2) for k, v in diff.items()}
        if m.rc not in (0, 1):
            row["stderr"] = m.stderr[-800:]
            failed = [r for r in out.get("results", []) if r.get("status") == "failed"]
            if failed:
                row["first_failure"] = failed[0].get("message", "")[:400]
        runs.append(row)
        log(f"{label}: {row}")
    if args.profile:
        prof = args.profile.resolve()
        # The tasks of a no-op run one after another in the main thread (cProfile sees one thread).
        code = (
            "import cProfile, sys\n"
            "from mailvault.config import load_config\n"
            "from mailvault.runner import Runner\n"
            "r = Runner(load_config(sys.argv[1]))\n"
            "tasks = r.tasks(())\n"
            "cProfile.run('[r._task(j, a, False) for j, a in tasks]', sys.argv[2])\n"
        )
        measure([sys.executable, "-c", code, str(cfg), str(prof)], env={**env, "PYTHONPATH": str(ROOT)},
                cwd=top, timeout=args.timeout, check=False)  # fmt: skip
        log(f"profile of a no-op run: {prof}")
    report["runs"] = runs
    report["index_cache"] = cache_bytes_per_blob(top / "cache")
    report["host"]["load_after"] = loadavg()
    if s3:
        s3.stop()
    print_report(report, args.json, render_accounts)
    return 0 if all(r["rc"] == 0 for r in runs) else 1


def render_accounts(report: dict[str, Any]) -> str:
    h = report["host"]
    lines = [
        f"scale: {report['accounts']} accounts x {report['messages_per_account']} messages, "
        f"run --jobs {report['jobs']}, vault on {'S3 (moto)' if report['s3'] else 'local disk'} — {report['date']}",
        f"host: {h['cpus']} CPUs; load before {h['load_before']}, after {h['load_after']}",
        "",
        f"{'run':<12} {'wall s':>8} {'ms/account':>10} {'RSS MiB':>8} {'rc':>3}  statuses / S3 requests per account",
    ]
    for r in report["runs"]:
        extra = json.dumps(r.get("s3_per_account", r["statuses"]))
        lines.append(
            f"{r['run']:<12} {r['wall_s']:>8.1f} {r['per_account_ms']:>10.1f} {r['peak_rss_mib']:>8.0f} "
            f"{r['rc']:>3}  {extra}  load {r['load']}"
        )
    ic = report.get("index_cache") or {}
    if ic:
        lines.append(
            f"index cache: {ic['cache_bytes']:,} bytes for {ic['blobs']:,} blobs = {ic['bytes_per_blob']:.0f} B/blob "
            f"({ic['bytes_per_blob_without_snapshots']:.0f} without the {ic['snapshots_cached']} cached snapshots)"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- a 1M-message vault


def write_mbox(path: Path, start: int, count: int, size: int) -> int:
    rng = random.Random(start)
    total = 0
    with open(path, "wb") as fh:
        for i in range(start, start + count):
            raw = message(rng, i, i // 100, size)
            fh.write(b"From bench@example.org Tue Mar  1 10:00:00 2022\n")
            fh.write(raw.replace(b"\nFrom ", b"\n>From "))
            fh.write(b"\n")
            total += len(raw)
    return total


def bench_vault(args: argparse.Namespace, top: Path) -> int:
    mv = mailvault_cmd()
    if mv is None:
        raise BenchError("mailvault is not installed")
    env = mailvault_env(base_env(), top / "cache")
    vault = top / "vault"
    per_file = min(args.per_snapshot, args.messages)
    report = report_head(load_before=loadavg())
    report.update(messages=args.messages, size=args.size)
    steps: list[dict[str, Any]] = []

    def step(name: str, argv: list[str], check: bool = True) -> Any:
        m = measure([*mv, *argv], env=env, cwd=top, timeout=args.timeout, check=check)
        row = {"step": name, "wall_s": round(m.wall, 2), "peak_rss_mib": round(m.rss_mib, 1), "rc": m.rc,
               "load": loadavg()}  # fmt: skip
        steps.append(row)
        log(f"{name}: {row}")
        try:
            return json.loads(m.stdout)
        except ValueError:
            return None

    t_import = 0.0
    raw = 0
    if args.from_dir is not None:
        # A vault built by an earlier run (--build-only --keep): copy it and its index cache, so
        # check and prune can be measured again without ten minutes of import.
        src = args.from_dir
        if not (src / "vault" / "config").is_file():
            raise BenchError(f"{src}: no vault/ from an earlier 'vault --build-only --keep' run")
        shutil.copytree(src / "vault", vault)
        if (src / "cache").is_dir():
            shutil.copytree(src / "cache", top / "cache")
        info = json.loads((src / "build.json").read_text()) if (src / "build.json").is_file() else {}
        raw, args.messages = int(info.get("raw_bytes", 0)), int(info.get("messages", args.messages))
        per_file = min(int(info.get("per_snapshot", args.per_snapshot)), args.messages)
        report["messages"] = args.messages
        report["from"] = str(src)
    else:
        step("init", ["init", str(vault), "--json"])
    for n, start in enumerate(range(0, args.messages if args.from_dir is None else 0, per_file)):
        mbox = top / f"part{n}.mbox"
        raw += write_mbox(mbox, start, min(per_file, args.messages - start), args.size)
        step(f"import {n + 1}", ["import", str(vault), str(mbox), "--account", f"a{n}", "--format", "mbox",
                                 "-q", "--json"])  # fmt: skip
        t_import += steps[-1]["wall_s"]
        mbox.unlink()
    if args.build_only:
        (top / "build.json").write_text(
            json.dumps({"messages": args.messages, "per_snapshot": per_file, "raw_bytes": raw})
        )
        report.update(steps=steps, raw_bytes=raw, import_total_s=round(t_import, 1))
        report["vault_bytes"] = sum(p.stat().st_size for p in vault.rglob("*") if p.is_file())
        report["host"]["load_after"] = loadavg()
        print_report(report, args.json, render_vault)
        return 0 if all(s["rc"] == 0 for s in steps) else 1
    stats = step("stats", ["stats", str(vault), "--json"])
    step("check", ["check", str(vault), "--json"])
    if args.read_data:
        step("check --read-data", ["check", str(vault), "--read-data", "--json"])
    snaps = step("snapshots", ["snapshots", str(vault), "--json"]) or []
    if snaps:
        # Account a0 deletes half its mail and gets 10 new messages: a second import, then forget
        # keeps only that newest snapshot, so the other half of a0's first 100k messages is no
        # longer needed and prune repacks the packs holding a0's mail.
        half, new = top / "a0-half.mbox", top / "a0-new.mbox"
        write_mbox(half, 0, per_file // 2, args.size)
        write_mbox(new, args.messages + 1, 10, args.size)
        with open(half, "ab") as out:
            out.write(new.read_bytes())
        new.unlink()
        step("import a0 (half + 10 new)", ["import", str(vault), str(half), "--account", "a0", "--format", "mbox",
                                           "-q", "--json"])  # fmt: skip
        half.unlink()
        step("forget a0's first", ["forget", str(vault), "--account", "a0", "--keep-last", "1", "--json"])
    report["prune"] = step("prune", ["prune", str(vault), "--json"])
    report["steps"] = steps
    report["raw_bytes"] = raw
    report["import_total_s"] = round(t_import, 1)
    report["stats"] = stats
    report["vault_bytes"] = sum(p.stat().st_size for p in vault.rglob("*") if p.is_file())
    report["index_cache"] = cache_bytes_per_blob(top / "cache")
    report["host"]["load_after"] = loadavg()
    print_report(report, args.json, render_vault)
    return 0 if all(s["rc"] == 0 for s in steps) else 1


def render_vault(report: dict[str, Any]) -> str:
    h = report["host"]
    lines = [
        f"scale: a vault of {report['messages']:,} messages (~{report['size']} B each) — {report['date']}",
        f"host: {h['cpus']} CPUs; load before {h['load_before']}, after {h['load_after']}",
        f"raw {report['raw_bytes']:,} B, vault {report['vault_bytes']:,} B "
        f"({report['vault_bytes'] / max(1, report['raw_bytes']):.3f}x); import total {report['import_total_s']} s",
        "",
        f"{'step':<26} {'wall s':>8} {'RSS MiB':>8} {'rc':>3}  load",
    ]
    for s in report["steps"]:
        lines.append(
            f"{s['step']:<26} {s['wall_s']:>8.1f} {s['peak_rss_mib']:>8.0f} {s['rc']:>3}  {s['load']}"
        )
    ic = report.get("index_cache") or {}
    if ic:
        lines.append(
            f"index cache: {ic['cache_bytes']:,} bytes for {ic['blobs']:,} blobs = {ic['bytes_per_blob']:.0f} B/blob"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    a = sub.add_parser("accounts", help="N accounts on Dovecot, run --jobs J fresh and with nothing new")
    a.add_argument("--accounts", type=int, default=1000)
    a.add_argument("--messages", type=int, default=100, help="messages per account")
    a.add_argument("--size", type=int, default=1500, help="bytes per message (about)")
    a.add_argument("--jobs", type=int, default=8)
    a.add_argument("--s3", action="store_true", help="vault on a local moto S3 server; count requests")
    a.add_argument("--noop-runs", type=int, default=2, help="runs with nothing new after the fresh one")
    a.add_argument("--profile", type=Path, help="also profile one more no-op run (cProfile output file)")
    v = sub.add_parser("vault", help="a vault of N messages: import, check, forget, prune")
    v.add_argument("--messages", type=int, default=1_000_000)
    v.add_argument("--size", type=int, default=600, help="bytes per message (about)")
    v.add_argument("--per-snapshot", type=int, default=100_000, help="messages per imported mbox/snapshot")
    v.add_argument("--read-data", action="store_true", help="also time check --read-data")
    v.add_argument(
        "--build-only", action="store_true", help="stop after the imports (with --keep: for --from)"
    )
    v.add_argument("--from", dest="from_dir", type=Path,
                   help="start from the temp dir of an earlier '--build-only --keep' run (copied; no import)")  # fmt: skip
    for p in (a, v):
        add_json_arg(p)
        add_tempdir_args(p, temp="temp dir", keep="keep the temp dir")
    args = ap.parse_args()
    os.environ.setdefault("MAILVAULT_PASSWORD", VAULT_PASSWORD)
    sys.path.insert(0, str(ROOT))
    if args.what == "accounts":
        return run_dovecot_bench(
            args, "mv-scale-", "scale", lambda top, server: bench_accounts(args, top, server)
        )
    return run_in_tempdir(args, "mv-scale-vault-", lambda top: bench_vault(args, top), kept="kept {}")


if __name__ == "__main__":
    sys.exit(main())
