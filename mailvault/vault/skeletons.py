"""Messages stored as skeletons (single-instance attachments, docs/FORMAT.md) seen whole: which
cannot be rebuilt on a damaged vault, and which parts a set of them refers to."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from mailvault.errors import FormatError, IntegrityError, MailvaultError
from mailvault.vault import sia
from mailvault.vault.format import BLOB_SKELETON

if TYPE_CHECKING:
    from mailvault.vault.repository import Repository


def broken_skeletons(repo: Repository, present: Callable[[bytes], bool]) -> set[bytes]:
    """Messages stored as skeletons that cannot be rebuilt: the skeleton itself or one of its
    parts is not ``present`` (used by check and repair on a damaged vault)."""
    broken: set[bytes] = set()
    for blob_id, _loc in repo.cache.iter_type(BLOB_SKELETON):
        if not present(blob_id):
            continue
        try:
            parts = sia.part_ids(repo.read_stored(blob_id)[1])
        except MailvaultError:
            broken.add(blob_id)
            continue
        if not all(present(p) for p in parts):
            broken.add(blob_id)
    return broken


def skeleton_parts(repo: Repository, blob_ids: Iterable[bytes]) -> set[bytes]:
    """The parts that the skeletons among ``blob_ids`` refer to (reads only the skeletons)."""
    wanted = set(blob_ids)
    skeletons = [(loc, i) for i, loc in repo.cache.iter_type(BLOB_SKELETON) if i in wanted]
    skeletons.sort(key=lambda x: (x[0].pack_id, x[0].block_no, x[0].offset))  # one read per block
    parts: set[bytes] = set()
    for _loc, blob_id in skeletons:
        _type, data = repo.read_stored(blob_id)
        try:
            parts.update(sia.part_ids(data))
        except FormatError as exc:
            raise IntegrityError(f"message {blob_id.hex()[:12]}: {exc}") from None
    return parts
