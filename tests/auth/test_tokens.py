"""Token store (sealed, versioned, newest wins) and refresh, against the test IdP in this process."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailvault.auth.store import AD_TOKEN, KeyringTokenStore, TokenRecord, VaultTokenStore
from mailvault.auth.tokens import TokenSource, record_from_token
from mailvault.errors import LoginRequired
from mailvault.net.providers import Provider, presets
from mailvault.storage.local import LocalBackend
from mailvault.vault.crypto import AeadSealer, new_master_key
from tests.servers.oauth2 import IntrospectionServer


@pytest.fixture
def idp_server() -> Iterator[IntrospectionServer]:
    with IntrospectionServer() as server:
        yield server


@pytest.fixture
def store(tmp_path: Path) -> VaultTokenStore:
    return VaultTokenStore(LocalBackend(str(tmp_path / "vault")), AeadSealer(new_master_key()))


def provider_for(server: IntrospectionServer, client_id: str, **kw: object) -> Provider:
    return dataclasses.replace(
        Provider("testidp", auth=("oauth2",)),
        authorize_url=f"{server.base_url}/authorize",
        token_url=f"{server.base_url}/token",
        scopes=("mail",),
        client_id=client_id,
        **kw,  # type: ignore[arg-type]
    )


def signed_in(
    server: IntrospectionServer, store: VaultTokenStore, provider: Provider, user: str
) -> TokenRecord:
    """A sign-in as `mailvault login` leaves it (the code grant itself is tested end to end elsewhere)."""
    token = server.idp._issue(user, provider.client_id, "mail")
    return store.save(record_from_token(provider, user, token, "authorization_code"))


def test_records_are_sealed_versioned_and_trimmed(store: VaultTokenStore, tmp_path: Path) -> None:
    p = Provider("x", token_url="https://idp.example/token", client_id="c")
    for i in range(6):
        rec = record_from_token(
            p, "me", {"access_token": f"AT-secret-{i}", "refresh_token": f"RT-{i}"}, "authorization_code"
        )
        store.save(rec)
    newest = store.load("x:me")
    assert newest is not None and newest.access_token == "AT-secret-5" and newest.generation == 6
    files = sorted(f for f in (tmp_path / "vault").rglob("*") if f.is_file())
    assert len(files) == 3  # the newest generations only
    assert all(f.parent.parent.name == "tokens" for f in files)
    for f in files:
        data = f.read_bytes()
        assert b"secret" not in data and b"RT-" not in data
        assert b"AT-secret" in store.sealer.open(data, AD_TOKEN)
    assert store.load("x:other") is None
    assert store.delete("x:me") and store.load("x:me") is None and not store.delete("x:me")


def test_two_writers_of_one_generation_one_wins(store: VaultTokenStore, tmp_path: Path) -> None:
    p = Provider("x", token_url="https://idp.example/token", client_id="c")
    store.save(record_from_token(p, "me", {"access_token": "first"}, "authorization_code"))
    other = VaultTokenStore(LocalBackend(str(tmp_path / "vault")), store.sealer)
    stale = other._names("x:me")
    store.save(record_from_token(p, "me", {"access_token": "machine-a"}, "authorization_code"))
    # machine B listed before A wrote generation 2, so it tries generation 2 too: it loses, and gets A's
    other._names = lambda key, _n=[stale]: _n.pop() if _n else VaultTokenStore._names(other, key)  # type: ignore[method-assign]
    result = other.save(record_from_token(p, "me", {"access_token": "machine-b"}, "authorization_code"))
    assert result.access_token == "machine-a" and result.generation == 2
    loaded = store.load("x:me")
    assert loaded is not None and loaded.access_token == "machine-a"


def test_refresh_before_expiry_with_rotation(idp_server: IntrospectionServer, store: VaultTokenStore) -> None:
    idp = idp_server.idp
    idp.register_client("cli")
    idp.access_ttl = 2
    provider = provider_for(idp_server, "cli")
    first = signed_in(idp_server, store, provider, "alice")
    source = TokenSource(store, provider, "alice", "mailvault login alice")
    assert source() == first.access_token.encode()  # still valid: no refresh
    assert idp.count("refresh_token") == 0
    time.sleep(1.7)  # less than 20 % of the lifetime left: refresh early
    token = source().decode()
    assert token != first.access_token and idp.count("refresh_token") == 1
    saved = store.load("alice" and "testidp:alice")
    assert saved is not None and saved.access_token == token and saved.generation == 2
    assert saved.refresh_token != first.refresh_token  # the rotated refresh token was saved at once
    assert idp_server.user_of(token) == "alice"


def test_threads_share_one_refresh(idp_server: IntrospectionServer, store: VaultTokenStore) -> None:
    idp = idp_server.idp
    idp.register_client("cli")
    idp.access_ttl = 1
    provider = provider_for(idp_server, "cli")
    signed_in(idp_server, store, provider, "bob")
    source = TokenSource(store, provider, "bob", "mailvault login bob")
    time.sleep(1.1)
    got: list[bytes] = []
    threads = [threading.Thread(target=lambda: got.append(source())) for _ in range(8)]
    idp.access_ttl = 3600
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 1 and idp.count("refresh_token") == 1


def test_shard_machines_refreshing_at_once(
    idp_server: IntrospectionServer, store: VaultTokenStore, tmp_path: Path
) -> None:
    """Two machines, one vault, rotating refresh tokens: the second one's refresh token is already
    dead (invalid_grant); it takes the first one's newer record instead of failing."""
    idp = idp_server.idp
    idp.register_client("cli")
    idp.access_ttl = 3
    provider = provider_for(idp_server, "cli")
    signed_in(idp_server, store, provider, "carol")
    machine_a = TokenSource(store, provider, "carol", "mailvault login carol")
    machine_b = TokenSource(
        VaultTokenStore(LocalBackend(str(tmp_path / "vault")), store.sealer),
        provider,
        "carol",
        "mailvault login carol",
    )
    machine_b()  # B holds generation 1 in memory
    stale = machine_b._record
    assert stale is not None and stale.generation == 1
    time.sleep(2.5)
    idp.access_ttl = 3600
    a = machine_a()  # A refreshes first: generation 2, the refresh token rotated
    # B refreshes at the same moment with generation 1's (now dead) refresh token: invalid_grant,
    # then it reads the store again and takes A's record instead of failing.
    b = machine_b._refresh(stale)
    assert b.access_token.encode() == a and b.generation == 2
    assert idp.count("refresh_token") == 2  # A's, and B's refused one
    newest = store.load("testidp:carol")
    assert newest is not None and newest.generation == 2
    # and the plain path: B's token expired, the store holds a newer one: no refresh at all
    assert machine_b.force_refresh() == a and idp.count("refresh_token") == 2
    assert idp_server.user_of(a.decode()) == "carol"


