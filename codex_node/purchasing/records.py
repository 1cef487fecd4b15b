"""Purchases as the node persists them (LevelDB through ``stores/kv.py``), and their transition history.

Keys (namespaced under ``meta/purchasing/``):

=============================================  ====================================================================
``meta/purchasing/purchases/<requestId>``      one :class:`PurchaseRecord` (JSON): the request, the state, the error,
                                               whether the request's funds were withdrawn
``meta/purchasing/history/<requestId>/<seq>``  one transition ``{at, from, to, cause}`` (the last
                                               :data:`MAX_HISTORY` per purchase are kept)
=============================================  ====================================================================

A transition writes the record and its history entry (and the pruning of the oldest) in one write batch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

import structlog

from codex_node.clock import Clock
from codex_node.errors import CorruptBlockError
from codex_node.market.types import Address, Ask, Content, Request, RequestId
from codex_node.stores.kv import KVStore

log = structlog.get_logger(__name__)

PURCHASES_PREFIX = "meta/purchasing/purchases/"
HISTORY_PREFIX = "meta/purchasing/history/"
MAX_HISTORY = 32


@dataclass(frozen=True, slots=True)
class PurchaseRecord:
    """One purchase: ``state`` is nim-codex's name (pending, submitted, started, finished, failed, cancelled,
    errored); ``withdrawn``: the request's leftover funds came back (or there were none)."""

    request: Request
    state: str
    error: str | None = None
    withdrawn: bool = False

    @property
    def id(self) -> RequestId:
        return self.request.id

    def encode(self) -> bytes:
        r = self.request
        return json.dumps(
            {
                "request": {
                    "client": r.client,
                    "ask": list(r.ask.to_abi()),
                    "cid": r.content.cid.hex(),
                    "merkleRoot": r.content.merkle_root.hex(),
                    "expiry": r.expiry,
                    "nonce": r.nonce.hex(),
                },
                "state": self.state,
                "error": self.error,
                "withdrawn": self.withdrawn,
            },
            separators=(",", ":"),
        ).encode()

    @staticmethod
    def decode(raw: bytes) -> PurchaseRecord:
        try:
            d: dict[str, Any] = json.loads(raw)
            r = d["request"]
            request = Request(
                client=Address(str(r["client"])),
                ask=Ask(*(int(v) for v in r["ask"])),
                content=Content(cid=bytes.fromhex(r["cid"]), merkle_root=bytes.fromhex(r["merkleRoot"])),
                expiry=int(r["expiry"]),
                nonce=bytes.fromhex(r["nonce"]),
            )
            error = d["error"]
            return PurchaseRecord(request, str(d["state"]), None if error is None else str(error), bool(d["withdrawn"]))
        except (ValueError, KeyError, TypeError) as e:
            raise CorruptBlockError(f"corrupt purchase record: {e}") from e


@dataclass(frozen=True, slots=True)
class Transition:
    at: int
    from_state: str | None
    to_state: str
    cause: str

    def to_json(self) -> dict[str, object]:
        return {"at": self.at, "from": self.from_state, "to": self.to_state, "cause": self.cause}


class PurchaseStore:
    """Reads and writes purchase records and histories (see the module docstring)."""

    def __init__(self, kv: KVStore, clock: Clock) -> None:
        self._kv = kv
        self._clock = clock

    def get(self, request_id: RequestId) -> PurchaseRecord | None:
        raw = self._kv.get(PURCHASES_PREFIX + request_id.hex())
        return None if raw is None else PurchaseRecord.decode(raw)

    def all(self) -> list[PurchaseRecord]:
        """Every readable record; a corrupt one is logged and skipped (one bad record must not stop the node)."""
        out = []
        for key, raw in self._kv.iterate(PURCHASES_PREFIX):
            try:
                out.append(PurchaseRecord.decode(raw))
            except CorruptBlockError as e:
                log.warning("purchase record unreadable: skipped", key=key, error=str(e))
        return out

    def ids(self) -> list[RequestId]:
        return [RequestId(bytes.fromhex(key[len(PURCHASES_PREFIX) :])) for key, _ in self._kv.iterate(PURCHASES_PREFIX)]

    def save(self, record: PurchaseRecord, from_state: str | None = None, cause: str | None = None) -> None:
        """Write ``record``; with ``cause``, the transition into its state too (one batch)."""
        batch = self._kv.batch()
        batch.put(PURCHASES_PREFIX + record.id.hex(), record.encode())
        if cause is not None:
            prefix = f"{HISTORY_PREFIX}{record.id.hex()}/"
            keys = [key for key, _ in self._kv.iterate(prefix)]
            seq = int(keys[-1][len(prefix) :]) + 1 if keys else 0
            entry = Transition(self._clock.now(), from_state, record.state, cause)
            batch.put(f"{prefix}{seq:08d}", json.dumps(entry.to_json(), separators=(",", ":")).encode())
            for old in keys[: max(0, len(keys) + 1 - MAX_HISTORY)]:
                batch.delete(old)
        self._kv.write(batch)

    def delete(self, request_id: RequestId) -> None:
        """Forget a purchase that never reached the chain (its request failed to post)."""
        batch = self._kv.batch()
        batch.delete(PURCHASES_PREFIX + request_id.hex())
        for key, _ in self._kv.iterate(f"{HISTORY_PREFIX}{request_id.hex()}/"):
            batch.delete(key)
        self._kv.write(batch)

    def history(self, request_id: RequestId) -> list[Transition]:
        out = []
        for _, raw in self._kv.iterate(f"{HISTORY_PREFIX}{request_id.hex()}/"):
            d = json.loads(raw)
            out.append(Transition(int(d["at"]), d["from"], str(d["to"]), str(d["cause"])))
        return out


def with_state(record: PurchaseRecord, state: str, error: str | None) -> PurchaseRecord:
    return replace(record, state=state, error=error if error is not None else record.error)
