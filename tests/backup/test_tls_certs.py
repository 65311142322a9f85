"""Bad server certificates are refused with one clear line each (real CLI, a real TLS listener).

The certificates are made here (``cryptography``'s X.509 builder): a private CA, and leaf
certificates that are expired, issued for another host, or signed by nobody the client trusts.
The listener completes (or fails) the TLS handshake and then greets like an IMAP or POP3 server,
so the only thing that can stop the client is the certificate check. The password is never sent.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.backup.helpers import SERVER_PW_ENV, cli_proc
from tests.common import assert_one_line_error, vault_files

PASSWORD = "tls-test-secret-6b1f"
NOW = dt.datetime.now(dt.UTC)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None,
    *,
    sans: list[x509.GeneralName],
    days: tuple[int, int] = (-1, 30),
    ca: bool = False,
) -> x509.Certificate:
    issuer_name, issuer_key = issuer if issuer else (subject, key)
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW + dt.timedelta(days=days[0]))
        .not_valid_after(NOW + dt.timedelta(days=days[1]))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None = None) -> Path:
    data = cert.public_bytes(serialization.Encoding.PEM)
    if key is not None:
        data += key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("certs")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("mailvault test CA", ca_key, None, sans=[], days=(-1, 365), ca=True)
    here = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    out = {"ca": _write(d / "ca.pem", ca)}
    k = ec.generate_private_key(ec.SECP256R1())
    out["good"] = _write(d / "good.pem", _cert("localhost", k, ("mailvault test CA", ca_key), sans=here), k)
    k = ec.generate_private_key(ec.SECP256R1())
    expired = _cert("localhost", k, ("mailvault test CA", ca_key), sans=here, days=(-60, -1))
    out["expired"] = _write(d / "expired.pem", expired, k)
    k = ec.generate_private_key(ec.SECP256R1())
    other = _cert(
        "mail.example.org", k, ("mailvault test CA", ca_key), sans=[x509.DNSName("mail.example.org")]
    )
    out["wrong-host"] = _write(d / "wrong-host.pem", other, k)
    k = ec.generate_private_key(ec.SECP256R1())
    out["untrusted"] = _write(d / "untrusted.pem", _cert("localhost", k, None, sans=here), k)
    return out


class TLSListener:
    """Accepts TLS connections with one certificate, then greets; records whatever the client sends."""

    def __init__(self, cert: Path, greeting: bytes) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert)
        self.greeting = greeting
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)  # accept() wakes up to notice close()
        self.port = self.sock.getsockname()[1]
        self.received = b""
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(10)
            try:
                with self.ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(self.greeting)
                    while chunk := tls.recv(4096):
                        self.received += chunk
                        for line in chunk.splitlines():  # IMAP: answer CAPABILITY, refuse the rest
                            tag, _, command = line.partition(b" ")
                            if command.upper().startswith(b"CAPABILITY"):
                                tls.sendall(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n")
                            elif command:
                                tls.sendall(tag + b" NO [AUTHENTICATIONFAILED] refused\r\n")
            except (OSError, ssl.SSLError):
                pass
            finally:
                conn.close()

    def close(self) -> None:
        self._stop = True
        self.sock.close()
        self._thread.join(timeout=5)


@pytest.fixture
def listen(certs: dict[str, Path]) -> Iterator[object]:
    started: list[TLSListener] = []

    def start(which: str, scheme: str) -> TLSListener:
        greeting = b"* OK IMAP4rev1 ready\r\n" if scheme == "imaps" else b"+OK POP3 ready\r\n"
        lst = TLSListener(certs[which], greeting)
        started.append(lst)
        return lst

    yield start
    for lst in started:
        lst.close()


CASES = {
    "expired": ("has expired",),
    "wrong-host": ("is not for '127.0.0.1'", "certificate"),
    "untrusted": ("not trusted", "--ca-file"),
}


@pytest.mark.parametrize(
    ("which", "scheme"),
    # Every case over IMAP; POP3 shares the mapping of errors, so one case proves its path.
    [*((w, "imaps") for w in sorted(CASES)), ("expired", "pop3s")],
)
def test_bad_certificate_is_refused_in_one_line(
    listen: object, certs: dict[str, Path], vault: Path, which: str, scheme: str
) -> None:
    server = listen(which, scheme)  # type: ignore[operator]
    before = vault_files(vault)
    proc = cli_proc(
        "backup", vault, f"{scheme}://alice@127.0.0.1:{server.port}", "--password-env", SERVER_PW_ENV,
        "--ca-file", certs["ca"], env={SERVER_PW_ENV: PASSWORD},
    )  # fmt: skip
    line = assert_one_line_error(proc, 2, "TLS certificate of 127.0.0.1", *CASES[which])
    assert PASSWORD not in line
    assert vault_files(vault) == before
    assert PASSWORD.encode() not in server.received


def test_a_good_certificate_gets_past_tls(listen: object, certs: dict[str, Path], vault: Path) -> None:
    """The control: the same listener with a valid certificate fails later, not on TLS."""
    server = listen("good", "imaps")  # type: ignore[operator]
    proc = cli_proc(
        "backup", vault, f"imaps://alice@127.0.0.1:{server.port}", "--password-env", SERVER_PW_ENV,
        "--ca-file", certs["ca"], env={SERVER_PW_ENV: PASSWORD}, timeout=60,
    )  # fmt: skip
    line = assert_one_line_error(proc, 2, "refused")
    assert "certificate" not in line and "TLS" not in line, line
