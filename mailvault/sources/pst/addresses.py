"""Addresses of a MAPI item: the sender and the recipient table, as (display name, address).

An SMTP address is taken from ``PR_SMTP_ADDRESS``-style properties first, then from an
``SMTP`` email-address property. A non-SMTP address (an Exchange X.500 DN, also recovered
from an entry id) is kept as the quoted local part of an address in the reserved
``.invalid`` domain, e.g. ``"/o=ORG/ou=.../cn=USER"@exchange.invalid``: never deliverable,
but nothing is lost.
"""

from __future__ import annotations

import re

from mailvault.sources.pst import props as P
from mailvault.sources.pst.props import Props

__all__ = ["entryid_address", "recipient_address", "sender_address"]


_EX_PROVIDER = bytes.fromhex("DCA740C8C042101AB4B908002B2FE182")  # Exchange address book entry ids
_ONE_OFF_PROVIDER = bytes.fromhex("812B1FA4BEA310199D6E00DD010F5402")  # one-off entry ids


def entryid_address(entryid: bytes | None) -> tuple[str, str] | None:
    """(address type, address) from an address-book entry id: an Exchange entry id carries
    the X.500 DN, a one-off entry id its address type and address (MS-OXCDATA 2.2.5)."""
    if not entryid or len(entryid) < 28:
        return None
    provider = entryid[4:20]
    if provider == _EX_PROVIDER:
        dn = entryid[28:].split(b"\x00", 1)[0].decode("latin-1").strip()
        return ("EX", dn) if dn else None
    if provider == _ONE_OFF_PROVIDER and len(entryid) >= 24:
        flags = int.from_bytes(entryid[22:24], "little")
        body = entryid[24:]
        if flags & 0x8000:  # Unicode strings
            fields = body.decode("utf-16-le", "replace").split("\x00")
        else:
            fields = body.decode("latin-1").split("\x00")
        if len(fields) >= 3 and fields[2].strip():
            return fields[1].strip().upper(), fields[2].strip()
    return None


def _address(
    p: Props, name_prop: int, type_prop: int, email_prop: int, smtp_prop: int, entryid_prop: int | None = None
) -> tuple[str, str]:
    name = (p.text(name_prop) or "").strip()
    addr = (p.text(smtp_prop) or "").strip()
    if not addr:
        email = (p.text(email_prop) or "").strip()
        addrtype = (p.text(type_prop) or "").upper()
        if not email and entryid_prop is not None:
            found = entryid_address(p.raw(entryid_prop))
            if found is not None:
                addrtype, email = found
        if addrtype == "SMTP" or ("@" in email and "/" not in email):
            addr = email
        elif email:
            # An Exchange (X.500) or other non-SMTP address: kept, as the quoted local part
            # of an address in the reserved ".invalid" domain (never deliverable).
            domain = "exchange.invalid" if addrtype in ("EX", "") else f"{_domain_label(addrtype)}.invalid"
            addr = '"' + email.replace("\\", "\\\\").replace('"', '\\"') + '"@' + domain
    return name, addr


def _domain_label(addrtype: str) -> str:
    label = re.sub(r"[^a-z0-9-]+", "-", addrtype.lower()).strip("-")
    return label or "unknown"


def recipient_address(r: Props) -> tuple[str, str]:
    return _address(r, P.PR_DISPLAY_NAME, P.PR_ADDRTYPE, P.PR_EMAIL_ADDRESS, P.PR_SMTP_ADDRESS, P.PR_ENTRYID)


def sender_address(p: Props) -> tuple[str, str]:
    """The represented sender ("on behalf of"), else the sender."""
    rep = _address(
        p,
        P.PR_SENT_REPRESENTING_NAME,
        P.PR_SENT_REPRESENTING_ADDRTYPE,
        P.PR_SENT_REPRESENTING_EMAIL,
        P.PR_SENT_REPRESENTING_SMTP_ADDRESS,
        P.PR_SENT_REPRESENTING_ENTRYID,
    )
    snd = _address(
        p,
        P.PR_SENDER_NAME,
        P.PR_SENDER_ADDRTYPE,
        P.PR_SENDER_EMAIL,
        P.PR_SENDER_SMTP_ADDRESS,
        P.PR_SENDER_ENTRYID,
    )
    if rep[1]:
        return rep
    if snd[1] and (not rep[0] or rep[0] == snd[0]):
        return snd
    return rep if rep[0] else snd
