"""SASL for bearer tokens: XOAUTH2 (Google, Microsoft) and OAUTHBEARER (RFC 7628), IMAP and POP3."""

from __future__ import annotations


def pick_sasl(wanted: str, offered: set[str]) -> str:
    """The SASL mechanism to send a bearer token with (upper case)."""
    if wanted:
        return wanted.upper()
    if "XOAUTH2" not in offered and "OAUTHBEARER" in offered:
        return "OAUTHBEARER"
    return "XOAUTH2"


def sasl_response(mech: str, user: str, token: str) -> bytes:
    """The client's SASL response for XOAUTH2 (Google/Microsoft) or OAUTHBEARER (RFC 7628)."""
    if mech == "OAUTHBEARER":
        return f"n,a={user.replace('=', '=3D').replace(',', '=2C')},\x01auth=Bearer {token}\x01\x01".encode()
    return f"user={user}\x01auth=Bearer {token}\x01\x01".encode()


NOT_CONNECTED_HINT = (
    'the server accepted the token but cannot open the mailbox (Exchange: "authenticated but not '
    'connected"): IMAP/POP may be disabled for it, or an app-only client lacks access to it'
)
