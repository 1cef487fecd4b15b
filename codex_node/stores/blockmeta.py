"""The repo store's metadata records: the LevelDB keys it uses, a block's :class:`BlockMeta`, and :class:`MetaTx`.

Key layout and invariants: ``stores/repostore.py``. This module is pure apart from :meth:`MetaTx.meta`, which reads
a record through the store's :class:`KVStore`; nothing here writes.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from codex_node.errors import StoreError
from codex_node.stores.blockfiles import Location
from codex_node.stores.kv import KVStore, WriteBatch

TTL_PREFIX = "meta/ttl/"
PENDING_PREFIX = "meta/pending/"
MANIFEST_PREFIX = "meta/manifest/"
RELEASE_PREFIX = "meta/release/"
TOTAL_KEY = "meta/total"
PACK_PREFIX = "meta/pack/"
NEXT_PACK_KEY = "meta/packs/next"
LAYOUT_KEY = "meta/layout"
LAYOUT_PACKS = b"packs/1"

_META = struct.Struct(">BqIIBQQ")  # version, expiry, size, refCount, standalone, pack, offset
_META_VERSION = 1


def pack_key(pack: int) -> str:
    return f"{PACK_PREFIX}{pack:016x}"


@dataclass(frozen=True, slots=True)
class BlockMeta:
    """A block's index entry. ``expiry`` is a Unix timestamp: the block may be deleted once ``now >= expiry``.

    ``pack``/``offset`` say where its ``size`` bytes are (``stores/blockfiles.py``); ``pack == 0`` only in an entry
    of the old file-per-block layout, which start-up converts (``stores/migration.py``).
    """

    expiry: int
    size: int
    ref_count: int = 0
    standalone: bool = False
    pack: int = 0
    offset: int = 0

    @property
    def location(self) -> Location:
        return Location(self.pack, self.offset, self.size)

    def encode(self) -> bytes:
        return _META.pack(
            _META_VERSION, self.expiry, self.size, self.ref_count, int(self.standalone), self.pack, self.offset
        )

    @classmethod
    def decode(cls, raw: bytes) -> BlockMeta:
        if raw[:1] == b"{":
            return cls._decode_legacy(raw)
        try:
            version, expiry, size, ref_count, standalone, pack, offset = _META.unpack(raw)
        except struct.error as e:
            raise StoreError(f"corrupt block metadata: {e}") from e
        if version != _META_VERSION:
            raise StoreError(f"block metadata of unknown version {version}")
        return cls(expiry, size, ref_count, bool(standalone), pack, offset)

    @classmethod
    def _decode_legacy(cls, raw: bytes) -> BlockMeta:
        try:
            d = json.loads(raw)
            return cls(int(d["expiry"]), int(d["size"]), int(d["refCount"]), bool(d.get("standalone", False)))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise StoreError(f"corrupt block metadata: {e}") from e


@dataclass(frozen=True, slots=True)
class PackRecord:
    """A pack's books: ``size`` bytes committed (start-up cuts the file back to it), ``count`` blocks and ``live``
    bytes that index entries point to, and the latest expiry any of them had (never lowered)."""

    size: int = 0
    count: int = 0
    live: int = 0
    max_expiry: int = 0

    @property
    def dead(self) -> int:
        return self.size - self.live

    def encode(self) -> bytes:
        return json.dumps(
            {"size": self.size, "count": self.count, "live": self.live, "maxExpiry": self.max_expiry},
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, raw: bytes) -> PackRecord:
        try:
            d = json.loads(raw)
            return cls(int(d["size"]), int(d["count"]), int(d["live"]), int(d["maxExpiry"]))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise StoreError(f"corrupt pack record: {e}") from e


class MetaTx:
    """Metadata changes staged under the store lock, written as one batch by ``RepoStore.commit``."""

    def __init__(self, kv: KVStore, batch: WriteBatch | None = None) -> None:
        self.kv = kv
        self.batch: WriteBatch = kv.batch() if batch is None else batch
        self.metas: dict[str, BlockMeta | None] = {}
        self.original: dict[str, BlockMeta | None] = {}  # as stored before this transaction
        self.pack_ends: dict[int, int] = {}  # packs appended to: the end of the bytes this transaction commits
        self.used = 0
        self.reserved = 0
        self.blocks = 0

    def meta(self, text: str) -> BlockMeta | None:
        if text in self.metas:
            return self.metas[text]
        if text in self.original:
            return self.original[text]
        raw = self.kv.get(TTL_PREFIX + text)
        meta = None if raw is None else BlockMeta.decode(raw)
        self.original[text] = meta
        return meta

    def prefetch(self, texts: Sequence[str]) -> None:
        """Read the stored entries of ``texts`` not read yet, as one group (before :meth:`meta` asks one by one)."""
        todo = [t for t in dict.fromkeys(texts) if t not in self.metas and t not in self.original]
        raws = self.kv.get_many([TTL_PREFIX + t for t in todo])
        for text, raw in zip(todo, raws, strict=True):
            self.original[text] = None if raw is None else BlockMeta.decode(raw)

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
