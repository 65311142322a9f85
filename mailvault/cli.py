"""The command line: parse, call the core, render text or JSON, map errors to exit codes.

Nothing here does mail or vault work itself; every command is a thin shell
over a function of the core library.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from mailvault import __version__
from mailvault.errors import EXIT_ERROR, EXIT_PARTIAL, MailvaultError
from mailvault.progress import Progress

app = typer.Typer(
    name="mailvault",
    help="Back up mail into a compressed, deduplicated, encrypted vault, and replay it into IMAP.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

VaultArg = Annotated[str, typer.Argument(help="Vault location: a directory or s3://bucket/prefix.")]
PasswordFile = Annotated[
    Path | None, typer.Option("--password-file", help="Read the vault password from this file.")
]
PasswordCommand = Annotated[
    str | None, typer.Option("--password-command", help="Run this command; its output is the vault password.")
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or chatter.")]
Json = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on standard output.")]

AccountFilter = Annotated[str | None, typer.Option("--account", help="Only this account.")]
SnapshotAccount = Annotated[
    str | None, typer.Option("--account", help="Account of the snapshot (needed with 'latest').")
]
SnapshotSpec = Annotated[str, typer.Argument(help="Snapshot id, unique id prefix, or 'latest'.")]
FolderGlobs = Annotated[list[str] | None, typer.Option("--folder", help="Only folders matching this glob.")]

T = TypeVar("T")


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"mailvault: {message}", err=True)
    raise typer.Exit(code)


def run(fn: Callable[[], T]) -> T:
    """Call the core; turn its errors into one line on stderr and the error's exit code."""
    try:
        return fn()
    except MailvaultError as exc:
        _fail(exc.message, exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except typer.Exit:
        raise
    except Exception as exc:
        if os.environ.get("MAILVAULT_DEBUG"):
            traceback.print_exc()
        _fail(f"internal error: {type(exc).__name__}: {exc} (set MAILVAULT_DEBUG=1 for details)", EXIT_ERROR)


def _progress(quiet: bool, as_json: bool = False) -> Progress:
    return Progress(False) if quiet or as_json else Progress()


def _emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _open(vault: str, password_file: Path | None, password_command: str | None) -> Any:
    from mailvault.passwords import vault_password_provider
    from mailvault.vault.repository import Repository

    return Repository.open(vault, vault_password_provider(password_file, password_command))


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


@app.callback(invoke_without_command=True)
def _main(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        typer.echo(f"mailvault {__version__}")
        raise typer.Exit(0)


@app.command()
def init(
    vault: VaultArg,
    no_encryption: Annotated[bool, typer.Option("--no-encryption", help="Store data unencrypted.")] = False,
    password_file: PasswordFile = None,
    password_command: PasswordCommand = None,
    pack_size: Annotated[int, typer.Option(help="Target pack size in MiB.")] = 16,
    block_size: Annotated[int, typer.Option(help="Compression block size in KiB.")] = 1024,
    level: Annotated[int, typer.Option(help="zstd compression level.")] = 9,
    dictionary: Annotated[str, typer.Option(help="zstd dictionary: auto or off.")] = "auto",
    as_json: Json = False,
) -> None:
    """Create a new, empty vault (encrypted unless --no-encryption)."""
    from mailvault.passwords import vault_password_provider
    from mailvault.vault.repository import Repository, VaultParams

    def go() -> Any:
        password = None
        if not no_encryption:
            password = vault_password_provider(password_file, password_command, confirm=True)()
        params = VaultParams(pack_size << 20, block_size << 10, level, dictionary)
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
    path: Annotated[Path, typer.Argument(help="mbox file, Maildir, .eml directory or Thunderbird folder.")],
    account: Annotated[str, typer.Option("--account", help="Account name the snapshot is filed under.")],
    fmt: Annotated[str, typer.Option("--format", help="auto, maildir, mbox, eml or thunderbird.")] = "auto",
    mboxrd: Annotated[bool, typer.Option("--mboxrd", help="Unescape >From lines (mboxrd files).")] = False,
    password_file: PasswordFile = None,
    password_command: PasswordCommand = None,
    quiet: Quiet = False,
    as_json: Json = False,
) -> None:
    """Import a local mail store as one snapshot of ACCOUNT."""
    from mailvault.importer import import_local

    if fmt not in ("auto", "maildir", "mbox", "eml", "thunderbird"):
        _fail(f"unknown --format {fmt!r} (auto, maildir, mbox, eml, thunderbird)", EXIT_ERROR)

    def go() -> Any:
        with _open(vault, password_file, password_command) as repo:
            return import_local(
                repo, path, account, fmt=fmt, mboxrd=mboxrd, progress=_progress(quiet, as_json)
            )

    result = run(go)
    if as_json:
        _emit_json(asdict(result))
    elif not quiet:
        typer.echo(
            f"snapshot {result.snapshot[:12]} ({result.account}, {result.format}): {result.folders} folders, "
            f"{result.messages} messages, {_human(result.bytes)}; new: {result.new_messages} messages, "
            f"{_human(result.new_bytes)} -> stored {_human(result.stored_bytes)} in {result.duration:.1f}s"
        )


@app.command()
def snapshots(
    vault: VaultArg,
    account: AccountFilter = None,
    password_file: PasswordFile = None,
    password_command: PasswordCommand = None,
    as_json: Json = False,
) -> None:
    """List snapshots, oldest first."""

    def go() -> Any:
        with _open(vault, password_file, password_command) as repo:
            return repo.snapshots(account)

    snaps = run(go)
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
        with _open(vault, password_file, password_command) as repo:
            snap = repo.resolve_snapshot(snapshot, account)
            _check_folders(snap, folder)
            return export_snapshot(repo, snap, dest, fmt, folders=folder, progress=_progress(quiet, as_json))

    result = run(go)
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
        if not quiet or not report.ok:
            what = f", {report.blobs_checked} blobs read and verified" if read_data else ""
            status = "no errors" if report.ok else f"{len(report.errors)} error(s)"
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

    def go() -> Any:
        with _open(vault, password_file, password_command) as repo:
            return vault_stats(repo)

    st = run(go)
    if as_json:
        _emit_json(asdict(st))
        return
    typer.echo(f"snapshots:      {st.snapshots} ({st.accounts} accounts)")
    typer.echo(f"messages:       {st.messages} in the latest snapshots, {st.message_refs} in all")
    typer.echo(f"unique blobs:   {st.unique_blobs}")
    typer.echo(f"raw bytes:      {st.raw_bytes} ({_human(st.raw_bytes)})")
    typer.echo(f"stored bytes:   {st.stored_bytes} ({_human(st.stored_bytes)}) in {st.pack_files} packs")
    typer.echo(f"ratio:          {st.ratio:.3f}")


VaultPasswordFile = Annotated[
    Path | None, typer.Option("--vault-password-file", help="Read the vault password from this file.")
]
VaultPasswordCommand = Annotated[
    str | None, typer.Option("--vault-password-command", help="Command printing the vault password.")
]
ServerPasswordEnv = Annotated[
    str | None, typer.Option("--password-env", help="Environment variable holding the server password.")
]
ServerPasswordCommand = Annotated[
    str | None, typer.Option("--password-command", help="Command printing the server password.")
]
OAuth2Command = Annotated[
    str | None,
    typer.Option("--oauth2-token-command", help="Command printing an OAuth2 access token (XOAUTH2)."),
]
CaFile = Annotated[
    Path | None, typer.Option("--ca-file", help="Trust only this CA file (PEM) for the server's certificate.")
]
AllowPlaintext = Annotated[
    bool,
    typer.Option("--allow-plaintext", help="Allow login without TLS when the server offers no STARTTLS."),
]


def _server_access(
    url: str,
    password_env: str | None,
    password_command: str | None,
    oauth2_token_command: str | None,
    ca_file: Path | None,
    allow_plaintext: bool,
) -> Any:
    from mailvault.errors import ConfigError
    from mailvault.net.session import Credentials, TLSPolicy, parse_url
    from mailvault.passwords import secret_provider

    endpoint = parse_url(url)
    if password_env and password_command:
        raise ConfigError("give --password-env or --password-command, not both")
    if oauth2_token_command:
        creds = Credentials(
            oauth2_token=secret_provider(command=oauth2_token_command, label="OAuth2 token", cache=False)
        )
    else:
        creds = Credentials(
            password=secret_provider(
                env_var=password_env, command=password_command, label=f"password of {endpoint.account}"
            )
        )
    return endpoint, creds, TLSPolicy(str(ca_file) if ca_file else None, allow_plaintext)


@app.command()
def backup(
    vault: VaultArg,
    source: Annotated[str, typer.Argument(help="imap[s]://user@host[:port] or pop3[s]://user@host[:port]")],
    account: Annotated[
        str | None, typer.Option("--account", help="Snapshot account name (default user@host).")
    ] = None,
    folder: Annotated[
        list[str] | None, typer.Option("--folder", help="Only folders matching this glob.")
    ] = None,
    exclude_folder: Annotated[
        list[str] | None, typer.Option("--exclude-folder", help="Skip folders matching this glob.")
    ] = None,
    password_env: ServerPasswordEnv = None,
    password_command: ServerPasswordCommand = None,
    oauth2_token_command: OAuth2Command = None,
    ca_file: CaFile = None,
    allow_plaintext: AllowPlaintext = False,
    delete_after_days: Annotated[
        int | None,
        typer.Option("--delete-after-days", help="POP3: delete messages older than N days once backed up."),
    ] = None,
    connections: Annotated[
        int, typer.Option("--connections", help="IMAP: back up folders over N parallel connections.")
    ] = 1,
    vault_password_file: VaultPasswordFile = None,
    vault_password_command: VaultPasswordCommand = None,
    quiet: Quiet = False,
    as_json: Json = False,
) -> None:
    """Back up an IMAP or POP3 account into the vault (one snapshot per run)."""
    from mailvault.backup import BackupOptions
    from mailvault.backup import backup as run_backup
    from mailvault.errors import ConfigError

    def go() -> Any:
        endpoint, creds, tls = _server_access(
            source, password_env, password_command, oauth2_token_command, ca_file, allow_plaintext
        )
        if delete_after_days is not None and endpoint.protocol != "pop3":
            raise ConfigError("--delete-after-days applies to POP3 sources only")
        if delete_after_days is not None and delete_after_days < 0:
            raise ConfigError("--delete-after-days must be 0 or more")
        options = BackupOptions(
            account=account,
            folders=folder or (),
            exclude_folders=exclude_folder or (),
            delete_after_days=delete_after_days,
            connections=max(1, connections),
        )
        with _open(vault, vault_password_file, vault_password_command) as repo:
            return run_backup(repo, endpoint, creds, tls, options, progress=_progress(quiet, as_json))

    result = run(go)
    if as_json:
        _emit_json({**asdict(result), "exit_code": result.exit_code})
    else:
        for w in result.warnings:
            typer.echo(f"warning: {w}", err=True)
        for f in result.failures:
            typer.echo(f"failed: {f}", err=True)
        if not quiet:
            typer.echo(
                f"snapshot {result.snapshot[:12]} ({result.account}): {result.folders} folders, "
                f"{result.messages} messages, {_human(result.bytes)}; fetched {result.messages_fetched} "
                f"({_human(result.bytes_fetched)}), {result.new_messages} new in the vault, "
                f"stored {_human(result.new_bytes_stored)}"
                + (f", deleted {result.deleted} from the server" if result.deleted else "")
                + f" in {result.duration:.1f}s"
            )
    if result.exit_code:
        raise typer.Exit(result.exit_code)


@app.command()
def restore(
    vault: VaultArg,
    target: Annotated[str, typer.Argument(help="imap[s]://user@host[:port] to restore into.")],
    snapshot: Annotated[str, typer.Option("--snapshot", help="Snapshot id, prefix or 'latest'.")] = "latest",
    account: SnapshotAccount = None,
    folder: Annotated[
        list[str] | None, typer.Option("--folder", help="Only folders matching this glob.")
    ] = None,
    map_: Annotated[
        list[str] | None, typer.Option("--map", help="Restore source folder SRC into DST (SRC=DST).")
    ] = None,
    into: Annotated[
        str | None, typer.Option("--into", help="Put every message into this one folder.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")] = False,
    max_upload_mb_per_day: Annotated[
        int | None,
        typer.Option("--max-upload-mb-per-day", help="Stop (resumable) after this much; Gmail default 500."),
    ] = None,
    connections: Annotated[
        int | None, typer.Option("--connections", help="Parallel IMAP connections (default 1; Gmail 4).")
    ] = None,
    password_env: ServerPasswordEnv = None,
    password_command: ServerPasswordCommand = None,
    oauth2_token_command: OAuth2Command = None,
    ca_file: CaFile = None,
    allow_plaintext: AllowPlaintext = False,
    vault_password_file: VaultPasswordFile = None,
    vault_password_command: VaultPasswordCommand = None,
    quiet: Quiet = False,
    as_json: Json = False,
) -> None:
    """Replay a snapshot into an IMAP account: folders, flags and dates intact, never twice."""
    from mailvault.errors import ConfigError
    from mailvault.restore import RestoreOptions, parse_map
    from mailvault.restore import restore as run_restore

    def go() -> Any:
        endpoint, creds, tls = _server_access(
            target, password_env, password_command, oauth2_token_command, ca_file, allow_plaintext
        )
        if endpoint.protocol != "imap":
            raise ConfigError("restore needs an imap:// or imaps:// target")
        options = RestoreOptions(
            snapshot=snapshot,
            account=account,
            folders=folder or (),
            maps=parse_map(map_ or []),
            into=into,
            dry_run=dry_run,
            max_upload_mb_per_day=max_upload_mb_per_day,
            connections=connections,
        )
        with _open(vault, vault_password_file, vault_password_command) as repo:
            return run_restore(repo, endpoint, creds, tls, options, progress=_progress(quiet, as_json))

    result = run(go)
    _render_restore(result, quiet, as_json)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def _render_restore(result: Any, quiet: bool, as_json: bool) -> None:
    if as_json:
        _emit_json({**asdict(result), "exit_code": result.exit_code})
        return
    for w in result.warnings:
        typer.echo(f"warning: {w}", err=True)
    for f in result.failures:
        typer.echo(f"failed: {f}", err=True)
    if result.dry_run:
        typer.echo(f"plan: snapshot {result.snapshot[:12]} ({result.account}) -> {result.target}")
        for p in result.folders:
            todo = p.messages - p.already
            action = "create" if p.create else "exists"
            typer.echo(
                f"  {p.source!r} -> {p.target!r} [{action}; {p.reason}]: {p.messages} messages, "
                f"{_human(p.bytes)}; {p.already} already restored, {todo} to upload"
            )
        return
    if result.budget_exhausted:
        typer.echo(f"mailvault: {result.budget_exhausted}", err=True)
    if not quiet:
        typer.echo(
            f"restored snapshot {result.snapshot[:12]} ({result.account}) into {result.target}: "
            f"{len(result.folders)} folders, {result.uploaded} messages uploaded "
            f"({_human(result.uploaded_bytes)}), "
            f"{result.skipped_existing} already there"
            + (f", {result.labels_applied} labels applied" if result.gmail else "")
            + f" in {result.duration:.1f}s"
        )


@app.command()
def migrate(
    source: Annotated[str, typer.Argument(help="imap[s]:// or pop3[s]:// account to copy from.")],
    target: Annotated[str, typer.Argument(help="imap[s]:// account to copy into.")],
    vault: Annotated[
        str | None, typer.Option("--vault", help="Vault to go through (default: one in the user data dir).")
    ] = None,
    account: Annotated[str | None, typer.Option("--account", help="Snapshot account name.")] = None,
    folder: Annotated[
        list[str] | None, typer.Option("--folder", help="Only folders matching this glob.")
    ] = None,
    map_: Annotated[list[str] | None, typer.Option("--map", help="SRC=DST folder mapping.")] = None,
    source_password_env: Annotated[str | None, typer.Option("--source-password-env")] = None,
    source_password_command: Annotated[str | None, typer.Option("--source-password-command")] = None,
    target_password_env: Annotated[str | None, typer.Option("--target-password-env")] = None,
    target_password_command: Annotated[str | None, typer.Option("--target-password-command")] = None,
    source_oauth2_token_command: Annotated[str | None, typer.Option("--source-oauth2-token-command")] = None,
    target_oauth2_token_command: Annotated[str | None, typer.Option("--target-oauth2-token-command")] = None,
    ca_file: CaFile = None,
    allow_plaintext: AllowPlaintext = False,
    max_upload_mb_per_day: Annotated[int | None, typer.Option("--max-upload-mb-per-day")] = None,
    connections: Annotated[
        int | None, typer.Option("--connections", help="Parallel target connections.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Back up, then only print the restore plan.")
    ] = False,
    vault_password_file: VaultPasswordFile = None,
    vault_password_command: VaultPasswordCommand = None,
    quiet: Quiet = False,
    as_json: Json = False,
) -> None:
    """Back up SOURCE into a vault, then restore that snapshot into TARGET; reruns catch up."""
    from mailvault.backup import BackupOptions
    from mailvault.backup import backup as run_backup
    from mailvault.errors import ConfigError
    from mailvault.passwords import vault_password_provider
    from mailvault.restore import RestoreOptions, parse_map
    from mailvault.restore import restore as run_restore
    from mailvault.vault.repository import Repository

    def go() -> Any:
        src_ep, src_creds, tls = _server_access(
            source,
            source_password_env,
            source_password_command,
            source_oauth2_token_command,
            ca_file,
            allow_plaintext,
        )
        dst_ep, dst_creds, _ = _server_access(
            target,
            target_password_env,
            target_password_command,
            target_oauth2_token_command,
            ca_file,
            allow_plaintext,
        )
        if dst_ep.protocol != "imap":
            raise ConfigError("migrate needs an imap:// or imaps:// target")
        provider = vault_password_provider(vault_password_file, vault_password_command)
        location = vault or _default_migrate_vault()
        if not Path(location).joinpath("config").exists() and not location.startswith("s3://"):
            Repository.init(location, provider()).close()
        name = account or src_ep.account
        with Repository.open(location, provider) as repo:
            b = run_backup(
                repo,
                src_ep,
                src_creds,
                tls,
                BackupOptions(account=name, folders=folder or ()),
                progress=_progress(quiet, as_json),
            )
            options = RestoreOptions(
                snapshot=b.snapshot,
                account=name,
                folders=folder or (),
                maps=parse_map(map_ or []),
                dry_run=dry_run,
                max_upload_mb_per_day=max_upload_mb_per_day,
                connections=connections,
            )
            r = run_restore(repo, dst_ep, dst_creds, tls, options, progress=_progress(quiet, as_json))
            return location, b, r

    location, b, r = run(go)
    if as_json:
        _emit_json(
            {
                "vault": location,
                "backup": asdict(b),
                "restore": asdict(r),
                "exit_code": max(b.exit_code, r.exit_code),
            }
        )
    else:
        for f in b.failures:
            typer.echo(f"failed (backup): {f}", err=True)
        if not quiet:
            typer.echo(
                f"backup: snapshot {b.snapshot[:12]}, {b.messages} messages, {b.messages_fetched} fetched "
                f"(vault {location})"
            )
        _render_restore(r, quiet, False)
    code = max(b.exit_code, r.exit_code)
    if code:
        raise typer.Exit(code)


def _default_migrate_vault() -> str:
    import platformdirs

    return str(Path(platformdirs.user_data_dir("mailvault")) / "migrate-vault")


config_app = typer.Typer(help="Work with the job runner's configuration file.", no_args_is_help=True)
app.add_typer(config_app, name="config")

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", help="Config file (default: $MAILVAULT_CONFIG or the platform config dir)."),
]


