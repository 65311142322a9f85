"""Sign-in commands: login, logout, accounts (OAuth2 built in, provider presets)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from mailvault.cli.common import Json, VaultPasswordCommand, VaultPasswordFile, _emit_json, app, run

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", help="Config file (default: $MAILVAULT_CONFIG or the platform config dir)."),
]
AccountArg = Annotated[
    str, typer.Argument(help="A config account name, or PROVIDER:ADDRESS (gmail:me@gmail.com).")
]
VaultOpt = Annotated[
    str | None,
    typer.Option("--vault", help="Vault holding the tokens: a config vault name or a location."),
]
ClientId = Annotated[
    str | None, typer.Option("--client-id", help="Your OAuth client id (overrides the config).")
]
ClientSecretEnv = Annotated[
    str | None,
    typer.Option("--client-secret-env", help="Environment variable holding the client secret."),
]
Tenant = Annotated[str | None, typer.Option("--tenant", help="Microsoft: directory (tenant) id or domain.")]


def _load(config: Path | None, required: bool) -> Any:
    from mailvault.config import default_config_path, load_config

    path = config or default_config_path()
    if config is None and not path.exists() and not required:
        return None
    return load_config(path)


def _target(
    account: str,
    config: Path | None,
    vault: str | None,
    vault_password_file: Path | None,
    vault_password_command: str | None,
    overrides: dict[str, str] | None = None,
) -> Any:
    from mailvault.auth.manage import resolve
    from mailvault.net.providers import split_address
    from mailvault.passwords import vault_password_provider

    cfg = _load(config, required=split_address(account) is None)
    password = vault_password_provider(vault_password_file, vault_password_command)
    return resolve(account, cfg, vault=vault, vault_password=password, overrides=overrides)


def _stderr(line: str) -> None:
    typer.echo(line, err=True)


@app.command()
def login(
    account: AccountArg,
    config: ConfigOpt = None,
    vault: VaultOpt = None,
    device: Annotated[
        bool, typer.Option("--device", help="Device-code flow: sign in on another device (Microsoft).")
    ] = False,
    no_browser: Annotated[
        bool, typer.Option("--no-browser", help="Do not open a browser; print the URL on stderr.")
    ] = False,
    client_id: ClientId = None,
    client_secret_env: ClientSecretEnv = None,
    tenant: Tenant = None,
    timeout: Annotated[int, typer.Option("--timeout", help="Seconds to wait for the sign-in.")] = 300,
    vault_password_file: VaultPasswordFile = None,
    vault_password_command: VaultPasswordCommand = None,
    as_json: Json = False,
) -> None:
    """Sign in with OAuth2 (browser + PKCE, or --device) and keep the tokens, sealed in the vault."""
    from mailvault.auth import manage

    overrides = {
        "client_id": client_id or "",
        "client_secret_env": client_secret_env or "",
        "tenant": tenant or "",
    }

    def go() -> Any:
        target = _target(account, config, vault, vault_password_file, vault_password_command, overrides)
        return manage.login(target, device=device, open_browser=not no_browser, emit=_stderr, timeout=timeout)

    outcome = run(go)
    if as_json:
        _emit_json(asdict(outcome))
        return
    from mailvault.auth.manage import _iso

    if not outcome.stores:
        typer.echo(
            f"{outcome.account}: app-only access ({outcome.grant}) works; a token was issued "
            f"(valid until {_iso(outcome.expires_at)}); nothing is stored"
        )
        return
    refresh = (
        "with a refresh token"
        if outcome.refresh_token
        else "WITHOUT a refresh token (sign in again when it expires)"
    )
    typer.echo(
        f"signed in {outcome.user} ({outcome.provider}), {refresh}; access token valid until "
        f"{_iso(outcome.expires_at)}; saved in {', '.join(outcome.stores)}"
    )


@app.command()
def logout(
    account: AccountArg,
    config: ConfigOpt = None,
    vault: VaultOpt = None,
    vault_password_file: VaultPasswordFile = None,
    vault_password_command: VaultPasswordCommand = None,
) -> None:
    """Forget an account's OAuth2 tokens (in every vault that holds them, or the keyring)."""
    from mailvault.auth import manage

    removed = run(
        lambda: manage.logout(_target(account, config, vault, vault_password_file, vault_password_command))
    )
    if removed:
        typer.echo(f"{account}: tokens removed from {', '.join(removed)}")
    else:
        typer.echo(f"{account}: no tokens were stored")


@app.command()
def accounts(
    account: Annotated[
        list[str] | None, typer.Argument(help="Accounts to show (default: every account of the config).")
    ] = None,
    config: ConfigOpt = None,
    vault: VaultOpt = None,
    no_tokens: Annotated[
        bool, typer.Option("--no-tokens", help="Do not open vaults to read token states.")
    ] = False,
    vault_password_file: VaultPasswordFile = None,
    vault_password_command: VaultPasswordCommand = None,
    as_json: Json = False,
) -> None:
    """Accounts with their server (provider presets resolved), auth method and token state."""
    from mailvault.auth.manage import describe, resolve
    from mailvault.passwords import vault_password_provider

    def go() -> list[dict[str, Any]]:
        cfg = _load(config, required=not account)
        names = list(account or (cfg.accounts if cfg is not None else []))
        password = vault_password_provider(vault_password_file, vault_password_command)
        return [
            describe(resolve(n, cfg, vault=vault, vault_password=password), read_tokens=not no_tokens)
            for n in names
        ]

    rows = run(go)
    if as_json:
        _emit_json(rows)
        return
    typer.echo(f"{'ACCOUNT':24} {'SERVER':40} {'AUTH':8} TOKEN")
    for r in rows:
        server = f"{r['scheme']}://{r['host']}:{r['port']}"
        auth = r["auth"] + (f" ({r['provider']})" if r.get("provider") else "")
        token = r.get("token") or {}
        state = token.get("state", "-") if token else "-"
        if token.get("valid_until") and state == "valid":
            state = f"valid until {token['valid_until']}"
        typer.echo(f"{r['account'][:24]:24} {server[:40]:40} {auth:8} {state}")
        if token and token.get("state") == "needs login" and r.get("login"):
            typer.echo(f"{'':24} sign in with: {r['login']}")
