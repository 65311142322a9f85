"""What every command module shares: the typer app, option types, running the core, rendering."""

from __future__ import annotations

import json
import os
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from mailvault import __version__
from mailvault.errors import EXIT_ERROR, MailvaultError
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


def on_vault(
    vault: str, password_file: Path | None, password_command: str | None, fn: Callable[[Any], T]
) -> T:
    """Open the vault, call ``fn(repo)``, close it; core errors end as with :func:`run`."""

    def go() -> T:
        with _open(vault, password_file, password_command) as repo:
            return fn(repo)

    return run(go)


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


def _cli_providers(url: str) -> Any:
    """For a ``PROVIDER:ADDRESS``: the providers of the config file ($MAILVAULT_CONFIG or the default
    path) when there is one, so its [oauth2_providers] tables apply on the command line too."""
    from mailvault.net.providers import split_address

    if split_address(url) is None or "://" in url:
        return None
    from mailvault.config import default_config_path, load_config

    path = default_config_path()
    return load_config(path).providers if path.exists() else None


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

    providers = _cli_providers(url)
    endpoint = parse_url(url, providers)
    if password_env and password_command:
        raise ConfigError("give --password-env or --password-command, not both")
    if not (password_env or password_command or oauth2_token_command):
        from mailvault.auth.access import VaultTokens, signs_in_itself
        from mailvault.net.providers import presets

        provider = signs_in_itself(endpoint, providers or presets())
        if provider is not None:  # gmail:me@gmail.com: tokens of `mailvault login` in the vault
            return (
                endpoint,
                VaultTokens(endpoint, provider).credentials(),
                TLSPolicy(str(ca_file) if ca_file else None, allow_plaintext),
            )
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


def _bind_vault(repo: Any, *creds: Any) -> None:
    """Credentials of a ``PROVIDER:ADDRESS`` read their OAuth2 tokens from the vault just opened."""
    if all(c.oauth2_token is None for c in creds):
        return  # passwords: nothing to bind (and the OAuth2 modules stay unloaded)
    from mailvault.auth.access import bind_vault

    for c in creds:
        bind_vault(c, repo.backend, repo.sealer)


def _limits(
    endpoint: Any, upload_mb_per_day: int | None, connections: int | None
) -> tuple[int | None, int | None]:
    """The provider preset's upload budget and connection cap for a ``PROVIDER:ADDRESS`` endpoint."""
    from mailvault.net.providers import apply_limits, presets

    if not endpoint.provider:
        return upload_mb_per_day, connections
    providers = _cli_providers(f"{endpoint.provider}:{endpoint.user}") or presets()
    return apply_limits(providers.get(endpoint.provider), upload_mb_per_day, connections)
