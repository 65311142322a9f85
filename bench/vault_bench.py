#!/usr/bin/env python3
"""Benchmark mailvault's vault against anchor tools on the same mail.

Converts a corpus of single-message files into a Dovecot-style Maildir++ tree
(or uses an existing Maildir), then backs it up with

* ``mailvault init`` + ``mailvault import`` (default settings, encrypted), a
  second ``import`` of the same tree (size growth) and ``check --read-data``;
* ``borg init -e repokey`` + ``borg create --compression zstd,3``;
* ``restic init`` + ``restic backup`` (0.14: no compression);
* ``tar -cf - DIR | zstd -3``;
* ``zstd -3`` of every message on its own (Python ``zstandard``), as a reference;

each in a fresh temporary directory, and prints stored size / raw message bytes,
wall time, throughput and peak RSS.  Everything stays local: no message is sent
anywhere.  See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import (
    MIB,
    STEP_ERRORS,
    VAULT_PASSWORD,
    BenchError,
    Measured,
    StepFailed,
    add_corpus_arg,
    add_json_arg,
    add_tempdir_args,
    base_env,
    copy_message,
    corpus_folders,
    default_corpus,
    failure_text,
    host_line,
    json_out,
    log,
    maildir_messages,
    mailvault_cmd,
    mailvault_env,
    measure_pipeline,
    print_report,
    report_head,
    run_in_tempdir,
    table_head,
    tool_version,
)

TOOLS = ("mailvault", "borg", "restic", "tar-zstd", "zstd-per-message")


# --------------------------------------------------------------------------- input


def build_maildir(corpus: Path, dest: Path) -> None:
    """Write ``corpus`` as a Maildir++ tree (Dovecot layout) at ``dest``.

    INBOX is the root's cur/new/tmp; every corpus folder F becomes ``.F/`` with its
    own cur/new/tmp and a ``maildirfolder`` marker.  Messages go to ``cur/`` as
    ``<mtime>.M<n>P<pid>.bench,S=<size>:2,S`` (seen), bytes and mtime unchanged.
    """
    folders = corpus_folders(corpus, hint="--corpus DIR or --maildir DIR")
    pid = os.getpid()
    counter = 0
    for sub in ("cur", "new", "tmp"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    for name, files in folders:
        if name == "INBOX":
            fdir = dest
        else:
            fdir = dest / ("." + name.replace(".", "_"))
            for sub in ("cur", "new", "tmp"):
                (fdir / sub).mkdir(parents=True, exist_ok=True)
            (fdir / "maildirfolder").touch()
        for src in files:
            st = src.stat()
            counter += 1
            copy_message(src, fdir / "cur" / f"{int(st.st_mtime)}.M{counter}P{pid}.bench,S={st.st_size}:2,S")
    (dest / "subscriptions").write_text("".join(n + "\n" for n, _ in folders if n != "INBOX"))


def tree_bytes(path: Path) -> int:
    """Sum of the sizes of all regular files under ``path`` (like ``du -sb`` without directory entries)."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for dirpath, _dirnames, filenames in os.walk(path):
        for f in filenames:
            st = os.lstat(os.path.join(dirpath, f))
            if not os.path.islink(os.path.join(dirpath, f)):
                total += st.st_size
    return total


# --------------------------------------------------------------------------- measurement


def run_measured(cmds: Sequence[Sequence[str]], **kw: Any) -> Measured:
    """:func:`common.measure_pipeline` with peak RSS from ``os.wait4`` on each child, not GNU time.

    Every tool here peaks above this script's own RSS, so ``os.wait4`` does not understate it
    (bench/README.md); and it measures the tar|zstd pipeline's members the way it always has.
    """
    return measure_pipeline(cmds, use_gnu_time=False, **kw)


# --------------------------------------------------------------------------- tools


@dataclass
class Ctx:
    maildir: Path
    raw_bytes: int
    messages: int
    workdir: Path  # fresh, empty, per tool run
    base_env: dict[str, str]
    timeout: float


