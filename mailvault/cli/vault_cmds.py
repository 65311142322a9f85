"""Vault commands: init, import, snapshots, ls, export, check, stats."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from mailvault.cli.common import (
    AccountFilter,
    Json,
    PasswordCommand,
    PasswordFile,
    Quiet,
    SnapshotAccount,
    SnapshotSpec,
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
from mailvault.errors import EXIT_ERROR, EXIT_PARTIAL


@app.command()
def init(
    vault: VaultArg,
    no_encryption: Annotated[bool, typer.Option("--no-encryption", help="Store data unencrypted.")] = False,
    password_file: PasswordFile = None,
    password_command: PasswordCommand = None,
    pack_size: Annotated[int, typer.Option(help="Target pack size in MiB.")] = 16,
    block_size: Annotated[
        int | None, typer.Option(help="Compression block size in KiB (default 4096, at most the pack size).")
    ] = None,
    level: Annotated[int, typer.Option(help="zstd compression level.")] = 9,
    dictionary: Annotated[str, typer.Option(help="zstd dictionary: auto or off.")] = "auto",
    attachment_threshold: Annotated[
        int,
        typer.Option(
            help="Store base64 MIME parts of at least this many KiB (others from 64 KiB) once "
            "across all messages (0: off)."
        ),
    ] = 4,
    as_json: Json = False,
) -> None:
    """Create a new, empty vault (encrypted unless --no-encryption)."""
    from mailvault.passwords import vault_password_provider
    from mailvault.vault.repository import Repository, VaultParams

    def go() -> Any:
        password = None
        if not no_encryption:
            password = vault_password_provider(password_file, password_command, confirm=True)()
        block = (block_size << 10) if block_size is not None else min(VaultParams.block_size, pack_size << 20)
        params = VaultParams(pack_size << 20, block, level, dictionary, attachment_threshold << 10)
        return Repository.init(vault, password, params)

    repo = run(go)
    info = {"vault": repo.location, "id": repo.id, "encrypted": repo.encrypted}
    if as_json:
        _emit_json(info)
    else:
        enc = "encrypted (AES-256-GCM)" if repo.encrypted else "NOT encrypted"
        typer.echo(f"created vault {repo.id} at {repo.location}, {enc}")
        if repo.encrypted:
            typer.echo("keep the password safe: without it the vault cannot be read")


@app.command("import")
def import_(
    vault: VaultArg,
    path: Annotated[
        Path,
        typer.Argument(
            help="mbox file, Maildir, .eml directory, Thunderbird folder, Apple Mail tree, Takeout mbox, PST."
        ),
    ],
    account: Annotated[str, typer.Option("--account", help="Account name the snapshot is filed under.")],
    fmt: Annotated[
        str,
        typer.Option("--format", help="auto, maildir, mbox, eml, thunderbird, applemail, takeout or pst."),
    ] = "auto",
    mboxrd: Annotated[bool, typer.Option("--mboxrd", help="Unescape >From lines (mboxrd files).")] = False,
    password_file: PasswordFile = None,
    password_command: PasswordCommand = None,
    quiet: Quiet = False,
    as_json: Json = False,
) -> None:
    """Import a local mail store as one snapshot of ACCOUNT."""
    from mailvault.importer import import_local
    from mailvault.sources.detect import FORMATS

    if fmt not in ("auto", *FORMATS):
        _fail(f"unknown --format {fmt!r} (auto, {', '.join(FORMATS)})", EXIT_ERROR)

    def go() -> Any:
        with _open(vault, password_file, password_command) as repo:
            return import_local(
                repo, path, account, fmt=fmt, mboxrd=mboxrd, progress=_progress(quiet, as_json)
            )

    result = run(go)
    if as_json:
        _emit_json({**asdict(result), "exit_code": result.exit_code})
    elif not quiet:
        typer.echo(
            f"snapshot {result.snapshot[:12]} ({result.account}, {result.format}): {result.folders} folders, "
            f"{result.messages} messages, {_human(result.bytes)}; new: {result.new_messages} messages, "
            f"{_human(result.new_bytes)} -> stored {_human(result.stored_bytes)} in {result.duration:.1f}s"
        )
    if not as_json and not quiet and result.other_items:
        other = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in result.other_items.items())
        typer.echo(f"not mail, counted only: {other}")
    for warning in result.warnings:
        typer.echo(f"mailvault: warning: {warning}", err=True)
    for problem in result.problems:
        typer.echo(f"mailvault: {problem}", err=True)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


@app.command()
def snapshots(
    vault: VaultArg,
    account: AccountFilter = None,
    password_file: PasswordFile = None,
    password_command: PasswordCommand = None,
    as_json: Json = False,
) -> None:
    """List snapshots, oldest first."""

    snaps = on_vault(vault, password_file, password_command, lambda repo: repo.snapshots(account))
    rows = [
        {
            "id": s.id,
            "account": s.account,
            "time": s.time,
            "messages": s.messages,
            "bytes": s.size,
            "folders": len(s.folders),
            "host": s.host,
            "source": {"kind": s.source_kind, "address": s.source_address},
            "tags": s.tags,
            "repairs": s.repairs,
        }
        for s in snaps
    ]
    if as_json:
        _emit_json(rows)
        return
    if not rows:
        typer.echo("no snapshots")
        return
    typer.echo(f"{'ID':12}  {'TIME':19}  {'ACCOUNT':24} {'FOLDERS':>7} {'MESSAGES':>9} {'SIZE':>10}")
    for r in rows:
        when = datetime.fromisoformat(r["time"]).astimezone().strftime("%Y-%m-%d %H:%M:%S")
        typer.echo(
            f"{r['id'][:12]}  {when:19}  {r['account'][:24]:24} {r['folders']:>7} "
            f"{r['messages']:>9} {_human(r['bytes']):>10}"
        )


@app.command()
def ls(
    vault: VaultArg,
    snapshot: SnapshotSpec,
    account: SnapshotAccount = None,
    folder: Annotated[
        list[str] | None, typer.Option("--folder", help="Only this folder (repeatable).")
    ] = None,
    password_file: PasswordFile = None,
    password_command: PasswordCommand = None,
    as_json: Json = False,
) -> None:
    """List the messages of a snapshot."""

    def go() -> Any:
        with _open(vault, password_file, password_command) as repo:
            snap = repo.resolve_snapshot(snapshot, account)
            _check_folders(snap, folder)
            rows = []
            for f in snap.folders:
                if folder and f.name not in folder:
                    continue
                for e in repo.read_manifest(f):
                    row: dict[str, Any] = {
                        "folder": f.name,
                        "folder_raw": f.name_raw,
                        "uid": e.uid,
                        "blob": e.blob,
                        "flags": e.flags,
                        "internaldate": e.internaldate,
                        "size": e.size,
                    }
                    if e.labels:
                        row["labels"] = e.labels
                    if e.gm_msgid is not None:
                        row["gm_msgid"] = e.gm_msgid
                        row["gm_thrid"] = e.gm_thrid
                    rows.append(row)
            return snap, rows

    snap, rows = run(go)
    if as_json:
        _emit_json(rows)
        return
    typer.echo(f"snapshot {snap.id[:12]} of {snap.account} at {snap.time}: {len(rows)} messages")
    for r in rows:
        flags = " ".join(r["flags"])
        typer.echo(f"{r['folder']}\t{r['uid']}\t{r['internaldate']}\t{r['size']}\t{r['blob'][:12]}\t{flags}")


def _check_folders(snap: Any, folders: list[str] | None) -> None:
    """A --folder that names no folder of the snapshot is an error, not an empty result."""
    from mailvault.errors import ConfigError

    names = [f.name for f in snap.folders]
    unknown = [f for f in folders or [] if f not in names]
    if unknown:
        raise ConfigError(
            f"snapshot {snap.id[:12]} has no folder {unknown[0]!r} (folders: {', '.join(sorted(names))})"
        )


@app.command()
def export(
    vault: VaultArg,
    snapshot: SnapshotSpec,
    dest: Annotated[Path, typer.Argument(help="Destination directory.")],
    fmt: Annotated[str, typer.Option("--format", help="maildir, mbox or eml.")] = "maildir",
    account: SnapshotAccount = None,
    folder: Annotated[
        list[str] | None, typer.Option("--folder", help="Only this folder (repeatable).")
    ] = None,
    search: Annotated[
        str | None, typer.Option("--search", help="Only the messages of the snapshot matching this query.")
    ] = None,
    into: Annotated[
        str | None, typer.Option("--into", help="Put every message into this one folder.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print how many messages each folder would get; write nothing.")
    ] = False,
    password_file: PasswordFile = None,
    password_command: PasswordCommand = None,
    quiet: Quiet = False,
    as_json: Json = False,
) -> None:
    """Write a snapshot's messages out, byte-exact, as Maildir, mbox or .eml files."""
    from mailvault.snapshot_export import export_snapshot

    if fmt not in ("maildir", "mbox", "eml"):
        _fail(f"unknown --format {fmt!r} (maildir, mbox, eml)", EXIT_ERROR)

    def go() -> Any:
        if search is not None:
            from mailvault.index import parse_query

            parse_query(search)  # a bad query fails before anything is opened
        with _open(vault, password_file, password_command) as repo:
            selection = None
            if search is not None:
                from mailvault.index import select_in_snapshot

                snap, selection = select_in_snapshot(
                    repo, search, snapshot, account, _progress(quiet, as_json)
                )
            else:
                snap = repo.resolve_snapshot(snapshot, account)
            _check_folders(snap, folder)
            if dry_run:
                chosen = [f for f in snap.folders if not folder or f.name in folder]
                counts = {
                    f.name: len(selection.get(f.name, ())) if selection is not None else f.messages
                    for f in chosen
                }
                return {
                    "snapshot": snap.id,
                    "dry_run": True,
                    "folders": {k: v for k, v in counts.items() if v},
                }
            return export_snapshot(
                repo,
                snap,
                dest,
                fmt,
                folders=folder,
                selection=selection,
                into=into,
                progress=_progress(quiet, as_json),
            )

    result = run(go)
    if isinstance(result, dict):
        if as_json:
            _emit_json({**result, "messages": sum(result["folders"].values())})
        else:
            for name, n in result["folders"].items():
                typer.echo(f"  {name!r} -> {into or name!r}: {n} messages")
            typer.echo(f"would export {sum(result['folders'].values())} messages to {dest} ({fmt})")
        return
    if as_json:
        _emit_json(asdict(result))
    elif not quiet:
        typer.echo(f"exported {result.messages} messages in {result.folders} folders to {dest} ({fmt})")


