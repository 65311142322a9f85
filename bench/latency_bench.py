#!/usr/bin/env python3
"""mailvault beside mbsync and offlineimap over a link with latency (bench/latency_proxy.py).

One private Dovecot on loopback (default ``mail_fsync``, i.e. ``optimized``, unless
``--server-fsync never``), two proxies in front of it, both adding ``--rtt-ms`` (default 30 ms) and
optionally ``--bandwidth-mbit``:

* the *IMAPS proxy* passes TLS through to Dovecot's implicit-TLS port (capabilities as Dovecot
  has them: MULTIAPPEND, LITERAL+, ...);
* the *Gmail-profile proxy* sits in front of the plain port and rewrites the capability lists
  as Gmail's upload side looks: no MULTIAPPEND, LITERAL- instead of LITERAL+, APPENDLIMIT, no
  STARTTLS (clients log in without TLS, on loopback).

Operations, each timed for every tool in the same run through the same proxy:

* ``fresh``: back up ``src`` (corpus A) into an empty vault / Maildir (mbsync ``Sync Pull``,
  offlineimap with a read-only remote);
* ``noop``: the same again, nothing changed; ``new``: again after one new message in INBOX;
* ``restore``: corpus A into an empty account over the IMAPS proxy (mailvault from the vault
  ``fresh`` made; mbsync ``Sync Push`` and offlineimap from a Maildir of corpus A);
* ``restore-gmail``: ``--gmail-messages`` (default 750) messages of corpus A into an empty account
  through the Gmail-profile proxy;
* ``migrate``: ``src`` into an empty account, IMAP to IMAP, both sides through the IMAPS proxy
  (mailvault ``migrate`` via a new vault; mbsync with two IMAP stores; offlineimap IMAP-IMAP).

What the tools pull (mailvault's vaults, the anchors' Maildirs) goes to ``--store-dir`` (default:
the temp dir); the report names its file system and how long a bare Maildir delivery of the
corpus's message count takes there (bench/fscost.py): a Maildir tool pays that cost per message.

Every upload is checked afterwards (message count per folder); the Gmail-profile proxy's
literal rules must not have been broken. Ratios are mailvault's wall time over each anchor's.
See bench/README.md, "latency_bench.py".
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backup_bench import new_message
from common import (
    IMAP_PASSWORD,
    PASSWORD_VAR,
    ROOT,
    STEP_ERRORS,
    BenchError,
    Corpus,
    OpResult,
    StepFailed,
    add_corpus_arg,
    add_json_arg,
    add_tempdir_args,
    base_env,
    corpus_messages,
    cpu_calibration,
    failure_text,
    host_line,
    init_vault,
    json_out,
    load_corpus,
    loadavg,
    log,
    maildir_messages,
    mailvault_cmd,
    mailvault_env,
    measure,
    print_report,
    ratio,
    report_head,
    rss_method,
    run_dovecot_bench,
    table_head,
    tool_version,
)
from fscost import describe as describe_store
from latency_proxy import LatencyProxy
from restore_bench import _tree_state, build_maildir, compare_counts, folder_counts

OPS = (
    ("fresh", "fresh backup"),
    ("noop", "no-op backup"),
    ("new", "1 new message backup"),
    ("restore", "restore, empty account"),
    ("restore-gmail", "restore, Gmail profile"),
    ("migrate", "migrate IMAP to IMAP"),
)
TOOLS = ("mailvault", "mbsync", "offlineimap")
#: (operation, anchor, target) for mailvault's wall time / the anchor's (issue 12's must-show).
TARGETS = (
    ("fresh", "mbsync", 0.25),
    ("restore", "mbsync", 0.25),
    ("restore-gmail", "mbsync", 0.35),
)
NOOP_TARGET_S = 1.0


def subset(corpus: Corpus, n: int | None) -> Corpus:
    """The first messages of each folder, in proportion to its size, ``n`` in all (None: everything)."""
    if n is None or n >= corpus.messages:
        return corpus
    folders = []
    left = n
    for name, files in corpus.folders:
        take = min(left, math.ceil(n * len(files) / corpus.messages), len(files))
        if take:
            folders.append((name, files[:take]))
        left -= take
    raw = sum(p.stat().st_size for _, fs in folders for p in fs)
    return Corpus(corpus.path, folders, sum(len(f) for _, f in folders), raw)


@dataclass
class Ctx:
    server: Any
    top: Path
    env: dict[str, str]
    args: argparse.Namespace
    tls_proxy: LatencyProxy
    gmail_proxy: LatencyProxy
    corpus: Corpus
    gmail_corpus: Corpus
    expected: dict[str, tuple[int, int]] = field(default_factory=dict)
    gmail_expected: dict[str, tuple[int, int]] = field(default_factory=dict)
    users: int = 0
    #: Where every tool writes what it pulls: mailvault's vaults and cache, the anchors' Maildirs
    #: (``--store-dir``; the temp dir by default). A Maildir tool pays the file system's cost per
    #: created file once per message (bench/fscost.py), so the report names it.
    store: Path = Path()

    def new_user(self, base: str) -> str:
        self.users += 1
        user = f"{base}{self.users}"
        self.server.clear_auth_penalty()
        self.server.add_user(user, IMAP_PASSWORD)
        return user

    def measure(self, cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> Any:
        # Every timed command starts with nothing left to write back to disk: a tool that fsyncs
        # (mbsync's FSync yes) must not pay for the previous command's dirty pages. (mbsync's
        # spread on this VM, 2.3-2.9 s for corpus A's pull into tmpfs and 5.4-16.6 s into the
        # disk, comes from the disk's cost per created file, which varies: bench/fscost.py.)
        os.sync()
        return measure(cmd, env=env or self.env, cwd=cwd or self.top, timeout=self.args.timeout)

    def check(self, user: str, expected: dict[str, tuple[int, int]]) -> None:
        problems = compare_counts(expected, folder_counts(self.server, user))
        if problems:
            raise BenchError(f"{user} afterwards: " + "; ".join(problems[:4]))


CAUGHT = (StepFailed, BenchError, *STEP_ERRORS)


# --------------------------------------------------------------------------- mailvault


class Mailvault:
    name = "mailvault"

    def __init__(self, ctx: Ctx) -> None:
        mv = mailvault_cmd()
        if mv is None:
            raise BenchError("the mailvault CLI is needed (pip install -e .)")
        self.mv = mv
        self.ctx = ctx
        self.vault = ctx.store / "mv-vault"
        self.env = mailvault_env(ctx.env, ctx.store / "mv-cache")
        self.extra = ctx.args.mailvault_arg or []

    def url(self, user: str, *, gmail: bool = False) -> list[str]:
        p = self.ctx.gmail_proxy if gmail else self.ctx.tls_proxy
        scheme = "imap" if gmail else "imaps"
        out = [f"{scheme}://{user}@127.0.0.1:{p.port}", "--password-env", PASSWORD_VAR]
        return [*out, "--allow-plaintext"] if gmail else [*out, "--ca-file", str(self.ctx.server.ca_file)]

    def backup(self, user: str, expect: int | None = None) -> Any:
        m = self.ctx.measure(
            [
                *self.mv,
                "backup",
                str(self.vault),
                *self.url(user),
                "--account",
                user,
                "-q",
                "--json",
                *self.extra,
            ],
            self.env,
        )
        info = json_out(m)
        if expect is not None and info.get("messages_fetched") != expect:
            raise BenchError(f"backup fetched {info.get('messages_fetched')} messages, expected {expect}")
        return m

    def fresh(self) -> Any:
        init_vault(self.mv, self.vault, env=self.env, cwd=self.ctx.top, timeout=self.ctx.args.timeout)
        return self.backup("src", self.ctx.corpus.messages)

    def noop(self) -> Any:
        return self.backup("src", 0)

    def new(self) -> Any:
        return self.backup("src", 1)

    def _restore(self, account: str, *, gmail: bool, expected: dict[str, tuple[int, int]], n: int) -> Any:
        user = self.ctx.new_user("mvg" if gmail else "mvr")
        cmd = [*self.mv, "restore", str(self.vault), *self.url(user, gmail=gmail), "--account", account]
        m = self.ctx.measure([*cmd, "--quiet", "--json", *self.extra], self.env)
        info = json_out(m)
        if info.get("uploaded") != n or info.get("failures"):
            raise BenchError(f"restore uploaded {info.get('uploaded')} of {n}: {info.get('failures')}")
        self.ctx.check(user, expected)
        return m

    def restore(self) -> Any:
        # Restores the snapshot of src taken before the new message: only corpus A.
        snap = self._first_snapshot("src")
        return self._restore_snapshot(snap)

    def _first_snapshot(self, account: str) -> str:
        m = self.ctx.measure(
            [*self.mv, "snapshots", str(self.vault), "--account", account, "--json"], self.env
        )
        snaps = json_out(m)
        rows = snaps if isinstance(snaps, list) else snaps.get("snapshots", [])
        if not rows:
            raise BenchError("no snapshot of src in the vault")
        return str(sorted(rows, key=lambda s: s.get("time", ""))[0]["id"])

    def _restore_snapshot(self, snap: str) -> Any:
        user = self.ctx.new_user("mvr")
        cmd = [*self.mv, "restore", str(self.vault), *self.url(user), "--account", "src", "--snapshot", snap]
        m = self.ctx.measure([*cmd, "--quiet", "--json", *self.extra], self.env)
        info = json_out(m)
        if info.get("uploaded") != self.ctx.corpus.messages or info.get("failures"):
            raise BenchError(f"restore uploaded {info.get('uploaded')}: {info.get('failures')}")
        self.ctx.check(user, self.ctx.expected)
        return m

    def restore_gmail(self) -> Any:
        # gsrc (the Gmail subset) is backed up untimed first.
        if not self.vault.exists():
            init_vault(self.mv, self.vault, env=self.env, cwd=self.ctx.top, timeout=self.ctx.args.timeout)
        self.backup("gsrc", self.ctx.gmail_corpus.messages)
        return self._restore(
            "gsrc", gmail=True, expected=self.ctx.gmail_expected, n=self.ctx.gmail_corpus.messages
        )

    def migrate(self) -> Any:
        user = self.ctx.new_user("mvm")
        expected = folder_counts(self.ctx.server, "src")
        vault = self.ctx.store / "mv-migrate-vault"
        init_vault(self.mv, vault, env=self.env, cwd=self.ctx.top, timeout=self.ctx.args.timeout)
        p = self.ctx.tls_proxy.port
        cmd = [
            *self.mv, "migrate", f"imaps://src@127.0.0.1:{p}", f"imaps://{user}@127.0.0.1:{p}",
            "--vault", str(vault), "--source-password-env", PASSWORD_VAR, "--target-password-env",
            PASSWORD_VAR, "--ca-file", str(self.ctx.server.ca_file), "--quiet", "--json", *self.extra,
        ]  # fmt: skip
        m = self.ctx.measure(cmd, self.env)
        self.ctx.check(user, expected)
        return m


# --------------------------------------------------------------------------- mbsync


def mbsync_store(name: str, host: str, port: int, user: str, ca: Path | None) -> str:
    ssl = f"SSLType IMAPS\nCertificateFile {ca}\n" if ca else "SSLType None\n"
    return (
        f"IMAPAccount {name}\nHost {host}\nPort {port}\nUser {user}\nPass {IMAP_PASSWORD}\n{ssl}"
        f"\nIMAPStore {name}\nAccount {name}\n\n"
    )


class NotInstalled(Exception):
    """The anchor tool is not on PATH."""


class MaildirTool:
    """An anchor that pulls the account into a Maildir (``pull``) and pushes a Maildir into a new
    account (``_push``); fresh / no-op / new-message backups and restores are the same for each."""

    name = ""
    pull_name = ""

    def __init__(self, ctx: Ctx) -> None:
        exe = shutil.which(self.name)
        if exe is None:
            raise NotInstalled
        self.exe = exe
        self.ctx = ctx
        self.pull_dir = ctx.store / self.pull_name

    def pull(self) -> Any:
        raise NotImplementedError

    def _push(self, template: Path, *, gmail: bool, expected: dict[str, tuple[int, int]]) -> Any:
        raise NotImplementedError

    def count(self) -> int:
        return len(maildir_messages(self.pull_dir / "mail"))

    def fresh(self) -> Any:
        m = self.pull()
        if self.count() != self.ctx.corpus.messages:
            raise BenchError(f"{self.name} pulled {self.count()} messages")
        return m

    def noop(self) -> Any:
        return self.pull()

    def new(self) -> Any:
        m = self.pull()
        if self.count() != self.ctx.corpus.messages + 1:
            raise BenchError(f"{self.name} holds {self.count()} messages after the new one")
        return m

    def restore(self) -> Any:
        return self._push(self.ctx.top / "maildir-a", gmail=False, expected=self.ctx.expected)

    def restore_gmail(self) -> Any:
        return self._push(self.ctx.top / "maildir-g", gmail=True, expected=self.ctx.gmail_expected)


class Mbsync(MaildirTool):
    name = "mbsync"
    pull_name = "mbsync-pull"

    def run(self, wd: Path, body: str) -> Any:
        conf = wd / "mbsyncrc"
        conf.write_text(f"FSync {self.ctx.args.mbsync_fsync}\n\n{body}")
        conf.chmod(0o600)
        return self.ctx.measure(
            [self.exe, "-c", str(conf), "-q", "-a"], {**self.ctx.env, "HOME": str(wd)}, wd
        )

    def imap(self, name: str, user: str, *, gmail: bool = False) -> str:
        p = self.ctx.gmail_proxy if gmail else self.ctx.tls_proxy
        return mbsync_store(name, "localhost", p.port, user, None if gmail else self.ctx.server.ca_file)

    @staticmethod
    def maildir(path: Path) -> str:
        return f"MaildirStore near\nPath {path}/\nInbox {path}/INBOX\nSubFolders Verbatim\n\n"

    @staticmethod
    def channel(far: str, near: str, sync: str, create: str, state: str = "*") -> str:
        return (
            f"Channel ch\nFar :{far}:\nNear :{near}:\nPatterns *\nCreate {create}\nSync {sync}\n"
            f"CopyArrivalDate yes\nSyncState {state}\n"
        )

    def pull(self) -> Any:
        mail = self.pull_dir / "mail"
        mail.mkdir(parents=True, exist_ok=True)
        body = self.imap("far", "src") + self.maildir(mail) + self.channel("far", "near", "Pull", "Near")
        return self.run(self.pull_dir, body)

    def _push(self, template: Path, *, gmail: bool, expected: dict[str, tuple[int, int]]) -> Any:
        user = self.ctx.new_user("mbg" if gmail else "mbr")
        wd = self.ctx.top / f"mbsync-{user}"
        wd.mkdir()
        shutil.copytree(template, wd / "mail")
        body = self.imap("far", user, gmail=gmail) + self.maildir(wd / "mail")
        m = self.run(wd, body + self.channel("far", "near", "Push", "Far"))
        self.ctx.check(user, expected)
        return m

    def migrate(self) -> Any:
        user = self.ctx.new_user("mbm")
        wd = self.ctx.top / f"mbsync-{user}"
        (wd / "state").mkdir(parents=True)
        body = self.imap("far", user) + self.imap("near", "src")
        m = self.run(wd, body + self.channel("far", "near", "Push", "Far", f"{wd}/state/"))
        self.ctx.check(user, folder_counts(self.ctx.server, "src"))
        return m


# --------------------------------------------------------------------------- offlineimap


class Offlineimap(MaildirTool):
    name = "offlineimap"
    pull_name = "oi-pull"

    def remote(self, section: str, user: str, *, gmail: bool = False, readonly: bool = False) -> str:
        p = self.ctx.gmail_proxy if gmail else self.ctx.tls_proxy
        ssl = (
            "ssl = no\nstarttls = no\n"
            if gmail
            else f"ssl = yes\nsslcacertfile = {self.ctx.server.ca_file}\n"
        )
        return (
            f"[Repository {section}]\ntype = IMAP\nremotehost = localhost\nremoteport = {p.port}\n"
            f"remoteuser = {user}\nremotepass = {IMAP_PASSWORD}\n{ssl}"
            f"readonly = {readonly}\nmaxconnections = {self.ctx.args.offlineimap_connections}\n"
            "createfolders = True\nsep = /\n\n"
        )

    def run(self, wd: Path, local: str, remote: str) -> Any:
        conf = wd / "offlineimaprc"
        conf.write_text(
            f"[general]\naccounts = bench\nmetadata = {wd}/meta\nui = quiet\n"
            f"maxsyncaccounts = 1\n\n[Account bench]\nlocalrepository = local\nremoterepository = remote\n"
            "synclabels = no\n\n" + local + remote
        )
        return self.ctx.measure(
            [self.exe, "-c", str(conf), "-o", "-u", "quiet"], {**self.ctx.env, "HOME": str(wd)}, wd
        )

    @staticmethod
    def maildir(path: Path, *, readonly: bool = False) -> str:
        return (
            f"[Repository local]\ntype = Maildir\nlocalfolders = {path}\nsep = /\nreadonly = {readonly}\n\n"
        )

    def pull(self) -> Any:
        self.pull_dir.mkdir(exist_ok=True)
        (self.pull_dir / "mail").mkdir(exist_ok=True)
        return self.run(
            self.pull_dir, self.maildir(self.pull_dir / "mail"), self.remote("remote", "src", readonly=True)
        )

    def _push(self, template: Path, *, gmail: bool, expected: dict[str, tuple[int, int]]) -> Any:
        user = self.ctx.new_user("oig" if gmail else "oir")
        wd = self.ctx.top / f"oi-{user}"
        wd.mkdir()
        shutil.copytree(template, wd / "mail")
        m = self.run(wd, self.maildir(wd / "mail", readonly=True), self.remote("remote", user, gmail=gmail))
        self.ctx.check(user, expected)
        return m

    def migrate(self) -> Any:
        user = self.ctx.new_user("oim")
        wd = self.ctx.top / f"oi-{user}"
        wd.mkdir()
        local = self.remote("local", "src", readonly=True)
        m = self.run(wd, local, self.remote("remote", user))
        self.ctx.check(user, folder_counts(self.ctx.server, "src"))
        return m


# --------------------------------------------------------------------------- run


def append_new(ctx: Ctx) -> None:
    client = ctx.server.imap_client("src", ssl=True)
    try:
        client.append("INBOX", new_message("latency"))
    finally:
        with contextlib.suppress(Exception):
            client.logout()


def byte_compile() -> None:
    """Byte-compile the mailvault package, as ``pip install`` does: an editable install run under
    PYTHONDONTWRITEBYTECODE=1 would otherwise compile every module at every start (~0.2 s)."""
    import compileall

    import mailvault

    compileall.compile_dir(Path(mailvault.__file__).parent, quiet=1)


def _bench(args: argparse.Namespace, top: Path, server: Any) -> int:
    byte_compile()
    corpus = subset(load_corpus(args.corpus), args.messages)
    gcorpus = subset(corpus, args.gmail_messages)
    server.mail_fsync = args.server_fsync
    server.start()
    server.clear_auth_penalty()
    for user, c in (("src", corpus), ("gsrc", gcorpus)):
        server.add_user(user, IMAP_PASSWORD)
        for name, files in c.folders:
            server.seed(user, name, corpus_messages(files))
    log(f"seeded src ({corpus.messages:,} messages) and gsrc ({gcorpus.messages:,})")
    env = base_env(imap=True)
    shaping = {"rtt_ms": args.rtt_ms, "bandwidth_mbit": args.bandwidth_mbit}
    tls_proxy = LatencyProxy(server.host, server.imaps_port, **shaping).start()
    gmail_proxy = LatencyProxy(server.host, server.imap_port, gmail=True, **shaping).start()
    store = Path(tempfile.mkdtemp(prefix="store-", dir=args.store_dir)) if args.store_dir else top
    try:
        ctx = Ctx(server, top, env, args, tls_proxy, gmail_proxy, corpus, gcorpus, store=store)
        ctx.expected = folder_counts(server, "src")
        ctx.gmail_expected = folder_counts(server, "gsrc")
        names = {n for n, _ in corpus.folders}
        build_maildir(corpus.folders, top / "maildir-a", [f for f in ctx.expected if f not in names])
        gnames = {n for n, _ in gcorpus.folders}
        build_maildir(gcorpus.folders, top / "maildir-g", [f for f in ctx.gmail_expected if f not in gnames])
        return _run(args, ctx, corpus, gcorpus)
    finally:
        tls_proxy.stop()
        gmail_proxy.stop()
        if store != top:
            if args.keep:
                log(f"kept {store}")
            else:
                shutil.rmtree(store, ignore_errors=True)


def _run(args: argparse.Namespace, ctx: Ctx, corpus: Corpus, gcorpus: Corpus) -> int:
    load_start = loadavg()
    calibration = [cpu_calibration()]
    tools: dict[str, Any] = {}
    results: dict[str, dict[str, OpResult]] = {}
    for name, cls in (("mailvault", Mailvault), ("mbsync", Mbsync), ("offlineimap", Offlineimap)):
        results[name] = {op: OpResult() for op, _ in OPS}
        if name not in args.tools:
            for r in results[name].values():
                r.status = "n/a"
            continue
        try:
            tools[name] = cls(ctx)
        except NotInstalled:
            for r in results[name].values():
                r.status = "not installed"
    ops = [op for op, _ in OPS if op in args.ops]
    for rs in results.values():
        for op, r in rs.items():
            if op not in ops and r.status == "ok":
                r.status = "n/a"
    for op in ops:
        if op == "new":
            append_new(ctx)
        for name, tool in tools.items():
            res = results[name][op]
            if op in ("noop", "new") and results[name]["fresh"].status != "ok":
                res.status = "failed: not run (fresh failed)"
                continue
            ctx.gmail_proxy.stats.reset()
            try:
                m = getattr(tool, op.replace("-", "_"))()
                res.add(m)
                log(f"{name} {op}: {m.wall:.2f} s")
            except CAUGHT as exc:
                res.status = failure_text(exc)
                log(f"{name} {op}: {res.status}")
            if op == "restore-gmail":
                res.extra["gmail_proxy"] = {
                    "commands": ctx.gmail_proxy.stats.commands,
                    "client_turns": ctx.gmail_proxy.stats.client_turns,
                    "literal_violations": ctx.gmail_proxy.stats.literal_violations[:5],
                }
                if ctx.gmail_proxy.stats.literal_violations and res.status == "ok":
                    res.status = (
                        f"failed: broke Gmail's literal rules: {ctx.gmail_proxy.stats.literal_violations[0]}"
                    )
    load_end = loadavg()
    calibration.append(cpu_calibration())
    store_info = describe_store(ctx.store, corpus.messages, fsync=args.mbsync_fsync == "yes")
    out = {t: {op: r.as_dict() for op, r in rs.items()} for t, rs in results.items()}
    ratios = []
    for op, _ in OPS:
        for anchor in ("mbsync", "offlineimap"):
            target = next((t for o, a, t in TARGETS if o == op and a == anchor), math.inf)
            ratios.append(
                {
                    **ratio(
                        f"{op}: mailvault / {anchor}",
                        out["mailvault"][op]["wall_s"],
                        out[anchor][op]["wall_s"],
                        target,
                    ),
                    "op": op,
                    "anchor": anchor,
                }
            )
    mv = mailvault_cmd() or ["mailvault"]
    report = {
        **report_head(loadavg_start=load_start, loadavg_end=load_end, cpu_calibration=calibration),
        "conditions": {
            "rtt_ms": args.rtt_ms,
            "bandwidth_mbit": args.bandwidth_mbit,
            "server_fsync": args.server_fsync,
            "mbsync_fsync": args.mbsync_fsync,
            "imaps_proxy": ctx.tls_proxy.describe(),
            "gmail_proxy": ctx.gmail_proxy.describe(),
            "mailvault_args": args.mailvault_arg or [],
            "store": store_info,
        },
        "versions": {
            "dovecot": "Dovecot " + tool_version([ctx.server.dovecot_bin, "--version"]).split()[0],
            "mailvault": tool_version([*mv, "--version"]) + f" ({_tree_state()})",
            "mbsync": tool_version(["mbsync", "--version"]) if shutil.which("mbsync") else "not installed",
            "offlineimap": ("offlineimap " + tool_version(["offlineimap", "--version"]))
            if shutil.which("offlineimap")
            else "not installed",
        },
        "corpus": corpus.as_dict(),
        "gmail_corpus": gcorpus.as_dict(),
        "rss_method": rss_method(),
        "results": out,
        "ratios": ratios,
    }
    print_report(report, args.json, render)
    failed = any(r["status"].startswith("failed") for rs in out.values() for r in rs.values())
    return 1 if failed else 0


def _cell(r: dict[str, Any]) -> str:
    if r["status"] == "ok" and r["wall_s"] is not None:
        return f"{r['wall_s']:>9.2f}"
    return f"{r['status'].split(':')[0][:9]:>9}"


def _calibration_cells(h: dict[str, Any]) -> str:
    return " / ".join("n/a" if c is None else f"{c:.3f}" for c in h.get("cpu_calibration") or [None])


def _store_line(store: dict[str, Any] | None) -> str:
    if not store:
        return "where the tools store: not recorded"
    return (
        f"where the tools store (vaults, Maildirs): {store['path']} ({store['fs']}); a bare Maildir "
        f"delivery of {store['files']:,} files there (fsync each: {'yes' if store['fsync'] else 'no'}): "
        f"{store['delivery_s']:.2f} s"
    )


def render(report: dict[str, Any]) -> str:
    c, g, h, cond = report["corpus"], report["gmail_corpus"], report["host"], report["conditions"]
    res = report["results"]
    lines = [
        f"mailvault over a slow link: latency benchmark, {report['date']}",
        f"{host_line(h)}; load average (1 min) at start / end: "
        f"{h['loadavg_start'][0]:.2f} / {h['loadavg_end'][0]:.2f}; CPU calibration (zstd -9 of 4 MiB, "
        f"CPU s) at start / end: {_calibration_cells(h)}",
        f"server: {report['versions']['dovecot']} on loopback, mail_fsync = {cond['server_fsync']}; "
        f"{report['versions']['mailvault']}; {report['versions']['mbsync']} (FSync {cond['mbsync_fsync']}); "
        f"{report['versions']['offlineimap']}",
        f"link: {cond['imaps_proxy']} (IMAPS, Dovecot's capabilities); Gmail profile: no MULTIAPPEND, "
        "LITERAL-, APPENDLIMIT, no STARTTLS (plain port)",
        _store_line(cond.get("store")),
        f"corpus: {c['messages']:,} messages of {c['path']} ({c['raw_bytes'] / 1e6:.1f} MB); "
        f"Gmail-profile restore: {g['messages']:,} of them",
        "",
    ]
    hdr = f"{'operation':<26}{'mailvault':>10}{'mbsync':>10}{'offlineimap':>12}  {'mv/mbsync':>9}{'mv/oi':>7}  target"
    lines += table_head(hdr)
    for op, label in OPS:
        rs = [res[t][op] for t in TOOLS]
        rats = {r["anchor"]: r for r in report["ratios"] if r["op"] == op}
        cells = [
            f"{x['value']:.2f}" if x["value"] is not None else "-"
            for x in (rats["mbsync"], rats["offlineimap"])
        ]
        tgt = next(
            (
                f"<= {t:g}x mbsync: {'met' if rats['mbsync']['met'] else 'MISSED'}"
                for o, _a, t in TARGETS
                if o == op and rats["mbsync"]["value"] is not None
            ),
            "",
        )
        if op == "noop" and res["mailvault"][op]["wall_s"] is not None:
            w = res["mailvault"][op]["wall_s"]
            tgt = f"<= {NOOP_TARGET_S:g} s: {'met' if w <= NOOP_TARGET_S else 'MISSED'}"
        lines.append(
            f"{label:<26}{_cell(rs[0]):>10}{_cell(rs[1]):>10}{_cell(rs[2]):>12}  {cells[0]:>9}{cells[1]:>7}  {tgt}"
        )
    lines.append("")
    lines.append(
        "wall seconds of the whole command (start-up, TLS, login included); ratio = mailvault / anchor"
    )
    for t in TOOLS:
        g_extra = res[t]["restore-gmail"].get("gmail_proxy")
        if g_extra:
            lines.append(
                f"{t} Gmail-profile restore through the proxy: {g_extra['commands']:,} commands, "
                f"{g_extra['client_turns']:,} client turns (waits), literal-rule violations: "
                f"{len(g_extra['literal_violations'])}"
            )
    for t in TOOLS:
        for op, label in OPS:
            st = res[t][op]["status"]
            if st.startswith("failed"):
                lines.append(f"{t} {label}: {st[:400]}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="mailvault beside mbsync and offlineimap over a slow link")
    add_corpus_arg(ap)
    ap.add_argument("--rtt-ms", type=float, default=30.0, help="round-trip time the proxy adds (default 30)")
    ap.add_argument("--bandwidth-mbit", type=float, help="bandwidth cap each way (default: none)")
    ap.add_argument("--server-fsync", default="optimized", choices=("optimized", "always", "never"),
                    help="Dovecot's mail_fsync (default: optimized, Dovecot's own default)")  # fmt: skip
    ap.add_argument(
        "--mbsync-fsync", default="yes", choices=("yes", "no"), help="mbsync's FSync (default yes)"
    )
    ap.add_argument(
        "--store-dir",
        type=Path,
        help="where every tool writes what it pulls: mailvault's vaults, the anchors' Maildirs "
        "(default: the temp dir; e.g. /dev/shm to take the disk's per-file cost out)",
    )
    ap.add_argument("--messages", type=int, help="use only this many messages of the corpus (default: all)")
    ap.add_argument("--gmail-messages", type=int, default=750, help="messages for the Gmail-profile restore")
    ap.add_argument("--tools", default=",".join(TOOLS), help="comma-separated subset of " + ",".join(TOOLS))
    ap.add_argument("--ops", default=",".join(o for o, _ in OPS), help="comma-separated operations")
    ap.add_argument("--offlineimap-connections", type=int, default=4, help="offlineimap maxconnections")
    ap.add_argument(
        "--mailvault-arg", action="append", help="extra argument for mailvault backup/restore/migrate"
    )
    add_json_arg(ap)
    add_tempdir_args(ap, temp="temp dir", keep="keep the temp dir (vaults, Maildirs, Dovecot logs)")
    args = ap.parse_args(argv)
    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    args.ops = [o.strip() for o in args.ops.split(",") if o.strip()]
    if "noop" in args.ops or "new" in args.ops:
        args.ops = sorted(set(args.ops) | {"fresh"}, key=[o for o, _ in OPS].index)
    if "restore" in args.ops and "fresh" not in args.ops:
        args.ops = ["fresh", *args.ops]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT))
    return run_dovecot_bench(
        args, "mailvault-latency-bench-", "mvlbench", lambda top, server: _bench(args, top, server)
    )


if __name__ == "__main__":
    sys.exit(main())
