"""A real, standalone Dovecot instance for integration tests.

Everything lives under a fresh instance root: a 0711 ``mvdovecot-*`` dir on tmpfs (``/dev/shm`` when it
has 2 GiB free; else the tmp dir; ``$MAILVAULT_DOVECOT_TMP`` overrides). ``WORK/instance`` (the work dir
given to :class:`Dovecot`) links to it, and :meth:`Dovecot.cleanup` copies the logs to WORK and removes
it::

    ROOT/
      tls/           ca.pem (clients trust it: ``ca_file``), ca.key, server.pem, server.key
      dovecot.conf   generated, see :meth:`Dovecot._config_text`
      dovecot-oauth2.conf.ext   with ``oauth2=True``: the oauth2 passdb's introspection settings
      users/NAME     one passwd-file per user (passdb and userdb, ``scheme=PLAIN``)
      homes/NAME/Maildir   Maildir++: INBOX is ``Maildir/{cur,new,tmp}``, folder ``a/b`` is ``Maildir/.a.b``
      run/           base_dir (sockets, ``anvil-auth-penalty``)
      state/         state_dir
      dovecot.log    log_path (``log_text()`` returns it plus the master's stderr)

Dovecot runs in the foreground (``dovecot -F -c CONF``) as the leader of its own process group, so
:meth:`Dovecot.stop` takes down the master and every child it spawned; an atexit hook stops forgotten
instances.

Mail ownership: Dovecot will not access mail as uid 0. When the tests run as root, all mail belongs to
``nobody``/``nogroup`` (``first_valid_uid`` lowered to it) and files written by :meth:`Dovecot.seed` are
chowned to it; Dovecot's own services use the packaged ``dovecot``/``dovenull`` users. When the tests run
unprivileged, Dovecot runs entirely as the current user.

Message bytes: Dovecot keeps Maildir files with LF line endings and serves every line ending as CRLF.
:meth:`Dovecot.seed` stores ``CRLF`` as ``LF``; a client FETCHing ``BODY[]`` gets
:meth:`Dovecot.served_form` of the seeded bytes (every LF preceded by CR): messages seeded with CRLF line
endings come back byte-identical, LF-only ones come back with CRLF.
"""

from __future__ import annotations

import atexit
import contextlib
import grp
import itertools
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from imapclient import IMAPClient, imap_utf7

from tests.servers.oauth2 import IntrospectionServer

#: ``(raw message bytes, flags, INTERNALDATE)``. Flags are IMAP system flags (``\\Seen``...) or keywords.
#: A naive INTERNALDATE is taken as local time (like imapclient's APPEND does).
SeedMessage = tuple[bytes, Sequence[str | bytes], datetime]

HOST = "127.0.0.1"
HOSTNAME = "localhost"

#: Folders every ordinary user gets (created and subscribed at first login): name -> SPECIAL-USE.
SPECIAL_FOLDERS: dict[str, str] = {
    "Sent": "\\Sent",
    "Drafts": "\\Drafts",
    "Trash": "\\Trash",
    "Junk": "\\Junk",
    "Archive": "\\Archive",
}

#: Folders of a gmail-like user (``add_user(..., gmail_like=True)``): name -> SPECIAL-USE. Such a user
#: does not get :data:`SPECIAL_FOLDERS`. ``[Gmail]`` itself is a ``\\Noselect`` parent, like on Gmail.
GMAIL_FOLDERS: dict[str, str] = {
    "[Gmail]/All Mail": "\\All",
    "[Gmail]/Sent Mail": "\\Sent",
    "[Gmail]/Drafts": "\\Drafts",
    "[Gmail]/Trash": "\\Trash",
    "[Gmail]/Spam": "\\Junk",
    "[Gmail]/Starred": "\\Flagged",
    "[Gmail]/Important": "\\Important",
}

# Maildir info letters of the IMAP system flags (they must appear sorted in the file name).
_FLAG_LETTERS = {
    "\\draft": "D",
    "\\flagged": "F",
    "\\answered": "R",
    "\\seen": "S",
    "\\deleted": "T",
}
_MAX_KEYWORDS = 26  # Maildir keywords are the letters a-z
_ATOM_SPECIALS = set('(){%*"\\]')
_seq = itertools.count(1)
_instances: set[Dovecot] = set()  # strong refs: the atexit hook must find forgotten instances


