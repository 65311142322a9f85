"""App-only grants against the test IdP: Microsoft client credentials with a certificate (a signed
client assertion with ``x5t``) and a Google service account (RFC 7523 JWT bearer, ``sub`` = mailbox).
The IdP checks the signatures with the public keys registered for them."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from mailvault.auth import oauth
from mailvault.auth.tokens import TokenSource
from mailvault.errors import ConfigError
from mailvault.net.providers import Provider
from tests.servers.oauth2 import IntrospectionServer


@pytest.fixture
def server() -> Iterator[IntrospectionServer]:
    with IntrospectionServer() as srv:
        yield srv


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _private_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _provider(server: IntrospectionServer, **kw: object) -> Provider:
    fields: dict[str, object] = {"app_scopes": ("https://outlook.office365.com/.default",), **kw}
    return dataclasses.replace(
        Provider("app", auth=("oauth2",)),
        token_url=f"{server.base_url}/token",
        **fields,  # type: ignore[arg-type]
    )


def test_microsoft_client_certificate(server: IntrospectionServer, tmp_path: Path) -> None:
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mailvault app")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256())
    )  # fmt: skip
    pem = tmp_path / "app.pem"
    pem.write_bytes(_private_pem(key) + cert.public_bytes(serialization.Encoding.PEM))
    server.idp.register_client("cert-app", secret="not-used", public_key=_public_pem(key))
    server.idp.app_user = "alice@contoso.com"
    provider = _provider(
        server, client_id="cert-app", grant="client_credentials", client_certificate_file=str(pem)
    )
    source = TokenSource(None, provider, "alice@contoso.com", "mailvault login alice")
    token = source().decode()
    assert server.user_of(token) == "alice@contoso.com"
    header = server.idp.assertion_headers[-1]
    assert header["alg"] == "RS256" and header["x5t"]  # the certificate's SHA-1 thumbprint
    assert source().decode() == token  # cached while valid

    other = tmp_path / "other.pem"  # a key the IdP does not know
    other.write_bytes(_private_pem(_key()) + cert.public_bytes(serialization.Encoding.PEM))
    bad = dataclasses.replace(provider, client_certificate_file=str(other))
    with pytest.raises(oauth.OAuthFailure, match="invalid_client"):
        oauth.app_token(bad, "alice@contoso.com")
    nocert = tmp_path / "nocert.pem"
    nocert.write_bytes(_private_pem(key))
    with pytest.raises(ConfigError, match="no PEM certificate"):
        oauth.app_token(dataclasses.replace(provider, client_certificate_file=str(nocert)), "x")


def test_google_service_account_jwt_bearer(server: IntrospectionServer, tmp_path: Path) -> None:
    key = _key()
    email = "backup@project.iam.gserviceaccount.com"
    server.idp.register_service_account(email, _public_pem(key))
    sa = tmp_path / "sa.json"
    sa.write_text(
        json.dumps(
            {
                "type": "service_account",
                "client_email": email,
                "private_key": _private_pem(key).decode(),
                "token_uri": f"{server.base_url}/token",
            }
        )
    )
    provider = _provider(
        server, grant="jwt_bearer", service_account_file=str(sa), app_scopes=("https://mail.google.com/",)
    )
    token = TokenSource(None, provider, "boss@example.com", "mailvault login boss")().decode()
    assert server.user_of(token) == "boss@example.com"  # domain-wide delegation: acts as the mailbox
    assert server.idp.count("urn:ietf:params:oauth:grant-type:jwt-bearer") == 1

    forged = tmp_path / "forged.json"
    forged.write_text(
        sa.read_text().replace(
            json.dumps(_private_pem(key).decode()), json.dumps(_private_pem(_key()).decode())
        )
    )
    with pytest.raises(oauth.OAuthFailure, match="invalid_grant"):
        oauth.app_token(dataclasses.replace(provider, service_account_file=str(forged)), "boss@example.com")
    broken = tmp_path / "broken.json"
    broken.write_text("{}")
    with pytest.raises(ConfigError, match="not a service account JSON key"):
        oauth.app_token(dataclasses.replace(provider, service_account_file=str(broken)), "boss@example.com")
