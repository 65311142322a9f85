"""Unit tests of the MAPI -> RFC 5322 conversion (one module, synthetic property bags; no libpff file).

The corpus tier (test_pst_corpus.py) checks real files through the CLI; these pin the rules of
docs/PST.md that the corpus does not reach, and run without the corpus.
"""

from __future__ import annotations

import email
import email.policy
import struct
from datetime import UTC, datetime

from mailvault.sources.pst import props as P
from mailvault.sources.pst.convert import MapiAttachment, MapiMessage, convert, flags_of, internaldate_of
from mailvault.sources.pst.props import Props


def u(text: str) -> tuple[int, bytes]:
    return (P.PT_UNICODE, text.encode("utf-16-le"))


def i32(v: int) -> tuple[int, bytes]:
    return (P.PT_LONG, struct.pack("<i", v))


def ft(dt: datetime) -> tuple[int, bytes]:
    ticks = int((dt - datetime(1601, 1, 1, tzinfo=UTC)).total_seconds()) * 10_000_000
    return (P.PT_SYSTIME, struct.pack("<q", ticks))


def bag(**kw: tuple[int, bytes]) -> Props:
    return Props({int(k[1:], 16): v for k, v in kw.items()})


SENT = datetime(2009, 3, 4, 10, 20, 30, tzinfo=UTC)


def sent_item() -> MapiMessage:
    return MapiMessage(
        bag(
            x001A=u("IPM.Note"),
            x0037=u("\x01\x04RE: Grüße aus Köln"),
            x0039=ft(SENT),
            x0042=u("Jörg Müller"),
            x0064=u("EX"),
            x0065=u("/o=ORG/ou=Exchange/cn=Recipients/cn=joerg"),
            x1000=u("Hallo\r\nWelt\r\n"),
            x0E07=i32(0x1),
            x1081=i32(104),
        ),
        recipients=[
            bag(x3001=u("Bob"), x39FE=u("bob@example.org"), x0C15=i32(1)),
            bag(x3001=u("Carol, Team"), x3002=u("SMTP"), x3003=u("carol@example.org"), x0C15=i32(2)),
            bag(x3001=u("Hidden"), x3003=u("hidden@example.org"), x3002=u("SMTP"), x0C15=i32(3)),
        ],
    )


def test_synthesised_headers_from_properties() -> None:
    raw = convert(sent_item())
    assert raw == convert(sent_item())  # deterministic
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["subject"] == "RE: Grüße aus Köln"  # the "\x01\x04" prefix-length marker is dropped
    assert msg["date"].datetime == SENT
    (sender,) = msg["from"].addresses
    assert sender.display_name == "Jörg Müller"
    assert (
        sender.domain == "exchange.invalid" and sender.username == "/o=ORG/ou=Exchange/cn=Recipients/cn=joerg"
    )
    assert [a.addr_spec for a in msg["to"].addresses] == ["bob@example.org"]
    assert [(a.display_name, a.addr_spec) for a in msg["cc"].addresses] == [
        ("Carol, Team", "carol@example.org")
    ]
    assert [a.addr_spec for a in msg["bcc"].addresses] == ["hidden@example.org"]
    assert msg["message-id"] is None  # never invented
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content().replace("\r\n", "\n") == "Hallo\nWelt\n"
    assert flags_of(sent_item().props) == ("\\Seen", "$Forwarded")
    assert internaldate_of(sent_item().props) == SENT  # no delivery time: submit time


def test_transport_headers_are_the_header_block_without_the_wire_mime_fields() -> None:
    headers = (
        "Received: from a.example (a.example [192.0.2.1])\r\n\tby b.example; Tue, 3 Mar 2009 10:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: application/ms-tnef;\r\n\tname="winmail.dat"\r\n'
        "Content-Transfer-Encoding: binary\r\n"
        "Subject: wire subject\r\n"
        "X-Folded: one\r\n two\r\n"
        "\r\n"
    )
    m = MapiMessage(
        bag(x001A=u("IPM.Note"), x007D=u(headers), x0037=u("ignored"), x1013=(P.PT_BINARY, b"<p>hi</p>"))
    )
    raw = convert(m)
    head, _, _body = raw.partition(b"\r\n\r\n")
    assert head.split(b"\r\n") == [
        b"Received: from a.example (a.example [192.0.2.1])",
        b"\tby b.example; Tue, 3 Mar 2009 10:00:00 +0000",
        b"Subject: wire subject",
        b"X-Folded: one",
        b" two",
        b"MIME-Version: 1.0",
        b"Content-Type: text/html; charset=utf-8",  # binary HTML without a code page: re-encoded
        b"Content-Transfer-Encoding: 7bit",
    ]
    assert b"ms-tnef" not in raw
    # no delivery time, no submit time: the Received date is INTERNALDATE
    assert internaldate_of(m.props) == datetime(2009, 3, 3, 10, 0, tzinfo=UTC)


def test_inline_image_goes_into_multipart_related_and_attachments_into_mixed() -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    m = MapiMessage(
        bag(x001A=u("IPM.Note"), x1000=u("text"), x1013=u('<img src="cid:img1@x">')),
        attachments=[
            MapiAttachment(bag(x3707=u("image001.png"), x3712=u("img1@x"), x3705=i32(1)), data=png),
            MapiAttachment(bag(x3704=u("REPORT~1.PDF"), x3705=i32(1)), data=b"%PDF-1.4 ..."),
            MapiAttachment(
                bag(x3707=u("status.txt"), x370E=u("message/delivery-status"), x3705=i32(1)),
                data=b"Reporting-MTA: dns; a.example\n",  # bare LF: cannot be an unencoded message part
            ),
        ],
    )
    raw = convert(m)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/mixed"
    related, pdf, status = msg.iter_parts()
    assert related.get_content_type() == "multipart/related"
    alternative, image = related.iter_parts()
    assert alternative.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in alternative.iter_parts()] == ["text/plain", "text/html"]
    assert image["Content-ID"] == "<img1@x>" and image.get_content_disposition() == "inline"
    assert image.get_payload(decode=True) == png
    assert pdf.get_filename() == "REPORT~1.PDF" and pdf.get_content_type() == "application/pdf"
    assert status.get_content_type() == "application/octet-stream"  # never base64 under message/*
    assert status.get_payload(decode=True) == b"Reporting-MTA: dns; a.example\n"
    # boundaries come from the content: a different attachment gives different boundaries
    other = MapiMessage(m.props, attachments=[MapiAttachment(m.attachments[0].props, data=png + b"x")])
    assert convert(other).split(b"\r\n")[1] != raw.split(b"\r\n")[1]


def test_flags_and_dates() -> None:
    delivered = datetime(2010, 1, 2, 3, 4, 5, tzinfo=UTC)
    p = bag(x0E07=i32(0x8), x1090=i32(2), x1081=i32(102), x0E06=ft(delivered), x0039=ft(SENT))
    assert flags_of(p) == ("\\Answered", "\\Flagged", "\\Draft")
    assert internaldate_of(p) == delivered
    assert internaldate_of(bag(x3007=ft(SENT))) == SENT
    assert internaldate_of(bag()) is None
    assert flags_of(bag()) == ()


def test_ansi_strings_use_the_message_code_page() -> None:
    p = Props({P.PR_SUBJECT: (P.PT_STRING8, "Привет".encode("cp1251")), P.PR_INTERNET_CPID: i32(1251)})
    assert p.subject() == "Привет"
    assert Props({P.PR_SUBJECT: (P.PT_STRING8, b"caf\xe9")}).subject() == "café"  # default Windows-1252