@dataclass
class ToolResult:
    tool: str
    label: str
    status: str = "ok"  # ok | not installed | failed: ...
    stored_bytes: int | None = None
    wall: float | None = None  # the backup step alone (import / create / backup / pipeline)
    rss_mib: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def run_mailvault(ctx: Ctx, res: ToolResult) -> None:
    mv = mailvault_cmd()
    if mv is None:
        res.status = "not installed"
        return
    res.extra["version"] = tool_version([*mv, "--version"])
    vault = ctx.workdir / "vault"
    cache = ctx.workdir / "cache"
    env = mailvault_env(ctx.base_env, cache)
    run = lambda *a: run_measured([[*mv, *a]], env=env, cwd=ctx.workdir, timeout=ctx.timeout)  # noqa: E731

    init = run("init", str(vault), "--json")
    imp = run(
        "import", str(vault), str(ctx.maildir), "--account", "bench", "--format", "maildir", "-q", "--json"
    )
    size1 = tree_bytes(vault)
    info = json_out(imp)
    if info.get("messages") not in (None, ctx.messages):
        res.extra["warning"] = (
            f"mailvault imported {info.get('messages')} messages, the tree has {ctx.messages}"
        )
    res.stored_bytes, res.wall, res.rss_mib = size1, imp.wall, imp.rss_mib
    res.extra.update(
        init_wall=init.wall,
        init_rss_mib=init.rss_mib,
        imported_messages=info.get("messages"),
        new_messages=info.get("new_messages"),
        cache_bytes=tree_bytes(cache) if cache.exists() else 0,
    )

    re_imp = run(
        "import", str(vault), str(ctx.maildir), "--account", "bench", "--format", "maildir", "-q", "--json"
    )
    size2 = tree_bytes(vault)
    res.extra.update(
        reimport_wall=re_imp.wall,
        reimport_rss_mib=re_imp.rss_mib,
        reimport_growth_bytes=size2 - size1,
        reimport_growth_pct=(size2 - size1) / size1 * 100 if size1 else None,
        reimport_new_messages=json_out(re_imp).get("new_messages"),
    )

    chk = run_measured(
        [[*mv, "check", str(vault), "--read-data", "-q", "--json"]],
        env=env,
        cwd=ctx.workdir,
        timeout=ctx.timeout,
        check=False,
    )
    cj = json_out(chk)
    res.extra.update(
        check_wall=chk.wall,
        check_rss_mib=chk.rss_mib,
        check_ok=chk.rc == 0 and cj.get("ok", False),
        check_errors=len(cj.get("errors", [])) if cj else None,
    )
    stats = run("stats", str(vault), "--json")
    sj = json_out(stats)
    res.extra.update(stats_stored_bytes=sj.get("stored_bytes"), stats_ratio=sj.get("ratio"))


def run_borg(ctx: Ctx, res: ToolResult) -> None:
    if not shutil.which("borg"):
        res.status = "not installed"
        return
    res.extra["version"] = tool_version(["borg", "--version"])
    repo = ctx.workdir / "repo"
    env = {
        **ctx.base_env,
        "BORG_PASSPHRASE": VAULT_PASSWORD,
        "BORG_BASE_DIR": str(ctx.workdir / "borg-home"),  # cache, config, keys, security: all in the temp dir
        "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes",
    }
    init = run_measured(
        [["borg", "init", "-e", "repokey", str(repo)]], env=env, cwd=ctx.workdir, timeout=ctx.timeout
    )
    create = run_measured(
        [["borg", "create", "--compression", "zstd,3", f"{repo}::bench", ctx.maildir.name]],
        env=env,
        cwd=ctx.maildir.parent,
        timeout=ctx.timeout,
    )
    res.stored_bytes, res.wall, res.rss_mib = tree_bytes(repo), create.wall, create.rss_mib
    res.extra.update(
        init_wall=init.wall,
        init_rss_mib=init.rss_mib,
        cache_bytes=tree_bytes(ctx.workdir / "borg-home"),
    )