class DovecotError(RuntimeError):
    """Dovecot could not be configured, started or driven."""


def find_binary(name: str) -> str | None:
    """Locate a Dovecot binary; ``/usr/sbin`` is often missing from an unprivileged PATH."""
    found = shutil.which(name)
    if found:
        return found
    for directory in ("/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"):
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _escape_field(value: str) -> str:
    """Escape a mailbox name for use as a key inside a userdb setting path (settings_section_escape)."""
    out = []
    for ch in value:
        out.append(
            {"=": "\\e", "/": "\\s", "\\": "\\\\", " ": "\\_", ",": "\\+", ":": "\\c", "\t": "\\t"}.get(
                ch, ch
            )
        )
    return "".join(out)


@dataclass(frozen=True)
class _User:
    name: str
    password: str
    gmail_like: bool


class Dovecot:
    """One standalone Dovecot (IMAP + POP3, plain/STARTTLS and implicit TLS) under ``workdir``.

    ``starttls=False`` builds a server with ``ssl = no``: it offers no STARTTLS, and has no IMAPS/POP3S
    listeners (``imaps_port``/``pop3s_port`` are ``None``) — for "server without STARTTLS" tests.

    ``oauth2=True`` (or :meth:`enable_oauth2`) adds SASL XOAUTH2 and OAUTHBEARER: an ``oauth2`` passdb
    (for those two mechanisms only, before the passwd-file one, which keeps serving PLAIN/LOGIN) asks
    :attr:`oauth2` — an :class:`~tests.servers.oauth2.IntrospectionServer` on loopback, started and
    stopped with this instance — about every token. :meth:`issue_oauth2_token` and
    :meth:`revoke_oauth2_token` manage the tokens; users still come from :meth:`add_user` (userdb).
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        *,
        starttls: bool = True,
        name: str | None = None,
        oauth2: bool = False,
        mail_fsync: str = "never",
    ):
        self.dovecot_bin = find_binary("dovecot")
        self.doveadm_bin = find_binary("doveadm")
        self.doveconf_bin = find_binary("doveconf")
        if not (self.dovecot_bin and self.doveadm_bin and self.doveconf_bin):
            raise DovecotError(
                "dovecot/doveadm/doveconf not installed (apt-get install dovecot-imapd dovecot-pop3d)"
            )
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.tls = starttls
        #: Dovecot's ``mail_fsync``: ``never`` (the tests' fast default) or Dovecot's own ``optimized``.
        self.mail_fsync = mail_fsync
        self.instance_name = name or f"mvtest-{os.getpid()}-{next(_seq)}"

        self.running_as_root = os.geteuid() == 0
        if self.running_as_root:
            nobody = pwd.getpwnam("nobody")
            self.mail_uid, self.mail_gid = nobody.pw_uid, nobody.pw_gid
            self._service_user = None  # Dovecot's own dovecot/dovenull users
        else:
            self.mail_uid, self.mail_gid = os.getuid(), os.getgid()
            self._service_user = pwd.getpwuid(os.getuid()).pw_name

        # The instance root is a fresh 0711 dir on a fast filesystem (tmpfs when roomy: creating 10k
        # files on a busy ext4 takes seconds, on tmpfs 0.2 s), reachable by Dovecot's unprivileged
        # auth/login/mail processes (pytest's tmp dirs are 0700, and every pytest run resets
        # /tmp/pytest-of-USER to 0700). WORK/instance links to it; cleanup() copies the logs to WORK.
        self.root = Path(tempfile.mkdtemp(prefix="mvdovecot-", dir=_instance_parent()))
        self.root.chmod(0o711)
        _instances.add(self)
        link = self.workdir / "instance"
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        link.symlink_to(self.root)
        root = self.root
        self.conf_file = root / "dovecot.conf"
        self.users_dir = root / "users"
        self.homes_dir = root / "homes"
        self.state_dir = root / "state"
        self.base_dir = root / "run"
        self.log_file = root / "dovecot.log"
        self.stderr_file = root / "dovecot.stderr"
        tls_dir = root / "tls"
        self.ca_file = tls_dir / "ca.pem"
        self.cert_file = tls_dir / "server.pem"
        self.key_file = tls_dir / "server.key"
        self.oauth2_conf_file = root / "dovecot-oauth2.conf.ext"
        #: The token-introspection endpoint behind XOAUTH2/OAUTHBEARER (``None`` unless oauth2 enabled).
        self.oauth2: IntrospectionServer | None = IntrospectionServer(HOST) if oauth2 else None
        self.users: dict[str, str] = {}
        self._users: dict[str, _User] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._ports: dict[str, int] = {}

        self.zlib_available = (self._plugin_dir() / "lib30_imap_zlib_plugin.so").exists()

    # ----------------------------------------------------------------- properties
    host = HOST
    hostname = HOSTNAME  # matches the certificate's DNS SAN (tools that ignore IP SANs)

    @property
    def imap_port(self) -> int:
        return self._ports["imap"]

    @property
    def imaps_port(self) -> int | None:
        return self._ports.get("imaps")

    @property
    def pop3_port(self) -> int:
        return self._ports["pop3"]

    @property
    def pop3s_port(self) -> int | None:
        return self._ports.get("pop3s")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    # ----------------------------------------------------------------- lifecycle
    def start(self, timeout: float = 20.0) -> Dovecot:
        if self.running:
            return self
        if not self.root.exists():
            raise DovecotError(f"{self.root} was removed by cleanup()")
        for d in (self.homes_dir, self.state_dir, self.base_dir, self.users_dir):
            d.mkdir(parents=True, exist_ok=True)
        if self.mail_uid != os.getuid():
            os.chown(self.homes_dir, self.mail_uid, self.mail_gid)
        if self.tls and not self.ca_file.exists():
            self._make_certificates()
        if not self._ports:  # a restart keeps the ports
            names = ["imap", "pop3", "imaps", "pop3s"] if self.tls else ["imap", "pop3"]
            self._ports = dict(zip(names, _free_ports(len(names)), strict=True))
        if self.oauth2 is not None:
            self.oauth2.start()
            self.oauth2_conf_file.write_text(self._oauth2_config_text())
            self.oauth2_conf_file.chmod(0o644)  # read by the auth process (an unprivileged user)
        self.conf_file.write_text(self._config_text())
        check = subprocess.run(
            [self.doveconf_bin, "-c", str(self.conf_file), "-n"], check=False, capture_output=True, text=True
        )
        if check.returncode != 0:
            raise DovecotError(f"invalid dovecot config {self.conf_file}:\n{check.stderr}")
        with open(self.stderr_file, "ab") as err:
            self._proc = subprocess.Popen(
                [self.dovecot_bin, "-F", "-c", str(self.conf_file)],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                start_new_session=True,  # own process group: stop() kills master and children at once
            )
        _instances.add(self)
        deadline = time.monotonic() + timeout
        pending = set(self._ports.values())
        while pending:
            if self._proc.poll() is not None:
                self._proc = None
                raise DovecotError(f"dovecot exited during startup:\n{self.log_text()}")
            if time.monotonic() > deadline:
                self.stop()
                raise DovecotError(
                    f"dovecot ports {sorted(pending)} not open after {timeout}s:\n{self.log_text()}"
                )
            for port in list(pending):
                with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
                    pending.discard(port)
            if pending:
                time.sleep(0.02)
        self.clear_auth_penalty()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        pgid = proc.pid  # start_new_session: the master leads its own process group
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
                proc.wait(timeout=timeout)
        # Children normally exit with the master; make sure none of them lingers.
        deadline = time.monotonic() + timeout
        while _group_members(pgid):
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
                break
            time.sleep(0.02)

    def cleanup(self) -> None:
        """Stop, copy the logs to WORK and remove the instance root (mail, indexes, sockets)."""
        self.stop()
        if self.oauth2 is not None:
            self.oauth2.stop()
        if self.root.exists():
            for f in (self.log_file, self.stderr_file):
                if f.exists():
                    shutil.copyfile(f, self.workdir / f.name)
            shutil.rmtree(self.root, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                (self.workdir / "instance").unlink()
        _instances.discard(self)

    def __enter__(self) -> Dovecot:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def clear_auth_penalty(self) -> None:
        """Disable anvil's per-IP auth penalty (it would delay *every* login after a few failures).

        The config already makes the socket inaccessible; removing it is the belt to those braces.
        """
        with contextlib.suppress(FileNotFoundError):
            (self.base_dir / "anvil-auth-penalty").unlink()

    def log_text(self) -> str:
        parts = []
        for f in (self.stderr_file, self.log_file):
            if f.exists():
                parts.append(f.read_text(errors="replace"))
        return "".join(parts)

    def doveadm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``doveadm -c CONF ARGS`` against this instance."""
        res = subprocess.run(
            [self.doveadm_bin, "-c", str(self.conf_file), *args], check=False, capture_output=True, text=True
        )
        if check and res.returncode != 0:
            raise DovecotError(
                f"doveadm {' '.join(args)} failed ({res.returncode}): {res.stderr}{res.stdout}"
            )
        return res

    # ----------------------------------------------------------------- oauth2
    def enable_oauth2(self) -> IntrospectionServer:
        """Turn on XOAUTH2/OAUTHBEARER (see the class doc); restarts a running instance (same ports)."""
        if self.oauth2 is None:
            self.oauth2 = IntrospectionServer(HOST)
            if self.running:
                self.stop()
                self.start()
        return self.oauth2

    def issue_oauth2_token(self, user: str, token: str | None = None) -> str:
        """A bearer token (``token``, or a fresh random one) that logs in as ``user``; returns it."""
        if self.oauth2 is None:
            raise DovecotError("oauth2 is not enabled on this instance (Dovecot(..., oauth2=True))")
        return self.oauth2.issue(user, token)

    def revoke_oauth2_token(self, token: str) -> None:
        """Logins with ``token`` are refused from now on (Dovecot asks the endpoint every time)."""
        if self.oauth2 is None:
            raise DovecotError("oauth2 is not enabled on this instance (Dovecot(..., oauth2=True))")
        self.oauth2.revoke(token)

    # ----------------------------------------------------------------- users
    def add_user(self, name: str, password: str, gmail_like: bool = False) -> None:
        """Add a user (usable at once, also while running) or replace one.

        A replaced password may take up to a second to be seen (passwd-file change check).
        """
        if not name or name.startswith(".") or any(bad in name for bad in ":\n /@%"):
            raise ValueError(f"bad user name {name!r}")
        if ":" in password or "\n" in password:
            raise ValueError("password must not contain ':' or newline")
        self._users[name] = _User(name, password, gmail_like)
        self.users[name] = password
        self.users_dir.mkdir(parents=True, exist_ok=True)
        home = self.home(name)
        home.mkdir(parents=True, exist_ok=True)
        if self.mail_uid != os.getuid():
            os.chown(home, self.mail_uid, self.mail_gid)
        self._write_user(self._users[name])

    def password(self, user: str) -> str:
        return self.users[user]

    def home(self, user: str) -> Path:
        return self.homes_dir / user

    def _write_user(self, u: _User) -> None:
        # One passwd-file per user: Dovecot checks a passwd-file for changes at most once per second,
        # so a user appended to a shared file right after a login would stay unknown for up to 1 s.
        # A new file is a new, freshly loaded database.
        folders = GMAIL_FOLDERS if u.gmail_like else SPECIAL_FOLDERS
        fields = []
        for folder, use in folders.items():
            key = f"userdb_namespace/inbox/mailbox/{_escape_field(folder)}"
            fields.append(f"{key}/auto=subscribe")
            fields.append(f"{key}/special_use={use}")
        path = self.users_dir / u.name
        tmp = path.with_name(f".{u.name}.tmp")
        tmp.write_text(f"{u.name}:{u.password}::::::{' '.join(fields)}\n")
        tmp.chmod(0o644)  # read by the auth process (an unprivileged user)
        os.replace(tmp, path)

    # ----------------------------------------------------------------- clients
    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts only this server's CA (hostname/IP checked)."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def imap_client(
        self,
        user: str,
        *,
        ssl: bool = True,
        starttls: bool = False,
        password: str | None = None,
        timeout: float = 30.0,
        port: int | None = None,
        oauth2_token: str | None = None,
    ) -> IMAPClient:
        """A logged-in IMAPClient: IMAPS (``ssl=True``), plain port + STARTTLS, or plain text.

        ``port`` overrides the port (e.g. a :class:`~tests.servers.proxy.FaultProxy` in front of it).
        ``oauth2_token`` logs in with SASL XOAUTH2 instead of the password.
        """
        if ssl:
            if self.imaps_port is None:
                raise DovecotError("this instance has no TLS (starttls=False)")
            client = IMAPClient(
                HOST, port=port or self.imaps_port, ssl=True, ssl_context=self.ssl_context(), timeout=timeout
            )
        else:
            client = IMAPClient(HOST, port=port or self.imap_port, ssl=False, timeout=timeout)
            if starttls:
                client.starttls(self.ssl_context())
        try:
            if oauth2_token is not None:
                client.oauth2_login(user, oauth2_token)
            else:
                client.login(user, password if password is not None else self.users[user])
        except Exception:
            with contextlib.suppress(Exception):
                client.shutdown()
            raise
        return client

    # ----------------------------------------------------------------- seeding
    @staticmethod
    def stored_form(raw: bytes) -> bytes:
        """The bytes :meth:`seed` writes to disk: CRLF line endings become LF."""
        return raw.replace(b"\r\n", b"\n")

    @staticmethod
    def served_form(raw: bytes) -> bytes:
        """What a client FETCHes as ``BODY[]`` for a message seeded from ``raw`` (measured, 2.3.19).

        Every line ending is CRLF; lone CRs stay; ``CR CR LF`` comes back as ``CR LF`` (it is stored as
        ``CR LF``); NUL bytes come back as 0x80 (``BINARY.PEEK[]`` would have them).
        """
        return re.sub(rb"(?<!\r)\n", b"\r\n", Dovecot.stored_form(raw)).replace(b"\x00", b"\x80")

    def folder_dir(self, user: str, folder: str) -> Path:
        """The Maildir++ directory of ``folder`` (IMAP name with "/" separators, Unicode allowed)."""
        root = self.home(user) / "Maildir"
        if folder.upper() == "INBOX":
            return root
        parts = folder.split("/")
        if any(not p for p in parts):
            raise ValueError(f"bad folder name {folder!r}")
        encoded = [_listescape(imap_utf7.encode(p).decode("ascii")) for p in parts]
        return root / ("." + ".".join(encoded))

    def seed(
        self,
        user: str,
        folder: str,
        messages: Iterable[SeedMessage],
        *,
        subscribe: bool = True,
        clear_recent: bool = True,
    ) -> list[int]:
        """Write messages straight into the user's Maildir and let Dovecot index them.

        Each message becomes ``cur/<unique>,S=<size>,W=<vsize>:2,<flags>`` with mtime = INTERNALDATE;
        keywords go through the folder's ``dovecot-keywords`` (at most 26 per folder). UIDs are
        assigned in list order after any existing messages; the new UIDs are returned. The folder is
        created (and subscribed) if needed; then ``doveadm force-resync`` indexes it. Finally one IMAP
        session SELECTs the folder so that the messages are no longer ``\\Recent`` for the test's
        sessions (``clear_recent=False`` keeps them recent). Fast: about 10k messages per second.
        """
        if user not in self._users:
            raise KeyError(f"unknown user {user!r}")
        chown = self.mail_uid != os.getuid()
        maildir_root = self.home(user) / "Maildir"
        created: list[Path] = []
        for d in (maildir_root, self.folder_dir(user, folder)):
            if not (d / "cur").is_dir():
                for sub in ("", "cur", "new", "tmp"):
                    p = d / sub
                    if not p.exists():
                        p.mkdir(parents=True, exist_ok=True)
                        created.append(p)
                if d != maildir_root:
                    marker = d / "maildirfolder"
                    marker.touch()
                    created.append(marker)
        new_folder = any(p.name == "maildirfolder" for p in created)
        fdir = self.folder_dir(user, folder)
        keywords = _read_keywords(fdir / "dovecot-keywords")
        keywords_changed = False

        base_time = int(time.time())
        pid = os.getpid()
        uniques: list[str] = []
        for i, (raw, flags, internaldate) in enumerate(messages):
            letters = set()
            kw_letters = set()
            for flag in flags:
                f = flag.decode() if isinstance(flag, bytes) else flag
                if f.startswith("\\"):
                    letter = _FLAG_LETTERS.get(f.lower())
                    if letter is None:
                        raise ValueError(f"cannot seed system flag {f!r}")
                    letters.add(letter)
                    continue
                if not f or any(c in _ATOM_SPECIALS or ord(c) < 0x21 or ord(c) > 0x7E for c in f):
                    raise ValueError(f"invalid keyword {f!r}")
                if f not in keywords:
                    index = max(keywords.values(), default=-1) + 1
                    if index >= _MAX_KEYWORDS:
                        raise ValueError(f"more than {_MAX_KEYWORDS} keywords in {folder!r}")
                    keywords[f] = index
                    keywords_changed = True
                kw_letters.add(chr(ord("a") + keywords[f]))
            stored = self.stored_form(raw)
            vsize = len(stored) + stored.count(b"\n") - stored.count(b"\r\n")
            # The leading number orders the new files: Dovecot assigns UIDs to new files sorted by it.
            unique = f"{base_time + i}.M{i % 1000000}P{pid}Q{next(_seq)}.mailvault-seed"
            info = "".join(sorted(letters)) + "".join(sorted(kw_letters))
            path = fdir / "cur" / f"{unique},S={len(stored)},W={vsize}:2,{info}"
            with open(path, "xb") as fh:
                fh.write(stored)
            ts = internaldate.timestamp()
            os.utime(path, (ts, ts))
            if chown:
                os.chown(path, self.mail_uid, self.mail_gid)
            uniques.append(unique)
        if keywords_changed:
            kw_file = fdir / "dovecot-keywords"
            kw_file.write_text("".join(f"{idx} {name}\n" for name, idx in keywords.items()))
            created.append(kw_file)
        if chown:
            for p in created:
                os.chown(p, self.mail_uid, self.mail_gid)
        self.doveadm("force-resync", "-u", user, "*")
        if subscribe and new_folder:
            self.doveadm("mailbox", "subscribe", "-u", user, folder)
        uids = _uids_for(fdir / "dovecot-uidlist", uniques) if uniques else []
        if clear_recent:
            self._absorb_recent(user, folder)
        return uids

    def _absorb_recent(self, user: str, folder: str) -> None:
        """New messages are ``\\Recent`` for the first session that SELECTs the folder: be that one."""
        client = self.imap_client(user, ssl=False)
        try:
            client.select_folder(folder)
        finally:
            with contextlib.suppress(Exception):
                client.logout()

    def seed_append(
        self, user: str, folder: str, messages: Iterable[SeedMessage], batch: int = 200
    ) -> list[int]:
        """APPEND messages over IMAP(S) (MULTIAPPEND in batches); returns the new UIDs (UIDPLUS).

        Goes through Dovecot's APPEND path, so its rewrites apply (e.g. a future INTERNALDATE becomes
        the arrival time; bare CR handling). Creates and subscribes the folder if needed.
        """
        msgs = list(messages)
        client = self.imap_client(user, ssl=self.tls)
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
                resp = client.multiappend(folder, chunk)
                uids.extend(_parse_appenduid(resp))
            client.select_folder(folder)  # take the \\Recent flags, see _absorb_recent
        finally:
            with contextlib.suppress(Exception):
                client.logout()
        return uids

    # ----------------------------------------------------------------- internals
    def _plugin_dir(self) -> Path:
        res = subprocess.run(
            [self.doveconf_bin, "-c", "/dev/null", "-d", "-h", "mail_plugin_dir"],
            check=False,
            capture_output=True,
            text=True,
        )
        return Path(res.stdout.strip() or "/usr/lib/dovecot/modules")

    def _make_certificates(self) -> None:
        tls_dir = self.ca_file.parent
        tls_dir.mkdir(parents=True, exist_ok=True)
        ca_key = tls_dir / "ca.key"
        csr = tls_dir / "server.csr"
        ext = tls_dir / "server.ext"
        ext.write_text(
            "subjectAltName = DNS:localhost, IP:127.0.0.1\n"
            "basicConstraints = critical, CA:FALSE\n"
            "keyUsage = critical, digitalSignature, keyEncipherment\n"
            "extendedKeyUsage = serverAuth\n"
            "subjectKeyIdentifier = hash\n"
            "authorityKeyIdentifier = keyid, issuer\n"
        )
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        cmds = [
            ["openssl", "req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(self.ca_file), "-days", "3650",
             "-subj", "/CN=mailvault test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-addext", "subjectKeyIdentifier=hash"],
            ["openssl", "req", "-new", *ec, "-keyout", str(self.key_file), "-out", str(csr),
             "-subj", "/CN=localhost"],
            ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(self.ca_file), "-CAkey", str(ca_key),
             "-CAcreateserial", "-out", str(self.cert_file), "-days", "3650", "-extfile", str(ext)],
        ]  # fmt: skip
        for cmd in cmds:
            res = subprocess.run(cmd, check=False, capture_output=True, text=True)
            if res.returncode != 0:
                raise DovecotError(f"{' '.join(cmd)} failed: {res.stderr}")
        self.key_file.chmod(0o600)  # read by the master (root) before it drops privileges

    def _config_text(self) -> str:
        p = self._ports
        # Every SPECIAL-USE mailbox name is declared here, inert; the passwd-file switches on, per user,
        # the set it should have (auto=subscribe + special_use). userdb fields can override settings of
        # a declared mailbox but cannot declare one (the list value would need spaces) nor unset one.
        mailboxes = "\n".join(
            f'  mailbox "{name}" {{\n    auto = no\n  }}' for name in [*SPECIAL_FOLDERS, *GMAIL_FOLDERS]
        )
        imap_plugins = "$mail_plugins imap_zlib" if self.zlib_available else "$mail_plugins"
        if self.tls:
            dh = Path("/usr/share/dovecot/dh.pem")
            ssl_block = textwrap.dedent(f"""\
                ssl = yes
                ssl_cert = <{self.cert_file}
                ssl_key = <{self.key_file}
                ssl_min_protocol = TLSv1.2
                """)
            if dh.exists():
                ssl_block += f"ssl_dh = <{dh}\n"
            imaps = f"  inet_listener imaps {{\n    address = {HOST}\n    port = {p['imaps']}\n    ssl = yes\n  }}"
            pop3s = f"  inet_listener pop3s {{\n    address = {HOST}\n    port = {p['pop3s']}\n    ssl = yes\n  }}"
        else:
            ssl_block = "ssl = no\n"
            imaps = pop3s = ""
        if self._service_user:  # unprivileged run: everything as the current user, no chroots
            users_block = textwrap.dedent(f"""\
                default_login_user = {self._service_user}
                default_internal_user = {self._service_user}
                default_internal_group = {grp.getgrgid(os.getgid()).gr_name}
                """)
            chroot = "  chroot =\n"
        else:
            users_block = ""
            chroot = ""
        anvil_chroot = "service anvil {\n  chroot =\n" if chroot else "service anvil {\n"
        return f"""\
# Generated by tests/servers/dovecot.py — a throwaway test instance.
instance_name = {self.instance_name}
base_dir = {self.base_dir}
state_dir = {self.state_dir}
log_path = {self.log_file}
info_log_path = {self.log_file}
debug_log_path = {self.log_file}
log_timestamp = "%Y-%m-%d %H:%M:%S "
listen = {HOST}
protocols = imap pop3
{users_block}
{ssl_block}
disable_plaintext_auth = no
auth_mechanisms = {"plain login xoauth2 oauthbearer" if self.oauth2 is not None else "plain login"}
auth_failure_delay = 0
auth_verbose = yes
login_trusted_networks = 127.0.0.0/8
mail_max_userip_connections = 1000
first_valid_uid = {min(self.mail_uid, 500)}
last_valid_uid = 0
first_valid_gid = {min(self.mail_gid, 1)}
last_valid_gid = 0

mail_location = maildir:~/Maildir
mail_fsync = {self.mail_fsync}
mail_plugins = $mail_plugins listescape

namespace inbox {{
  inbox = yes
  separator = /
  prefix =
{mailboxes}
}}

{self._oauth2_passdb()}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%n {self.users_dir}/%n
}}
userdb {{
  driver = passwd-file
  args = username_format=%n {self.users_dir}/%n
  default_fields = uid={self.mail_uid} gid={self.mail_gid} home={self.homes_dir}/%n
}}

protocol imap {{
  mail_plugins = {imap_plugins}
}}

service imap-login {{
{chroot}  inet_listener imap {{
    address = {HOST}
    port = {p["imap"]}
  }}
{imaps}
}}
service pop3-login {{
{chroot}  inet_listener pop3 {{
    address = {HOST}
    port = {p["pop3"]}
  }}
{pop3s}
}}
{anvil_chroot}  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""

    def _oauth2_passdb(self) -> str:
        """The oauth2 passdb block (empty without oauth2): tokens never reach the passwd-file passdb."""
        if self.oauth2 is None:
            return ""
        return textwrap.dedent(f"""\
            passdb {{
              driver = oauth2
              mechanisms = xoauth2 oauthbearer
              args = {self.oauth2_conf_file}
              result_failure = return-fail
              result_internalfail = return-fail
            }}
            """)

    def _oauth2_config_text(self) -> str:
        assert self.oauth2 is not None
        return textwrap.dedent(f"""\
            # Generated by tests/servers/dovecot.py: RFC 7662 introspection at a loopback test endpoint.
            introspection_mode = post
            introspection_url = {self.oauth2.url}
            force_introspection = yes
            username_attribute = username
            active_attribute = active
            active_value = true
            timeout_msecs = 10000
            """)


# --------------------------------------------------------------------- helpers


def _listescape(part: str) -> str:
    """listescape plugin, per hierarchy level: ``\\``, ``.`` and a leading ``~`` are stored as ``\\XX``."""
    part = part.replace("\\", "\\5c").replace(".", "\\2e")
    return "\\7e" + part[1:] if part.startswith("~") else part


def _read_keywords(path: Path) -> dict[str, int]:
    keywords: dict[str, int] = {}
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text().splitlines():
            idx, _, name = line.partition(" ")
            if idx.isdigit() and name:
                keywords[name] = int(idx)
    return dict(sorted(keywords.items(), key=lambda kv: kv[1]))


def _uids_for(uidlist: Path, uniques: list[str]) -> list[int]:
    """Map seeded file names to their UIDs through Dovecot's ``dovecot-uidlist``."""
    by_unique: dict[str, int] = {}
    lines = uidlist.read_text().splitlines()[1:]
    for line in lines:
        uid, _, rest = line.partition(" ")
        _, _, fname = rest.partition(":")
        by_unique[re.split(r"[,:]", fname, maxsplit=1)[0]] = int(uid)
    try:
        return [by_unique[u] for u in uniques]
    except KeyError as exc:
        raise DovecotError(f"seeded file {exc} not indexed in {uidlist}") from None


