"""Generated mail that shares attachments and images, as real mailboxes do.

Reply chains that carry the same attachment again (Outlook-style "reply with attachment"),
forwards (``message/rfc822`` with the original inside), and newsletters whose issues reuse
the same logo and images (``multipart/related``). Encodings vary the way real clients do:
base64 wrapped at 76 (most) or 72 (Thunderbird) columns, CRLF or LF line ends, a few
quoted-printable and 8bit parts, and some deliberately odd ones (a base64 part with a
ragged line) that single-instance storage must keep byte-exact.

Deterministic for a given seed. Used by the tests (``tests/vault/test_sia.py``) and by
``bench/sia_bench.py``; nothing here is sent anywhere.
"""

from __future__ import annotations

import base64
import itertools
import random
import zlib
from dataclasses import dataclass

WORDS = (
    *("the", "of", "and", "to", "in", "is", "you", "that", "it", "for", "on", "are", "with"),
    *("meeting", "budget", "quarter", "project", "review", "draft", "invoice", "report"),
    *("please", "find", "attached", "thanks", "regards", "see", "below", "update", "team"),
)


@dataclass(frozen=True)
class Asset:
    name: str
    ctype: str
    data: bytes


def _noise(rng: random.Random, n: int) -> bytes:
    """Incompressible bytes, like JPEG or PDF streams."""
    return rng.randbytes(n)


def _semi(rng: random.Random, n: int) -> bytes:
    """Partly compressible bytes (a PDF with text streams, an office document)."""
    out = bytearray()
    while len(out) < n:
        if rng.random() < 0.5:
            out += rng.randbytes(rng.randint(200, 2000))
        else:
            out += (" ".join(rng.choices(WORDS, k=rng.randint(20, 80))) + "\n").encode()
    return bytes(out[:n])


def make_assets(rng: random.Random, scale: float = 1.0) -> dict[str, list[Asset]]:
    """Attachments and images; ``scale`` shrinks them (fast tests)."""

    def n(lo: int, hi: int) -> int:
        return max(1200, int(rng.randint(lo, hi) * scale))

    docs = [Asset(f"report-{i}.pdf", "application/pdf", _semi(rng, n(30_000, 250_000))) for i in range(6)]
    photos = [Asset(f"photo-{i}.jpg", "image/jpeg", _noise(rng, n(40_000, 160_000))) for i in range(5)]
    logos = [Asset(f"logo-{i}.png", "image/png", _noise(rng, n(5_000, 14_000))) for i in range(3)]
    banners = [Asset(f"banner-{i}.jpg", "image/jpeg", _noise(rng, n(20_000, 60_000))) for i in range(8)]
    return {"docs": docs, "photos": photos, "logos": logos, "banners": banners}


def _b64(data: bytes, width: int, eol: bytes) -> bytes:
    text = base64.b64encode(data)
    return eol.join(text[i : i + width] for i in range(0, len(text), width)) + eol


def _text(rng: random.Random, lines: int, eol: bytes) -> bytes:
    return eol.join(" ".join(rng.choices(WORDS, k=rng.randint(6, 14))).encode() for _ in range(lines)) + eol


def _headers(rng: random.Random, i: int, subject: str, eol: bytes, extra: list[str]) -> bytes:
    lines = [
        f"From: person{i % 11}@example.org",
        f"To: team{i % 5}@example.net",
        f"Subject: {subject}",
        f"Message-ID: <{i}.{rng.getrandbits(40):x}@example.org>",
        f"Date: Tue, {1 + i % 28} Mar 2022 {i % 24:02d}:{i % 60:02d}:00 +0100",
        "MIME-Version: 1.0",
        *extra,
    ]
    return eol.join(x.encode() for x in lines) + eol


def _attachment(asset: Asset, eol: bytes, width: int) -> bytes:
    return (
        f'Content-Type: {asset.ctype}; name="{asset.name}"'.encode()
        + eol
        + b"Content-Transfer-Encoding: base64"
        + eol
        + f'Content-Disposition: attachment; filename="{asset.name}"'.encode()
        + eol
        + eol
        + _b64(asset.data, width, eol)
    )


def _multipart(boundary: str, parts: list[bytes], eol: bytes) -> bytes:
    out = b"This is a multi-part message in MIME format." + eol
    for p in parts:
        out += eol + b"--" + boundary.encode() + eol + p
    return out + eol + b"--" + boundary.encode() + b"--" + eol


def reply_chain(rng: random.Random, start: int, assets: dict[str, list[Asset]], length: int) -> list[bytes]:
    eol = b"\r\n" if rng.random() < 0.85 else b"\n"
    width = 76 if rng.random() < 0.8 else 72
    att = rng.sample(assets["docs"] + assets["photos"], k=rng.randint(1, 2))
    subject = "Q3 " + " ".join(rng.choices(WORDS, k=3))
    out = []
    quoted = b""
    for k in range(length):
        i = start + k
        body = _text(rng, rng.randint(3, 20), eol) + quoted
        quoted = b"".join(b"> " + ln + eol for ln in body.split(eol) if ln)[:6000]
        boundary = f"----=_Part_{i}_{rng.getrandbits(32)}"
        parts = [b"Content-Type: text/plain; charset=utf-8" + eol + eol + body]
        if k == 0 or rng.random() < 0.6:  # replies often carry the attachment again
            parts += [_attachment(a, eol, width) for a in att]
        head = _headers(
            rng,
            i,
            ("Re: " * min(k, 1)) + subject,
            eol,
            [f'Content-Type: multipart/mixed; boundary="{boundary}"'],
        )
        out.append(head + eol + _multipart(boundary, parts, eol))
    return out


