"""A vault's chunking and compression settings (fixed at ``init``, kept in its config)."""

from __future__ import annotations

from dataclasses import dataclass

#: Default single-instance threshold (docs/FORMAT.md, "Single-instance attachments").
DEFAULT_SIA_MIN_PART = 4096


@dataclass(frozen=True)
class VaultParams:
    pack_size: int = 16 << 20
    block_size: int = 4 << 20  # corpus A: 0.187 of raw at 4 MiB, 0.202 at 1 MiB (docs/FORMAT.md)
    zstd_level: int = 9
    dictionary: str = "auto"  # "auto" | "off"
    #: MIME leaf parts of at least this many bytes are stored once (single-instance); 0 = off.
    sia_min_part: int = DEFAULT_SIA_MIN_PART

    def validate(self) -> None:
        from mailvault.errors import ConfigError

        if not (64 << 10) <= self.pack_size <= (1 << 30):
            raise ConfigError("pack size must be between 64 KiB and 1 GiB")
        if not (4 << 10) <= self.block_size <= min(self.pack_size, 64 << 20):
            raise ConfigError("block size must be between 4 KiB and min(pack size, 64 MiB)")
        if not 1 <= self.zstd_level <= 22:
            raise ConfigError("zstd level must be between 1 and 22")
        if self.dictionary not in ("auto", "off"):
            raise ConfigError("dictionary must be 'auto' or 'off'")
        if self.sia_min_part and not 1024 <= self.sia_min_part <= (64 << 20):
            raise ConfigError("attachment threshold must be 0 (off) or between 1 KiB and 64 MiB")
