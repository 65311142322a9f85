"""Mail provider presets (``providers.toml``, shipped in the package) and ``PROVIDER:ADDRESS`` names.

A :class:`Provider` is data: server names and ports, the login methods a provider accepts, its
OAuth 2.0 endpoints and scopes, and limits. The presets are read with ``tomllib`` from
``providers.toml`` beside this module; a config file's ``[oauth2_providers.NAME]`` table overrides
any field of a preset of the same name, or defines a new provider (see :func:`registry`).

``PROVIDER:ADDRESS`` (IMAP) and ``PROVIDER+pop3:ADDRESS`` are resolved here, by
:func:`resolve_address`, which :func:`mailvault.net.session.parse_url` calls: so they work wherever
a server URL does.
"""

from __future__ import annotations

import dataclasses
import functools
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from mailvault.errors import ConfigError

AUTH_METHODS = ("oauth2", "app-password", "password")
GRANTS = ("authorization_code", "client_credentials", "jwt_bearer")


@dataclass(frozen=True)
class Provider:
    """One mail provider: where its servers are and how to sign in to them."""

    name: str
    title: str = ""
    imap_host: str = ""
    imap_port: int = 993
    imap_security: str = "tls"  # tls | starttls
    pop3_host: str = ""
    pop3_port: int = 995
    pop3_security: str = "tls"
    auth: tuple[str, ...] = ("password",)
    authorize_url: str = ""
    token_url: str = ""
    device_authorization_url: str = ""
    tenant: str = ""
    scopes: tuple[str, ...] = ()
    app_scopes: tuple[str, ...] = ()
    device_grant: bool = False
    device_grant_refusal: str = ""
    auth_params: tuple[tuple[str, str], ...] = ()
    admin_consent_url: str = ""
    invalid_grant_hint: str = ""
    client_id: str = ""
    client_secret_env: str = ""
    #: App-only access: "authorization_code" (a user signs in), "client_credentials"
    #: (Microsoft app secret or certificate) or "jwt_bearer" (Google service account).
    grant: str = "authorization_code"
    client_certificate_file: str = ""  # PEM: private key + certificate (Microsoft, certificate credential)
    service_account_file: str = ""  # Google service account JSON key (domain-wide delegation)
    sasl: str = ""  # "" (what the server offers: XOAUTH2, else OAUTHBEARER) | xoauth2 | oauthbearer
    max_connections: int = 0
    upload_mb_per_day: int = 0
    hints: tuple[str, ...] = ()

    def _fill(self, template: str) -> str:
        return template.replace("{tenant}", self.tenant or "common").replace("{client_id}", self.client_id)

    @property
    def authorize_endpoint(self) -> str:
        return self._fill(self.authorize_url)

    @property
    def token_endpoint(self) -> str:
        return self._fill(self.token_url)

    @property
    def device_endpoint(self) -> str:
        return self._fill(self.device_authorization_url)

    @property
    def admin_consent(self) -> str:
        return self._fill(self.admin_consent_url) if self.admin_consent_url else ""

    @property
    def oauth2(self) -> bool:
        return "oauth2" in self.auth and bool(self.token_url)

    def server(self, protocol: str) -> tuple[str, str, int]:
        """(scheme, host, port) of this provider's IMAP or POP3 server."""
        if protocol == "imap":
            host, port, security = self.imap_host, self.imap_port, self.imap_security
        else:
            host, port, security = self.pop3_host, self.pop3_port, self.pop3_security
        if not host or not port:
            raise ConfigError(f"provider {self.name} has no {protocol.upper()} server")
        return (protocol if security == "starttls" else protocol + "s"), host, port

    def override(self, values: Mapping[str, Any], where: str = "") -> Provider:
        """A copy with ``values`` (config keys) replacing fields; unknown keys and wrong types fail."""
        known = {f.name: f for f in dataclasses.fields(self)} | {"label": None}
        changes: dict[str, Any] = {}
        for key, value in values.items():
            if key not in known or key == "name":
                allowed = ", ".join(sorted(k for k in known if k not in ("name", "label")))
                raise ConfigError(f"{where}{key}: unknown provider field (expected one of: {allowed})")
            changes[key] = _coerce(self, key, value, where)
        return dataclasses.replace(self, **changes)

    def describe(self) -> dict[str, Any]:
        """The provider as plain data (no secrets: the client secret is only an env var name)."""
        out = dataclasses.asdict(self)
        out["auth_params"] = dict(self.auth_params)
        for key in ("auth", "scopes", "app_scopes", "hints"):
            out[key] = list(out[key])
        return out