def _parse_appenduid(resp: bytes | str) -> list[int]:
    text = resp.decode() if isinstance(resp, bytes) else str(resp)
    m = re.search(r"APPENDUID \d+ ([\d:,]+)", text)
    if not m:
        return []
    uids: list[int] = []
    for part in m.group(1).split(","):
        lo, _, hi = part.partition(":")
        uids.extend(range(int(lo), int(hi or lo) + 1))
    return uids


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def _traversable(path: Path) -> bool:
    """Can any user reach files below ``path`` (search bit for "others" on it and all its parents)?"""
    return all(p.stat().st_mode & 0o001 for p in [path, *path.parents])


def _instance_parent() -> str:
    """Where instance roots go: $MAILVAULT_DOVECOT_TMP, else /dev/shm if it has room, else the tmp dir."""
    env = os.environ.get("MAILVAULT_DOVECOT_TMP")
    if env:
        return env
    for cand in ("/dev/shm", tempfile.gettempdir(), "/tmp"):
        path = Path(cand)
        try:
            st = os.statvfs(path)
        except OSError:
            continue
        roomy = st.f_bavail * st.f_frsize >= 2 * 1024**3
        if roomy and os.access(path, os.W_OK | os.X_OK) and _traversable(path) and len(cand) <= 30:
            return cand
    return "/tmp"


@atexit.register
def _stop_all() -> None:
    for inst in list(_instances):
        with contextlib.suppress(Exception):
            inst.cleanup()


__all__ = [
    "GMAIL_FOLDERS",
    "HOST",
    "HOSTNAME",
    "SPECIAL_FOLDERS",
    "Dovecot",
    "DovecotError",
    "SeedMessage",
    "find_binary",
]