def run_restic(ctx: Ctx, res: ToolResult) -> None:
    if not shutil.which("restic"):
        res.status = "not installed"
        return
    res.extra["version"] = tool_version(["restic", "version"])
    repo = ctx.workdir / "repo"
    cache = ctx.workdir / "restic-cache"
    env = {**ctx.base_env, "RESTIC_PASSWORD": VAULT_PASSWORD, "RESTIC_CACHE_DIR": str(cache)}
    init = run_measured(
        [["restic", "init", "--repo", str(repo), "--quiet"]], env=env, cwd=ctx.workdir, timeout=ctx.timeout
    )
    backup = run_measured(
        [["restic", "backup", "--repo", str(repo), "--quiet", ctx.maildir.name]],
        env=env,
        cwd=ctx.maildir.parent,
        timeout=ctx.timeout,
    )
    res.stored_bytes, res.wall, res.rss_mib = tree_bytes(repo), backup.wall, backup.rss_mib
    # restic >= 0.14 creates repository format v2, which compresses (zstd, mode "auto") by default;
    # v1 repositories store blobs uncompressed.
    cfg = subprocess.run(
        ["restic", "--repo", str(repo), "--no-cache", "cat", "config"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    try:
        repo_version = json.loads(cfg.stdout).get("version")
    except json.JSONDecodeError:
        repo_version = None
    res.extra["repo_version"] = repo_version
    if repo_version == 1:
        res.label = "restic backup (v1 repo, no compression)"
    elif repo_version is not None:
        res.label = f"restic backup (v{repo_version} repo, compr. auto)"
    res.extra.update(
        init_wall=init.wall,
        init_rss_mib=init.rss_mib,
        cache_bytes=tree_bytes(cache) if cache.exists() else 0,
    )


def run_tar_zstd(ctx: Ctx, res: ToolResult) -> None:
    missing = [b for b in ("tar", "zstd") if not shutil.which(b)]
    if missing:
        res.status = "not installed"
        res.extra["missing"] = missing
        return
    res.extra["version"] = f"{tool_version(['tar', '--version'])}; {tool_version(['zstd', '--version'])}"
    out = ctx.workdir / "mail.tar.zst"
    m = run_measured(
        [["tar", "--sort=name", "-cf", "-", ctx.maildir.name], ["zstd", "-3", "-q", "-c"]],
        env=ctx.base_env,
        cwd=ctx.maildir.parent,
        stdout_path=out,
        timeout=ctx.timeout,
    )
    res.stored_bytes, res.wall, res.rss_mib = out.stat().st_size, m.wall, m.rss_mib


def run_zstd_per_message(ctx: Ctx, res: ToolResult) -> None:
    try:
        import zstandard  # noqa: F401
    except ImportError:
        res.status = "not installed"
        res.extra["missing"] = ["python zstandard"]
        return
    # In a child process so that its peak RSS is measured like the other tools'.
    m = run_measured(
        [[sys.executable, os.path.abspath(__file__), "--zstd-per-message-worker", str(ctx.maildir)]],
        env=ctx.base_env,
        cwd=ctx.workdir,
        timeout=ctx.timeout,
    )
    info = json.loads(m.stdout)
    res.stored_bytes, res.wall, res.rss_mib = info["compressed_bytes"], m.wall, m.rss_mib
    res.extra.update(messages=info["messages"], version=f"python-zstandard {info['zstandard']}")


def zstd_per_message_worker(maildir: Path) -> None:
    import zstandard

    cctx = zstandard.ZstdCompressor(level=3)
    total = n = 0
    for p in maildir_messages(maildir):
        total += len(cctx.compress(p.read_bytes()))
        n += 1
    print(json.dumps({"compressed_bytes": total, "messages": n, "zstandard": zstandard.__version__}))


RUNNERS: dict[str, tuple[str, Callable[[Ctx, ToolResult], None]]] = {
    "mailvault": ("mailvault import (default, encrypted)", run_mailvault),
    "borg": ("borg create zstd,3 (repokey)", run_borg),
    "restic": ("restic backup", run_restic),
    "tar-zstd": ("tar | zstd -3", run_tar_zstd),
    "zstd-per-message": ("zstd -3 per message (ref.)", run_zstd_per_message),
}


# --------------------------------------------------------------------------- aggregation / output


def median_result(tool: str, runs: list[ToolResult]) -> ToolResult:
    first = runs[0]
    bad = [r for r in runs if r.status != "ok"]
    if bad:
        out = bad[0]
        out.extra["runs"] = len(runs)
        return out
    med = lambda xs: statistics.median(xs) if xs else None  # noqa: E731
    out = ToolResult(tool, first.label)
    out.stored_bytes = int(med([r.stored_bytes for r in runs if r.stored_bytes is not None]) or 0)
    out.wall = med([r.wall for r in runs if r.wall is not None])
    out.rss_mib = med([r.rss_mib for r in runs if r.rss_mib is not None])
    for key, val in first.extra.items():
        vals = [r.extra.get(key) for r in runs]
        if isinstance(val, bool) or not isinstance(val, int | float):
            out.extra[key] = val if all(v == val for v in vals) else vals
        else:
            out.extra[key] = med([v for v in vals if isinstance(v, int | float)])
    out.extra["runs"] = len(runs)
    if len(runs) > 1:
        out.extra["wall_all"] = [r.wall for r in runs]
    return out


def result_dict(r: ToolResult, raw: int) -> dict[str, Any]:
    ok = r.status == "ok"
    return {
        "tool": r.tool,
        "label": r.label,
        "status": r.status,
        "stored_bytes": r.stored_bytes if ok else None,
        "ratio": (r.stored_bytes / raw) if ok and r.stored_bytes is not None else None,
        "wall_s": r.wall if ok else None,
        "mb_per_s": (raw / 1e6 / r.wall) if ok and r.wall else None,
        "peak_rss_mib": r.rss_mib if ok else None,
        **r.extra,
    }


def render_table(report: dict[str, Any]) -> str:
    lines = [
        f"mailvault vault benchmark, {report['date']}",
        host_line(report["host"]),
        f"input: {report['source']}",
        f"messages: {report['messages']:,}   raw message bytes: {report['raw_bytes']:,} "
        f"({report['raw_bytes'] / MIB:.1f} MiB)   runs: {report['runs']} (median)",
        "",
    ]
    hdr = (
        f"{'tool':<40} {'size ratio':>10} {'stored bytes':>13} {'wall s':>8} {'MB/s':>7} {'peak RSS MiB':>13}"
    )
    lines += table_head(hdr)
    mv = None
    for r in report["results"]:
        if r["tool"] == "mailvault":
            mv = r
        if r["status"] != "ok":
            lines.append(f"{r['label']:<40} {r['status']}")
            continue
        lines.append(
            f"{r['label']:<40} {r['ratio']:>10.4f} {r['stored_bytes']:>13,} {r['wall_s']:>8.2f} "
            f"{r['mb_per_s']:>7.1f} {r['peak_rss_mib']:>13.1f}"
        )
    lines.append("")
    if mv and mv["status"] == "ok":
        g = mv.get("reimport_growth_pct")
        lines.append(
            f"mailvault re-import of the same tree: size growth {g:+.3f} % "
            f"({mv['reimport_growth_bytes']:+,} bytes), {mv['reimport_wall']:.2f} s, "
            f"peak RSS {mv['reimport_rss_mib']:.1f} MiB"
            if g is not None
            else "mailvault re-import: n/a"
        )
        lines.append(
            f"mailvault check --read-data: {mv['check_wall']:.2f} s, peak RSS {mv['check_rss_mib']:.1f} MiB, "
            f"{'ok' if mv['check_ok'] else 'FAILED'}"
        )
        if mv.get("warning"):
            lines.append(f"warning: {mv['warning']}")
    lines.append(
        "size = bytes of all files in the repository/vault (caches outside it not counted); "
        "wall/RSS = the backup step only (init excluded); MB/s = raw message MB (10^6) / wall s"
    )
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="Compare mailvault's vault with borg, restic, tar|zstd and per-message zstd on the same mail.",
    )
    src = ap.add_mutually_exclusive_group()
    add_corpus_arg(src, "; converted to a Maildir++ tree in a temp dir first")
    src.add_argument("--maildir", type=Path, help="use this existing Maildir (or Maildir++ tree) as is")
    ap.add_argument("--runs", type=int, default=1, help="repeat every tool N times and report the median")
    add_json_arg(ap)
    ap.add_argument(
        "--tools",
        default=",".join(TOOLS),
        help=f"comma-separated subset of {','.join(TOOLS)} (default: all)",
    )
    add_tempdir_args(ap, temp="temp dirs", keep="keep the temp dirs (their path is printed)")
    ap.add_argument("--zstd-per-message-worker", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = [t for t in tools if t not in TOOLS]
    if unknown or not tools:
        ap.error(f"unknown tool(s) {unknown}; choose from {', '.join(TOOLS)}")
    args.tools = tools
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.zstd_per_message_worker:
        zstd_per_message_worker(args.zstd_per_message_worker)
        return 0
    return run_in_tempdir(
        args, "mailvault-bench-", lambda top: _bench(args, top), kept="kept temp dirs under {}"
    )


def _bench(args: argparse.Namespace, top: Path) -> int:
    if args.maildir:
        maildir = args.maildir.resolve()
        if not maildir.is_dir():
            raise BenchError(f"--maildir {maildir} is not a directory")
        source = f"Maildir {maildir}"
    else:
        corpus = (args.corpus or default_corpus()).resolve()
        maildir = top / "input" / "Maildir"
        t0 = time.perf_counter()
        build_maildir(corpus, maildir)
        log(f"built Maildir++ tree from {corpus} in {time.perf_counter() - t0:.1f} s")
        source = f"{corpus} as a Maildir++ tree"
    msgs = maildir_messages(maildir)
    if not msgs:
        raise BenchError(f"{maildir} holds no messages (no files in any cur/ or new/ directory)")
    raw = sum(p.stat().st_size for p in msgs)
    log(f"{len(msgs):,} messages, {raw:,} raw bytes")

    env = base_env()
    per_tool: dict[str, list[ToolResult]] = {t: [] for t in args.tools}
    for run_no in range(args.runs):
        for tool in args.tools:
            label, fn = RUNNERS[tool]
            wd = top / f"{tool}-run{run_no + 1}"
            wd.mkdir()
            res = ToolResult(tool, label)
            log(f"[run {run_no + 1}/{args.runs}] {tool} ...")
            ctx = Ctx(maildir, raw, len(msgs), wd, env, args.timeout)
            try:
                fn(ctx, res)
            except (StepFailed, *STEP_ERRORS) as exc:
                res.status = failure_text(exc)
            if res.status != "ok":
                log(f"  {tool}: {res.status}")
            elif res.wall is not None:
                log(f"  {tool}: {res.stored_bytes:,} bytes, {res.wall:.2f} s")
            per_tool[tool].append(res)
            if not args.keep:
                shutil.rmtree(wd, ignore_errors=True)

    results = [result_dict(median_result(t, rs), raw) for t, rs in per_tool.items()]
    report = {
        **report_head(),
        "source": source,
        "messages": len(msgs),
        "raw_bytes": raw,
        "runs": args.runs,
        "results": results,
    }
    print_report(report, args.json, render_table)
    return 1 if any(r["status"].startswith("failed") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
