"""The earnings ledger: every token movement of the node's market business, persisted, with time, request and slot.

Kinds of entry (:class:`EntryKind`) and their effect on the wallet's token balance (``flow``):

- ``collateralPosted`` (−): collateral sent with a ``fillSlot``;
- ``payout`` (+) and ``collateralReturned`` (+): what a ``freeSlot`` of a finished or cancelled slot paid;
- ``slashed`` (0): collateral that will not come back (slashed, or kept by the contract when the request failed
  or the slot was taken away for repair). It moved out of the wallet when it was posted, so it has no flow of its
  own: it is the *loss* the operator reads in ``totals.lost``;
- ``purchasePayment`` (−) and ``purchaseRefund`` (+): the client side (a storage request's price, funds withdrawn
  back). Purchasing records them through :class:`MoneyRecorder` (:meth:`EarningsLedger.record_purchase`).

So for one sale, ``Σ flow`` of its entries is exactly the change of the token balance its transactions caused
(tested on the embedded chain through a whole sale and a slashed one, ``tests/e2e/test_ledger_embedded.py``).

Keys (in the metadata store):

- ``meta/ledger/entry/<inv:012d>`` → one entry (JSON); ``inv = 10**12 - 1 - id`` so key order is newest first;
- ``meta/ledger/sale/<sale:012d>/<id:012d>`` → ``b""``: the entries of one sale;
- ``meta/ledger/once/<fact>`` → the entry id: the fact is recorded (a replay after a restart records nothing);
- ``meta/ledger/totals`` → the running totals per kind (JSON).

Every entry goes in with its once-marker, its index and the new totals in **one write batch**, so a crash
cannot count an entry twice nor leave totals that disagree with the entries. A crash between the chain
transaction and this write loses that entry (the chain keeps the truth; ``codex-node check`` compares).

This module never talks to the chain: callers give it the amounts they observed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import structlog

from codex_node.clock import Clock
from codex_node.market.types import RequestId
from codex_node.stores.kv import KVStore, WriteBatch

log = structlog.get_logger(__name__)

PREFIX = "meta/ledger/"
ENTRY_PREFIX = PREFIX + "entry/"
SALE_PREFIX = PREFIX + "sale/"
ONCE_PREFIX = PREFIX + "once/"
TOTALS_KEY = PREFIX + "totals"
_INV = 10**12 - 1


class EntryKind(StrEnum):
    COLLATERAL_POSTED = "collateralPosted"
    COLLATERAL_RETURNED = "collateralReturned"
    PAYOUT = "payout"
    SLASHED = "slashed"
    PURCHASE_PAYMENT = "purchasePayment"
    PURCHASE_REFUND = "purchaseRefund"


FLOW: dict[EntryKind, int] = {
    EntryKind.COLLATERAL_POSTED: -1,
    EntryKind.COLLATERAL_RETURNED: 1,
    EntryKind.PAYOUT: 1,
    EntryKind.SLASHED: 0,
    EntryKind.PURCHASE_PAYMENT: -1,
    EntryKind.PURCHASE_REFUND: 1,
}
"""The sign of each kind's effect on the wallet's token balance."""


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One recorded movement. ``slot_index``/``sale_id`` are ``None`` for purchases."""

    id: int
    at: int
    kind: EntryKind
    amount: int
    request_id: RequestId
    slot_index: int | None = None
    sale_id: int | None = None
    note: str = ""

    @property
    def flow(self) -> int:
        """The signed change of the token balance this entry stands for."""
        return FLOW[self.kind] * self.amount

    def encode(self) -> bytes:
        return json.dumps(
            {
                "id": self.id,
                "at": self.at,
                "kind": self.kind.value,
                "amount": str(self.amount),
                "requestId": self.request_id.hex(),
                "slotIndex": self.slot_index,
                "saleId": self.sale_id,
                "note": self.note,
            }
        ).encode()

    @staticmethod
    def decode(raw: bytes) -> LedgerEntry:
        d = json.loads(raw)
        return LedgerEntry(
            id=int(d["id"]),
            at=int(d["at"]),
            kind=EntryKind(d["kind"]),
            amount=int(d["amount"]),
            request_id=RequestId(bytes.fromhex(d["requestId"])),
            slot_index=None if d["slotIndex"] is None else int(d["slotIndex"]),
            sale_id=None if d["saleId"] is None else int(d["saleId"]),
            note=str(d.get("note", "")),
        )


@dataclass(frozen=True, slots=True)
class LedgerTotals:
    """Sums per kind over every entry ever recorded."""

    by_kind: dict[EntryKind, int]

    def of(self, kind: EntryKind) -> int:
        return self.by_kind.get(kind, 0)

    @property
    def earned(self) -> int:
        """Payouts received."""
        return self.of(EntryKind.PAYOUT)

    @property
    def lost(self) -> int:
        """Collateral that did not come back."""
        return self.of(EntryKind.SLASHED)

    @property
    def net_flow(self) -> int:
        """The token balance change all entries stand for."""
        return sum(FLOW[k] * v for k, v in self.by_kind.items())

    def plus(self, entry: LedgerEntry) -> LedgerTotals:
        by_kind = dict(self.by_kind)
        by_kind[entry.kind] = by_kind.get(entry.kind, 0) + entry.amount
        return LedgerTotals(by_kind)

    def encode(self) -> bytes:
        return json.dumps({k.value: str(v) for k, v in self.by_kind.items()}).encode()

    @staticmethod
    def decode(raw: bytes | None) -> LedgerTotals:
        if raw is None:
            return LedgerTotals({})
        return LedgerTotals({EntryKind(k): int(v) for k, v in json.loads(raw).items()})


