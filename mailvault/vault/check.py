"""``mailvault check``: verify the vault's structure and, with read_data, every byte."""

from __future__ import annotations

from dataclasses import dataclass, field

from mailvault.errors import FormatError, IntegrityError, MailvaultError, ObjectNotFound
from mailvault.progress import QUIET, Progress
from mailvault.vault.format import PackHeader, id_from_name, pack_name, sha256
from mailvault.vault.index import decode_index_file, rebuild
from mailvault.vault.packs import read_pack
from mailvault.vault.repository import Repository


@dataclass
class CheckReport:
    snapshots: int = 0
    packs: int = 0
    index_files: int = 0
    blobs_checked: int = 0
    bytes_read: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def check(repo: Repository, *, read_data: bool = False, progress: Progress = QUIET) -> CheckReport:
    report = CheckReport()
    backend = repo.backend
    # 1. Every index file decrypts, parses and matches its id (a full cache rebuild).
    try:
        report.index_files = rebuild(repo.cache, backend, repo.sealer)
    except MailvaultError as exc:
        report.errors.append(f"index: {exc}")
        return report
    stored = {}
    for name, size in backend.list("data/"):
        try:
            stored[id_from_name(name)] = size
        except FormatError:
            report.warnings.append(f"unexpected object {name}")
    indexed = repo.cache.pack_ids()
    report.packs = len(stored)
    for pack_id in sorted(indexed - stored.keys()):
        report.errors.append(f"pack {pack_id.hex()[:12]} is in the index but missing from storage")
    unindexed = stored.keys() - indexed
    if unindexed:
        report.warnings.append(
            f"{len(unindexed)} pack(s) not in any index (left by an interrupted run; "
            "the next backup re-indexes them, prune removes them)"
        )
    # 2. Every snapshot decrypts; every manifest and message it names is indexed.
    needed: set[bytes] = set()
    ids = repo.snapshot_ids()
    with progress.bar("check snapshots", total=len(ids), unit="snap") as bar:
        for snap_id in ids:
            bar.update()
            try:
                snap = repo.load_snapshot(snap_id)
            except MailvaultError as exc:
                report.errors.append(f"snapshot {snap_id.hex()[:12]}: {exc}")
                continue
            report.snapshots += 1
            for folder in snap.folders:
                try:
                    entries = repo.read_manifest(folder)
                except MailvaultError as exc:
                    report.errors.append(f"snapshot {snap.id[:12]} folder {folder.name!r}: manifest: {exc}")
                    continue
                needed.add(bytes.fromhex(folder.manifest))
                for e in entries:
                    blob = bytes.fromhex(e.blob)
                    if blob not in needed:
                        needed.add(blob)
                        if not repo.cache.has(blob):
                            report.errors.append(
                                f"snapshot {snap.id[:12]} folder {folder.name!r} uid {e.uid}: "
                                f"message {e.blob[:12]} is not in the vault"
                            )
    # 3. With read_data: every pack read whole; its id, header, blocks and every blob hash
    #    verified against the index files that list it.
    if read_data:
        total = sum(stored.values())
        done: set[bytes] = set()
        with progress.bar("read data", total=total, unit="B", unit_scale=True) as bar:
            for name, _size in backend.list("index/"):
                try:
                    packs = decode_index_file(repo.sealer, backend.get(name))
                except MailvaultError as exc:
                    report.errors.append(f"index {name}: {exc}")
                    continue
                for pack_id, expected in packs:
                    if pack_id in done or pack_id not in stored:
                        continue
                    done.add(pack_id)
                    _check_pack(repo, pack_id, expected, report)
                    report.bytes_read += stored[pack_id]
                    bar.update(stored[pack_id])
            for pack_id in sorted(stored.keys() - done):
                _check_pack(repo, pack_id, None, report)
                report.bytes_read += stored[pack_id]
                bar.update(stored[pack_id])
    return report


def _check_pack(repo: Repository, pack_id: bytes, expected: PackHeader | None, report: CheckReport) -> None:
    """Verify one pack; ``expected`` is its header from an index file (None for an unindexed pack)."""
    short = pack_id.hex()[:12]
    try:
        data = repo.backend.get(pack_name(pack_id))
    except ObjectNotFound:
        report.errors.append(f"pack {short} vanished during the check")
        return
    if sha256(data) != pack_id:
        report.errors.append(f"pack {short}: content does not match its id (damaged)")
    try:
        header, blocks = read_pack(repo.sealer, data, repo.load_dict)
    except (FormatError, IntegrityError) as exc:
        report.errors.append(f"pack {short}: header: {exc}")
        return
    for number, raw in enumerate(blocks):
        if isinstance(raw, Exception):
            affected = sum(1 for e in header.blobs if e.block == number)
            report.errors.append(f"pack {short} block {number}: {raw} ({affected} blob(s) affected)")
    if expected is None:
        return
    if expected.blocks != header.blocks:
        report.errors.append(f"pack {short}: block table differs from the index")
    actual = {(e.type, e.block, e.offset, e.length): e.id for e in header.blobs}
    for e in expected.blobs:
        report.blobs_checked += 1
        got = actual.get((e.type, e.block, e.offset, e.length))
        if got is None:
            report.errors.append(
                f"pack {short}: blob {e.id.hex()[:12]} listed by the index is not in the pack"
            )
        elif got != e.id and got:
            report.errors.append(f"pack {short} block {e.block}: blob {e.id.hex()[:12]} fails its hash")
