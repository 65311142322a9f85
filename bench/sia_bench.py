#!/usr/bin/env python3
"""Single-instance attachments: vault size with and without, every message exported byte-exact.

Two mailboxes, each written as a Maildir in a temp dir:

* ``shared``: generated mail (``tests/sia_mail.py``): reply chains that carry the same attachments
  again, forwards, newsletters whose issues share logos and images, and a few oddly encoded
  messages (ragged base64, raw 8bit, a truncated message);
* ``corpus-a``: the SpamAssassin corpus ($MAILVAULT_CORPUS/spamassassin), if present.

Each goes through ``mailvault init`` (defaults, i.e. single-instance parts of >= 4 KiB) and through
``mailvault init --attachment-threshold 0`` (whole-message storage, as before), then
``import``, ``stats``, ``export --format eml`` (every exported file's SHA-256 compared with the
originals) and ``check --read-data``. Anchors beside it: ``borg create --compression zstd,3``
(content-defined chunking, so it also stores a repeated attachment once) and
``tar --sort=name | zstd -3``. Nothing leaves the machine.

    python bench/sia_bench.py [--messages 400] [--json] [--keep --workdir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from common import (
    ROOT,
    BenchError,
    add_json_arg,
    add_tempdir_args,
    base_env,
    default_corpus,
    host_line,
    json_out,
    loadavg,
    log,
    mailvault_cmd,
    mailvault_env,
    measure,
    measure_pipeline,
    print_report,
    report_head,
    run_in_tempdir,
    table_head,
)
from vault_bench import build_maildir

sys.path.insert(0, str(ROOT))
from tests.sia_mail import generate


def write_maildir(messages: list[bytes], dest: Path) -> None:
    for sub in ("cur", "new", "tmp"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    for i, raw in enumerate(messages):
        (dest / "cur" / f"{1600000000 + i}.M{i}P1.bench,S={len(raw)}:2,S").write_bytes(raw)


def maildir_hashes(root: Path) -> Counter[str]:
    return Counter(
        hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file() and p.parent.name in ("cur", "new")
    )


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run_mailvault(
    mv: list[str], top: Path, maildir: Path, threshold: int | None, timeout: float
) -> dict[str, Any]:
    name = "default" if threshold is None else f"threshold-{threshold}"
    work = top / f"mv-{maildir.name}-{name}"
    work.mkdir()
    env = mailvault_env(base_env(), work / "cache")
    vault = work / "vault"
    extra = [] if threshold is None else ["--attachment-threshold", str(threshold)]
    measure([*mv, "init", str(vault), *extra, "--json"], env=env, cwd=work, timeout=timeout)
    imp = measure(
        [
            *mv,
            "import",
            str(vault),
            str(maildir),
            "--account",
            "bench",
            "--format",
            "maildir",
            "-q",
            "--json",
        ],
        env=env,
        cwd=work,
        timeout=timeout,
    )
    stats = json_out(measure([*mv, "stats", str(vault), "--json"], env=env, cwd=work, timeout=timeout))
    out = work / "export"
    exp = measure(
        [*mv, "export", str(vault), "latest", str(out), "--format", "eml", "--account", "bench", "--quiet"],
        env=env,
        cwd=work,
        timeout=timeout,
    )
    exported = Counter(hashlib.sha256(p.read_bytes()).hexdigest() for p in out.rglob("*.eml"))
    expected = maildir_hashes(maildir)
    chk = measure(
        [*mv, "check", str(vault), "--read-data", "--json"], env=env, cwd=work, timeout=timeout, check=False
    )
    row = {
        "tool": f"mailvault ({'default' if threshold is None else 'whole messages'})",
        "stored": du(vault),
        "import_s": imp.wall,
        "import_rss_mib": imp.rss_mib,
        "export_s": exp.wall,
        "exact": sum((exported & expected).values()),
        "messages": sum(expected.values()),
        "check_ok": chk.rc == 0,
        "stats": stats,
    }
    shutil.rmtree(work)
    return row


def run_borg(top: Path, maildir: Path, timeout: float) -> dict[str, Any]:
    if not shutil.which("borg"):
        return {"tool": "borg zstd,3", "status": "not installed"}
    work = top / f"borg-{maildir.name}"
    work.mkdir()
    env = {**base_env(), "BORG_PASSPHRASE": "bench", "BORG_BASE_DIR": str(work / "base")}
    repo = work / "repo"
    measure(["borg", "init", "-e", "repokey", str(repo)], env=env, cwd=work, timeout=timeout)
    m = measure(
        ["borg", "create", "--compression", "zstd,3", f"{repo}::a", "."],
        env=env,
        cwd=maildir,
        timeout=timeout,
    )
    row = {"tool": "borg zstd,3", "stored": du(repo), "import_s": m.wall, "import_rss_mib": m.rss_mib}
    shutil.rmtree(work)
    return row


def run_tar(top: Path, maildir: Path, timeout: float) -> dict[str, Any]:
    if not shutil.which("zstd"):
        return {"tool": "tar | zstd -3", "status": "not installed"}
    out = top / f"{maildir.name}.tar.zst"
    m = measure_pipeline(
        [["tar", "--sort=name", "-cf", "-", "."], ["zstd", "-3", "-q", "-c"]],
        env=base_env(),
        cwd=maildir,
        timeout=timeout,
        stdout_path=out,
    )
    row = {
        "tool": "tar | zstd -3",
        "stored": out.stat().st_size,
        "import_s": m.wall,
        "import_rss_mib": m.rss_mib,
    }
    out.unlink()
    return row


def bench(args: argparse.Namespace, top: Path) -> int:
    mv = mailvault_cmd()
    if mv is None:
        raise BenchError("mailvault is not installed")
    boxes: list[tuple[str, Path]] = []
    shared = top / "shared"
    log(f"generating {args.messages} messages")
    write_maildir(generate(args.messages, seed=args.seed), shared)
    boxes.append(("shared", shared))
    corpus = args.corpus or default_corpus()
    if corpus.is_dir() and not args.no_corpus:
        dest = top / "corpus-a"
        build_maildir(corpus, dest)
        boxes.append(("corpus-a", dest))
    else:
        log(f"corpus A not found at {corpus}: its rows are skipped")
    report = report_head(load_before=loadavg())
    report["mailboxes"] = []
    for name, path in boxes:
        raw = (
            sum(maildir_hashes(path).values()),
            sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and p.parent.name in ("cur", "new")),
        )
        log(f"{name}: {raw[0]} messages, {raw[1]} bytes")
        rows = [
            run_mailvault(mv, top, path, None, args.timeout),
            run_mailvault(mv, top, path, 0, args.timeout),
            run_borg(top, path, args.timeout),
            run_tar(top, path, args.timeout),
        ]
        whole = rows[1]["stored"]
        for r in rows:
            if "stored" in r:
                r["ratio"] = r["stored"] / raw[1]
                r["vs_whole"] = r["stored"] / whole
        report["mailboxes"].append({"name": name, "messages": raw[0], "raw_bytes": raw[1], "rows": rows})
    report["host"]["load_after"] = loadavg()
    print_report(report, args.json, render)
    bad = [
        r
        for b in report["mailboxes"]
        for r in b["rows"]
        if r["tool"].startswith("mailvault") and (r["exact"] != r["messages"] or not r["check_ok"])
    ]
    return 1 if bad else 0


def render(report: dict[str, Any]) -> str:
    h = report["host"]
    lines = [
        f"single-instance attachments — {report['date']}",
        host_line(h) + f"; load before {h['load_before']}, after {h['load_after']}",
        "",
    ]
    for box in report["mailboxes"]:
        lines.append(f"{box['name']}: {box['messages']} messages, {box['raw_bytes'] / 1e6:.1f} MB raw")
        lines += table_head(
            f"{'tool':<30} {'stored MB':>9} {'/ raw':>6} {'/ whole':>7} {'backup s':>8} {'RSS MiB':>7} "
            f"{'exported exact':>15} {'check':>5}"
        )
        for r in box["rows"]:
            if "stored" not in r:
                lines.append(f"{r['tool']:<30} {r.get('status', '?')}")
                continue
            exact = f"{r['exact']}/{r['messages']}" if "exact" in r else "-"
            chk = ("ok" if r["check_ok"] else "FAIL") if "check_ok" in r else "-"
            lines.append(
                f"{r['tool']:<30} {r['stored'] / 1e6:>9.2f} {r['ratio']:>6.3f} {r['vs_whole']:>7.3f} "
                f"{r['import_s']:>8.2f} {r['import_rss_mib']:>7.0f} {exact:>15} {chk:>5}"
            )
        st = box["rows"][0].get("stats", {})
        if st:
            lines.append(
                f"  default vault: {st.get('skeleton_messages')} messages as skeletons sharing {st.get('parts')} "
                f"parts; {st.get('sia_saving', 0):.1%} of message bytes saved before compression"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=400, help="generated messages (default 400)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--corpus", type=Path, help="corpus A directory (default $MAILVAULT_CORPUS/spamassassin)")
    ap.add_argument("--no-corpus", action="store_true", help="only the generated mailbox")
    add_json_arg(ap)
    add_tempdir_args(ap, temp="temp dir", keep="keep the temp dir")
    args = ap.parse_args()
    os.umask(0o077)
    return run_in_tempdir(args, "mv-sia-", lambda top: bench(args, top), kept="kept {}")


if __name__ == "__main__":
    sys.exit(main())
