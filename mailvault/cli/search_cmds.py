"""Find and recover: index, search, show, diff (thin shells over :mod:`mailvault.index`)."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from mailvault.cli.common import (
    Json,
    PasswordCommand,
    PasswordFile,
    Quiet,
    VaultArg,
    _emit_json,
    _fail,
    _human,
    _open,
    _progress,
    app,
    on_vault,
    run,
)
from mailvault.errors import EXIT_ERROR


@app.command()
def index(
    vault: VaultArg,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Build the index anew.")] = False,
    password_file: PasswordFile = None,
    password_command: PasswordCommand = None,
    quiet: Quiet = False,
    as_json: Json = False,
) -> None:
    """Bring the local search index up to date with the vault (plaintext terms; see docs/SEARCH.md)."""
    from mailvault.index import update_index

    stats = on_vault(
        vault,
        password_file,
        password_command,
        lambda repo: update_index(repo, _progress(quiet, as_json), rebuild=rebuild),
    )
    if as_json:
        _emit_json(asdict(stats))
    elif not quiet:
        rate = stats.messages_indexed / stats.duration if stats.duration else 0.0
        typer.echo(
            f"indexed {stats.snapshots_added} new snapshots ({stats.snapshots_removed} dropped), "
            f"{stats.messages_indexed} new messages ({_human(stats.bytes_indexed)}, {rate:.0f} msg/s); "
            f"index holds {stats.messages_total} messages in {_human(stats.index_bytes)}"
            + (f"; {stats.unreadable} unreadable" if stats.unreadable else "")
        )


@app.command()
def search(
    vault: VaultArg,
    query: Annotated[str, typer.Argument(help="Query, e.g. 'from:alice has:attachment after:2019-01-01'.")],
    account: Annotated[str | None, typer.Option("--account", help="Only this account.")] = None,
    snapshot: Annotated[
        str, typer.Option("--snapshot", help="Snapshot id/prefix, 'latest' (per account) or 'all'.")
    ] = "latest",
    limit: Annotated[
        int | None, typer.Option("--limit", help="At most N hits (newest first).", min=1)
    ] = None,
    count_only: Annotated[bool, typer.Option("--count", help="Print only the number of hits.")] = False,
    password_file: PasswordFile = None,
    password_command: PasswordCommand = None,
    quiet: Quiet = False,
    as_json: Json = False,
) -> None:
    """Search messages across snapshots (the index is brought up to date first)."""
    from mailvault.index import count, open_index, parse_query, update_index
    from mailvault.index import search as run_search

    def go() -> Any:
        q = parse_query(query)  # a bad query fails before the vault is opened
        with _open(vault, password_file, password_command) as repo:
            update_index(repo, _progress(quiet, as_json))
            db = open_index(repo)
            try:
                if count_only:
                    return count(db, q, account=account, snapshot=snapshot)
                return run_search(db, q, account=account, snapshot=snapshot, limit=limit)
            finally:
                db.close()

    result = run(go)
    if count_only:
        typer.echo(json_dumps({"count": result}) if as_json else str(result))
        return
    if as_json:
        _emit_json([h.to_json() for h in result])
        return
    for h in result:
        date = (h.date or "")[:16].replace("T", " ")
        flags = "".join(f[1].upper() for f in h.flags if f.startswith("\\") and len(f) > 1)
        att = f" [{len(h.attachments)} att]" if h.attachments else ""
        typer.echo(
            f"{h.blob[:12]}  {date:16}  {h.account}/{h.folder}  {flags:4} {_short(h.from_, 30):30}  "
            f"{_short(h.subject, 60)}{att}"
        )


def json_dumps(data: Any) -> str:
    import json

    return json.dumps(data)


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


@app.command()
def show(
    vault: VaultArg,
    blob: Annotated[str, typer.Argument(help="Message blob id or a unique prefix of it (4+ hex digits).")],
    raw: Annotated[bool, typer.Option("--raw", help="The exact stored bytes.")] = False,
    headers: Annotated[bool, typer.Option("--headers", help="The header block as stored.")] = False,
    text: Annotated[bool, typer.Option("--text", help="Only the decoded text.")] = False,
    attachment: Annotated[
        int | None, typer.Option("--attachment", help="Attachment N (1-based, as listed).", min=1)
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", help="Write the attachment (or --raw) here; '-' = stdout.")
    ] = None,
    password_file: PasswordFile = None,
    password_command: PasswordCommand = None,
    as_json: Json = False,
) -> None:
    """Show one message: headers, decoded text and attachments; or its raw bytes or an attachment."""
    from mailvault.index import show as mshow

    if sum([raw, headers, text, attachment is not None]) > 1:
        _fail("give one of --raw, --headers, --text, --attachment", EXIT_ERROR)
    if attachment is not None and output is None:
        _fail("--attachment needs --output FILE (or '-')", EXIT_ERROR)

    def go() -> tuple[str, bytes]:
        with _open(vault, password_file, password_command) as repo:
            blob_id = mshow.find_blob(repo, blob)
            return blob_id.hex(), repo.read_blob(blob_id)

    blob_hex, data = run(go)
    if raw:
        _write(data, output)
        return
    if headers:
        typer.echo(mshow.header_block(data))
        return
    if attachment is not None:
        att, payload = run(lambda: mshow.attachment(data, attachment))
        _write(payload, output)
        if output is not None and str(output) != "-":
            typer.echo(f"wrote attachment {attachment} ({att.name or 'unnamed'}, {att.mime}) to {output}")
        return
    v = mshow.view(data, blob_hex)
    if as_json:
        _emit_json(
            {
                "blob": v.blob,
                "headers": [[k, val] for k, val in v.headers],
                "text": v.text,
                "attachments": [asdict(a) for a in v.attachments],
            }
        )
        return
    if not text:
        typer.echo(f"Blob: {v.blob}")
        for k, val in v.headers:
            typer.echo(f"{k}: {val}")
        for i, a in enumerate(v.attachments, 1):
            typer.echo(f"Attachment {i}: {a.name or '(unnamed)'} ({a.mime}, {_human(a.size)})")
        typer.echo("")
    typer.echo(v.text)


def _write(data: bytes, output: Path | None) -> None:
    if output is None or str(output) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    from mailvault.export.paths import write_new

    run(lambda: write_new(output, data))


@app.command()
def diff(
    vault: VaultArg,
    snap1: Annotated[str, typer.Argument(help="Older snapshot: id, unique prefix or 'latest'.")],
    snap2: Annotated[str, typer.Argument(help="Newer snapshot: id, unique prefix or 'latest'.")],
    account: Annotated[
        str | None, typer.Option("--account", help="Account of the snapshots (needed with 'latest').")
    ] = None,
    password_file: PasswordFile = None,
    password_command: PasswordCommand = None,
    as_json: Json = False,
) -> None:
    """Per folder: messages added, removed and whose flags changed between two snapshots."""
    from mailvault.index import diff_snapshots

    d = on_vault(
        vault, password_file, password_command, lambda repo: diff_snapshots(repo, snap1, snap2, account)
    )
    if as_json:
        _emit_json(
            {
                **asdict(d),
                "added": d.added,
                "removed": d.removed,
                "flags_changed": d.flags_changed,
            }
        )
        return
    typer.echo(
        f"{d.a[:12]} -> {d.b[:12]}: {d.added} added, {d.removed} removed, {d.flags_changed} flags changed"
    )
    for f in d.folders:
        typer.echo(f"{f.folder}: +{len(f.added)} -{len(f.removed)} ~{len(f.flags_changed)}")
        for m in f.added:
            typer.echo(f"  + uid {m.uid}  {m.blob[:12]}  {' '.join(m.flags)}")
        for m in f.removed:
            typer.echo(f"  - uid {m.uid}  {m.blob[:12]}  {' '.join(m.flags)}")
        for c in f.flags_changed:
            typer.echo(
                f"  ~ uid {c.uid}  {c.blob[:12]}  {' '.join(c.before) or '-'} -> {' '.join(c.after) or '-'}"
            )