class MoneyRecorder(Protocol):
    """The port purchasing records its money through (implemented by :class:`EarningsLedger`).

    Call ``record_purchase(EntryKind.PURCHASE_PAYMENT, request_id, amount)`` once the ``requestStorage``
    transaction is mined (``amount``: what it transferred, ``ask.max_price``), and
    ``record_purchase(EntryKind.PURCHASE_REFUND, request_id, amount)`` once ``withdrawFunds`` is (``amount``: what
    came back). Recording the same (kind, request) twice records nothing the second time.
    """

    def record_purchase(self, kind: EntryKind, request_id: RequestId, amount: int, *, note: str = "") -> bool: ...


class EarningsLedger:
    """Appends and reads ledger entries (see the module docstring). Not thread-safe; one per node, on its loop."""

    def __init__(self, kv: KVStore, clock: Clock) -> None:
        self._kv = kv
        self._clock = clock
        first = next(iter(kv.iterate(ENTRY_PREFIX, limit=1)), None)
        self._next_id = 0 if first is None else _INV - int(first[0][len(ENTRY_PREFIX) :]) + 1

    # --- writing --------------------------------------------------------------------------------------------------

    def record(
        self,
        kind: EntryKind,
        request_id: RequestId,
        amount: int,
        *,
        fact: str,
        slot_index: int | None = None,
        sale_id: int | None = None,
        note: str = "",
        batch: WriteBatch | None = None,
    ) -> LedgerEntry | None:
        """Record ``amount`` of ``kind`` once per ``fact`` (a key naming the event: a replay records nothing).

        With ``batch``, the entry's writes are added to it and the caller writes it (with the accounting change
        the entry records); otherwise they are written here. Returns the entry, or ``None`` if ``fact`` was
        recorded before or ``amount`` is 0 (nothing moved: no entry)."""
        if amount < 0:
            raise ValueError(f"a ledger amount must not be negative, got {amount}")
        once = ONCE_PREFIX + fact
        if amount == 0 or self._kv.get(once) is not None:
            return None
        entry = LedgerEntry(
            id=self._next_id,
            at=self._clock.now(),
            kind=kind,
            amount=amount,
            request_id=request_id,
            slot_index=slot_index,
            sale_id=sale_id,
            note=note,
        )
        own = batch is None
        b = self._kv.batch() if batch is None else batch
        b.put(_entry_key(entry.id), entry.encode())
        b.put(once, str(entry.id).encode())
        if sale_id is not None:
            b.put(f"{SALE_PREFIX}{sale_id:012d}/{entry.id:012d}", b"")
        b.put(TOTALS_KEY, self.totals().plus(entry).encode())
        if own:
            self._kv.write(b)
        self._next_id += 1
        log.info(
            "ledger entry",
            kind=kind.value,
            amount=amount,
            request_id=request_id.hex(),
            slot_index=slot_index,
            sale_id=sale_id,
        )
        return entry

    def record_purchase(self, kind: EntryKind, request_id: RequestId, amount: int, *, note: str = "") -> bool:
        """:class:`MoneyRecorder`: a purchase's payment or refund; ``True`` if it was recorded now."""
        if kind not in (EntryKind.PURCHASE_PAYMENT, EntryKind.PURCHASE_REFUND):
            raise ValueError(f"not a purchase entry: {kind}")
        return self.record(kind, request_id, amount, fact=f"{kind.value}/{request_id.hex()}", note=note) is not None

    # --- reading --------------------------------------------------------------------------------------------------

    def totals(self) -> LedgerTotals:
        return LedgerTotals.decode(self._kv.get(TOTALS_KEY))

    def page(self, *, before: int | None = None, limit: int = 50) -> list[LedgerEntry]:
        """Up to ``limit`` entries, newest first, older than entry id ``before`` (``None``: from the newest)."""
        start = None if before is None else _entry_key(before)
        return [LedgerEntry.decode(v) for _, v in self._kv.iterate(ENTRY_PREFIX, start_after=start, limit=limit)]

    def of_sale(self, sale_id: int) -> list[LedgerEntry]:
        """The entries of one sale, oldest first."""
        out = []
        for key, _ in self._kv.iterate(f"{SALE_PREFIX}{sale_id:012d}/"):
            raw = self._kv.get(_entry_key(int(key.rsplit("/", 1)[1])))
            if raw is not None:
                out.append(LedgerEntry.decode(raw))
        return out

    def __iter__(self) -> Iterator[LedgerEntry]:
        for _, v in self._kv.iterate(ENTRY_PREFIX):
            yield LedgerEntry.decode(v)


def _entry_key(entry_id: int) -> str:
    return f"{ENTRY_PREFIX}{_INV - entry_id:012d}"
