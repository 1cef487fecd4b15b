"""The record of every sale the node ever started: outcome, reason or error, transitions and proofs, paged.

A *sale* is one agent's attempt at one slot: the slot queue may try a slot again (a new sale) after an ignored
one, and a slot lost to repair may be sold anew. A sale resumed after a restart (``Unknown``, ``Resuming``) keeps
its record: the active sales are indexed by slot.

Keys (in the metadata store):

- ``meta/sales/sale/<inv:012d>`` → one :class:`SaleRecord` (JSON); ``inv = 10**12 - 1 - id``: newest first;
- ``meta/sales/sale-outcome/<outcome>/<inv:012d>`` → ``b""``: the sales of one outcome, for the ``state`` filter;
- ``meta/sales/sale-active/<slotId-hex>`` → the id of the slot's sale in progress.

A record is rewritten with its indexes in one write batch at every change. It keeps its last
:data:`MAX_TRANSITIONS` transitions and :data:`MAX_PROOFS` proofs; at most :data:`MAX_SALES` records are kept
(the oldest go first), so the store cannot grow without bound. Reads are paged: a page of the list reads only its
own records, however many there are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from codex_node.clock import Clock
from codex_node.market.types import RequestId, SlotId
from codex_node.stores.kv import KVStore, WriteBatch

PREFIX = "meta/sales/sale/"
OUTCOME_PREFIX = "meta/sales/sale-outcome/"
ACTIVE_PREFIX = "meta/sales/sale-active/"
MAX_TRANSITIONS = 64
MAX_PROOFS = 128
MAX_SALES = 100_000
_INV = 10**12 - 1

OUTCOMES = ("active", "finished", "cancelled", "failed", "ignored", "errored")
"""What a sale came to (``active`` while it runs); the ``state`` filter of the history route."""

_ENDINGS = {
    "SaleFinished": "finished",
    "SaleCancelled": "cancelled",
    "SaleFailed": "failed",
    "SaleIgnored": "ignored",
    "SaleErrored": "errored",
}


@dataclass(frozen=True, slots=True)
class Transition:
    at: int
    from_state: str | None
    to_state: str
    cause: str

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "from": self.from_state, "to": self.to_state, "cause": self.cause}

    @staticmethod
    def from_json(d: dict[str, Any]) -> Transition:
        return Transition(int(d["at"]), d["from"], str(d["to"]), str(d["cause"]))


@dataclass(frozen=True, slots=True)
class ProofRecord:
    """One proof round of a hosted slot.

    ``margin``: seconds from when the proof landed to the end of its period (how close it came to a miss);
    ``result``: ``submitted``, ``already`` (on chain before: a restart), ``failed`` (``error`` says why)."""

    period: int
    started_at: int
    landed_at: int
    margin: int
    result: str
    error: str | None = None

    @property
    def time_to_land(self) -> int:
        return self.landed_at - self.started_at

    def to_json(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "startedAt": self.started_at,
            "landedAt": self.landed_at,
            "margin": self.margin,
            "result": self.result,
            "error": self.error,
        }

    @staticmethod
    def from_json(d: dict[str, Any]) -> ProofRecord:
        return ProofRecord(
            int(d["period"]),
            int(d["startedAt"]),
            int(d["landedAt"]),
            int(d["margin"]),
            str(d["result"]),
            d.get("error"),
        )


@dataclass(frozen=True, slots=True)
class SaleRecord:
    id: int
    slot_id: SlotId
    request_id: RequestId
    slot_index: int
    started_at: int
    updated_at: int
    state: str
    """The sale's current (or last) state, nim-codex names (``SaleProving`` …)."""
    outcome: str
    """One of :data:`OUTCOMES`."""
    ended_at: int | None = None
    reason: str | None = None
    """Why the sale was ignored (which rule failed for which availability)."""
    error: str | None = None
    """What ended an errored sale."""
    transitions: tuple[Transition, ...] = ()
    proofs: tuple[ProofRecord, ...] = ()

    def encode(self) -> bytes:
        return json.dumps(
            {
                "id": self.id,
                "slotId": self.slot_id.hex(),
                "requestId": self.request_id.hex(),
                "slotIndex": self.slot_index,
                "startedAt": self.started_at,
                "updatedAt": self.updated_at,
                "endedAt": self.ended_at,
                "state": self.state,
                "outcome": self.outcome,
                "reason": self.reason,
                "error": self.error,
                "transitions": [t.to_json() for t in self.transitions],
                "proofs": [p.to_json() for p in self.proofs],
            }
        ).encode()

    @staticmethod
    def decode(raw: bytes) -> SaleRecord:
        d = json.loads(raw)
        return SaleRecord(
            id=int(d["id"]),
            slot_id=SlotId(bytes.fromhex(d["slotId"])),
            request_id=RequestId(bytes.fromhex(d["requestId"])),
            slot_index=int(d["slotIndex"]),
            started_at=int(d["startedAt"]),
            updated_at=int(d["updatedAt"]),
            ended_at=None if d["endedAt"] is None else int(d["endedAt"]),
            state=str(d["state"]),
            outcome=str(d["outcome"]),
            reason=d.get("reason"),
            error=d.get("error"),
            transitions=tuple(Transition.from_json(t) for t in d["transitions"]),
            proofs=tuple(ProofRecord.from_json(p) for p in d["proofs"]),
        )


