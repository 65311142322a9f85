"""A real, standalone Cyrus IMAP (Debian ``cyrus-imapd``) for interoperability tests.

The point of this second server is that it differs from Dovecot where clients usually assume things:

* the hierarchy separator is ``.`` (``unixhierarchysep: no``) and personal folders live below ``INBOX``
  (``altnamespace: no``): NAMESPACE is ``(("INBOX." "."))``, Dovecot's ``Sent`` is Cyrus's ``INBOX.Sent``
  and a ``.`` inside a Dovecot folder name is a hierarchy level on Cyrus;
* UIDVALIDITY is a timestamp-like number, different for every (re)created mailbox;
* SPECIAL-USE comes from ``autocreate_inbox_folders`` + ``xlist-*`` (``INBOX.Sent`` is ``\\Sent``...).

Everything lives under a fresh instance root (``mvcyrus-*`` on tmpfs like the Dovecot one)::

    ROOT/
      imapd.conf, cyrus.conf   generated (every path points into ROOT; 127.0.0.1 high ports)
      sasldb2                  SASL passwords (auxprop sasldb; users added by saslpasswd2 -f)
      tls/                     ca.pem (clients trust it: ``ca_file``), server.pem, server.key
      conf/ spool/ socket/     configdirectory, partition-default, unix sockets
      bin/imapd                a copy of imapd (see IMAPD_CANDIDATES)
      master.log               the master's stderr (Cyrus itself logs to syslog)

``master -D`` runs in the foreground as the leader of its own process group (stop() kills the group).
It is started as root and drops to the packaged ``cyrus`` user, who owns ROOT: the tests must run as root
(they do in CI); otherwise the fixtures skip.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from imapclient import IMAPClient

from tests.servers.dovecot import HOST, HOSTNAME, Dovecot, SeedMessage, _free_ports, _instance_parent
from tests.servers.dovecot import _parse_appenduid as parse_appenduid

MASTER = "/usr/lib/cyrus/bin/master"
#: Debian's ``cyrus-imapd`` (imapd) conflicts with ``dovecot-imapd`` (both "Provide: imap-server"), so it
#: cannot be installed beside Dovecot: ``scripts/test.sh`` installs ``cyrus-common`` (master, libraries,
#: tools) and unpacks the ``cyrus-imapd`` .deb into ``.cache/cyrus-imapd`` of the checkout (``apt-get
#: download`` + ``dpkg-deb -x``). An installed package or ``$MAILVAULT_CYRUS_IMAPD`` works too.
_REPO = Path(__file__).resolve().parents[2]
IMAPD_CANDIDATES = (
    "/usr/lib/cyrus/bin/imapd",
    str(_REPO / ".cache" / "cyrus-imapd" / "usr" / "lib" / "cyrus" / "bin" / "imapd"),
)
#: Folders every user gets at first login (autocreate_inbox_folders): Cyrus name -> SPECIAL-USE.
SPECIAL_FOLDERS: dict[str, str] = {
    "INBOX.Sent": "\\Sent",
    "INBOX.Drafts": "\\Drafts",
    "INBOX.Trash": "\\Trash",
    "INBOX.Junk": "\\Junk",
}
_instances: set[Cyrus] = set()


class CyrusError(RuntimeError):
    """Cyrus could not be configured, started or driven."""


def find_imapd() -> str | None:
    env = os.environ.get("MAILVAULT_CYRUS_IMAPD")
    for cand in ([env] if env else []) + list(IMAPD_CANDIDATES):
        if Path(cand).is_file():
            return cand
    return None


def missing_reason() -> str | None:
    """Why a Cyrus instance cannot run here (``None`` when it can)."""
    if not Path(MASTER).exists() or shutil.which("saslpasswd2") is None:
        return "Cyrus not installed (apt-get install cyrus-common sasl2-bin; see scripts/test.sh)"
    if find_imapd() is None:
        return (
            "Cyrus imapd not found (cyrus-imapd conflicts with dovecot-imapd: scripts/test.sh unpacks it into"
            " .cache/cyrus-imapd; or set MAILVAULT_CYRUS_IMAPD)"
        )
    if os.geteuid() != 0:
        return "the Cyrus test instance must be started as root (it drops to the 'cyrus' user)"
    try:
        pwd.getpwnam("cyrus")
    except KeyError:
        return "no 'cyrus' user (cyrus-imapd package incomplete)"
    return None


class Cyrus:
    """One standalone Cyrus IMAP: plain IMAP (``imap_port``) and implicit TLS (``imaps_port``)."""

    host = HOST
    hostname = HOSTNAME
    #: Cyrus has no POP3 listener here (pop3d is not started); for DovecotAccount.url's table.
    pop3_port = None
    pop3s_port = None

    def __init__(self, workdir: str | os.PathLike[str]):
        reason = missing_reason()
        if reason:
            raise CyrusError(reason)
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix="mvcyrus-", dir=_instance_parent()))
        _instances.add(self)
        self.conf_file = self.root / "imapd.conf"
        self.master_conf = self.root / "cyrus.conf"
        self.sasldb = self.root / "sasldb2"
        self.log_file = self.root / "master.log"
        self.imapd = self.root / "bin" / "imapd"
        tls_dir = self.root / "tls"
        self.ca_file = tls_dir / "ca.pem"
        self.cert_file = tls_dir / "server.pem"
        self.key_file = tls_dir / "server.key"
        self.users: dict[str, str] = {}
        self.imap_port, self.imaps_port = _free_ports(2)
        self._proc: subprocess.Popen[bytes] | None = None
        cyrus = pwd.getpwnam("cyrus")
        self._uid, self._gid = cyrus.pw_uid, cyrus.pw_gid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # ----------------------------------------------------------------- lifecycle
    def start(self, timeout: float = 20.0) -> Cyrus:
        if self.running:
            return self
        for sub in ("conf", "spool", "socket", "bin"):
            (self.root / sub).mkdir(exist_ok=True)
        imapd = find_imapd()
        assert imapd is not None
        shutil.copy2(imapd, self.imapd)  # reachable by the 'cyrus' user wherever the checkout is
        if not self.ca_file.exists():
            # Same CA + server certificate layout as the Dovecot harness (127.0.0.1 and localhost SANs).
            Dovecot._make_certificates(self)  # type: ignore[arg-type]
        self.conf_file.write_text(self._imapd_conf())
        self.master_conf.write_text(self._cyrus_conf())
        self.sasldb.touch()
        self._chown()
        log = self.log_file.open("ab")
        try:
            self._proc = subprocess.Popen(
                [MASTER, "-D", "-C", str(self.conf_file), "-M", str(self.master_conf),
                 "-p", str(self.root / "master.pid")],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            )  # fmt: skip
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        pending = {self.imap_port, self.imaps_port}
        while pending:
            if not self.running:
                raise CyrusError(f"cyrus master exited: {self.log_file.read_text(errors='replace')[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise CyrusError(f"cyrus did not listen on {sorted(pending)} within {timeout}s")
            for port in list(pending):
                with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
                    pending.discard(port)
            if pending:
                time.sleep(0.05)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # imapd children still serving a connection

    def cleanup(self) -> None:
        self.stop()
        if self.root.exists():
            if self.log_file.exists():
                shutil.copyfile(self.log_file, self.workdir / self.log_file.name)
            shutil.rmtree(self.root, ignore_errors=True)
        _instances.discard(self)

    def __enter__(self) -> Cyrus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    # ----------------------------------------------------------------- users
    def add_user(self, name: str, password: str) -> None:
        """A SASL user (sasldb); Cyrus creates ``INBOX`` and :data:`SPECIAL_FOLDERS` at first login."""
        res = subprocess.run(
            ["saslpasswd2", "-f", str(self.sasldb), "-p", "-c", name],
            input=password, text=True, capture_output=True, check=False,
        )  # fmt: skip
        if res.returncode != 0:
            raise CyrusError(f"saslpasswd2 {name} failed: {res.stderr.strip()}")
        os.chown(self.sasldb, self._uid, self._gid)
        self.sasldb.chmod(0o600)
        self.users[name] = password
        self.imap_client(name).logout()  # autocreate INBOX + special-use folders now

    def password(self, user: str) -> str:
        return self.users[user]

    # ----------------------------------------------------------------- clients
    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def imap_client(
        self, user: str, *, ssl: bool = True, password: str | None = None, timeout: float = 30.0
    ) -> IMAPClient:
        """A logged-in IMAPClient over IMAPS (``ssl=True``) or plain IMAP."""
        if ssl:
            client = IMAPClient(
                HOST, port=self.imaps_port, ssl=True, ssl_context=self.ssl_context(), timeout=timeout
            )
        else:
            client = IMAPClient(HOST, port=self.imap_port, ssl=False, timeout=timeout)
        try:
            client.login(user, password if password is not None else self.users[user])
        except Exception:
            with contextlib.suppress(Exception):
                client.shutdown()
            raise
        return client

    def seed_append(
        self, user: str, folder: str, messages: Iterable[SeedMessage], batch: int = 200
    ) -> list[int]:
        """APPEND (MULTIAPPEND) messages into ``folder`` (Cyrus name, e.g. ``INBOX.Work``); the new UIDs."""
        msgs = list(messages)
        client = self.imap_client(user)
        uids: list[int] = []
        try:
            if folder.upper() != "INBOX" and not client.folder_exists(folder):
                client.create_folder(folder)
                client.subscribe_folder(folder)
            for start in range(0, len(msgs), batch):
                chunk = [
                    {"msg": raw, "flags": list(flags), "date": date}
                    for raw, flags, date in msgs[start : start + batch]
                ]
                uids.extend(parse_appenduid(client.multiappend(folder, chunk)))
            client.select_folder(folder)  # take the \\Recent flags
        finally:
            with contextlib.suppress(Exception):
                client.logout()
        return uids

    # ----------------------------------------------------------------- internals
    def _chown(self) -> None:
        for dirpath, dirnames, filenames in os.walk(self.root):
            os.chown(dirpath, self._uid, self._gid)
            for f in filenames:
                os.chown(os.path.join(dirpath, f), self._uid, self._gid)
        self.root.chmod(0o750)

    def _imapd_conf(self) -> str:
        r = self.root
        return "\n".join(
            [
                f"configdirectory: {r}/conf",
                f"partition-default: {r}/spool",
                "admins: cyrus",
                "sasl_pwcheck_method: auxprop",
                "sasl_auxprop_plugin: sasldb",
                f"sasl_sasldb_path: {self.sasldb}",
                "sasl_mech_list: PLAIN LOGIN",
                "allowplaintext: yes",
                # The classic Cyrus namespace: '.' separator, personal folders below INBOX.
                "altnamespace: no",
                "unixhierarchysep: no",
                f"lmtpsocket: {r}/socket/lmtp",
                f"idlesocket: {r}/socket/idle",
                f"notifysocket: {r}/socket/notify",
                "autocreate_quota: 0",
                "autocreate_inbox_folders: Sent|Drafts|Trash|Junk",
                "xlist-sent: Sent",
                "xlist-drafts: Drafts",
                "xlist-trash: Trash",
                "xlist-junk: Junk",
                f"tls_server_cert: {self.cert_file}",
                f"tls_server_key: {self.key_file}",
                "syslog_prefix: mvcyrus",
                "",
            ]
        )

    def _cyrus_conf(self) -> str:
        c = self.conf_file
        return (
            "START {\n"
            f'  recover cmd="ctl_cyrusdb -C {c} -r"\n'
            "}\n"
            "SERVICES {\n"
            f'  imap cmd="{self.imapd} -C {c}" listen="{HOST}:{self.imap_port}" prefork=0\n'
            f'  imaps cmd="{self.imapd} -s -C {c}" listen="{HOST}:{self.imaps_port}" prefork=0\n'
            "}\n"
            "EVENTS {\n}\n"
            "DAEMON {\n}\n"
        )


@atexit.register
def _stop_all() -> None:
    for inst in list(_instances):
        with contextlib.suppress(Exception):
            inst.cleanup()


__all__ = ["SPECIAL_FOLDERS", "Cyrus", "CyrusError", "missing_reason"]
