"""Mail server commands: backup, restore, migrate."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from mailvault.cli.common import (
    AllowPlaintext,
    CaFile,
    Json,
    OAuth2Command,
    Quiet,
    ServerPasswordCommand,
    ServerPasswordEnv,
    SnapshotAccount,
    VaultArg,
    VaultPasswordCommand,
    VaultPasswordFile,
    _bind_vault,
    _emit_json,
    _human,
    _limits,
    _open,
    _progress,
    _server_access,
    app,
    run,
)


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
        str,
        typer.Option(
            "--connections",
            help="IMAP: folders over parallel connections: auto (one per changed folder, at most 4) or N; "
            "capped at the provider's limit (Gmail 15).",
        ),
    ] = "auto",
    vault_password_file: VaultPasswordFile = None,
    vault_password_command: VaultPasswordCommand = None,
    quiet: Quiet = False,
    as_json: Json = False,
) -> None:
    """Back up an IMAP or POP3 account into the vault (one snapshot per run)."""
    from mailvault.backup import BackupOptions, EarlySource
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
            connections=_backup_connections(_connections_for(endpoint, connections)),
        )
        # The IMAP login and folder list happen while the vault key is derived (scrypt), unless the
        # credentials are tokens kept in the vault itself.
        given = bool(password_env or password_command or oauth2_token_command)
        early = EarlySource(endpoint, creds, tls, options) if _early_ok(endpoint, creds, given) else None
        try:
            with _open(vault, vault_password_file, vault_password_command) as repo:
                _bind_vault(repo, creds)
                return run_backup(
                    repo, endpoint, creds, tls, options, progress=_progress(quiet, as_json), early=early
                )
        finally:
            if early is not None:
                early.discard()

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
    search: Annotated[
        str | None, typer.Option("--search", help="Only the messages of the snapshot matching this query.")
    ] = None,
    max_upload_mb_per_day: Annotated[
        int | None,
        typer.Option("--max-upload-mb-per-day", help="Stop (resumable) after this much; Gmail default 500."),
    ] = None,
    connections: Annotated[
        str,
        typer.Option(
            "--connections",
            help="Parallel IMAP connections: auto (one per folder, at most 4) or N; capped at the "
            "provider's limit (Gmail 15).",
        ),
    ] = "auto",
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
    from mailvault.restore import RestoreOptions, connect_ahead, parse_map
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
            max_upload_mb_per_day=_limits(endpoint, max_upload_mb_per_day, None)[0],
            connections=_connections_for(endpoint, connections),
        )
        if search is not None:
            from mailvault.index import parse_query

            parse_query(search)  # a bad query fails before anything is opened
        conns = connect_ahead(endpoint, creds, tls, options)  # logs in while the vault opens
        try:
            with _open(vault, vault_password_file, vault_password_command) as repo:
                _bind_vault(repo, creds)
                if search is not None:
                    from mailvault.index import select_in_snapshot

                    snap, options.selection = select_in_snapshot(
                        repo, search, snapshot, account, _progress(quiet, as_json)
                    )
                    options.snapshot = snap.id
                return run_restore(
                    repo, endpoint, creds, tls, options, progress=_progress(quiet, as_json), connections=conns
                )
        finally:
            if conns is not None:
                conns.close()

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
            f"{len(result.folders)} folders, {result.messages} messages: {result.uploaded} uploaded "
            f"({_human(result.uploaded_bytes)}), {result.already_there} already there "
            f"({result.already_there - result.skipped_existing} in the journal, "
            f"{result.skipped_existing} found), {result.failed} failed"
            + (f", {result.pending} not attempted (budget)" if result.pending else "")
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
        str,
        typer.Option(
            "--connections",
            help="Parallel connections to each server: auto (at most 4; large folders are split) or N.",
        ),
    ] = "auto",
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
            _bind_vault(repo, src_creds, dst_creds)
            b = run_backup(
                repo,
                src_ep,
                src_creds,
                tls,
                BackupOptions(
                    account=name,
                    folders=folder or (),
                    connections=_backup_connections(_connections_for(src_ep, connections)),
                ),
                progress=_progress(quiet, as_json),
            )
            options = RestoreOptions(
                snapshot=b.snapshot,
                account=name,
                folders=folder or (),
                maps=parse_map(map_ or []),
                dry_run=dry_run,
                max_upload_mb_per_day=_limits(dst_ep, max_upload_mb_per_day, None)[0],
                connections=_connections_for(dst_ep, connections),
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


def _early_ok(endpoint: Any, creds: Any, secret_given: bool) -> bool:
    """Whether the IMAP source may be opened on a thread while the vault opens: only when its secret
    comes from an option (a prompt would meet the vault password's prompt), not for tokens the
    vault itself holds."""
    return bool(endpoint.protocol == "imap" and secret_given and not hasattr(creds.oauth2_token, "bind"))


def _backup_connections(n: int | None) -> int:
    return 1 if n is None else n


def _connections_for(endpoint: Any, value: str) -> int | None:
    """``--connections auto|N`` within a ``PROVIDER:ADDRESS`` preset's connection limit."""
    from mailvault.net.connections import AUTO, AUTO_CONNECTIONS, parse_connections

    n = parse_connections(value)
    if n == AUTO:
        cap = _limits(endpoint, None, AUTO_CONNECTIONS)[1]
        return AUTO if cap is None or cap >= AUTO_CONNECTIONS else cap
    return _limits(endpoint, None, n)[1]
