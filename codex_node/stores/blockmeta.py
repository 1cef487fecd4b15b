"""The repo store's metadata records: the LevelDB keys it uses, a block's :class:`BlockMeta`, and :class:`MetaTx`.

Key layout and invariants: ``stores/repostore.py``. This module is pure apart from :meth:`MetaTx.meta`, which reads
a record through the store's :class:`KVStore`; nothing here writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from codex_node.errors import StoreError
from codex_node.stores.kv import KVStore, WriteBatch

TTL_PREFIX = "meta/ttl/"
PENDING_PREFIX = "meta/pending/"
MANIFEST_PREFIX = "meta/manifest/"
RELEASE_PREFIX = "meta/release/"
TOTAL_KEY = "meta/total"


@dataclass(frozen=True, slots=True)
class BlockMeta:
    """Per-block metadata. ``expiry`` is a Unix timestamp: the block may be deleted once ``now >= expiry``."""

    expiry: int
    size: int
    ref_count: int = 0
    standalone: bool = False

    def encode(self) -> bytes:
        return json.dumps(
            {"expiry": self.expiry, "size": self.size, "refCount": self.ref_count, "standalone": self.standalone},
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, raw: bytes) -> BlockMeta:
        try:
            d = json.loads(raw)
            return cls(int(d["expiry"]), int(d["size"]), int(d["refCount"]), bool(d.get("standalone", False)))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise StoreError(f"corrupt block metadata: {e}") from e


class MetaTx:
    """Metadata changes staged under the store lock, written as one batch by ``RepoStore.commit``."""

    def __init__(self, kv: KVStore, batch: WriteBatch | None = None) -> None:
        self.kv = kv
        self.batch: WriteBatch = kv.batch() if batch is None else batch
        self.metas: dict[str, BlockMeta | None] = {}
        self.used = 0
        self.reserved = 0
        self.blocks = 0

    def meta(self, text: str) -> BlockMeta | None:
        if text in self.metas:
            return self.metas[text]
        raw = self.kv.get(TTL_PREFIX + text)
        return None if raw is None else BlockMeta.decode(raw)

    def add(self, text: str, meta: BlockMeta) -> None:
        self.metas[text] = meta
        self.used += meta.size
        self.blocks += 1

    def update(self, text: str, meta: BlockMeta) -> None:
        self.metas[text] = meta

    def remove(self, text: str, meta: BlockMeta) -> None:
        self.metas[text] = None
        self.used -= meta.size
        self.blocks -= 1