def forward(rng: random.Random, i: int, original: bytes) -> bytes:
    eol = b"\r\n"
    boundary = f"fwd{i}{rng.getrandbits(24):x}"
    parts = [
        b"Content-Type: text/plain; charset=us-ascii" + eol + eol + _text(rng, 3, eol),
        b"Content-Type: message/rfc822" + eol + b"Content-Disposition: inline" + eol + eol + original,
    ]
    head = _headers(rng, i, "Fwd: see below", eol, [f'Content-Type: multipart/mixed; boundary="{boundary}"'])
    return head + eol + _multipart(boundary, parts, eol)


def newsletter(rng: random.Random, i: int, issue: int, assets: dict[str, list[Asset]]) -> bytes:
    eol = b"\r\n"
    logo = assets["logos"][issue % len(assets["logos"])]
    banners = rng.sample(assets["banners"], k=3)
    outer = f"=_outer_{i}"
    rel = f"=_related_{i}"
    html = (
        b'<html><body><img src="cid:logo"><h1>Issue '
        + str(issue).encode()
        + b"</h1>"
        + b"".join(b"<p>" + _text(rng, 4, b" ") + b"</p>" for _ in range(20))
        + b"</body></html>"
    )
    html_qp = html.replace(b"=", b"=3D")
    html_qp = b"=\r\n".join(html_qp[j : j + 75] for j in range(0, len(html_qp), 75)) + eol
    images = [
        f"Content-Type: {a.ctype}".encode()
        + eol
        + b"Content-Transfer-Encoding: base64"
        + eol
        + f"Content-ID: <{'logo' if n == 0 else a.name}>".encode()
        + eol
        + eol
        + _b64(a.data, 76, eol)
        for n, a in enumerate([logo, *banners])
    ]
    related = _multipart(
        rel,
        [
            b"Content-Type: text/html; charset=utf-8"
            + eol
            + b"Content-Transfer-Encoding: quoted-printable"
            + eol
            + eol
            + html_qp,
            *images,
        ],
        eol,
    )
    plain = b"Content-Type: text/plain; charset=utf-8" + eol + eol + _text(rng, 30, eol)
    alt_parts = [
        plain,
        f'Content-Type: multipart/related; boundary="{rel}"'.encode() + eol + eol + related,
    ]
    body = _multipart(outer, alt_parts, eol)
    head = _headers(
        rng, i, f"Weekly news #{issue}", eol, [f'Content-Type: multipart/alternative; boundary="{outer}"']
    )
    return head + eol + body


def odd_messages(rng: random.Random, start: int, assets: dict[str, list[Asset]]) -> list[bytes]:
    """Messages whose encodings do not follow the usual rules (must still round-trip)."""
    eol = b"\r\n"
    doc = assets["docs"][0]
    ragged = base64.b64encode(doc.data)
    cut = [0, 60, 136, 200]
    lines = [ragged[a:b] for a, b in itertools.pairwise(cut)] + [
        ragged[j : j + 76] for j in range(200, len(ragged), 76)
    ]
    ragged_body = eol.join(lines) + eol
    out = []
    # 1. base64 with irregular line lengths.
    b = f"odd{start}"
    out.append(
        _headers(rng, start, "ragged base64", eol, [f'Content-Type: multipart/mixed; boundary="{b}"'])
        + eol
        + _multipart(
            b,
            [
                b"Content-Type: text/plain" + eol + eol + b"see attached" + eol,
                b"Content-Type: application/pdf"
                + eol
                + b"Content-Transfer-Encoding: base64"
                + eol
                + eol
                + ragged_body,
            ],
            eol,
        )
    )
    # 2. an 8bit binary-ish part (no transfer encoding), stored as it is.
    blob = zlib.compress(doc.data, 1)[:20000]
    b = f"odd{start + 1}"
    out.append(
        _headers(rng, start + 1, "raw part", eol, [f'Content-Type: multipart/mixed; boundary="{b}"'])
        + eol
        + _multipart(
            b,
            [
                b"Content-Type: text/plain" + eol + eol + b"raw" + eol,
                b"Content-Type: application/octet-stream" + eol + eol + blob.replace(b"\r\n", b"\n"),
            ],
            eol,
        )
    )
    # 3. a truncated message (the closing boundary never comes) and no final newline.
    b = f"odd{start + 2}"
    out.append(
        _headers(rng, start + 2, "truncated", eol, [f'Content-Type: multipart/mixed; boundary="{b}"'])
        + eol
        + (b"--" + b.encode() + eol + _attachment(assets["photos"][0], eol, 76))[:-7]
    )
    # 4. a single-part message that is one big base64 body, without a final line end.
    out.append(
        _headers(
            rng,
            start + 3,
            "single part",
            eol,
            ["Content-Type: image/jpeg", "Content-Transfer-Encoding: base64"],
        )
        + eol
        + _b64(assets["photos"][1].data, 76, eol)[:-2]
    )
    return out


def generate(n_target: int = 400, seed: int = 1, scale: float = 1.0) -> list[bytes]:
    """About ``n_target`` messages: reply chains, forwards, newsletters, plain mail, odd ones."""
    rng = random.Random(seed)
    assets = make_assets(rng, scale)
    out: list[bytes] = []
    issue = 0
    while len(out) < n_target:
        r = rng.random()
        i = len(out)
        if r < 0.35:
            chain = reply_chain(rng, i, assets, rng.randint(2, 7))
            out += chain
            if rng.random() < 0.3:
                out.append(forward(rng, len(out), chain[0]))
        elif r < 0.6:
            issue += 1
            out.append(newsletter(rng, i, issue, assets))
        else:
            eol = b"\r\n"
            out.append(
                _headers(rng, i, "note", eol, ["Content-Type: text/plain"]) + eol + _text(rng, 12, eol)
            )
    out += odd_messages(rng, len(out), assets)
    return out