def _config_path(config: Path | None) -> Path:
    from mailvault.config import default_config_path

    return config or default_config_path()


@config_app.command("check")
def config_check(
    file: Annotated[Path, typer.Argument(help="The TOML config file to validate.")],
    as_json: Json = False,
) -> None:
    """Validate every key of a config file; errors name the file, line and key."""
    from mailvault.config import load_config

    cfg = run(lambda: load_config(file))
    info = {
        "file": str(file),
        "vaults": len(cfg.vaults),
        "accounts": len(cfg.accounts),
        "jobs": len(cfg.jobs),
    }
    if as_json:
        _emit_json({**info, "ok": True})
    else:
        typer.echo(f"{file}: ok ({info['vaults']} vaults, {info['accounts']} accounts, {info['jobs']} jobs)")


@app.command("run")
def run_jobs(
    job: Annotated[list[str] | None, typer.Argument(help="Jobs to run (default: all).")] = None,
    config: ConfigOpt = None,
    due: Annotated[bool, typer.Option("--due", help="Only jobs whose schedule says they are due.")] = False,
    jobs: Annotated[int, typer.Option("--jobs", help="Accounts processed in parallel.")] = 1,
    shard: Annotated[
        str | None, typer.Option("--shard", help="Only this stable share I/N of the accounts.")
    ] = None,
    quiet: Quiet = False,
    as_json: Json = False,
) -> None:
    """Run the jobs of a config file (backups, restores, migrations, retention)."""
    from mailvault.config import load_config
    from mailvault.runner import Runner, parse_shard

    def go() -> Any:
        cfg = load_config(_config_path(config))
        progress = _progress(quiet, as_json) if jobs == 1 else Progress(False)
        return Runner(cfg, progress=progress).run(
            job or (), due_only=due, parallel=jobs, shard=parse_shard(shard)
        )

    summary = run(go)
    if as_json:
        _emit_json({**asdict(summary), "exit_code": summary.exit_code})
    else:
        if not quiet or summary.exit_code:
            head = f"{'JOB':16} {'ACCOUNT':24} {'STATUS':8} {'SNAPSHOT':12} {'MSGS':>7} {'NEW':>6}"
            typer.echo(f"{head} {'SECS':>6}  NOTE")
            for r in summary.results:
                if quiet and r.exit_code == 0:
                    continue
                note = r.message + (f" [{r.hook_error}]" if r.hook_error else "")
                typer.echo(
                    f"{r.job[:16]:16} {r.account[:24]:24} {r.status:8} {r.snapshot[:12]:12} {r.messages:>7} "
                    f"{(r.fetched or r.uploaded):>6} {r.duration:>6.1f}  {note}"
                )
        for vault_name, freed in summary.pruned.items():
            if not quiet:
                typer.echo(f"pruned vault {vault_name}: {_human(freed)} freed")
        for e in summary.errors:
            typer.echo(f"mailvault: {e}", err=True)
    if summary.exit_code:
        raise typer.Exit(summary.exit_code)


