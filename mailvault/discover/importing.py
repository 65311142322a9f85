"""``discover --import``: each store found becomes one snapshot of its own account."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from mailvault.discover.scan import Store
from mailvault.errors import MailvaultError
from mailvault.importer import ImportResult, import_local
from mailvault.progress import QUIET, Progress
from mailvault.vault.repository import Repository

__all__ = ["StoreImport", "import_stores"]


@dataclass
class StoreImport:
    """What happened to one store: the import result, or the error that stopped it."""

    store: Store
    result: ImportResult | None = None
    error: str = ""
    problems: list[str] = field(default_factory=list)


def import_stores(
    repo: Repository,
    stores: list[Store],
    *,
    progress: Progress = QUIET,
    on_start: Callable[[int, Store], None] | None = None,
    on_done: Callable[[StoreImport], None] | None = None,
) -> list[StoreImport]:
    """Import every store, one snapshot per store under ``store.account``.

    A store that cannot be read is reported and the next one is imported; the others'
    snapshots are committed either way (each snapshot is its own commit point).
    """
    out: list[StoreImport] = []
    for i, store in enumerate(stores, 1):
        if on_start is not None:
            on_start(i, store)
        item = StoreImport(store)
        try:
            item.result = import_local(repo, store.path, store.account, fmt=store.format, progress=progress)
            item.problems = list(item.result.problems)
        except MailvaultError as exc:
            item.error = exc.message
        out.append(item)
        if on_done is not None:
            on_done(item)
    return out
