"""``mailvault discover``: find the mail stores on a home directory or an old disk.

One walk over the tree (symbolic links are not followed). Each directory is looked at in
this order, and a directory taken as (part of) a store is not searched further:

1. ``profiles.ini`` → every Thunderbird / SeaMonkey profile it names; each account
   directory under the profile's ``Mail/`` and ``ImapMail/`` is a store. A copied profile
   without ``profiles.ini`` (``prefs.js`` beside ``Mail/``) counts too.
2. ``V2``…``V10`` under ``Library/Mail`` → one Apple Mail store per account directory; an
   exported ``Name.mbox/mbox`` bundle is one store.
3. ``Windows Live Mail`` / ``Windows Mail`` → one ``.eml`` store per account directory.
4. A Maildir (``cur/`` + ``new/``), or a mail root (``Mail``, ``Maildir``, ``local-mail``…)
   holding Maildir folders → one Maildir store (Evolution, KMail, mutt, offlineimap…).
5. MH folders (``.mh_sequences``, Claws Mail's ``.claws_mark``/``.claws_cache``) → one store.
6. Files: Outlook ``.pst``/``.ost`` (or the ``!BDN`` magic), Google Takeout mbox
   (``X-Gmail-Labels``), other mbox files (first line ``From ``), directories of ``.eml``
   files.

Message counts are cheap: files are counted, mbox ``From`` lines are counted; a PST is
counted by the PST reader when it is installed, otherwise estimated from its size
(``estimate: true``).
"""

from __future__ import annotations

import configparser
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mailvault.discover.counts import count_eml, count_maildir, count_thunderbird, pst_count, tree_size
from mailvault.errors import SourceError
from mailvault.sources.applemail import count_messages as count_emlx
from mailvault.sources.counting import count_mbox
from mailvault.sources.detect import PST_MAGIC
from mailvault.sources.takeout import archive_mbox_bytes, is_takeout_archive

__all__ = ["Store", "discover"]

#: Directories never searched (system trees of a mounted disk, caches, version control).
SKIP_DIRS = {
    ".git",
    ".hg",
    ".svn",
    "node_modules",
    "__pycache__",
    ".cache",
    "Cache",
    "cache2",
    "proc",
    "sys",
    "dev",
    "Windows",
    "Program Files",
    "Program Files (x86)",
    "$Recycle.Bin",
    "System Volume Information",
}
#: Names of directories that hold a mail client's folders as Maildirs.
MAIL_ROOTS = {"mail", "maildir", ".maildir", "local-mail", "mails", "local", "mail-local"}
_MAILDIR_SUB = ("cur", "new")
_EXT_RE = re.compile(r"\.[A-Za-z][A-Za-z0-9_-]{0,7}$")
_NAME_RE = re.compile(r"[^A-Za-z0-9@._+-]+")
#: Without the PST reader: assumed average size of one item in a PST/OST.
PST_BYTES_PER_MESSAGE = 50_000
#: For a Takeout archive: assumed average size of one message in its mbox.
TAKEOUT_BYTES_PER_MESSAGE = 50_000


@dataclass
class Store:
    """One mail store found on disk."""

    client: str  # thunderbird, seamonkey, outlook, apple-mail, windows-live-mail, evolution, …
    format: str  # the importer format: thunderbird, pst, applemail, eml, maildir, mbox, takeout
    path: str
    messages: int
    bytes: int
    estimate: bool = False
    #: The account name ``--import`` files it under: client + store.
    account: str = ""
    store: str = ""  # short store name (profile/account, file name)
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Walk:
    root: Path
    stores: list[Store] = field(default_factory=list)
    claimed: set[str] = field(default_factory=set)


def discover(path: str | Path, *, progress: Callable[[str], None] | None = None) -> list[Store]:
    """Every mail store below ``path`` (see the module docstring). Raises SourceError for a bad path."""
    root = Path(path)
    if not root.exists():
        raise SourceError(f"{root}: no such file or directory")
    if not root.is_dir():
        raise SourceError(f"{root}: not a directory (discover scans a home directory or a disk)")
    w = _Walk(root)
    for dirpath, dirnames, filenames in os.walk(root, onerror=None):
        d = Path(dirpath)
        if progress is not None:
            progress(dirpath)
        if dirpath in w.claimed:
            dirnames[:] = []
            continue
        dirnames[:] = sorted(n for n in dirnames if n not in SKIP_DIRS)
        filenames.sort()
        if _visit_dir(w, d, dirnames, filenames):
            dirnames[:] = []
            continue
        dirnames[:] = [n for n in dirnames if str(d / n) not in w.claimed]
        _visit_files(w, d, filenames, dirnames)
    _name_accounts(w.stores)
    return w.stores


