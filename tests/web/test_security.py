"""``mailvault serve`` over real HTTP (httpx, no browser): who gets in, what each response allows."""

from __future__ import annotations

import hashlib
import re
import socket

import httpx
import pytest

from tests.common import invoke
from tests.web.helpers import CID_PNG, Served, hostile_message


def login(s: Served) -> httpx.Client:
    client = httpx.Client(base_url=s.base, follow_redirects=False, timeout=30)
    r = client.get(f"/?token={s.token}")
    assert r.status_code == 303, r.text
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict"), cookie
    return client


def csrf_of(page: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', page)
    assert m, "no CSRF field on the page"
    return m.group(1)


def test_listens_on_loopback_only(served: Served) -> None:
    assert served.base.startswith("http://127.0.0.1:")
    # Not reachable through another local address of this machine (if it has one).
    others = {ai[4][0] for ai in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)} - {
        "127.0.0.1"
    }
    for addr in others:
        with pytest.raises(OSError):
            socket.create_connection((addr, served.port), timeout=2).close()


def test_no_token_no_entry(served: Served) -> None:
    for path in ("/", "/account/alice", "/search?q=invoice", "/static/app.js", f"/message/{'0' * 64}/eml"):
        r = httpx.get(served.base + path, timeout=30)
        assert r.status_code == 403, (path, r.status_code)
    assert httpx.get(served.base + "/?token=wrong", timeout=30).status_code == 403


def test_token_works_once(served: Served) -> None:
    client = login(served)
    assert client.get("/").status_code == 200
    again = httpx.get(f"{served.base}/?token={served.token}", timeout=30)
    assert again.status_code == 403


def test_foreign_host_refused_even_with_session(served: Served) -> None:
    client = login(served)
    r = client.get("/", headers={"Host": f"evil.example:{served.port}"})
    assert r.status_code == 403
    r = client.get("/", headers={"Host": f"localhost:{served.port}"})
    assert r.status_code == 200


def test_post_needs_origin_and_csrf(served: Served, tmp_path) -> None:
    client = login(served)
    page = client.get("/snapshot/" + _first_snapshot(client) + "/folder/0").text
    token = csrf_of(page)
    form = {"csrf": token, "item": _first_item(page), "dest": str(tmp_path / "out"), "format": "eml"}
    assert client.post("/export", data=form).status_code == 403  # no Origin
    assert client.post("/export", data=form, headers={"Origin": "http://evil.example"}).status_code == 403
    bad = dict(form, csrf="forged")
    assert client.post("/export", data=bad, headers={"Origin": served.base}).status_code == 403
    assert not (tmp_path / "out").exists()
    ok = client.post("/export", data=form, headers={"Origin": served.base})
    assert ok.status_code == 303 and ok.headers["location"].startswith("/job/")


def _first_snapshot(client: httpx.Client) -> str:
    m = re.search(r'href="/snapshot/([0-9a-f]{64})"', client.get("/").text)
    assert m
    return m.group(1)


def _first_item(page: str) -> str:
    m = re.search(r'name="item" value="([^"]+)"', page)
    assert m
    return m.group(1)


def test_pages_and_bodies_carry_strict_csp(served: Served) -> None:
    client = login(served)
    r = client.get("/")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    blob = hashlib.sha256(hostile_message()).hexdigest()
    body = client.get(f"/message/{blob}/body")
    csp = body.headers["content-security-policy"]
    assert "script-src 'none'" in csp and "sandbox" in csp and "img-src 'self' data:" in csp
    text = body.text
    assert (
        "<script" not in text.lower() and "onerror" not in text.lower() and "javascript:" not in text.lower()
    )
    assert "198.51.100.7" not in text  # remote image replaced by a placeholder
    assert f"/message/{blob}/cid/logo%40example.org" in text
    remote = client.get(f"/message/{blob}/body?remote=1")
    assert "http://198.51.100.7/track.png" in remote.text
    assert "img-src 'self' data: http: https:" in remote.headers["content-security-policy"]


def test_downloads_are_exact(served: Served, web_vault, tmp_path) -> None:
    client = login(served)
    raw = hostile_message()
    blob = hashlib.sha256(raw).hexdigest()
    eml = client.get(f"/message/{blob}/eml")
    assert eml.status_code == 200 and eml.content == raw
    assert "attachment" in eml.headers["content-disposition"]
    page = client.get(f"/message/{blob}").text
    assert "report.pdf" in page
    att = client.get(f"/message/{blob}/attachment/1")  # numbered as `mailvault show` numbers them
    assert att.content == b"%PDF-1.4 fake report body\n"
    assert att.headers["content-type"] == "application/octet-stream"
    out = tmp_path / "att.bin"
    invoke("show", web_vault, blob[:10], "--attachment", "1", "--output", out)
    assert out.read_bytes() == att.content  # the UI and `mailvault show` number attachments alike
    img = client.get(f"/message/{blob}/cid/logo%40example.org")
    assert img.content == CID_PNG and img.headers["content-type"] == "image/png"
    assert client.get(f"/message/{'f' * 64}/eml").status_code == 404
    assert client.get("/message/not-a-blob/eml").status_code == 404
