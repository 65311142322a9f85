#!/usr/bin/env python3
"""Benchmark ``mailvault restore`` over IMAPS against an mbsync push of the same mail.

Starts a private Dovecot on loopback (tests/servers/dovecot.py) and seeds the account ``src``
with corpus A (single-message files, one sub-directory per folder; INTERNALDATE = file mtime,
\\Seen on 2 of every 3 messages). ``mailvault init`` + ``mailvault backup`` of ``src`` fill a
temporary vault (not timed). Then, per run, each into a new, empty account:

* mailvault: ``mailvault restore VAULT imaps://dst1@127.0.0.1:PORT`` (timed), message count per
  folder checked over IMAP, then the same restore again (a no-op; timed);
* mbsync (isync): the same corpus as a Maildir (SubFolders Verbatim, ``cur/<n>.bench:2,S``,
  mtime = INTERNALDATE) pushed into ``dst2`` (``Create Far``, ``Sync Push``,
  ``CopyArrivalDate yes``; timed), message count per folder checked over IMAP; by default once
  with ``FSync yes`` (mbsync's default, the ratio's reference) and once with ``FSync no`` into
  ``dst3`` (mbsync's wall time with FSync yes follows the work dir's fsync latency).

Wall time and peak RSS are per command.  Nothing leaves the machine.  See bench/RESTORE.md.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import (
    IMAP_PASSWORD,
    PASSWORD_VAR,
    ROOT,
    STEP_ERRORS,
    BenchError,
    OpResult,
    StepFailed,
    add_corpus_arg,
    add_json_arg,
    add_tempdir_args,
    base_env,
    copy_message,
    failure_text,
    host_line,
    imaps_url,
    init_vault,
    json_out,
    load_corpus,
    loadavg,
    log,
    mailvault_backup_cmd,
    mailvault_cmd,
    mailvault_env,
    measure,
    print_report,
    ratio,
    report_head,
    rss_method,
    run_dovecot_bench,
    seed_dovecot,
    seen,
    table_head,
    tool_version,
    write_mbsync_config,
)

SRC_USER = "src"
TARGET_RATIO = 0.5  # mailvault restore wall / mbsync push wall


# --------------------------------------------------------------------------- corpus


def build_maildir(folders: list[tuple[str, list[Path]]], dest: Path, empty: list[str]) -> None:
    """Corpus A as an mbsync ``SubFolders Verbatim`` Maildir: ``dest/INBOX`` and ``dest/<folder>``.

    ``empty`` names further (empty) folders to create: the source account's other folders (its
    special-use folders Sent, Drafts, ...), so that the Maildir holds the same folder list as the
    source and ``Patterns *`` finds every far-side folder on the near side too.

    Messages go to ``cur/<n>.bench:2,S`` (``:2,`` when unseen), bytes unchanged, mtime = the
    corpus file's mtime (mbsync's ``CopyArrivalDate yes`` sends it as the INTERNALDATE).
    """
    from imapclient import imap_utf7

    n = 0
    for sub in ("cur", "new", "tmp"):
        (dest / "INBOX" / sub).mkdir(parents=True, exist_ok=True)
    for name, files in [*folders, *((e, []) for e in empty)]:
        parts = ["INBOX"] if name.upper() == "INBOX" else name.split("/")
        fdir = dest.joinpath(*(imap_utf7.encode(p).decode("ascii") for p in parts))
        for sub in ("cur", "new", "tmp"):
            (fdir / sub).mkdir(parents=True, exist_ok=True)
        for i, src in enumerate(files):
            n += 1
            copy_message(src, fdir / "cur" / f"{n}.bench:2,{'S' if seen(i) else ''}")


# --------------------------------------------------------------------------- IMAP checks


def folder_counts(server: Any, user: str) -> dict[str, tuple[int, int]]:
    """Every selectable folder of ``user``: (messages, \\Seen messages), read over IMAPS."""
    client = server.imap_client(user, ssl=True, timeout=120)
    out: dict[str, tuple[int, int]] = {}
    try:
        for flags, _delim, name in client.list_folders():
            if {f.lower() for f in flags} & {b"\\noselect", b"\\nonexistent"}:
                continue
            client.select_folder(name, readonly=True)
            total = len(client.search(["ALL"]))
            out[name] = (total, len(client.search(["SEEN"])) if total else 0)
    finally:
        with contextlib.suppress(Exception):
            client.logout()
    return out


def compare_counts(expected: dict[str, tuple[int, int]], got: dict[str, tuple[int, int]]) -> list[str]:
    """Differences in the message count per folder (empty folders on either side are ignored)."""
    problems = []
    for name in sorted(set(expected) | set(got)):
        e, g = expected.get(name, (0, 0))[0], got.get(name, (0, 0))[0]
        if e != g:
            problems.append(f"{name}: {g} messages, expected {e}")
    return problems


def seen_mismatches(expected: dict[str, tuple[int, int]], got: dict[str, tuple[int, int]]) -> list[str]:
    return [
        f"{name}: {got.get(name, (0, 0))[1]} \\Seen, expected {e[1]}"
        for name, e in sorted(expected.items())
        if e[0] and got.get(name, (0, 0))[1] != e[1]
    ]


# --------------------------------------------------------------------------- results


@dataclass
class Ctx:
    server: Any  # tests.servers.dovecot.Dovecot
    top: Path
    env: dict[str, str]
    timeout: float
    keep: bool
    expected: dict[str, tuple[int, int]]  # src: folder -> (messages, seen)
    messages: int
    vault: Path
    mv_env: dict[str, str]
    maildir: Path | None = None  # template Maildir for mbsync (copied per run)

    def url(self, user: str) -> str:
        return imaps_url(self.server, user)

    def new_user(self, base: str, i: int) -> str:
        user = base if i == 0 else f"{base}-r{i + 1}"
        self.server.clear_auth_penalty()
        self.server.add_user(user, IMAP_PASSWORD)
        return user

    def verify(self, user: str, res: OpResult) -> None:
        got = folder_counts(self.server, user)
        problems = compare_counts(self.expected, got)
        if problems:
            raise BenchError(f"{user} afterwards: " + "; ".join(problems))
        res.extra["counts_ok"] = True
        bad_seen = seen_mismatches(self.expected, got)
        res.extra.setdefault("seen_ok_all", []).append(not bad_seen)
        if bad_seen:
            res.extra["seen_mismatches"] = bad_seen


CAUGHT = (StepFailed, BenchError, *STEP_ERRORS)


def restore_cmd(mv: list[str], ctx: Ctx, user: str) -> list[str]:
    return [
        *mv, "restore", str(ctx.vault), ctx.url(user), "--account", SRC_USER,
        "--password-env", PASSWORD_VAR, "--ca-file", str(ctx.server.ca_file), "--quiet", "--json",
    ]  # fmt: skip


def run_mailvault(ctx: Ctx, i: int, res: dict[str, OpResult]) -> None:
    """Run ``i``: restore into a new account ``dst1`` (``dst1-r<i+1>``), verify, restore again."""
    fresh, noop = res["restore"], res["noop"]
    mv = mailvault_cmd()
    if mv is None:
        fresh.status = noop.status = "not installed"
        return
    try:
        user = ctx.new_user("dst1", i)
        m = measure(restore_cmd(mv, ctx, user), env=ctx.mv_env, cwd=ctx.top, timeout=ctx.timeout, check=False)
        info = json_out(m)
        if m.rc != 0 or info.get("failures"):
            fails = info.get("failures") or []
            detail = "; ".join(fails[:3]) if fails else (m.stderr.strip() or m.stdout.strip())[-400:]
            raise BenchError(f"restore into {user} exited {m.rc}: {detail}")
        if info.get("uploaded") != ctx.messages:
            raise BenchError(f"restore uploaded {info.get('uploaded')} messages, expected {ctx.messages}")
        ctx.verify(user, fresh)
        fresh.add(m)
        warnings = info.get("warnings") or []
        fresh.extra.update(
            uploaded=info.get("uploaded"),
            uploaded_bytes=info.get("uploaded_bytes"),
            warnings=len(warnings),
            warnings_sample=warnings[:5],
        )
        fresh.extra.setdefault("inner_duration_all", []).append(info.get("duration"))
        log(f"mailvault restore {i + 1}: {m.wall:.2f} s, {m.rss_mib:.1f} MiB")
    except CAUGHT as exc:
        fresh.status = failure_text(exc)
        noop.status = "failed: not run (the restore failed)"
        log(f"mailvault restore {i + 1}: {fresh.status}")
        return
    try:
        n = measure(restore_cmd(mv, ctx, user), env=ctx.mv_env, cwd=ctx.top, timeout=ctx.timeout)
        ninfo = json_out(n)
        if ninfo.get("uploaded") != 0:
            raise BenchError(f"no-op restore uploaded {ninfo.get('uploaded')} messages, expected 0")
        if compare_counts(ctx.expected, folder_counts(ctx.server, user)):
            raise BenchError(f"{user} changed during the no-op restore")
        noop.add(n)
        noop.extra["skipped_existing"] = ninfo.get("skipped_existing")
        log(f"mailvault no-op restore {i + 1}: {n.wall:.3f} s, {n.rss_mib:.1f} MiB")
    except CAUGHT as exc:
        noop.status = failure_text(exc)
        log(f"mailvault no-op restore {i + 1}: {noop.status}")


def run_mbsync(ctx: Ctx, i: int, res: dict[str, OpResult]) -> None:
    """Run ``i``: push a fresh copy of the Maildir into a new account ``dst2`` (``dst2-r<i+1>``),
    once per FSync setting in ``res`` (``push``: FSync yes, ``push-nofsync``: FSync no; the latter
    into ``dst3``)."""
    for op, fsync, base in (("push", "yes", "dst2"), ("push-nofsync", "no", "dst3")):
        if op in res and res[op].status == "ok":
            mbsync_push(ctx, i, res[op], fsync, base)


def mbsync_push(ctx: Ctx, i: int, push: OpResult, fsync: str, base: str) -> None:
    exe = shutil.which("mbsync")
    if exe is None or ctx.maildir is None:
        push.status = "not installed"
        return
    push.extra.setdefault("version", tool_version([exe, "--version"]))
    wd = ctx.top / f"mbsync-{base}-{i + 1}"
    try:
        user = ctx.new_user(base, i)
        wd.mkdir()
        mail = wd / "mail"
        shutil.copytree(ctx.maildir, mail)  # copy2 keeps the mtimes; mbsync renames files, adds state
        conf = write_mbsync_config(
            wd / "mbsyncrc", ctx.server, user=user, mail=mail, fsync=fsync, sync="push"
        )
        env = {**ctx.env, "HOME": str(wd)}
        m = measure([exe, "-c", str(conf), "-q", "-a"], env=env, cwd=wd, timeout=ctx.timeout)
        ctx.verify(user, push)
        push.add(m)
        log(f"mbsync push (FSync {fsync}) {i + 1}: {m.wall:.2f} s, {m.rss_mib:.1f} MiB")
    except CAUGHT as exc:
        push.status = failure_text(exc)
        log(f"mbsync push (FSync {fsync}) {i + 1}: {push.status}")
    finally:
        if not ctx.keep:
            shutil.rmtree(wd, ignore_errors=True)


# --------------------------------------------------------------------------- report

ROWS = (
    ("mailvault", "restore", "restore into empty account"),
    ("mailvault", "noop", "restore again (no-op)"),
    ("mbsync", "push", "push into empty account"),
    ("mbsync", "push-nofsync", "same push, FSync no"),
)


def render_table(report: dict[str, Any]) -> str:
    c = report["corpus"]
    h = report["host"]
    lines = [
        f"mailvault restore benchmark over IMAPS, {report['date']}",
        f"{host_line(h)}; load average (1 min) at start / "
        f"end: {h['loadavg_start'][0]:.2f} / {h['loadavg_end'][0]:.2f}",
        f"server: {report['versions']['dovecot']} on loopback, mail_fsync = {report['server_fsync']}; "
        f"{report['versions']['mailvault']} "
        f"({report['versions']['mailvault_tree']}); {report['versions']['mbsync']}",
        f"corpus A: {c['path']}: {c['messages']:,} messages in {c['folders']} folders, "
        f"{c['raw_bytes'] / 1e6:.1f} MB on disk",
        f"runs: {report['runs']} (fresh accounts per run; wall = median, RSS = max over runs, "
        f"{report['rss_method']}); work dir (vault, restore journal, mbsync Maildir + state) on "
        f"{report['workdir']['fstype']}",
        "",
    ]
    hdr = f"{'tool':<10} {'operation':<28} {'wall s':>8} {'peak RSS MiB':>13} {'messages/s':>11}"
    lines += table_head(hdr)
    for tool, op, label in ROWS:
        r = report["results"].get(tool, {}).get(op)
        if r is None:
            continue
        if r["status"] != "ok":
            status = " | ".join(x.strip() for x in r["status"].splitlines() if x.strip())
            lines.append(f"{tool:<10} {label:<28} {status[:300]}")
            continue
        rate = f"{r['messages_per_s']:>11,.0f}" if r.get("messages_per_s") else f"{'-':>11}"
        lines.append(f"{tool:<10} {label:<28} {r['wall_s']:>8.2f} {r['peak_rss_mib']:>13.1f} {rate}")
    lines.append("")
    for rt in report["ratios"]:
        if rt["value"] is None:
            lines.append(f"ratio {rt['name']}: n/a (target <= {rt['target']:g})")
        else:
            verdict = "met" if rt["met"] else "MISSED"
            lines.append(f"ratio {rt['name']}: {rt['value']:.2f} (target <= {rt['target']:g}: {verdict})")
    b = report["backup"]
    lines.append(
        f"setup (not timed in the table): seeding {b['seed_s']:.1f} s; mailvault backup of src "
        f"{b['backup_wall_s']:.2f} s, {b['backup_rss_mib']:.1f} MiB"
    )
    mvr = report["results"].get("mailvault", {}).get("restore", {})
    if mvr.get("status") == "ok":
        lines.append(
            f"mailvault restore: {mvr.get('uploaded'):,} messages uploaded, {mvr.get('warnings')} warnings"
            + (f" (e.g. {mvr['warnings_sample'][0]})" if mvr.get("warnings_sample") else "")
        )
    for tool, op, label in ROWS:
        r = report["results"].get(tool, {}).get(op, {})
        if r.get("status") == "ok" and "seen_ok_all" in r:
            ok = all(r["seen_ok_all"])
            lines.append(
                f"{tool} {label}: message count per folder matches src; \\Seen count "
                + ("matches" if ok else f"DIFFERS: {'; '.join(r.get('seen_mismatches', []))}")
            )
    lines.append(
        "wall = the whole command incl. interpreter start-up and TLS login; messages/s = corpus messages / wall"
    )
    if any(op == "push" for op in report["results"].get("mbsync", {})):
        lines.append(
            "mbsync FSync yes (its default) fsyncs its sync state as it goes: its wall time follows the "
            "work dir's fsync latency"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="Time mailvault restore into an empty IMAP account against an mbsync push of the same mail."
    )
    add_corpus_arg(ap)
    ap.add_argument(
        "--runs",
        type=int,
        default=1,
        help="runs per tool, each into new, empty accounts (median; default 1)",
    )
    ap.add_argument(
        "--mbsync-fsync",
        choices=("yes", "no", "both"),
        default="both",
        help="mbsync's global FSync setting: yes (mbsync's own default; the ratio's reference), no, "
        "or both (default: two pushes per run, each into its own empty account)",
    )
    ap.add_argument(
        "--server-fsync",
        choices=("never", "optimized", "always"),
        default="never",
        help="Dovecot's mail_fsync (default: never, the tests' setting; optimized is Dovecot's own default)",
    )
    add_json_arg(ap)
    add_tempdir_args(ap, temp="temp dir", keep="keep the temp dir (vault, Maildirs, Dovecot logs)")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_dovecot_bench(
        args, "mailvault-restore-bench-", "mvrbench", lambda top, server: _bench(args, top, server)
    )


def _fstype(path: Path) -> str:
    try:
        out = subprocess.run(
            ["df", "--output=fstype", str(path)], capture_output=True, text=True, check=True
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return "?"
    return out[-1] if len(out) > 1 else "?"


def _tree_state() -> str:
    """The commit of the mailvault package measured, and whether its working tree differs from it."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "mailvault"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "tree ?"
    return f"tree {head}" + (" + uncommitted changes in mailvault/" if dirty else "")