@app.command()
def check(
    vault: VaultArg,
    read_data: Annotated[
        bool, typer.Option("--read-data", help="Read and verify every stored byte.")
    ] = False,
    password_file: PasswordFile = None,
    password_command: PasswordCommand = None,
    quiet: Quiet = False,
    as_json: Json = False,
) -> None:
    """Verify the vault's structure; with --read-data also every message's hash."""
    from mailvault.vault.check import check as check_vault

    def go() -> Any:
        with _open(vault, password_file, password_command) as repo, repo.lock():
            return check_vault(repo, read_data=read_data, progress=_progress(quiet, as_json))

    report = run(go)
    if as_json:
        _emit_json({**asdict(report), "ok": report.ok})
    else:
        for w in report.warnings:
            typer.echo(f"warning: {w}", err=True)
        for e in report.errors:
            typer.echo(f"error: {e}", err=True)
        for m in report.lost_messages:  # the report itself: on stdout
            typer.echo(f"lost: {m.describe()}")
        if not quiet or not report.ok:
            what = f", {report.blobs_checked} blobs read and verified" if read_data else ""
            status = "no errors" if report.ok else f"{len(report.errors)} error(s)"
            if report.damaged:
                status += "; 'mailvault repair' rebuilds the index and keeps every readable message"
            counts = f"{report.snapshots} snapshots, {report.index_files} index files, {report.packs} packs"
            typer.echo(f"{counts}{what}: {status}")
    if not report.ok:
        raise typer.Exit(EXIT_PARTIAL)


