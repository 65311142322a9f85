"""Provider presets as data, ``PROVIDER:ADDRESS`` wherever a URL goes, config overrides, `accounts`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mailvault.config import load_config
from mailvault.errors import ConfigError
from mailvault.net.providers import presets, registry
from mailvault.net.session import parse_url
from tests.common import assert_one_line_error, mv

PRESETS = ("gmail", "outlook", "m365", "yahoo", "aol", "icloud", "fastmail", "gmx", "zoho", "proton")


def test_every_preset_is_shipped_and_complete() -> None:
    table = presets()
    assert set(PRESETS) <= set(table)
    for name in PRESETS:
        p = table[name]
        scheme, host, port = p.server("imap")
        assert host and port > 0 and scheme in ("imap", "imaps")
        assert p.auth and p.hints, name
        if "oauth2" in p.auth:
            assert p.authorize_url.startswith("https://") and p.token_url.startswith("https://")
    assert table["gmail"].scopes == ("https://mail.google.com/",)
    assert table["gmail"].max_connections == 15 and table["gmail"].device_grant is False
    assert set(table["outlook"].scopes) == {
        "https://outlook.office.com/IMAP.AccessAsUser.All",
        "https://outlook.office.com/POP.AccessAsUser.All",
        "offline_access",
    }
    assert table["m365"].app_scopes == ("https://outlook.office365.com/.default",)
    assert table["proton"].server("imap") == ("imap", "127.0.0.1", 1143)  # STARTTLS on the Bridge


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ("gmail:me@gmail.com", ("imaps", "me@gmail.com", "imap.gmail.com", 993, "gmail")),
        ("outlook:me@contoso.com", ("imaps", "me@contoso.com", "outlook.office365.com", 993, "outlook")),
        ("outlook+pop3:me@contoso.com", ("pop3s", "me@contoso.com", "outlook.office365.com", 995, "outlook")),
        ("icloud:me@icloud.com", ("imaps", "me@icloud.com", "imap.mail.me.com", 993, "icloud")),
        ("imaps://u@h:1000", ("imaps", "u", "h", 1000, "")),
    ],
)
def test_parse_url_resolves_provider_addresses(spec: str, want: tuple[object, ...]) -> None:
    ep = parse_url(spec)
    assert (ep.scheme, ep.user, ep.host, ep.port, ep.provider) == want


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("nosuch:me@x.org", "unknown mail provider 'nosuch'"),
        ("gmail:", "expected an address"),
        ("gmail+smtp:me@gmail.com", "PROVIDER+pop3:ADDRESS"),
        ("icloud+pop3:me@icloud.com", "no POP3 server"),
    ],
)
def test_bad_provider_addresses(spec: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        parse_url(spec)
    assert needle in str(info.value)


def test_overrides_and_new_providers() -> None:
    reg = registry({"gmail": {"client_id": "abc", "max_connections": 5}, "corp": {"imap_host": "mail.corp"}})
    assert reg["gmail"].client_id == "abc" and reg["gmail"].max_connections == 5
    assert reg["gmail"].imap_host == "imap.gmail.com"  # untouched fields keep the preset
    assert parse_url("corp:me@corp", reg).host == "mail.corp"
    with pytest.raises(ConfigError, match="unknown provider field"):
        registry({"gmail": {"imap_hots": "x"}})
    with pytest.raises(ConfigError, match="expected a whole number"):
        registry({"gmail": {"imap_port": "993"}})


def test_accounts_json_shows_preset_host_port_and_auth() -> None:
    """Must show: gmail:me@gmail.com / outlook:me@contoso.com resolve to the preset host, port, auth."""
    proc = mv("accounts", "gmail:me@gmail.com", "outlook:me@contoso.com", "--json", "--no-tokens")
    rows = {r["account"]: r for r in json.loads(proc.stdout)}
    g, o = rows["gmail:me@gmail.com"], rows["outlook:me@contoso.com"]
    assert (g["host"], g["port"], g["scheme"], g["auth"], g["user"]) == (
        "imap.gmail.com", 993, "imaps", "oauth2", "me@gmail.com"
    )  # fmt: skip
    assert g["max_connections"] == 15 and g["scopes"] == ["https://mail.google.com/"]
    assert (o["host"], o["port"], o["scheme"], o["auth"]) == ("outlook.office365.com", 993, "imaps", "oauth2")
    assert "https://outlook.office.com/IMAP.AccessAsUser.All" in o["scopes"]
    text = mv("accounts", "gmail:me@gmail.com", "--no-tokens").stdout
    assert "imaps://imap.gmail.com:993" in text and "oauth2 (gmail)" in text


def _config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[vaults.v]\npath = "{tmp_path / "vault"}"\n\n' + body, encoding="utf-8")
    return path


def test_config_provider_url_and_overrides(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        '[oauth2_providers.gmail]\nclient_id = "my-client.apps.googleusercontent.com"\n'
        'client_secret_env = "GMAIL_SECRET"\n\n'
        '[accounts.me]\nurl = "gmail:me@gmail.com"\n\n'
        '[accounts.app]\nurl = "yahoo:me@yahoo.com"\npassword_env = "YAHOO_APP_PASSWORD"\n\n'
        '[jobs.b]\nkind = "backup"\naccounts = ["me", "app"]\nvault = "v"\n',
    )
    cfg = load_config(path)
    me = cfg.accounts["me"]
    assert (me.endpoint.host, me.endpoint.port, me.auth, me.oauth2_provider) == (
        "imap.gmail.com",
        993,
        "oauth2",
        "gmail",
    )
    assert cfg.providers["gmail"].client_id == "my-client.apps.googleusercontent.com"
    assert cfg.accounts["app"].auth == "password"
    assert "ok (1 vaults, 2 accounts, 1 jobs)" in mv("config", "check", path).stdout
    rows = json.loads(mv("accounts", "--config", path, "--json", "--no-tokens").stdout)
    assert [(r["account"], r["host"], r["auth"]) for r in rows] == [
        ("me", "imap.gmail.com", "oauth2"),
        ("app", "imap.mail.yahoo.com", "password"),
    ]


@pytest.mark.parametrize(
    ("body", "line", "needle"),
    [
        ('[oauth2_providers.gmail]\nclient_secret = "s3cret"\n', 5, "use client_secret_env"),
        ("[oauth2_providers.gmail]\nscopes = 5\n", 5, "oauth2_providers.gmail.scopes: "),
        ('[accounts.a]\nurl = "imaps://a@h"\nauth = "oauth2"\n', 6, "needs oauth2_provider"),
        (
            '[accounts.a]\nurl = "imaps://a@h"\nauth = "oauth2"\noauth2_provider = "nope"\n',
            7,
            "no such provider",
        ),
        (
            '[accounts.a]\nurl = "icloud:a@icloud.com"\nauth = "oauth2"\noauth2_provider = "icloud"\n',
            7,
            "no OAuth2",
        ),
        (
            '[accounts.a]\nurl = "gmail:a@gmail.com"\nauth = "oauth2"\npassword_env = "X"\n',
            7,
            "not with auth",
        ),
        ('[accounts.a]\nurl = "nosuch:a@b"\n', 5, "unknown mail provider"),
        (
            '[accounts.a]\nurl = "gmail:a@gmail.com"\ntoken_store = "file"\n',
            6,
            "expected one of vault, keyring",
        ),
    ],
)
def test_config_check_names_the_line(tmp_path: Path, body: str, line: int, needle: str) -> None:
    path = _config(tmp_path, body)
    proc = mv("config", "check", path, code=None)
    err = assert_one_line_error(proc, 2, needle)
    assert f"{path}:{line}:" in err
    assert "s3cret" not in err


def test_google_refuses_the_device_flow(tmp_path: Path, vault: Path) -> None:
    proc = mv("login", "gmail:me@gmail.com", "--device", "--vault", vault, "--client-id", "x", code=None)
    assert_one_line_error(proc, 2, "Google does not allow the device flow for mail scopes")


def test_login_without_client_id_explains_registration(vault: Path) -> None:
    proc = mv("login", "outlook:me@contoso.com", "--vault", vault, "--no-browser", code=None)
    assert_one_line_error(proc, 2, "no client_id", "register your own OAuth client", "--client-id")


def test_password_only_provider_has_no_login(vault: Path) -> None:
    proc = mv("login", "icloud:me@icloud.com", "--vault", vault, code=None)
    assert_one_line_error(proc, 2, "does not sign in with OAuth2")


def test_a_new_provider_based_on_a_preset(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        '[oauth2_providers.workspace]\npreset = "gmail"\ngrant = "jwt_bearer"\n'
        'service_account_file = "/etc/mailvault/sa.json"\n\n'
        '[accounts.boss]\nurl = "workspace:boss@example.com"\n',
    )
    cfg = load_config(path)
    ws = cfg.providers["workspace"]
    assert (ws.imap_host, ws.grant, ws.scopes) == (
        "imap.gmail.com",
        "jwt_bearer",
        ("https://mail.google.com/",),
    )
    assert cfg.providers["gmail"].grant == "authorization_code"  # the preset itself is unchanged
    assert cfg.accounts["boss"].auth == "oauth2" and cfg.accounts["boss"].oauth2_provider == "workspace"
    bad = _config(tmp_path, '[oauth2_providers.w]\npreset = "nope"\n')
    assert_one_line_error(mv("config", "check", bad, code=None), 2, "preset: expected one of")


def test_tokens_are_never_stored_in_an_unencrypted_vault(tmp_path: Path) -> None:
    from mailvault.auth.store import VaultTokenStore
    from mailvault.auth.tokens import record_from_token
    from mailvault.net.providers import Provider
    from mailvault.storage.local import LocalBackend
    from mailvault.vault.crypto import PlainSealer

    store = VaultTokenStore(LocalBackend(str(tmp_path / "plain")), PlainSealer())
    rec = record_from_token(
        Provider("x", token_url="https://i/t"), "me", {"access_token": "AT"}, "authorization_code"
    )
    with pytest.raises(ConfigError, match="not encrypted"):
        store.save(rec)
    assert not list((tmp_path / "plain").rglob("*")) or not any(
        p.is_file() for p in (tmp_path / "plain").rglob("*")
    )


def test_provider_limits_are_defaults_and_caps() -> None:
    from mailvault.net.providers import apply_limits

    gmail = presets()["gmail"]
    assert apply_limits(gmail, None, 40) == (500, 15)  # Gmail's budget, and at most 15 connections
    assert apply_limits(gmail, 100, 2) == (100, 2)  # what the user asked, within the caps
    assert apply_limits(presets()["fastmail"], None, 8) == (None, 8)  # no limits known: unchanged
    assert apply_limits(None, None, None) == (None, None)
