"""Import throughput of client stores built from corpus A: Apple Mail V10 and Google Takeout,
beside a plain Maildir and plain mbox import of the same messages (the anchor).

    python bench/localclients_bench.py                 # corpus A ($MAILVAULT_CORPUS/spamassassin)
    python bench/localclients_bench.py --runs 3        # median of 3 runs per store
    python bench/localclients_bench.py --json          # machine-readable
    python bench/localclients_bench.py --partial-every 10   # every 10th message with a base64
                                                            # part becomes a .partial.emlx

Every store holds the same messages (the corpus files without their mbox ``From`` envelope
line): Maildir++ (one folder per corpus folder), one mbox file per folder, an Apple Mail V10
tree (one ``Name.mbox`` per folder, ``.emlx`` files with plists, some ``.partial.emlx`` with
``Attachments/``) and a Takeout mbox (CRLF, ``X-Gmail-Labels``: the folder name, ``Inbox`` on
every other message, ``Opened``/``Unread``). Each import runs into a fresh vault; wall time and
peak RSS are those of the ``mailvault import`` process.
"""

from __future__ import annotations

import argparse
import base64
import email
import statistics
import sys
from pathlib import Path
from typing import Any

import common as c


def strip_envelope(raw: bytes) -> bytes:
    return raw.split(b"\n", 1)[1] if raw.startswith(b"From ") else raw


def emlx(raw: bytes, bits: int, received: int) -> bytes:
    plist = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<plist version="1.0">\n<dict>\n'
        f"\t<key>date-received</key>\n\t<integer>{received}</integer>\n"
        f"\t<key>flags</key>\n\t<integer>{bits}</integer>\n</dict>\n</plist>\n"
    )
    return str(len(raw)).ljust(10).encode() + b"\n" + raw + plist.encode()


def partial(raw: bytes) -> tuple[bytes, dict[str, tuple[str, bytes]]] | None:
    """Cut the first base64 leaf part with a file name out, as Apple Mail does."""
    msg = email.message_from_bytes(raw)
    if not msg.is_multipart():
        return None
    for i, part in enumerate(msg.get_payload(), 1):  # type: ignore[union-attr]
        if part.is_multipart() or str(part.get("Content-Transfer-Encoding", "")).lower().strip() != "base64":
            continue
        payload = part.get_payload()
        text = raw.decode("latin-1")
        if not isinstance(payload, str) or len(payload) < 40 or text.count(payload) != 1:
            continue
        idx = text.index(payload)
        if text[idx - 2 : idx] != "\n\n":
            continue
        try:
            data = base64.b64decode(payload.encode("ascii", "replace"), validate=False)
        except ValueError:  # binascii.Error: broken base64 in a spam message
            continue
        stub = text[: idx - 1] + f"X-Apple-Content-Length: {len(payload)}\n\n" + text[idx + len(payload) :]
        return stub.encode("latin-1"), {str(i): (part.get_filename() or "attachment.bin", data)}
    return None


def build(corpus: c.Corpus, top: Path, partial_every: int) -> dict[str, tuple[Path, str]]:
    md, mb, am, to = top / "maildir", top / "mbox", top / "Mail" / "V10" / "ACCOUNT", top / "takeout.mbox"
    (md / "cur").mkdir(parents=True)
    (md / "new").mkdir()
    mb.mkdir()
    takeout = open(to, "wb")  # noqa: SIM115
    rowid = 0
    candidates = 0
    with takeout:
        for folder, files in corpus.folders:
            fdir = md / f".{folder}"
            (fdir / "cur").mkdir(parents=True)
            (fdir / "new").mkdir()
            msgs_dir = am / f"{folder}.mbox" / "UUID" / "Data" / "Messages"
            msgs_dir.mkdir(parents=True)
            with open(mb / folder, "wb") as mbox:
                for i, path in enumerate(files):
                    raw = strip_envelope(path.read_bytes())
                    rowid += 1
                    (fdir / "cur" / f"{rowid}.bench:2,S").write_bytes(raw)
                    quoted = raw.replace(b"\nFrom ", b"\n>From ")
                    mbox.write(b"From bench@example.org Mon Sep  2 10:00:00 2002\n" + quoted + b"\n")
                    cut = partial(raw) if partial_every else None
                    if cut is not None:
                        candidates += 1
                    if cut is not None and candidates % partial_every == 0:
                        stub, parts = cut
                        (msgs_dir / f"{rowid}.partial.emlx").write_bytes(emlx(stub, 1, 1_000_000_000 + rowid))
                        for number, (name, data) in parts.items():
                            d = msgs_dir.parent / "Attachments" / str(rowid) / number
                            d.mkdir(parents=True)
                            (d / (Path(name).name.lstrip(".") or "a.bin")).write_bytes(data)
                    else:
                        (msgs_dir / f"{rowid}.emlx").write_bytes(
                            emlx(raw, 1 if c.seen(i) else 0, 1_000_000_000 + rowid)
                        )
                    labels = [folder, *(["Inbox"] if i % 2 else []), "Opened" if c.seen(i) else "Unread"]
                    crlf = quoted.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
                    takeout.write(
                        f"From {10**18 + rowid}@xxx Mon Sep 02 10:00:00 +0000 2002\r\n"
                        f"X-GM-THRID: {10**18 + rowid}\r\nX-Gmail-Labels: {','.join(labels)}\r\n".encode()
                        + crlf
                        + (b"" if crlf.endswith(b"\r\n") else b"\r\n")
                        + b"\r\n"
                    )
    return {
        "maildir (anchor)": (md, "maildir"),
        "mbox (anchor)": (mb, "mbox"),
        "apple mail V10": (am.parent, "auto"),
        "google takeout": (to, "auto"),
    }