# ---------------------------------------------------------------------------------------------
# directories


def _visit_dir(w: _Walk, d: Path, dirnames: list[str], filenames: list[str]) -> bool:
    """Look at a directory as a whole; True if it is a store (do not descend)."""
    if "profiles.ini" in filenames:
        _mozilla_profiles(w, d)
    if "prefs.js" in filenames and ("Mail" in dirnames or "ImapMail" in dirnames):
        _mozilla_profile(w, d, _mozilla_client(d), d.name)
        return True
    if re.fullmatch(r"V\d+", d.name) and d.parent.name == "Mail":
        _apple_mail(w, d, dirnames)
        return True
    if d.name.endswith(".mbox") and "mbox" in filenames:
        _add(w, "apple-mail", "applemail", d, count_emlx(d), d.name[:-5])
        return True
    if d.name in ("Windows Live Mail", "Windows Mail"):
        client = "windows-live-mail" if d.name == "Windows Live Mail" else "windows-mail"
        for name in dirnames:
            sub = d / name
            n = count_eml(sub)
            if n:
                _add(w, client, "eml", sub, n, name)
        return True
    if all(s in dirnames for s in _MAILDIR_SUB) or (
        d.name.lower() in MAIL_ROOTS and any(_is_maildir(d / n) for n in dirnames)
    ):
        _add(w, _client_from_path(d, "maildir"), "maildir", d, count_maildir(d), d.name)
        return True
    if any(_is_mh(d / n) for n in dirnames):
        client = (
            "claws-mail"
            if any((d / n / ".claws_mark").exists() or (d / n / ".claws_cache").exists() for n in dirnames)
            else "mh"
        )
        _add(w, client, "eml", d, count_eml(d), d.name)
        return True
    if any(f.lower().endswith(".eml") for f in filenames):
        _add(w, _client_from_path(d, "eml"), "eml", d, count_eml(d), d.name)
        return True
    if any(f.endswith(".emlx") for f in filenames):
        _add(w, "apple-mail", "applemail", d, count_emlx(d), d.name)
        return True
    return False


def _is_maildir(d: Path) -> bool:
    return (d / "cur").is_dir() and (d / "new").is_dir()


def _is_mh(d: Path) -> bool:
    return any((d / marker).exists() for marker in (".mh_sequences", ".claws_mark", ".claws_cache"))


def _mozilla_client(d: Path) -> str:
    return "seamonkey" if "seamonkey" in str(d).lower() else "thunderbird"


def _mozilla_profiles(w: _Walk, d: Path) -> None:
    ini = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        ini.read(d / "profiles.ini", encoding="utf-8")
    except (configparser.Error, OSError, UnicodeDecodeError):
        return
    for section in ini.sections():
        if not section.lower().startswith("profile"):
            continue
        rel = ini.get(section, "Path", fallback="")
        if not rel:
            continue
        relative = ini.get(section, "IsRelative", fallback="1").strip() == "1"
        profile = d / rel.replace("\\", "/") if relative else Path(rel)
        if not profile.is_dir() or str(profile) in w.claimed:
            continue
        name = ini.get(section, "Name", fallback=profile.name)
        _mozilla_profile(w, profile, _mozilla_client(d), name)


def _mozilla_profile(w: _Walk, profile: Path, client: str, name: str) -> None:
    if str(profile) in w.claimed:
        return
    w.claimed.add(str(profile))
    for kind in ("Mail", "ImapMail"):
        base = profile / kind
        try:
            accounts = sorted(e for e in os.listdir(base) if (base / e).is_dir())
        except OSError:
            continue
        for account in accounts:
            p = base / account
            n = count_thunderbird(p)
            _add(w, client, "thunderbird", p, n, f"{name}-{account}")


