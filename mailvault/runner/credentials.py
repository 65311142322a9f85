"""The secrets of a config file's vaults and accounts: where a task's passwords and tokens come
from (a file, a command or an environment variable, as the config says)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mailvault.config import AccountConfig, VaultConfig
from mailvault.errors import ConfigError
from mailvault.net.session import Credentials, TLSPolicy
from mailvault.passwords import from_command, from_env, from_file, secret_provider


def vault_password(v: VaultConfig) -> Any:
    def provide() -> bytes:
        if v.password_file:
            return from_file(Path(v.password_file))
        if v.password_command:
            return from_command(v.password_command, what=f"vault {v.name} password")
        env = from_env(v.password_env or "MAILVAULT_PASSWORD")
        if env is None:
            raise ConfigError(
                f"vault {v.name}: environment variable {v.password_env or 'MAILVAULT_PASSWORD'} is not set"
            )
        return env

    return provide


def account_access(a: AccountConfig) -> tuple[Credentials, TLSPolicy]:
    if a.oauth2_token_command:
        creds = Credentials(
            oauth2_token=secret_provider(command=a.oauth2_token_command, label="OAuth2 token", cache=False)
        )
    elif a.password_env or a.password_command:
        creds = Credentials(
            password=secret_provider(
                env_var=a.password_env, command=a.password_command, label=f"password of account {a.name}"
            )
        )
    else:
        raise ConfigError(f"account {a.name}: give password_env, password_command or oauth2_token_command")
    return creds, TLSPolicy(a.ca_file, a.allow_plaintext)
