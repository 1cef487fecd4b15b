"""A bounded, persisted history of each slot's sale transitions, served by ``GET /sales/slots/{slotId}``.

Keys (in the metadata store):

- ``meta/sales/history/<slotId-hex>/<seq:08d>`` → one :class:`HistoryEntry` (JSON);
- ``meta/sales/history-ended/<seq:012d>`` → ``{slot, requestId, slotIndex}``: sales that ended, oldest first.

Each slot keeps its last :data:`MAX_ENTRIES_PER_SLOT` transitions; the histories of the last
:data:`MAX_ENDED_SLOTS` ended sales are kept and older ones are deleted, so the store cannot grow without bound.
Each record goes in with its pruning in one write batch.

Download progress (:meth:`SaleHistory.progress`) is not a transition: it is a ``progress`` field (bytes secured, of
the slot's size) on the slot's latest entry while that entry is its Downloading one, rewritten in place at most
once per second of the clock (and once more at the end), so a download adds no entry and at most one small write
per second, whatever its size.

The sales themselves — every sale ever started, its outcome, reason or error, transitions and proofs, paged for
``GET /sales/history`` — are kept by the :class:`~codex_node.sales.salebook.SaleBook` this history holds
(:attr:`SaleHistory.book`): the per-slot transitions here serve ``GET /sales/slots/{slotId}`` as before.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from codex_node.clock import Clock
from codex_node.market.types import RequestId, SlotId
from codex_node.sales.salebook import SaleBook
from codex_node.stores.kv import KVStore

PREFIX = "meta/sales/history/"
ENDED_PREFIX = "meta/sales/history-ended/"
MAX_ENTRIES_PER_SLOT = 64
MAX_ENDED_SLOTS = 256


DOWNLOADING = "SaleDownloading"


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a slot's download is: ``nbytes`` of ``total`` secured in the repo, as of ``at``."""

    at: int
    nbytes: int
    total: int


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One transition: ``from_state`` is ``None`` for the first state of an agent (also after a restart).

    ``progress``: on a Downloading entry, how far the download got (``None`` before its first batch)."""

    at: int
    from_state: str | None
    to_state: str
    cause: str
    progress: Progress | None = None

    def to_json(self) -> dict[str, object]:
        d: dict[str, object] = {"at": self.at, "from": self.from_state, "to": self.to_state, "cause": self.cause}
        if self.progress is not None:
            p = self.progress
            d["progress"] = {"at": p.at, "bytes": p.nbytes, "total": p.total}
        return d

    @staticmethod
    def from_json(raw: bytes) -> HistoryEntry:
        d = json.loads(raw)
        p = d.get("progress")
        return HistoryEntry(
            at=int(d["at"]),
            from_state=d["from"],
            to_state=str(d["to"]),
            cause=str(d["cause"]),
            progress=None if p is None else Progress(int(p["at"]), int(p["bytes"]), int(p["total"])),
        )


@dataclass(frozen=True, slots=True)
class EndedSale:
    """A sale that ended: which slot of which request."""

    slot: SlotId
    request_id: RequestId
    slot_index: int

    def encode(self) -> bytes:
        return json.dumps(
            {"slot": self.slot.hex(), "requestId": self.request_id.hex(), "slotIndex": self.slot_index}
        ).encode()

    @staticmethod
    def decode(raw: bytes) -> EndedSale:
        d = json.loads(raw)
        return EndedSale(
            SlotId(bytes.fromhex(d["slot"])), RequestId(bytes.fromhex(d["requestId"])), int(d["slotIndex"])
        )


class SaleHistory:
    """Appends and reads per-slot transition histories."""

    def __init__(
        self,
        kv: KVStore,
        clock: Clock,
        *,
        max_entries: int = MAX_ENTRIES_PER_SLOT,
        max_ended: int = MAX_ENDED_SLOTS,
    ) -> None:
        self._kv = kv
        self._clock = clock
        self._max_entries = max_entries
        self._max_ended = max_ended
        # slot-hex → (first kept seq, next seq); filled lazily from the store.
        self._ranges: dict[str, tuple[int, int]] = {}
        self._ended: list[tuple[int, EndedSale]] | None = None
        self._progress_at: dict[str, int] = {}  # slot-hex → clock second of its last progress write
        self.book = SaleBook(kv, clock)

    def record(self, slot: SlotId, from_state: str | None, to_state: str, cause: str) -> HistoryEntry:
        entry = HistoryEntry(self._clock.now(), from_state, to_state, cause)
        key = slot.hex()
        first, nxt = self._range(key)
        batch = self._kv.batch()
        batch.put(_entry_key(key, nxt), json.dumps(entry.to_json()).encode())
        nxt += 1
        while nxt - first > self._max_entries:
            batch.delete(_entry_key(key, first))
            first += 1
        self._kv.write(batch)
        self._ranges[key] = (first, nxt)
        self._progress_at.pop(key, None)
        return entry

    def progress(self, slot: SlotId, nbytes: int, total: int) -> bool:
        """Record that ``nbytes`` of the slot's ``total`` are secured, on its latest entry if that is its
        Downloading one; at most once per clock second unless the download is complete. Returns whether it wrote."""
        key = slot.hex()
        now = self._clock.now()
        done = nbytes >= total
        if not done and self._progress_at.get(key) == now:
            return False
        first, nxt = self._range(key)
        if nxt == first:
            return False
        raw = self._kv.get(_entry_key(key, nxt - 1))
        if raw is None:
            return False
        entry = HistoryEntry.from_json(raw)
        if entry.to_state != DOWNLOADING:
            return False
        updated = replace(entry, progress=Progress(now, min(nbytes, total), total))
        self._kv.put(_entry_key(key, nxt - 1), json.dumps(updated.to_json()).encode())
        if done:
            self._progress_at.pop(key, None)
        else:
            self._progress_at[key] = now
        return True

    def entries(self, slot: SlotId) -> list[HistoryEntry]:
        return [HistoryEntry.from_json(v) for _, v in self._kv.iterate(f"{PREFIX}{slot.hex()}/")]

    def has(self, slot: SlotId) -> bool:
        return self._range(slot.hex())[1] > self._range(slot.hex())[0]

    def ended(self, slot: SlotId, request_id: RequestId, slot_index: int) -> None:
        """The slot's sale ended: keep its history among the last ``max_ended`` ended sales."""
        ended = self._ended_list()
        record = EndedSale(slot, request_id, slot_index)
        seq = ended[-1][0] + 1 if ended else 0
        batch = self._kv.batch()
        batch.put(f"{ENDED_PREFIX}{seq:012d}", record.encode())
        ended.append((seq, record))
        dropped: list[str] = []
        while len(ended) > self._max_ended:
            old_seq, old = ended.pop(0)
            batch.delete(f"{ENDED_PREFIX}{old_seq:012d}")
            if any(e.slot == old.slot for _, e in ended):
                continue  # the same slot ended again later (sold anew after a repair): keep it
            old_key = old.slot.hex()
            for k, _ in self._kv.iterate(f"{PREFIX}{old_key}/"):
                batch.delete(k)
            dropped.append(old_key)
        self._kv.write(batch)
        for k in dropped:
            self._ranges.pop(k, None)

    def ended_sale(self, slot: SlotId) -> EndedSale | None:
        """The latest ended sale of ``slot`` whose history is still kept."""
        for _, record in reversed(self._ended_list()):
            if record.slot == slot:
                return record
        return None

    def _range(self, key: str) -> tuple[int, int]:
        r = self._ranges.get(key)
        if r is None:
            seqs = [int(k.rsplit("/", 1)[1]) for k, _ in self._kv.iterate(f"{PREFIX}{key}/")]
            r = (seqs[0], seqs[-1] + 1) if seqs else (0, 0)
            self._ranges[key] = r
        return r

    def _ended_list(self) -> list[tuple[int, EndedSale]]:
        if self._ended is None:
            self._ended = [
                (int(k[len(ENDED_PREFIX) :]), EndedSale.decode(v)) for k, v in self._kv.iterate(ENDED_PREFIX)
            ]
        return self._ended


def _entry_key(slot_hex: str, seq: int) -> str:
    return f"{PREFIX}{slot_hex}/{seq:08d}"