def _apple_mail(w: _Walk, v: Path, dirnames: list[str]) -> None:
    for name in dirnames:
        if name in ("MailData", "Bundles", "RSS"):
            continue
        account = v / name
        n = count_emlx(account)
        if n:  # V3+ account directories are UUIDs: the first block is enough to tell them apart
            short = name.split("-")[0] if re.fullmatch(r"[0-9A-Fa-f-]{36}", name) else name
            _add(w, "apple-mail", "applemail", account, n, short)


# ---------------------------------------------------------------------------------------------
# files


def _visit_files(w: _Walk, d: Path, filenames: list[str], dirnames: list[str]) -> None:
    for name in filenames:
        if name.startswith("."):
            continue
        p = d / name
        low = name.lower()
        head = _head(p)
        if head is None:
            continue
        if low.endswith((".pst", ".ost")) or head.startswith(PST_MAGIC):
            if head.startswith(PST_MAGIC):
                _add_pst(w, p)
            continue
        if low.endswith((".zip", ".tgz", ".tar.gz")) and is_takeout_archive(p):
            mbox_bytes = archive_mbox_bytes(p) or p.stat().st_size
            store = _add(w, "google-takeout", "takeout", p, max(1, mbox_bytes // TAKEOUT_BYTES_PER_MESSAGE),
                         _stem(name), estimate=True)  # fmt: skip
            store.note = "Takeout archive: imported as a stream; message count estimated from the size"
            continue
        if head.startswith(b"From ") and (low.endswith((".mbox", ".mbx")) or not _EXT_RE.search(name)):
            if _is_takeout_head(head):
                _add(w, "google-takeout", "takeout", p, count_mbox(p), _stem(name))
            else:
                _add(w, _client_from_path(p, "mbox"), "mbox", p, count_mbox(p), _stem(name))


def _head(p: Path) -> bytes | None:
    try:
        if not p.is_file() or p.stat().st_size == 0:
            return None
        with open(p, "rb") as f:
            return f.read(64 * 1024)
    except OSError:
        return None


def _is_takeout_head(head: bytes) -> bool:
    first_end = head.find(b"\n") + 1
    block = head[first_end:].split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    return bool(re.search(rb"(?im)^(x-gmail-labels|x-gm-thrid)[ \t]*:", block))


def _add_pst(w: _Walk, p: Path) -> None:
    size = p.stat().st_size
    counted = pst_count(p)
    if counted is None:
        n, estimate = max(1, size // PST_BYTES_PER_MESSAGE), True
    else:
        n, estimate = counted, False
    note = "" if counted is not None else "message count estimated from the file size"
    store = _add(w, "outlook", "pst", p, n, _stem(p.name), estimate=estimate, size=size)
    store.note = note


# ---------------------------------------------------------------------------------------------
# counting and naming


def _client_from_path(p: Path, default: str) -> str:
    s = str(p).lower()
    for needle, client in (
        ("evolution", "evolution"),
        ("local-mail", "kmail"),
        ("kmail", "kmail"),
        ("claws", "claws-mail"),
        ("windows live mail", "windows-live-mail"),
        ("windows mail", "windows-mail"),
        ("neomutt", "neomutt"),
        ("mutt", "mutt"),
        ("takeout", "google-takeout"),
    ):
        if needle in s:
            return client
    return default


def _stem(name: str) -> str:
    for suffix in (".mbox", ".mbx", ".pst", ".ost", ".zip", ".tgz", ".tar.gz"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _add(
    w: _Walk,
    client: str,
    fmt: str,
    p: Path,
    messages: int,
    store: str,
    *,
    estimate: bool = False,
    size: int | None = None,
) -> Store:
    w.claimed.add(str(p))
    s = Store(client, fmt, str(p), messages, tree_size(p) if size is None else size, estimate, store=store)
    w.stores.append(s)
    return s


def _name_accounts(stores: list[Store]) -> None:
    used: dict[str, int] = {}
    for s in stores:
        base = _NAME_RE.sub("-", f"{s.client}-{s.store}").strip("-.") or s.client
        used[base] = used.get(base, 0) + 1
        s.account = base if used[base] == 1 else f"{base}-{used[base]}"


def iter_json(stores: list[Store]) -> Iterator[dict[str, Any]]:
    for s in stores:
        yield s.to_json()
