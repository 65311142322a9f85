"""The web UI in a real browser: Debian's chromium driven by Playwright (never ``playwright install``).

Every test records every request the browser makes and asserts that none left 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.web.helpers import CHROMIUM_ARGS, HOSTILE_MARK, Served, chromium_path

pytestmark = pytest.mark.browser

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    exe = chromium_path()
    if exe is None:
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


class Recorder:
    def __init__(self) -> None:
        self.urls: list[str] = []

    def outside(self, base: str) -> list[str]:
        return [u for u in self.urls if not (u.startswith(base + "/") or u.startswith("data:") or u == base)]


@pytest.fixture
def page(browser: Any) -> Iterator[tuple[Any, Recorder]]:
    context = browser.new_context()
    rec = Recorder()
    context.on("request", lambda req: rec.urls.append(req.url))
    # Belt and braces: nothing may go out even if a page tried (the assertion below still catches it).
    context.route(
        "**/*", lambda route: route.continue_() if "127.0.0.1" in route.request.url else route.abort()
    )
    pg = context.new_page()
    try:
        yield pg, rec
    finally:
        context.close()


def test_browse_to_a_hostile_message(served: Served, page: tuple[Any, Recorder]) -> None:
    pg, rec = page
    dialogs: list[str] = []
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    pg.goto(served.url)
    assert pg.url == served.base + "/"
    pg.get_by_role("link", name="alice").click()
    pg.locator("#snapshots a").first.click()
    pg.get_by_role("link", name="INBOX").click()
    rows = pg.locator("#messages tbody tr")
    assert rows.count() == 50  # 61 messages, 50 a page
    assert pg.locator("#next-page").count() == 1
    pg.get_by_role("link", name="Hostile newsletter").click()
    assert pg.locator("#subject").inner_text() == "Hostile newsletter"
    frame_el = pg.locator("iframe#body")
    assert frame_el.get_attribute("sandbox") == ""
    frame = pg.frame_locator("iframe#body")
    frame.locator("text=Hello").wait_for()
    logo = frame.locator('img[alt="inline logo"]')
    logo.wait_for()
    assert pg.evaluate("() => document.title") != HOSTILE_MARK
    pg.wait_for_timeout(500)
    assert pg.evaluate("() => document.title") != HOSTILE_MARK
    assert not dialogs
    # The inline (cid:) image came from the vault through our server; the remote one was never asked for.
    assert any("/cid/logo%40example.org" in u for u in rec.urls)
    assert not rec.outside(served.base), rec.outside(served.base)
    assert "remote image(s) blocked" in pg.locator(".tools").inner_text()


def wait_for_job(pg: Any, timeout: int) -> None:
    """Wait until the job page has loaded and its job has left the running state.

    The submit button posts a form and the browser then follows a redirect to the job page; until it
    arrives the old page (with no #job-status) is still shown, so the predicate must allow for that.
    """
    pg.wait_for_url("**/job/*", timeout=timeout)
    pg.wait_for_function(
        "() => { const s = document.getElementById('job-status');"
        " return s !== null && s.textContent !== 'running'; }",
        timeout=timeout,
    )


def test_select_and_export(served: Served, page: tuple[Any, Recorder], tmp_path: Path) -> None:
    pg, rec = page
    pg.goto(served.url)
    pg.get_by_role("link", name="alice").click()
    pg.locator("#snapshots a").first.click()
    pg.get_by_role("link", name="Archive").click()
    boxes = pg.locator('#messages input[name="item"]')
    assert boxes.count() == 3
    boxes.nth(0).check()
    boxes.nth(2).check()
    pg.get_by_text("Export to a directory").click()
    dest = tmp_path / "picked"
    pg.locator('input[name="dest"]').fill(str(dest))
    pg.locator('select[name="format"]').select_option("eml")
    pg.locator("#export-button").click()
    wait_for_job(pg, timeout=30_000)
    assert pg.locator("#job-status").inner_text() == "done", pg.locator("#job").inner_text()
    assert "exported 2 messages" in pg.locator("#job-message").inner_text()
    files = sorted(p for p in dest.rglob("*.eml"))
    assert len(files) == 2
    assert all(b"Invoice 2019-" in f.read_bytes() for f in files)
    assert not rec.outside(served.base), rec.outside(served.base)


def test_search_open_restore_into_dovecot(
    served: Served, page: tuple[Any, Recorder], dovecot: Any, fresh_user: tuple[str, str]
) -> None:
    """Search for the invoices, open one, restore the whole result into an empty Dovecot account."""
    from tests.restore.helpers import Account, read_account

    target = Account(dovecot, *fresh_user)
    pg, rec = page
    pg.goto(served.url)
    pg.locator("#q").fill("subject:invoice")
    pg.locator(".searchbox button").click()
    assert "3 message(s) match" in pg.locator("#hit-count").inner_text()
    pg.get_by_role("link", name="Invoice 2019-1").click()
    pg.frame_locator("iframe#body").locator("text=Invoice 1 total 42 EUR").wait_for()
    pg.go_back()
    pg.locator("#select-result").check()
    pg.get_by_text("Restore into an IMAP account").click()
    pg.locator('input[name="target"]').fill(target.url())
    pg.locator('input[name="password"]').fill(target.password)
    pg.locator('input[name="ca_file"]').fill(str(dovecot.ca_file))
    pg.locator("#restore-button").click()
    wait_for_job(pg, timeout=60_000)
    assert pg.locator("#job-status").inner_text() == "done", pg.locator("#job").inner_text()
    assert "3 uploaded" in pg.locator("#job-message").inner_text()
    got = read_account(target)
    archive = got.get("Archive")
    assert archive is not None and sum(archive.values()) == 3, {k: sum(v.values()) for k, v in got.items()}
    assert all(b"Invoice 2019-" in raw for raw, _, _ in archive)
    assert all("\\Seen" in flags for _, flags, _ in archive)
    assert sum(sum(v.values()) for k, v in got.items() if k != "Archive") == 0
    assert target.password not in " ".join(rec.urls)
    assert not rec.outside(served.base), rec.outside(served.base)