def test_revoked_refresh_token_says_sign_in_again(
    idp_server: IntrospectionServer, store: VaultTokenStore
) -> None:
    idp = idp_server.idp
    idp.register_client("cli")
    idp.access_ttl = 1
    gmail_like = provider_for(idp_server, "cli", invalid_grant_hint=presets()["gmail"].invalid_grant_hint)
    signed_in(idp_server, store, gmail_like, "dave")
    idp.revoke_refresh_tokens("dave")
    time.sleep(1.1)
    before = store._names("testidp:dave")
    with pytest.raises(LoginRequired) as info:
        TokenSource(store, gmail_like, "dave", "mailvault login dave --config c.toml")()
    msg = str(info.value)
    assert "sign in again with `mailvault login dave --config c.toml`" in msg
    assert "invalid_grant" in msg and "7 days" in msg and "\n" not in msg
    assert info.value.exit_code == 2
    assert store._names("testidp:dave") == before  # nothing written


def test_client_secret_is_sent_and_never_in_errors(
    idp_server: IntrospectionServer, store: VaultTokenStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    idp = idp_server.idp
    idp.register_client("conf", "right-secret-value")
    monkeypatch.setenv("MV_SECRET", "wrong-secret-value")
    provider = provider_for(idp_server, "conf", client_secret_env="MV_SECRET")
    signed_in(idp_server, store, provider, "erin")
    with pytest.raises(Exception) as info:
        TokenSource(store, provider, "erin", "mailvault login erin").force_refresh()
    assert "invalid_client" in str(info.value) and "secret-value" not in str(info.value)
    monkeypatch.setenv("MV_SECRET", "right-secret-value")
    token = TokenSource(store, provider, "erin", "mailvault login erin").force_refresh()
    assert idp_server.user_of(token.decode()) == "erin"
    assert "right-secret-value" in idp.client_secrets_seen


def test_keyring_store(monkeypatch: pytest.MonkeyPatch) -> None:
    import keyring
    from keyring.backend import KeyringBackend

    class Memory(KeyringBackend):
        priority = 1  # type: ignore[assignment]

        def __init__(self) -> None:
            super().__init__()
            self.items: dict[tuple[str, str], str] = {}

        def get_password(self, service: str, username: str) -> str | None:
            return self.items.get((service, username))

        def set_password(self, service: str, username: str, password: str) -> None:
            self.items[(service, username)] = password

        def delete_password(self, service: str, username: str) -> None:
            del self.items[(service, username)]

    old = keyring.get_keyring()
    mem = Memory()
    keyring.set_keyring(mem)
    try:
        kr = KeyringTokenStore()
        p = Provider("x", token_url="https://idp.example/token", client_id="c")
        kr.save(
            record_from_token(p, "me", {"access_token": "kt1", "refresh_token": "kr1"}, "authorization_code")
        )
        kr.save(
            record_from_token(p, "me", {"access_token": "kt2", "refresh_token": "kr2"}, "authorization_code")
        )
        rec = kr.load("x:me")
        assert rec is not None and rec.access_token == "kt2" and rec.refresh_token == "kr2"
        assert list(mem.items) == [("mailvault", "x:me")]
        assert kr.delete("x:me") and kr.load("x:me") is None
    finally:
        keyring.set_keyring(old)