class SaleBook:
    """Writes and pages the sale records (see the module docstring)."""

    def __init__(self, kv: KVStore, clock: Clock, *, max_sales: int = MAX_SALES) -> None:
        self._kv = kv
        self._clock = clock
        self._max_sales = max_sales
        first = next(iter(kv.iterate(PREFIX, limit=1)), None)
        self._next_id = 0 if first is None else _INV - int(first[0][len(PREFIX) :]) + 1

    # --- writing --------------------------------------------------------------------------------------------------

    def begin(self, slot: SlotId, request_id: RequestId, slot_index: int) -> int:
        """The id of the slot's sale: the one in progress (resumed after a restart) or a new one."""
        raw = self._kv.get(ACTIVE_PREFIX + slot.hex())
        if raw is not None and self.get(int(raw)) is not None:
            return int(raw)
        now = self._clock.now()
        record = SaleRecord(
            id=self._next_id,
            slot_id=slot,
            request_id=request_id,
            slot_index=slot_index,
            started_at=now,
            updated_at=now,
            state="",
            outcome="active",
        )
        self._next_id += 1
        batch = self._kv.batch()
        batch.put(ACTIVE_PREFIX + slot.hex(), str(record.id).encode())
        self._put(batch, None, record)
        self._prune(batch)
        self._kv.write(batch)
        return record.id

    def transition(
        self,
        sale_id: int,
        from_state: str | None,
        to_state: str,
        cause: str,
        *,
        reason: str | None = None,
        error: str | None = None,
    ) -> SaleRecord | None:
        """Record a transition; an ending state (``SaleFinished`` …) sets the outcome and ends the sale."""
        old = self.get(sale_id)
        if old is None:
            return None
        now = self._clock.now()
        transitions = (*old.transitions, Transition(now, from_state, to_state, cause))[-MAX_TRANSITIONS:]
        outcome = _ENDINGS.get(to_state, old.outcome)
        new = replace(
            old,
            state=to_state,
            updated_at=now,
            transitions=transitions,
            outcome=outcome,
            ended_at=now if outcome != "active" and old.ended_at is None else old.ended_at,
            reason=reason if reason is not None else old.reason,
            error=error if error is not None else old.error,
        )
        batch = self._kv.batch()
        if outcome != "active":
            batch.delete(ACTIVE_PREFIX + old.slot_id.hex())
        self._put(batch, old, new)
        self._kv.write(batch)
        return new

    def end_orphans(self, running: set[SlotId]) -> list[int]:
        """At start-up, once every sale that goes on has begun again: end the sales still marked active whose slot
        no sale runs for (the node stopped during them and they did not resume). They end ``errored``, saying so.
        Returns their ids."""
        ended = []
        for key, raw in self._kv.iterate(ACTIVE_PREFIX):
            if SlotId(bytes.fromhex(key[len(ACTIVE_PREFIX) :])) in running:
                continue
            sale_id = int(raw)
            record = self.get(sale_id)
            if record is None:
                self._kv.delete(key)
                continue
            self.transition(
                sale_id,
                record.state or None,
                "SaleErrored",
                "restart",
                error="the node stopped during this sale and it did not resume (its reservation was ended)",
            )
            ended.append(sale_id)
        return ended

    def proof(self, sale_id: int, proof: ProofRecord) -> None:
        old = self.get(sale_id)
        if old is None:
            return
        new = replace(old, proofs=(*old.proofs, proof)[-MAX_PROOFS:], updated_at=self._clock.now())
        batch = self._kv.batch()
        self._put(batch, old, new)
        self._kv.write(batch)

    # --- reading --------------------------------------------------------------------------------------------------

    def get(self, sale_id: int) -> SaleRecord | None:
        raw = self._kv.get(_key(sale_id))
        return None if raw is None else SaleRecord.decode(raw)

    def active_sale(self, slot: SlotId) -> int | None:
        raw = self._kv.get(ACTIVE_PREFIX + slot.hex())
        return None if raw is None else int(raw)

    def page(
        self, *, outcome: str | None = None, since: int | None = None, before: int | None = None, limit: int = 50
    ) -> list[SaleRecord]:
        """Up to ``limit`` sales, newest first: of ``outcome`` (any if ``None``), started at or after ``since``,
        with an id below ``before`` (the previous page's last). Reads only the records it returns (plus one)."""
        out: list[SaleRecord] = []
        if outcome is None:
            for _, raw in self._kv.iterate(PREFIX, start_after=None if before is None else _key(before), limit=limit):
                record = SaleRecord.decode(raw)
                if since is not None and record.started_at < since:
                    break
                out.append(record)
            return out
        prefix = f"{OUTCOME_PREFIX}{outcome}/"
        start = None if before is None else f"{prefix}{_INV - before:012d}"
        for key, _ in self._kv.iterate(prefix, start_after=start, limit=limit):
            found = self.get(_INV - int(key[len(prefix) :]))
            if found is None:
                continue
            if since is not None and found.started_at < since:
                break
            out.append(found)
        return out

    def counts(self) -> dict[str, int]:
        """Sales per outcome (reads the index keys, not the records)."""
        return {o: sum(1 for _ in self._kv.iterate(f"{OUTCOME_PREFIX}{o}/")) for o in OUTCOMES}

    # --- internals ------------------------------------------------------------------------------------------------

    def _put(self, batch: WriteBatch, old: SaleRecord | None, new: SaleRecord) -> None:
        if old is not None and old.outcome != new.outcome:
            batch.delete(_outcome_key(old.outcome, old.id))
        batch.put(_key(new.id), new.encode())
        batch.put(_outcome_key(new.outcome, new.id), b"")

    def _prune(self, batch: WriteBatch) -> None:
        """Drop the record that falls out of the last ``max_sales`` (in ``batch``). Ids are handed out in order
        and each new sale drops at most one, so the kept ids are always the last ``max_sales``."""
        dropped = self._next_id - 1 - self._max_sales
        if dropped < 0:
            return
        old = self.get(dropped)
        if old is not None:
            batch.delete(_key(old.id))
            batch.delete(_outcome_key(old.outcome, old.id))
            if old.outcome == "active":
                batch.delete(ACTIVE_PREFIX + old.slot_id.hex())


def _key(sale_id: int) -> str:
    return f"{PREFIX}{_INV - sale_id:012d}"


def _outcome_key(outcome: str, sale_id: int) -> str:
    return f"{OUTCOME_PREFIX}{outcome}/{_INV - sale_id:012d}"