@app.command()
def status(config: ConfigOpt = None, as_json: Json = False) -> None:
    """Last run and last success of every job and account, and whether it is due."""
    from mailvault.config import load_config
    from mailvault.runner import status as job_status

    rows = run(lambda: job_status(load_config(_config_path(config))))
    if as_json:
        _emit_json([asdict(r) for r in rows])
        return
    typer.echo(f"{'JOB':16} {'ACCOUNT':24} {'LAST RUN':19} {'STATUS':9} {'LAST SUCCESS':19} DUE")
    for r in rows:
        last = r.last_run[:19].replace("T", " ")
        ok = r.last_success[:19].replace("T", " ")
        due = "yes" if r.due else "no"
        typer.echo(f"{r.job[:16]:16} {r.account[:24]:24} {last:19} {r.last_status:9} {ok:19} {due}")


@app.command()
def schedule(
    systemd: Annotated[bool, typer.Option("--systemd", help="Print a systemd service + timer.")] = False,
    cron: Annotated[bool, typer.Option("--cron", help="Print a crontab line.")] = False,
    config: ConfigOpt = None,
    every: Annotated[int, typer.Option("--every", help="Minutes between runner starts.")] = 15,
) -> None:
    """Print ready-to-install units (systemd) or a crontab entry that runs due jobs."""
    import shutil

    from mailvault.runner import schedule_units

    if systemd == cron:
        _fail("give exactly one of --systemd or --cron", EXIT_ERROR)
    if not 1 <= every <= 59:
        _fail("--every must be between 1 and 59 minutes", EXIT_ERROR)
    exe = shutil.which("mailvault") or "mailvault"
    typer.echo(
        schedule_units("cron" if cron else "systemd", _config_path(config).resolve(), every, exe), nl=False
    )


