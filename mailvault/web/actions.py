"""What the UI's buttons do: resolve a selection, search, diff, and start restores and exports.

A selection is either explicit message keys (``SNAPSHOT:FOLDER#:UID``, as the checkboxes post them)
or a whole search result (query + account + snapshot). Both resolve to the same shape, per snapshot
the folders and UIDs chosen, which the core restore and export take as their filter.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from mailvault.errors import ConfigError
from mailvault.index import Hit, SnapshotDiff, count, diff_snapshots, open_index, search, update_index
from mailvault.progress import Progress
from mailvault.vault.repository import Repository
from mailvault.web.jobs import Jobs, JobState


@dataclass
class Selection:
    keys: list[str] = field(default_factory=list)
    query: str = ""
    account: str | None = None
    snapshot: str = "latest"

    @classmethod
    def from_form(cls, form: Mapping[str, Any]) -> Selection:
        getlist = getattr(form, "getlist", None)
        keys = [str(k) for k in getlist("item")] if getlist else []
        if str(form.get("all") or "") == "1":
            return cls(
                query=str(form.get("q") or ""),
                account=str(form.get("account") or "") or None,
                snapshot=str(form.get("snapshot") or "latest"),
            )
        return cls(keys=keys)


#: snapshot id -> folder name -> {(uid as a string, blob hex)}: the shape restore and export filter by.
Chosen = dict[str, dict[str, set[tuple[str, str]]]]


class Actions:
    def __init__(self, repo: Repository, jobs: Jobs) -> None:
        self.repo = repo
        self.jobs = jobs
        self._lock = threading.Lock()  # one index update at a time

    # -- selection ------------------------------------------------------------------------------
    def resolve(self, sel: Selection) -> Chosen:
        chosen: Chosen = {}
        if sel.query:
            for hit in self._search_all(sel.query, sel.account, sel.snapshot):
                chosen.setdefault(hit.snapshot, {}).setdefault(hit.folder, set()).add(
                    (str(hit.uid), hit.blob)
                )
            if not chosen:
                raise ConfigError("the search matches nothing")
            return chosen
        wanted: dict[tuple[str, int], set[str]] = {}
        for key in sel.keys:
            sid, _, rest = key.partition(":")
            fi, _, uid = rest.partition(":")
            if not sid or not fi.isdigit() or not uid:
                raise ConfigError(f"bad selection {key!r}")
            wanted.setdefault((sid, int(fi)), set()).add(uid)
        for (sid, fno), uids in wanted.items():
            snap = self.repo.resolve_snapshot(sid)
            if fno >= len(snap.folders):
                raise ConfigError(f"snapshot {sid[:12]} has no folder #{fno}")
            folder = snap.folders[fno]
            picked = {(str(e.uid), e.blob) for e in self.repo.read_manifest(folder) if str(e.uid) in uids}
            chosen.setdefault(snap.id, {}).setdefault(folder.name, set()).update(picked)
        if not any(chosen.values()):
            raise ConfigError("nothing selected")
        return chosen

    # -- search and diff (the core of issue 10 lives in mailvault.index) ---------------------------
    def _search_all(self, q: str, account: str | None, snapshot: str) -> list[Hit]:
        with self._lock:
            update_index(self.repo)
        db = open_index(self.repo)
        try:
            return search(db, q, account=account, snapshot=snapshot)
        finally:
            db.close()

    def search_page(
        self, q: str, account: str | None, snapshot: str, page: int, size: int
    ) -> tuple[int, list[dict[str, Any]]]:
        """(number of hits, the rows of page ``page``): only that page's hits are read (a
        common word matches half a million messages of a large vault)."""
        with self._lock:
            update_index(self.repo)
        db = open_index(self.repo)
        try:
            total = count(db, q, account=account, snapshot=snapshot)
            hits = search(db, q, account=account, snapshot=snapshot, limit=size, offset=(page - 1) * size)
        finally:
            db.close()
        rows = []
        folder_no: dict[tuple[str, str], int] = {}
        for h in hits:
            key = (h.snapshot, h.folder)
            if key not in folder_no:
                snap = self.repo.resolve_snapshot(h.snapshot)
                for i, f in enumerate(snap.folders):
                    folder_no[(snap.id, f.name)] = i
            fi = folder_no.get(key, 0)
            rows.append(
                {
                    "key": f"{h.snapshot}:{fi}:{h.uid}",
                    "blob": h.blob,
                    "uid": h.uid,
                    "flags": h.flags,
                    "date": (h.date or "")[:16].replace("T", " "),
                    "size": h.size,
                    "from": h.from_,
                    "subject": h.subject or "(no subject)",
                    "account": h.account,
                    "folder": h.folder,
                    "link": f"/message/{h.blob}?snapshot={h.snapshot}&folder={fi}&uid={quote(str(h.uid))}",
                }
            )
        return total, rows

    def diff(self, a: str, b: str) -> SnapshotDiff:
        return diff_snapshots(self.repo, a, b)

    # -- restore and export ---------------------------------------------------------------------
    def start_restore(
        self, sel: Selection, *, target: str, password: str, ca_file: str | None, into: str | None
    ) -> JobState:
        from mailvault.net.session import Credentials, TLSPolicy, parse_url
        from mailvault.restore import RestoreOptions, restore

        chosen = self.resolve(sel)
        endpoint = parse_url(target)
        if endpoint.protocol != "imap":
            raise ConfigError("restore needs an imap:// or imaps:// target")
        secret = password.encode()
        creds = Credentials(password=lambda: secret)
        tls = TLSPolicy(ca_file, False)
        total = sum(len(u) for f in chosen.values() for u in f.values())

        def work(progress: Progress) -> tuple[int, str]:
            uploaded = already = failed = 0
            code = 0
            for sid, folders in chosen.items():
                opts = RestoreOptions(snapshot=sid, into=into, selection=folders)
                r = restore(self.repo, endpoint, creds, tls, opts, progress=progress)
                uploaded += r.uploaded
                already += r.skipped_existing
                failed += len(r.failures)
                code = max(code, r.exit_code)
            return code, (
                f"{total} selected: {uploaded} uploaded, {already} already there, {failed} failed "
                f"({endpoint.account}@{endpoint.host})"
            )

        return self.jobs.start("restore", f"restore {total} messages into {endpoint.host}", work)

    def start_export(self, sel: Selection, *, dest: str, fmt: str) -> JobState:
        from mailvault.export import open_exporter

        if fmt not in ("maildir", "mbox", "eml"):
            raise ConfigError("format must be maildir, mbox or eml")
        if not dest:
            raise ConfigError("give a destination directory")
        chosen = self.resolve(sel)
        total = sum(len(u) for f in chosen.values() for u in f.values())

        def work(progress: Progress) -> tuple[int, str]:
            n = 0
            exporter = open_exporter(dest, fmt)
            try:
                with progress.bar("export", total=total) as bar:
                    for sid, folders in chosen.items():
                        snap = self.repo.resolve_snapshot(sid)
                        for folder in snap.folders:
                            picked = folders.get(folder.name)
                            if not picked:
                                continue
                            for e in self.repo.read_manifest(folder):
                                if (str(e.uid), e.blob) not in picked:
                                    continue
                                raw = self.repo.read_blob(bytes.fromhex(e.blob))
                                date = datetime.fromisoformat(e.internaldate) if e.internaldate else None
                                exporter.add(folder.name, folder.delimiter, raw, e.flags, date, e.blob)
                                n += 1
                                bar.update()
            finally:
                exporter.close()
            return 0, f"exported {n} messages to {dest} ({fmt})"

        return self.jobs.start("export", f"export {total} messages to {dest}", work)