def _bench(args: argparse.Namespace, top: Path, server: Any) -> int:
    corpus = load_corpus(args.corpus)
    folders, n_msgs = corpus.folders, corpus.messages
    mv = mailvault_cmd()
    if mv is None:
        raise BenchError("the mailvault CLI is needed to fill the vault (pip install -e .)")

    server.mail_fsync = args.server_fsync
    seed_s = seed_dovecot(server, SRC_USER, corpus)
    expected = folder_counts(server, SRC_USER)
    want = {name: len(files) for name, files in folders}
    got = {name: n for name, (n, _s) in expected.items() if n}
    if got != want:
        raise BenchError(f"src holds {got}, expected {want}")

    env = base_env(imap=True)
    vault = top / "vault"
    mv_env = mailvault_env(env, top / "cache")
    init_vault(mv, vault, env=mv_env, cwd=top, timeout=args.timeout)
    bk = measure(mailvault_backup_cmd(mv, vault, server, SRC_USER), env=mv_env, cwd=top, timeout=args.timeout)
    binfo = json_out(bk)
    if binfo.get("messages") != n_msgs:
        raise BenchError(f"mailvault backed up {binfo.get('messages')} messages, expected {n_msgs}")
    log(f"mailvault backup of {SRC_USER}: {bk.wall:.2f} s")

    ctx = Ctx(server, top, env, args.timeout, args.keep, expected, n_msgs, vault, mv_env)
    if shutil.which("mbsync"):
        ctx.maildir = top / "maildir-template"
        corpus_names = {name for name, _ in folders}
        build_maildir(folders, ctx.maildir, [f for f in expected if f not in corpus_names])

    load_start = loadavg()
    results: dict[str, dict[str, OpResult]] = {
        "mailvault": {"restore": OpResult(), "noop": OpResult()},
        "mbsync": {
            op: OpResult()
            for op, f in (("push", "yes"), ("push-nofsync", "no"))
            if args.mbsync_fsync in (f, "both")
        },
    }
    runners = {"mailvault": run_mailvault, "mbsync": run_mbsync}
    # Run i of every tool, then run i + 1: a change in the machine's load hits both alike.
    for i in range(args.runs):
        for tool, fn in runners.items():
            if any(r.status == "ok" for r in results[tool].values()):  # else every operation failed
                fn(ctx, i, results[tool])
    load_end = loadavg()

    out = {
        tool: {op: r.as_dict(n_msgs if op != "noop" else None, rate=True) for op, r in ops.items()}
        for tool, ops in results.items()
    }
    ratios = []
    for op, what in (("push", "mbsync push"), ("push-nofsync", "mbsync push with FSync no")):
        if op not in out["mbsync"]:
            continue
        wa, wb = out["mailvault"]["restore"]["wall_s"], out["mbsync"][op]["wall_s"]
        ratios.append(ratio(f"mailvault restore / {what}", wa, wb, TARGET_RATIO))
    report = {
        **report_head(loadavg_start=load_start, loadavg_end=load_end),
        "versions": {
            "dovecot": "Dovecot " + tool_version([server.dovecot_bin, "--version"]).split()[0],
            "mailvault": tool_version([*mv, "--version"]),
            "mailvault_tree": _tree_state(),
            "mbsync": tool_version(["mbsync", "--version"])
            if shutil.which("mbsync")
            else "mbsync not installed",
        },
        "corpus": corpus.as_dict(),
        "runs": args.runs,
        "mbsync_fsync": args.mbsync_fsync,
        "server_fsync": args.server_fsync,
        "workdir": {"path": str(top), "fstype": _fstype(top)},
        "rss_method": rss_method(),
        "backup": {
            "seed_s": seed_s,
            "backup_wall_s": bk.wall,
            "backup_rss_mib": bk.rss_mib,
            "bytes_fetched": binfo.get("bytes_fetched"),
        },
        "results": out,
        "ratios": ratios,
    }
    print_report(report, args.json, render_table)
    failed = any(r["status"].startswith("failed") for ops in out.values() for r in ops.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