def _coerce(p: Provider, key: str, value: Any, where: str) -> Any:
    current = getattr(p, key)
    bad = ConfigError(f"{where}{key}: expected {_kind(current)}, got {value!r}")
    if key == "auth_params":
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise bad
        return tuple(sorted((str(k), v) for k, v in value.items()))
    if isinstance(current, tuple):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad
        if key == "auth" and any(v not in AUTH_METHODS for v in value):
            raise ConfigError(f"{where}auth: expected some of {', '.join(AUTH_METHODS)}, got {value!r}")
        return tuple(value)
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise bad
        return value
    if isinstance(current, int):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise bad
        return value
    if not isinstance(value, str):
        raise bad
    if key == "grant" and value not in GRANTS:
        raise ConfigError(f"{where}grant: expected one of {', '.join(GRANTS)}, got {value!r}")
    if key in ("imap_security", "pop3_security") and value not in ("tls", "starttls"):
        raise ConfigError(f"{where}{key}: expected tls or starttls, got {value!r}")
    if key == "sasl" and value not in ("", "xoauth2", "oauthbearer"):
        raise ConfigError(f"{where}sasl: expected xoauth2 or oauthbearer, got {value!r}")
    return value


def _kind(value: Any) -> str:
    if isinstance(value, tuple):
        return "a list of strings"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int):
        return "a whole number >= 0"
    return "a string"


@functools.cache
def presets() -> Mapping[str, Provider]:
    """The shipped presets, by name."""
    text = resources.files("mailvault.net").joinpath("providers.toml").read_text(encoding="utf-8")
    out: dict[str, Provider] = {}
    for name, table in tomllib.loads(text).items():
        out[name] = Provider(name).override(table, f"providers.toml: {name}.")
    return out


def registry(overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Provider]:
    """Presets with a config's ``[oauth2_providers.NAME]`` tables applied (new names are new providers)."""
    out = dict(presets())
    for name, table in (overrides or {}).items():
        values = dict(table)
        based_on = values.pop("preset", None)
        if based_on is not None:  # a new provider starting from a preset's fields
            if not isinstance(based_on, str) or based_on not in presets():
                known = ", ".join(sorted(presets()))
                raise ConfigError(
                    f"oauth2_providers.{name}.preset: expected one of {known}, got {based_on!r}"
                )
            base = dataclasses.replace(presets()[based_on], name=name)
        else:
            base = out.get(name) or Provider(name, title=name, auth=("oauth2",))
        out[name] = base.override(values, f"oauth2_providers.{name}.")
    return out


def split_address(spec: str) -> tuple[str, str, str] | None:
    """``PROVIDER[+pop3]:ADDRESS`` -> (provider, protocol, address), or None for anything else."""
    if "://" in spec or ":" not in spec:
        return None
    head, _, address = spec.partition(":")
    name, _, proto = head.partition("+")
    name = name.strip().lower()
    proto = proto.strip().lower() or "imap"
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        return None
    return name, proto, address.strip()


def resolve_address(spec: str, providers: Mapping[str, Provider] | None = None) -> tuple[Provider, str, str]:
    """``gmail:me@gmail.com`` -> (provider, protocol, address); a one-line ConfigError otherwise."""
    parts = split_address(spec)
    if parts is None:
        raise ConfigError(f"bad account {spec!r}: expected PROVIDER:ADDRESS (e.g. gmail:me@gmail.com)")
    name, proto, address = parts
    table = providers if providers is not None else presets()
    if name not in table:
        raise ConfigError(f"unknown mail provider {name!r} in {spec!r} (known: {', '.join(sorted(table))})")
    if proto not in ("imap", "pop3"):
        raise ConfigError(f"bad account {spec!r}: use PROVIDER:ADDRESS or PROVIDER+pop3:ADDRESS")
    if not address or any(c.isspace() for c in address) or "/" in address:
        raise ConfigError(f"bad account {spec!r}: expected an address after {name}:")
    return table[name], proto, address


def apply_limits(
    provider: Provider | None, upload_mb_per_day: int | None, connections: int | None
) -> tuple[int | None, int | None]:
    """A provider's limits as defaults and caps: its upload budget when none is given, and no more
    parallel connections than it allows."""
    if provider is None:
        return upload_mb_per_day, connections
    if upload_mb_per_day is None and provider.upload_mb_per_day:
        upload_mb_per_day = provider.upload_mb_per_day
    if connections is not None and provider.max_connections:
        connections = min(connections, provider.max_connections)
    return upload_mb_per_day, connections


__all__ = ["Provider", "apply_limits", "presets", "registry", "resolve_address", "split_address"]
