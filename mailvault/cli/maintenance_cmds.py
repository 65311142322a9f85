"""Maintenance commands: forget, prune, unlock."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

import typer

from mailvault.cli.common import (
    AccountFilter,
    Json,
    PasswordCommand,
    PasswordFile,
    Quiet,
    VaultArg,
    _emit_json,
    _human,
    _open,
    _progress,
    app,
    on_vault,
    run,
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

    p = on_vault(
        vault,
        password_file,
        password_command,
        lambda repo: prune(repo, dry_run=dry_run, wait=wait, progress=_progress(quiet, as_json)),
    )
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

    removed = on_vault(
        vault,
        password_file,
        password_command,
        lambda repo: remove_locks(repo.backend, repo.sealer, all_locks=remove_all),
    )
    for lk in removed:
        typer.echo(f"removed {lk.describe()}")
    typer.echo(f"{len(removed)} lock(s) removed")
