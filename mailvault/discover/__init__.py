"""``mailvault discover``: find every mail store on a home directory or an old disk
(:mod:`.scan`), and import each one as its own account (:mod:`.importing`)."""

from __future__ import annotations

from mailvault.discover.importing import StoreImport, import_stores
from mailvault.discover.scan import Store, discover

__all__ = ["Store", "StoreImport", "discover", "import_stores"]
