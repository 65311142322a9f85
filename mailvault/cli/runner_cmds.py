"""Job runner commands: config check, run, status, schedule."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from mailvault.cli.common import (
    Json,
    Quiet,
    _emit_json,
    _fail,
    _human,
    _progress,
    app,
    run,
)
from mailvault.errors import EXIT_ERROR
from mailvault.progress import Progress

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
        for r in summary.results:
            if r.status == "failed":  # e.g. "sign in again with `mailvault login ...`"
                typer.echo(f"mailvault: {r.job}/{r.account}: {r.message}", err=True)
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