@app.command("forget")
def forget_cmd(
    vault: VaultArg,
    account: AccountFilter = None,
    keep_last: Annotated[int, typer.Option("--keep-last")] = 0,
    keep_hourly: Annotated[int, typer.Option("--keep-hourly")] = 0,
    keep_daily: Annotated[int, typer.Option("--keep-daily")] = 0,
    keep_weekly: Annotated[int, typer.Option("--keep-weekly")] = 0,
    keep_monthly: Annotated[int, typer.Option("--keep-monthly")] = 0,
    keep_yearly: Annotated[int, typer.Option("--keep-yearly")] = 0,
    prune_: Annotated[bool, typer.Option("--prune", help="Then delete the data nothing needs.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show what would be forgotten.")] = False,
    password_file: PasswordFile = None,
    password_command: PasswordCommand = None,
    quiet: Quiet = False,
    as_json: Json = False,
) -> None:
    """Drop snapshots per a keep policy (per account); with --prune free their space."""
    from mailvault.retention import KeepPolicy, forget
    from mailvault.vault.prune import prune

    policy = KeepPolicy(keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly)

    def go() -> Any:
        with _open(vault, password_file, password_command) as repo:
            f = forget(repo, policy, account=account, dry_run=dry_run)
            p = prune(repo, dry_run=dry_run, progress=_progress(quiet, as_json)) if prune_ else None
            return f, p

    f, p = run(go)
    if as_json:
        _emit_json(
            {
                "dry_run": dry_run,
                "kept": [{"id": d.snapshot.id, "account": d.snapshot.account, "time": d.snapshot.time,
                          "reasons": d.reasons} for d in f.kept],
                "removed": [{"id": d.snapshot.id, "account": d.snapshot.account, "time": d.snapshot.time}
                            for d in f.removed],
                "prune": asdict(p) if p else None,
            }
        )  # fmt: skip
        return
    if not quiet:
        verb = "would forget" if dry_run else "forgot"
        for d in f.removed:
            typer.echo(f"{verb} {d.snapshot.id[:12]} {d.snapshot.account} {d.snapshot.time}")
        typer.echo(
            f"{len(f.kept)} snapshots kept, {len(f.removed)} {'to forget' if dry_run else 'forgotten'}"
        )
        if p is not None:
            _echo_prune(p)


