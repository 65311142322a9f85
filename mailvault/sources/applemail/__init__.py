"""Apple Mail stores: ``~/Library/Mail/V2``…``V10`` trees of ``.emlx`` files, and the
``Name.mbox/mbox`` bundles Mail exports.

Every ``Messages/`` directory found below the root is one folder; its name is the chain of
``*.mbox`` directories above it (``Work.mbox/Clients.mbox`` → ``Work/Clients``), so the
numbered and UUID directories between them do not matter. ``INBOX.mbox`` is ``INBOX``. An
exported bundle (a ``*.mbox`` directory holding a file named ``mbox``) is read as an mbox
file and named the same way. When two accounts of a ``V*`` tree have a folder of the same
name, the account directory name is put in front.

Problems (a wrong byte count, an unreadable file, a partial message whose attachment files
are missing) are appended to the ``problems`` list as one line each, naming file and folder.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from mailvault.errors import SourceError
from mailvault.model import FolderInfo, SourceMessage
from mailvault.sources.applemail.emlx import flags_from_bits, parse_emlx
from mailvault.sources.applemail.partial import rebuild_partial
from mailvault.sources.counting import count_mbox
from mailvault.sources.local import Folder, header_date, iter_local

__all__ = ["count_messages", "flags_from_bits", "iter_applemail", "looks_like_applemail"]

log = logging.getLogger(__name__)

_ROWID_RE = re.compile(r"^(\d+)(\.partial)?\.emlx$")
_SPECIAL = {
    "inbox": (None, "INBOX"),
    "sent messages": ("\\Sent", None),
    "sent": ("\\Sent", None),
    "drafts": ("\\Drafts", None),
    "deleted messages": ("\\Trash", None),
    "trash": ("\\Trash", None),
    "junk": ("\\Junk", None),
    "archive": ("\\Archive", None),
}
_SKIP_DIRS = {"MailData", "Attachments", "Signatures", "RSS", "Bundles"}


def _mailbox_name(part: str) -> str | None:
    if part.endswith(".mbox"):
        return part[:-5]
    if part.endswith(".imapmbox"):
        return part[:-9]
    return None


def looks_like_applemail(path: Path) -> bool:
    """A ``.emlx`` file, a ``V<N>`` directory, a ``*.mbox`` bundle, or a tree holding ``.emlx`` files
    (searched a few levels deep)."""
    if path.is_file():
        return path.name.endswith(".emlx")
    if re.fullmatch(r"V\d+", path.name) or (path.name.endswith(".mbox") and (path / "mbox").is_file()):
        return True
    for _dirpath, dirnames, filenames in _walk(path, max_depth=8):
        if any(f.endswith(".emlx") for f in filenames):
            return True
        if any(d.endswith(".mbox") and os.path.isfile(os.path.join(_dirpath, d, "mbox")) for d in dirnames):
            return True
    return False


def _walk(root: Path, max_depth: int = 64) -> Iterator[tuple[str, list[str], list[str]]]:
    base = len(root.parts)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in _SKIP_DIRS)
        if len(Path(dirpath).parts) - base >= max_depth:
            dirnames[:] = []
        yield dirpath, dirnames, sorted(filenames)


def _folder_parts(rel: tuple[str, ...]) -> tuple[str | None, list[str]]:
    """(account directory or None, mailbox name components) for a directory path below the root."""
    names = [n for n in (_mailbox_name(p) for p in rel) if n is not None]
    first_mbox = next((i for i, p in enumerate(rel) if _mailbox_name(p) is not None), len(rel))
    above = [p for p in rel[:first_mbox] if p != "Messages"]
    account = above[-1] if above else None
    return account, names


def _folder_info(names: list[str], name_raw: str) -> FolderInfo:
    special: str | None = None
    parts = list(names) or ["INBOX"]
    if len(parts) == 1:
        special, rename = _SPECIAL.get(parts[0].lower(), (None, None))
        if rename:
            parts = [rename]
    return FolderInfo(name="/".join(parts), name_raw=name_raw, delimiter="/", special_use=special)


def iter_applemail(path: str | Path, problems: list[str]) -> Iterator[Folder]:
    """Yield ``(FolderInfo, messages)`` for every mailbox of the Apple Mail store at ``path``."""
    root = Path(path)
    if root.is_file():
        if not root.name.endswith(".emlx"):
            raise SourceError(f"{root}: not an .emlx file")
        info = FolderInfo(name="INBOX", name_raw=root.name, delimiter="/")
        yield info, _iter_emlx(root.parent, [root.name], "INBOX", problems)
        return
    if not root.is_dir():
        raise SourceError(f"{root}: no such file or directory")
    found: list[tuple[str | None, list[str], str, str, list[str]]] = []  # account, names, kind, dir, files
    root_names = [n for n in [_mailbox_name(root.name)] if n]
    for dirpath, _dirnames, filenames in _walk(root):
        rel = Path(dirpath).relative_to(root).parts
        if "mbox" in filenames and (_mailbox_name(Path(dirpath).name) is not None or not rel):
            account, names = _folder_parts(rel)
            found.append((account, root_names + names, "bundle", dirpath, ["mbox"]))
        emlx = [f for f in filenames if f.endswith(".emlx")]
        if emlx:
            account, names = _folder_parts(rel)
            found.append((account, root_names + names, "emlx", dirpath, emlx))
    # Folder names: the mailbox chain; the account directory in front where names collide.
    by_name: dict[str, set[str | None]] = {}
    for account, names, _kind, _d, _f in found:
        by_name.setdefault("/".join(names), set()).add(account)
    merged: dict[str, list[tuple[str, str, list[str]]]] = {}
    infos: dict[str, FolderInfo] = {}
    for account, names, kind, d, files in found:
        parts = list(names)
        if len(by_name["/".join(names)]) > 1 and account:
            parts = [account, *parts]
        info = _folder_info(parts, str(Path(d).relative_to(root)))
        infos.setdefault(info.name, info)
        merged.setdefault(info.name, []).append((kind, d, files))
    for name, sources in merged.items():
        yield infos[name], _iter_sources(sources, name, problems)


def _iter_sources(
    sources: list[tuple[str, str, list[str]]], folder: str, problems: list[str]
) -> Iterator[SourceMessage]:
    for kind, d, files in sources:
        if kind == "bundle":
            for _info, messages in iter_local(Path(d) / "mbox", "mbox"):
                yield from messages
        else:
            yield from _iter_emlx(Path(d), files, folder, problems)


def _sort_key(name: str) -> tuple[int, str]:
    m = _ROWID_RE.match(name)
    return (int(m.group(1)), name) if m else (1 << 62, name)


def _iter_emlx(d: Path, files: list[str], folder: str, problems: list[str]) -> Iterator[SourceMessage]:
    for filename in sorted(files, key=_sort_key):
        p = d / filename
        try:
            with open(p, "rb") as f:
                data = f.read()
                mtime = os.fstat(f.fileno()).st_mtime
        except FileNotFoundError:
            problems.append(f"{p} (folder {folder}): vanished while reading, skipped")
            continue
        except OSError as e:
            problems.append(f"{p} (folder {folder}): cannot read: {e.strerror or e}, skipped")
            continue
        parsed = parse_emlx(data)
        if parsed is None:
            problems.append(f"{p} (folder {folder}): not an emlx message, skipped")
            continue
        if parsed.problem:
            problems.append(f"{p} (folder {folder}): {parsed.problem}")
        raw = parsed.raw
        extra: dict[str, object] = {"emlx": filename}
        if filename.endswith(".partial.emlx"):
            raw = _rebuild(d, filename, raw, folder, problems, extra)
        remote_id = parsed.plist.get("remote-id")
        if isinstance(remote_id, str | int) and not isinstance(remote_id, bool):
            extra["apple_remote_id"] = str(remote_id)
        bits = parsed.plist.get("flags")
        if isinstance(bits, int) and not isinstance(bits, bool):
            extra["apple_flags"] = bits
        yield SourceMessage(
            uid=filename.removesuffix(".emlx").removesuffix(".partial"),
            raw=raw,
            flags=parsed.flags,
            internaldate=parsed.date_received or header_date(raw) or _mtime(mtime),
            extra=extra,
        )


def _mtime(value: float) -> datetime:
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return datetime.fromtimestamp(0, tz=UTC)


def _rebuild(
    d: Path, filename: str, raw: bytes, folder: str, problems: list[str], extra: dict[str, object]
) -> bytes:
    rowid = filename.split(".", 1)[0]
    attachments = d.parent / "Attachments" / rowid

    def lookup(part: str, name: str | None) -> bytes | None:
        part_dir = attachments / part
        try:
            names = sorted(n for n in os.listdir(part_dir) if not n.startswith("."))
        except OSError:
            return None
        if not names:
            return None
        chosen = name if name in names else names[0]
        try:
            return (part_dir / chosen).read_bytes()
        except OSError:
            return None

    result = rebuild_partial(raw, lookup)
    if result.missing:
        problems.append(
            f"{d / filename} (folder {folder}): attachment part(s) {', '.join(result.missing)} not found "
            f"under {attachments}; kept as Apple Mail stubs"
        )
        extra["apple_partial_missing"] = result.missing
    if result.filled:
        extra["apple_partial_rebuilt"] = result.filled
    return result.raw


def count_messages(path: Path) -> int:
    """Number of ``.emlx`` files below ``path`` (plus ``From`` lines of exported bundles)."""
    n = 0
    for dirpath, _dirnames, filenames in _walk(path):
        n += sum(1 for f in filenames if f.endswith(".emlx"))
        if "mbox" in filenames and _mailbox_name(Path(dirpath).name) is not None:
            n += count_mbox(Path(dirpath) / "mbox")
    return n