def bench(args: argparse.Namespace, top: Path) -> int:
    mv = c.mailvault_cmd()
    if mv is None:
        raise c.BenchError("the mailvault CLI is not installed")
    corpus = c.load_corpus(args.corpus)
    c.log(f"building the stores from {corpus.messages} messages of {corpus.path} ...")
    stores = build(corpus, top / "stores", args.partial_every)
    rows: list[dict[str, Any]] = []
    for name, (path, fmt) in stores.items():
        walls, rss, result = [], [], {}
        for run in range(args.runs):
            work = top / f"run-{len(rows)}-{run}"
            work.mkdir()
            env = c.mailvault_env(c.base_env(), work / "cache")
            c.init_vault(mv, work / "vault", env=env, cwd=work, timeout=args.timeout)
            m = c.measure(
                [*mv, "import", str(work / "vault"), str(path), "--account", "bench", "--format", fmt, "--json", "-q"],
                env=env, cwd=work, timeout=args.timeout, check=False,
            )  # fmt: skip
            if m.rc not in (0, 1):
                raise c.BenchError(f"{name}: mailvault import exited {m.rc}: {m.stderr[-500:]}")
            result = c.json_out(m)
            walls.append(m.wall)
            rss.append(m.rss_kib)
        wall = statistics.median(walls)
        rows.append(
            {
                "store": name,
                "format": result.get("format"),
                "messages": result.get("messages"),
                "bytes": result.get("bytes"),
                "stored_bytes": result.get("stored_bytes"),
                "problems": len(result.get("problems", [])),
                "wall_s": round(wall, 2),
                "msgs_per_s": round((result.get("messages") or 0) / wall, 1) if wall else None,
                "mib_per_s": round((result.get("bytes") or 0) / c.MIB / wall, 2) if wall else None,
                "peak_rss_mib": round(max(rss) / 1024, 1),
            }
        )
        c.log(f"{name}: {rows[-1]['wall_s']} s")
    report = {
        **c.report_head(loadavg=c.loadavg()),
        "corpus": corpus.as_dict(),
        "runs": args.runs,
        "rows": rows,
    }
    c.print_report(report, args.json, render)
    return 0


def render(report: dict[str, Any]) -> str:
    lines = [f"{report['date']}  {c.host_line(report['host'])}, load {report['host']['loadavg']}"]
    lines.append(f"corpus: {report['corpus']['messages']} messages, {report['corpus']['raw_bytes'] / c.MIB:.1f} MiB; "
                 f"median of {report['runs']} run(s)")  # fmt: skip
    lines += c.table_head(
        f"{'store':18} {'format':10} {'messages':>8} {'wall s':>7} {'msg/s':>8} {'MiB/s':>6} {'RSS MiB':>8} {'problems':>8}"
    )
    for r in report["rows"]:
        lines.append(
            f"{r['store']:18} {r['format'] or '-':10} {r['messages'] or 0:>8} {r['wall_s']:>7.2f} "
            f"{r['msgs_per_s'] or 0:>8.1f} {r['mib_per_s'] or 0:>6.2f} {r['peak_rss_mib']:>8.1f} {r['problems']:>8}"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_corpus_arg(ap)
    c.add_json_arg(ap)
    c.add_tempdir_args(ap, temp="stores and vaults", keep="keep the temp dir")
    ap.add_argument("--runs", type=int, default=1, help="runs per store (the median is reported)")
    ap.add_argument("--partial-every", type=int, default=10,
                    help="every Nth message with a base64 part becomes a .partial.emlx (0: none)")  # fmt: skip
    args = ap.parse_args()
    return c.run_in_tempdir(args, "mv-localclients-", lambda top: bench(args, top), kept="kept {}")


if __name__ == "__main__":
    sys.exit(main())