def _echo_prune(p: Any) -> None:
    verb = "would free" if p.dry_run else "freed"
    typer.echo(
        f"prune: {p.packs_deleted} packs deleted, {p.packs_repacked} repacked, "
        f"{p.blobs_removed} blobs removed; {verb} {_human(p.bytes_freed)}"
    )
    for w in p.warnings:
        typer.echo(f"warning: {w}", err=True)


@app.command("prune")
def prune_cmd(
    vault: VaultArg,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show what would be freed.")] = False,
    wait: Annotated[float, typer.Option("--wait", help="Seconds to wait for other writers' locks.")] = 0.0,
    password_file: PasswordFile = None,
    password_command: PasswordCommand = None,
    quiet: Quiet = False,
    as_json: Json = False,
) -> None:
    """Delete data no snapshot needs (exclusive lock; crash-safe)."""
    from mailvault.vault.prune import prune

    def go() -> Any:
        with _open(vault, password_file, password_command) as repo:
            return prune(repo, dry_run=dry_run, wait=wait, progress=_progress(quiet, as_json))

    p = run(go)
    if as_json:
        _emit_json({**asdict(p), "bytes_freed": p.bytes_freed})
    elif not quiet:
        _echo_prune(p)


@app.command()
def unlock(
    vault: VaultArg,
    remove_all: Annotated[
        bool, typer.Option("--remove-all", help="Remove every lock, not only stale ones.")
    ] = False,
    password_file: PasswordFile = None,
    password_command: PasswordCommand = None,
) -> None:
    """Remove stale locks left by killed processes."""
    from mailvault.vault.locks import remove_locks

    def go() -> Any:
        with _open(vault, password_file, password_command) as repo:
            return remove_locks(repo.backend, repo.sealer, all_locks=remove_all)

    removed = run(go)
    for lk in removed:
        typer.echo(f"removed {lk.describe()}")
    typer.echo(f"{len(removed)} lock(s) removed")


def main() -> None:
    from mailvault.memory import tune_malloc

    tune_malloc()
    try:
        app()
    except BrokenPipeError:  # e.g. `mailvault ls ... | head`
        sys.stderr.close()
        sys.exit(0)