@app.command()
def stats(
    vault: VaultArg,
    password_file: PasswordFile = None,
    password_command: PasswordCommand = None,
    as_json: Json = False,
) -> None:
    """Messages, unique blobs, raw and stored bytes, compression ratio."""
    from mailvault.vault.stats import vault_stats

    st = on_vault(vault, password_file, password_command, vault_stats)
    if as_json:
        _emit_json(asdict(st))
        return
    typer.echo(f"snapshots:      {st.snapshots} ({st.accounts} accounts)")
    typer.echo(f"messages:       {st.messages} in the latest snapshots, {st.message_refs} in all")
    typer.echo(f"unique blobs:   {st.unique_blobs}")
    typer.echo(f"raw bytes:      {st.raw_bytes} ({_human(st.raw_bytes)})")
    typer.echo(f"stored bytes:   {st.stored_bytes} ({_human(st.stored_bytes)}) in {st.pack_files} packs")
    typer.echo(f"ratio:          {st.ratio:.3f}")
    if st.skeleton_messages:
        typer.echo(
            f"attachments:    {st.skeleton_messages} messages share {st.parts} parts stored once "
            f"({_human(st.part_bytes)}): {_human(st.raw_bytes)} of messages -> {_human(st.blob_bytes)} "
            f"before compression ({st.sia_saving:.1%} saved)"
        )
