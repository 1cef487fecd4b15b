"""The storage requests this node has seen and may still sell, persisted so that a restart queues them again.

The market event stream's persisted cursor moves past a request's ``StorageRequested`` once it is delivered, so a
request that was still open and unsold when the node stopped (posted before any availability existed, its slots
still queued, or ignored for lack of space) would never be seen again. ARCHITECTURE.md rule 5: on start, requests
that are still open are queued again. ``Sales`` remembers each request here when it sees it, forgets it when the
chain says it is fulfilled, cancelled or failed, and on start re-reads each remembered one from the chain.

Keys (in the metadata store): ``meta/sales/open-requests/<requestId-hex>`` → :class:`OpenRequest` (JSON): the
request's absolute expiry and its ask (immutable on chain: the request id is its hash), which is all a slot-queue
item needs. One write per change. The set is bounded (:data:`MAX_OPEN_REQUESTS`): past the cap the request that
expires first is dropped (logged), and requests past their expiry (the chain calls a New request Cancelled once
``now > expiresAt``) are dropped whenever one is added.

This module never talks to the chain and never touches the slot queue: deciding what is still open is Sales' job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import structlog

from codex_node.clock import Clock
from codex_node.market.types import Ask, RequestId
from codex_node.stores.kv import KVStore

log = structlog.get_logger(__name__)

PREFIX = "meta/sales/open-requests/"
MAX_OPEN_REQUESTS = 1024


@dataclass(frozen=True, slots=True)
class OpenRequest:
    """A request seen on chain: its id, absolute expiry (``expiresAt``) and ask."""

    request_id: RequestId
    expires_at: int
    ask: Ask

    def encode(self) -> bytes:
        a = self.ask
        return json.dumps(
            {
                "expiresAt": self.expires_at,
                "ask": [
                    a.proof_probability,
                    a.price_per_byte_per_second,
                    a.collateral_per_byte,
                    a.slots,
                    a.slot_size,
                    a.duration,
                    a.max_slot_loss,
                ],
            }
        ).encode()

    @staticmethod
    def decode(request_id: RequestId, raw: bytes) -> OpenRequest:
        d = json.loads(raw)
        values = [int(v) for v in d["ask"]]
        if len(values) != 7:
            raise ValueError("an ask has 7 fields")
        return OpenRequest(request_id, int(d["expiresAt"]), Ask(*values))


class OpenRequests:
    """The persisted set of requests Sales may still sell. Loaded lazily from the store, then kept in memory."""

    def __init__(self, kv: KVStore, clock: Clock, *, max_requests: int = MAX_OPEN_REQUESTS) -> None:
        if max_requests < 1:
            raise ValueError("max_requests must be positive")
        self._kv = kv
        self._clock = clock
        self._max = max_requests
        self._known: dict[RequestId, OpenRequest] | None = None

    def __len__(self) -> int:
        return len(self._all())

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._all()

    def all(self) -> list[OpenRequest]:
        """Every remembered request, the one that expires first first."""
        return sorted(self._all().values(), key=lambda r: (r.expires_at, r.request_id))

    def remember(self, request_id: RequestId, ask: Ask, expires_at: int) -> None:
        """Remember a request seen on chain (idempotent); drop the expired ones and, past the cap, the one that
        expires first — all in one write."""
        if request_id in self._all():
            return
        known = dict(self._all())  # applied only once the write succeeded
        now = self._clock.now()
        if expires_at < now:
            return  # an old event of the catch-up: nothing left to sell
        batch = self._kv.batch()
        for old in [r for r in known.values() if r.expires_at < now]:
            batch.delete(_key(old.request_id))
            del known[old.request_id]
        record = OpenRequest(request_id, expires_at, ask)
        known[request_id] = record
        batch.put(_key(request_id), record.encode())
        while len(known) > self._max:
            dropped = min(known.values(), key=lambda r: (r.expires_at, r.request_id))
            batch.delete(_key(dropped.request_id))
            del known[dropped.request_id]
            log.warning(
                "too many open requests remembered, dropped the one expiring first",
                request_id=dropped.request_id.hex(),
                expires_at=dropped.expires_at,
                max_requests=self._max,
            )
        self._kv.write(batch)
        self._known = known

    def forget(self, request_id: RequestId) -> None:
        """The request is no longer open (fulfilled, cancelled, failed, expired); a no-op if not remembered."""
        known = self._all()
        if request_id in known:
            self._kv.delete(_key(request_id))
            del known[request_id]

    def _all(self) -> dict[RequestId, OpenRequest]:
        if self._known is None:
            known: dict[RequestId, OpenRequest] = {}
            for key, raw in self._kv.iterate(PREFIX):
                try:
                    request_id = RequestId(bytes.fromhex(key[len(PREFIX) :]))
                    known[request_id] = OpenRequest.decode(request_id, raw)
                except (ValueError, KeyError, TypeError) as e:
                    log.warning("corrupt open request record skipped", key=key, error=repr(e))
            self._known = known
        return self._known


def _key(request_id: RequestId) -> str:
    return f"{PREFIX}{request_id.hex()}"
