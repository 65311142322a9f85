"""Built-in OAuth2 (`mailvault login`, refresh, device flow, app-only) against the test IdP behind a
real Dovecot (oauth2 passdb + RFC 7662 introspection). Every mailvault run is a real process."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.oauth2.conftest import SEEDED
from tests.oauth2.helpers import (
    LoginProcess,
    Setup,
    authorize_redirect,
    get,
    login_via_browser,
    new_client,
    write_config,
)
from tests.servers.dovecot import Dovecot
from tests.servers.idp import TestIdP

pytestmark = pytest.mark.dovecot


@pytest.fixture
def idp(oauth2_dovecot: Dovecot) -> Iterator[TestIdP]:
    assert oauth2_dovecot.oauth2 is not None
    idp = oauth2_dovecot.oauth2.idp
    saved = (
        idp.access_ttl,
        idp.rotate,
        idp.slow_down_once,
        idp.consent_error,
        idp.default_user,
        idp.app_user,
    )
    yield idp
    (idp.access_ttl, idp.rotate, idp.slow_down_once, idp.consent_error, idp.default_user, idp.app_user) = (
        saved
    )


def make_setup(server: Dovecot, idp: TestIdP, user: str, vault: Path, tmp: Path, confidential: bool) -> Setup:
    client_id, secret = new_client(idp, confidential)
    return Setup(
        server,
        idp,
        user,
        vault,
        tmp / "config.toml",
        client_id,
        secret_env="MV_TEST_CLIENT_SECRET" if confidential else "",
        secret=secret,
        hook_file=tmp / "hook-env.txt",
    )


def snapshot_names(vault: Path) -> set[str]:
    return {str(p.relative_to(vault)) for p in vault.rglob("*") if p.is_file() and not p.name.startswith(".")}


def mail_objects(vault: Path) -> set[str]:
    """Vault objects a backup writes (runs/ records and tokens/ excluded)."""
    return {n for n in snapshot_names(vault) if n.split("/")[0] in ("data", "index", "snapshots", "dicts")}


def run_json(s: Setup, code: int = 0) -> dict:
    proc = s.mv("run", "--config", s.config, "--json", code=code)
    assert proc.returncode == code, proc.stderr + proc.stdout
    return json.loads(proc.stdout)


@pytest.mark.parametrize("scheme", ["imaps", "pop3s"])
def test_login_run_refresh_revoke(
    oauth2_dovecot: Dovecot, idp: TestIdP, oauth2_source: str, vault: Path, tmp_path: Path, scheme: str
) -> None:
    s = make_setup(oauth2_dovecot, idp, oauth2_source, vault, tmp_path, confidential=True)
    write_config(s, scheme=scheme)
    idp.access_ttl = 3  # access tokens that expire in seconds
    outputs: list[str] = []

    # login alice --config F --no-browser: the URL is on stderr on a line of its own; following it
    # (the IdP auto-approves) completes the login.
    code, out, err = login_via_browser(s)
    outputs += [out, err]
    assert code == 0, err
    assert "signed in" in out and "with a refresh token" in out
    assert idp.pkce_methods[-1] == "S256"
    assert idp.count("authorization_code") >= 1
    first_refresh = idp.refresh_tokens_of(oauth2_source)
    assert len(first_refresh) >= 1

    accounts = s.mv("accounts", "--config", s.config, "--json", code=0)
    outputs.append(accounts.stdout)
    row = json.loads(accounts.stdout)[0]
    assert row["auth"] == "oauth2" and row["provider"] == "testidp"
    assert row["token"]["state"] in ("valid", "expired, refreshes on next use")

    # run: backs alice up with the token (XOAUTH2) from the vault
    refreshes = idp.count("refresh_token")
    xoauth2_logins = oauth2_dovecot.log_text().count("method=XOAUTH2")
    first = run_json(s)
    assert oauth2_dovecot.log_text().count("method=XOAUTH2") > xoauth2_logins  # over TLS, with XOAUTH2
    outputs.append(json.dumps(first))
    (r,) = first["results"]
    want = sum(SEEDED.values()) if scheme == "imaps" else SEEDED["INBOX"]
    assert r["status"] == "ok" and r["messages"] == want, r

    # later: the access token has expired; the run refreshes it (rotation) and succeeds
    time.sleep(3.2)
    before = idp.count("refresh_token")
    second = run_json(s)
    outputs.append(json.dumps(second))
    assert second["results"][0]["status"] == "ok", second
    assert idp.count("refresh_token") > before >= refreshes
    now_refresh = idp.refresh_tokens_of(oauth2_source)
    assert not set(now_refresh) & set(first_refresh)  # rotated: the first refresh token is dead
    state = json.loads(s.mv("accounts", "--config", s.config, "--json", code=0).stdout)[0]["token"]
    assert state["refresh_token"] is True

    # the refresh token is revoked: one line "sign in again", exit 2, no mail objects written
    idp.revoke_refresh_tokens(oauth2_source)
    time.sleep(3.2)
    objects = mail_objects(vault)
    bad = s.mv("run", "--config", s.config, code=None)
    outputs += [bad.stdout, bad.stderr]
    assert bad.returncode == 2, bad.stdout + bad.stderr
    lines = [x for x in bad.stderr.splitlines() if x]
    assert len(lines) == 1 and lines[0].startswith("mailvault: "), bad.stderr
    assert "sign in again with `mailvault login alice --config" in lines[0]
    assert mail_objects(vault) == objects

    # No token or client secret anywhere: outputs, --json, hook environment, vault files.
    secrets_ = [s.secret, *first_refresh, *now_refresh]
    assert oauth2_dovecot.oauth2 is not None
    secrets_ += [
        t for t in oauth2_dovecot.oauth2.lookups if oauth2_dovecot.oauth2.user_of(t) == oauth2_source
    ]
    assert len(secrets_) >= 4
    hook_env = s.hook_file.read_text() if s.hook_file and s.hook_file.exists() else ""
    assert "MAILVAULT_STATUS=ok" in hook_env and "MAILVAULT_STATUS=failed" in hook_env
    blobs = [o.encode() for o in outputs] + [hook_env.encode()]
    blobs += [p.read_bytes() for p in vault.rglob("*") if p.is_file()]
    for secret in secrets_:
        assert secret, secrets_
        for blob in blobs:
            assert secret.encode() not in blob


def test_wrong_state_is_refused_and_nothing_saved(
    oauth2_dovecot: Dovecot, idp: TestIdP, oauth2_source: str, vault: Path, tmp_path: Path
) -> None:
    s = make_setup(oauth2_dovecot, idp, oauth2_source, vault, tmp_path, confidential=False)
    write_config(s)
    lp = LoginProcess(s, "alice", "--config", s.config, "--no-browser")
    url = lp.wait_line(lambda x: x.startswith(f"{s.base}/authorize?"))
    q = parse_qs(urlsplit(url).query)
    assert q["code_challenge_method"] == ["S256"] and len(q["code_challenge"][0]) >= 43
    assert len(q["state"][0]) >= 16
    location = authorize_redirect(url)
    parts = urlsplit(location)
    params = {k: v[0] for k, v in parse_qs(parts.query).items()}
    params["state"] = "forged-" + params["state"][:8]
    status, _ = get(f"{parts.scheme}://{parts.netloc}{parts.path}?{urlencode(params)}")
    assert status == 400
    code, out, err = lp.finish()
    assert code == 2 and out == ""
    assert err.splitlines()[-1].startswith("mailvault: ") and "state does not match" in err
    assert idp.count("authorization_code") == 0 or params["code"] not in str(idp.grants)
    state = json.loads(s.mv("accounts", "--config", s.config, "--json", code=0).stdout)[0]["token"]
    assert state["state"] == "needs login"


def test_pkce_is_checked_by_the_idp(
    oauth2_dovecot: Dovecot, idp: TestIdP, oauth2_source: str, vault: Path, tmp_path: Path
) -> None:
    """The IdP refuses an authorization without S256, and a code exchanged with a wrong verifier."""
    client_id, _ = new_client(idp)
    redirect = "http://127.0.0.1:9/"
    plain = idp.authorize(
        {"client_id": client_id, "redirect_uri": redirect, "response_type": "code", "state": "x",
         "code_challenge": "abc", "code_challenge_method": "plain"}
    )  # fmt: skip
    assert "error=invalid_request" in plain[1]["Location"]
    ok = idp.authorize(
        {"client_id": client_id, "redirect_uri": redirect, "response_type": "code", "state": "x",
         "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "code_challenge_method": "S256"}
    )  # fmt: skip
    code = parse_qs(urlsplit(ok[1]["Location"]).query)["code"][0]
    status, body = idp.token(
        {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect,
         "client_id": client_id, "code_verifier": "not-the-verifier-" + "x" * 40},
        None,
    )  # fmt: skip
    assert status == 400 and body["error"] == "invalid_grant"


def test_device_flow_with_slow_down(
    oauth2_dovecot: Dovecot, idp: TestIdP, oauth2_source: str, vault: Path, tmp_path: Path
) -> None:
    s = make_setup(oauth2_dovecot, idp, oauth2_source, vault, tmp_path, confidential=False)
    write_config(s, hooks=False)
    idp.default_user = oauth2_source
    idp.slow_down_once = True  # the first poll is told to slow down (+5 s)
    lp = LoginProcess(s, "alice", "--config", s.config, "--device")
    lp.wait_line(lambda x: "enter the code" in x)
    complete = lp.wait_line(lambda x: x.startswith(f"{s.base}/device?user_code="))
    time.sleep(1.5)  # let it poll at least once before approval: authorization_pending / slow_down
    status, _ = get(complete)
    assert status == 200
    code, _, err = lp.finish(timeout=60)
    assert code == 0, err
    polls = idp.grants.count("urn:ietf:params:oauth:grant-type:device_code")
    assert polls >= 2  # slow_down, then success (pending polls in between)
    result = run_json(s)
    assert result["results"][0]["status"] == "ok"
    assert result["results"][0]["messages"] == sum(SEEDED.values())


def test_oauthbearer_when_configured(
    oauth2_dovecot: Dovecot, idp: TestIdP, oauth2_source: str, vault: Path, tmp_path: Path
) -> None:
    s = make_setup(oauth2_dovecot, idp, oauth2_source, vault, tmp_path, confidential=False)
    write_config(s, sasl="oauthbearer", hooks=False)
    # without --no-browser on a machine without a display: the URL is printed all the same
    s.extra_env = {"DISPLAY": "", "WAYLAND_DISPLAY": ""}
    lp = LoginProcess(s, "alice", "--config", s.config)
    assert get(lp.wait_line(lambda x: x.startswith(f"{s.base}/authorize?")))[0] == 200
    assert lp.finish()[0] == 0
    before = oauth2_dovecot.log_text().count("method=OAUTHBEARER")
    result = run_json(s)
    assert result["results"][0]["status"] == "ok", result
    assert result["results"][0]["messages"] == sum(SEEDED.values())
    assert oauth2_dovecot.log_text().count("method=OAUTHBEARER") > before  # Dovecot's login lines


def test_client_credentials_app_only(
    oauth2_dovecot: Dovecot, idp: TestIdP, oauth2_source: str, vault: Path, tmp_path: Path
) -> None:
    """Microsoft-style app-only access: client credentials with a secret; no user signs in."""
    s = make_setup(oauth2_dovecot, idp, oauth2_source, vault, tmp_path, confidential=True)
    write_config(s, grant="client_credentials", hooks=False)
    idp.app_user = oauth2_source
    proc = s.mv("login", "alice", "--config", s.config, code=0)
    assert "app-only access (client_credentials) works" in proc.stdout
    before = idp.count("client_credentials")
    result = run_json(s)
    assert result["results"][0]["status"] == "ok", result
    assert idp.count("client_credentials") > before
    assert not (vault / "tokens").exists()
    row = json.loads(s.mv("accounts", "--config", s.config, "--json", code=0).stdout)[0]
    assert row["token"]["state"].startswith("app-only")


def test_admin_approval_prints_the_consent_url(
    oauth2_dovecot: Dovecot, idp: TestIdP, oauth2_source: str, vault: Path, tmp_path: Path
) -> None:
    s = make_setup(oauth2_dovecot, idp, oauth2_source, vault, tmp_path, confidential=False)
    write_config(s, hooks=False)
    idp.consent_error = True
    code, out, err = login_via_browser(s, page_status=400)
    assert code == 2 and out == ""
    consent = f"{s.base}/adminconsent?client_id={s.client_id}"
    assert consent in err.splitlines(), err  # on a line of its own
    assert err.splitlines()[-1].startswith("mailvault: ") and "administrator" in err.splitlines()[-1]


def test_logout_forgets_the_tokens(
    oauth2_dovecot: Dovecot, idp: TestIdP, oauth2_source: str, vault: Path, tmp_path: Path
) -> None:
    s = make_setup(oauth2_dovecot, idp, oauth2_source, vault, tmp_path, confidential=False)
    write_config(s, hooks=False)
    assert login_via_browser(s)[0] == 0
    assert list((vault / "tokens").rglob("*"))
    proc = s.mv("logout", "alice", "--config", s.config, code=0)
    assert "tokens removed" in proc.stdout
    assert not [p for p in (vault / "tokens").rglob("*") if p.is_file()]
    bad = s.mv("run", "--config", s.config, code=2)
    assert "sign in again with `mailvault login alice" in bad.stderr


def test_missing_login_is_one_line(
    oauth2_dovecot: Dovecot, idp: TestIdP, oauth2_source: str, vault: Path, tmp_path: Path
) -> None:
    s = make_setup(oauth2_dovecot, idp, oauth2_source, vault, tmp_path, confidential=False)
    write_config(s, hooks=False)
    before = mail_objects(vault)
    proc = s.mv("run", "--config", s.config, code=2)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "no OAuth2 sign-in for" in lines[0] and "mailvault login alice" in lines[0]
    assert mail_objects(vault) == before


def test_provider_address_on_the_command_line(
    oauth2_dovecot: Dovecot,
    idp: TestIdP,
    oauth2_source: str,
    oauth2_empty_user: tuple[str, str],
    vault: Path,
    tmp_path: Path,
) -> None:
    """PROVIDER:ADDRESS works where a URL does: login, backup, restore --dry-run, migrate — the provider
    defined in the config ($MAILVAULT_CONFIG), the tokens in the vault."""
    server = oauth2_dovecot
    s = make_setup(server, idp, oauth2_source, vault, tmp_path, confidential=False)
    s.extra_provider = {"imap_host": server.host, "imap_port": server.imaps_port, "pop3_host": server.host,
                        "pop3_port": server.pop3s_port, "auth": ["oauth2"]}  # fmt: skip
    write_config(s, hooks=False)
    s.extra_env = {"MAILVAULT_CONFIG": str(s.config)}
    target = oauth2_empty_user[0]
    for user in (oauth2_source, target):
        lp = LoginProcess(s, f"testidp:{user}", "--vault", vault, "--no-browser")
        assert get(lp.wait_line(lambda x: x.startswith(f"{s.base}/authorize?")))[0] == 200
        code, out, err = lp.finish()
        assert code == 0 and f"signed in {user} (testidp)" in out, err
    ca = ["--ca-file", server.ca_file]
    backup = json.loads(s.mv("backup", vault, f"testidp:{oauth2_source}", *ca, "--json", code=0).stdout)
    assert backup["messages"] == sum(SEEDED.values())
    pop = json.loads(s.mv("backup", vault, f"testidp+pop3:{oauth2_source}", *ca, "--json", code=0).stdout)
    assert pop["messages"] == SEEDED["INBOX"]
    plan = s.mv(
        "restore", vault, f"testidp:{target}", "--account", backup["account"], "--dry-run", *ca, code=0
    )
    assert f"imaps://{target}@{server.host}:{server.imaps_port}" in plan.stdout
    migrated = json.loads(
        s.mv(
            "migrate",
            f"testidp:{oauth2_source}",
            f"testidp:{target}",
            "--vault",
            vault,
            *ca,
            "--json",
            code=0,
        ).stdout
    )
    assert migrated["restore"]["uploaded"] == sum(SEEDED.values())
    rows = json.loads(s.mv("accounts", f"testidp:{target}", "--vault", vault, "--json", code=0).stdout)
    assert rows[0]["host"] == server.host and rows[0]["port"] == server.imaps_port
    assert rows[0]["token"]["state"] == "valid"
    # A config job's target may be PROVIDER:ADDRESS too: its tokens come from the job's vault. The
    # account alice (imaps://SOURCE@…, provider testidp) shares the sign-in of testidp:SOURCE.
    with s.config.open("a", encoding="utf-8") as f:
        f.write(f'\n[jobs.putback]\nkind = "restore"\naccounts = ["alice"]\nvault = "main"\ntarget = "testidp:{target}"\n'
                f"target_ca_file = {json.dumps(str(server.ca_file))}\n")  # fmt: skip
    nightly = run_json(s)
    assert {r["job"]: r["status"] for r in nightly["results"]} == {"nightly": "ok", "putback": "ok"}, nightly


@pytest.mark.parametrize("scheme", ["pop3s", "imaps"])
def test_long_token_two_step_auth(
    oauth2_dovecot: Dovecot, oauth2_source: str, vault: Path, scheme: str
) -> None:
    """Microsoft's tokens are over 2000 characters: POP3 sends `AUTH XOAUTH2`, then the response on
    a line of its own (a one-line AUTH would exceed the 255-octet command limit)."""
    import secrets

    token = oauth2_dovecot.issue_oauth2_token(oauth2_source, "mvtok-" + secrets.token_urlsafe(2400))
    assert len(token) > 3000
    port = {"imaps": oauth2_dovecot.imaps_port, "pop3s": oauth2_dovecot.pop3s_port}[scheme]
    from tests import common

    proc = common.mv(
        "backup", vault, f"{scheme}://{oauth2_source}@{oauth2_dovecot.host}:{port}",
        "--oauth2-token-command", f"printf {token}", "--ca-file", oauth2_dovecot.ca_file, "--json",
    )  # fmt: skip
    assert json.loads(proc.stdout)["messages"] == (
        SEEDED["INBOX"] if scheme == "pop3s" else sum(SEEDED.values())
    )
    assert oauth2_dovecot.oauth2 is not None and oauth2_dovecot.oauth2.lookup_count(token) >= 1


def test_revoked_sign_in_leaves_the_vault_untouched(
    oauth2_dovecot: Dovecot, idp: TestIdP, oauth2_source: str, vault: Path, tmp_path: Path
) -> None:
    """`backup VAULT PROVIDER:ADDRESS` with a revoked refresh token: one line, exit 2, not one vault
    file added, removed or changed."""
    from tests.common import assert_one_line_error, vault_files

    server = oauth2_dovecot
    s = make_setup(server, idp, oauth2_source, vault, tmp_path, confidential=False)
    s.extra_provider = {"imap_host": server.host, "imap_port": server.imaps_port, "auth": ["oauth2"]}
    write_config(s, hooks=False)
    s.extra_env = {"MAILVAULT_CONFIG": str(s.config)}
    idp.access_ttl = 2
    lp = LoginProcess(s, f"testidp:{oauth2_source}", "--vault", vault, "--no-browser")
    assert get(lp.wait_line(lambda x: x.startswith(f"{s.base}/authorize?")))[0] == 200
    assert lp.finish()[0] == 0
    idp.revoke_refresh_tokens(oauth2_source)
    time.sleep(2.2)
    before = vault_files(vault)
    proc = s.mv("backup", vault, f"testidp:{oauth2_source}", "--ca-file", server.ca_file, code=None)
    assert_one_line_error(
        proc, 2, "invalid_grant", f"sign in again with `mailvault login testidp:{oauth2_source}", "--vault"
    )
    assert vault_files(vault) == before
