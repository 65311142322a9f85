"""Repair command: rebuild a damaged vault's index and snapshots, keeping every readable message."""

from __future__ import annotations

from typing import Annotated

import typer

from mailvault.cli.common import (
    Json,
    PasswordCommand,
    PasswordFile,
    Quiet,
    VaultArg,
    _emit_json,
    _progress,
    app,
    on_vault,
)


@app.command("repair")
def repair_cmd(
    vault: VaultArg,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only report what would be done.")] = False,
    wait: Annotated[float, typer.Option("--wait", help="Seconds to wait for other writers' locks.")] = 0.0,
    password_file: PasswordFile = None,
    password_command: PasswordCommand = None,
    quiet: Quiet = False,
    as_json: Json = False,
) -> None:
    """Rebuild the index from the packs, salvage damaged packs, drop lost messages from snapshots."""
    from mailvault.vault.repair import repair

    r = on_vault(
        vault,
        password_file,
        password_command,
        lambda repo: repair(repo, dry_run=dry_run, wait=wait, progress=_progress(quiet, as_json)),
    )
    if as_json:
        _emit_json(r.to_json())
        return
    would = "would be " if dry_run else ""
    for p in r.packs_damaged:
        typer.echo(
            f"pack {p.id[:12]}: {p.problem}; {p.blobs_salvaged} blob(s) {would}salvaged, {p.blobs_lost} lost"
        )
    for pid in r.packs_missing:
        typer.echo(f"pack {pid[:12]}: missing")
    for d in r.index_files_damaged:
        typer.echo(f"index {d['id'][:12]}: {d['problem']}")
    for d in r.snapshots_damaged:
        typer.echo(f"snapshot {d['id'][:12]}: {d['problem']}; {would}removed")
    for lf in r.lost_folders:
        typer.echo(f"lost: {lf.describe()}")
    for m in r.lost_messages:
        typer.echo(f"lost: {m.describe()}")
    for s in r.snapshots_rewritten:
        new = f" -> {s.new[:12]}" if s.new else ""
        typer.echo(
            f"snapshot {s.original[:12]}{new} ({s.account} {s.time}): {would}rewritten without "
            f"{s.lost_messages} lost message(s) and {s.lost_folders} lost folder(s)"
        )
    if not quiet or r.changed:
        if not r.changed:
            typer.echo(f"{r.packs} packs, {r.snapshots} snapshots: nothing to repair")
        else:
            typer.echo(
                f"{'dry run: ' if dry_run else ''}{len(r.packs_damaged)} damaged pack(s), "
                f"{len(r.packs_missing)} missing, {r.blobs_salvaged} blob(s) salvaged, "
                f"{r.index_files_removed} index file(s) replaced by {r.index_files_written}, "
                f"{len(r.snapshots_rewritten)} snapshot(s) rewritten, {len(r.snapshots_damaged)} removed, "
                f"{len(r.lost_messages)} message(s) lost"
            )
