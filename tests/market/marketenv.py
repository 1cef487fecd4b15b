"""What the shared Market suite needs from an implementation, and helpers that work with any of them.

An implementation (MockMarket now; OnChainMarket on the embedded chain and on Hardhat later) plugs in by
providing one :class:`MarketEnv` and adding its name to the ``market_env`` fixture in ``conftest.py``.

Time rule every env follows: ``now()`` is the timestamp a view sees; right after a transaction it is that
transaction's timestamp (on a chain: the latest block's, with no block mined in between). Tests therefore read
timestamps back (``request_expires_at``, ``now()`` after a fill) instead of predicting them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

from codex_node.market.market import Market
from codex_node.market.types import (
    EVENT_TYPES,
    Address,
    Ask,
    Content,
    MarketEvent,
    Request,
    SlotId,
)

if TYPE_CHECKING:
    from codex_node.proofs import StorageProof

T = TypeVar("T")

BLOCK = 65_536

DEFAULT_ASK = Ask(
    proof_probability=1,  # with any downtime this makes the probability 0: a proof is due every period
    price_per_byte_per_second=1,
    collateral_per_byte=1,
    slots=3,
    slot_size=BLOCK,
    duration=24 * 3600,
    max_slot_loss=1,
)
DEFAULT_EXPIRY = 600
DELIVERY_TIMEOUT = 10.0
"""Seconds an env may take to deliver an event (a chain's event stream polls; the mock delivers at once)."""


class MarketEnv(Protocol):
    """One marketplace, seen by several accounts."""

    @property
    def name(self) -> str: ...

    @property
    def client(self) -> Market: ...

    @property
    def hosts(self) -> Sequence[Market]:
        """At least ``max_reservations + 1`` host accounts, all funded."""
        ...

    @property
    def validator(self) -> Market: ...

    @property
    def marketplace_address(self) -> Address:
        """Holds the tokens the marketplace keeps (payments and collateral)."""
        ...

    async def now(self) -> int: ...

    async def advance_to(self, timestamp: int) -> None:
        """Move time so that views see ``now() == timestamp`` (never backwards)."""
        ...

    async def mint(self, address: Address, amount: int) -> None: ...

    async def advance_to_required_proof(self, slot_id: SlotId) -> int:
        """Move to a later period in which the slot's proof is required (outside downtime); return that period."""
        ...

    async def valid_proof(self, request: Request, slot_index: int) -> StorageProof:
        """A proof of the slot's data for the challenge views see now."""
        ...

    async def invalid_proof(self, request: Request, slot_index: int) -> StorageProof:
        """A well-formed proof that does not verify (e.g. a cell of another slot)."""
        ...

    def new_request(self, client: Address, ask: Ask = DEFAULT_ASK, expiry: int = DEFAULT_EXPIRY) -> Request:
        """A request whose content ``valid_proof`` can prove; each call gives a distinct request."""
        ...


@dataclass
class RequestFactory:
    """Distinct requests over synthetic content (the dataset root is a placeholder until the proof maths exists)."""

    _counter: int = 0

    def new_request(self, client: Address, ask: Ask = DEFAULT_ASK, expiry: int = DEFAULT_EXPIRY) -> Request:
        self._counter += 1
        nonce = self._counter.to_bytes(32, "big")
        content = Content(cid=b"\x01\x55" + nonce, merkle_root=nonce[::-1])
        return Request(client=client, ask=ask, content=content, expiry=expiry, nonce=nonce)


@dataclass
class EventRecorder:
    """Records every marketplace event in delivery order; ``wait_for`` copes with envs that deliver later."""

    events: list[MarketEvent] = field(default_factory=list)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    @classmethod
    async def on(cls, market: Market) -> EventRecorder:
        recorder = cls()
        for event_type in EVENT_TYPES:
            await market.subscribe(event_type, recorder._record)
        return recorder

    async def _record(self, event: MarketEvent) -> None:
        async with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    async def wait_for(self, count: int) -> list[MarketEvent]:
        """Every event delivered so far, once there are at least ``count`` (the timeout is a guard, not a pace).

        Returning all of them, not the first ``count``, lets an assertion catch an unexpected extra event.
        """
        async with asyncio.timeout(DELIVERY_TIMEOUT), self._changed:
            await self._changed.wait_for(lambda: len(self.events) >= count)
        return list(self.events)

    def of_type(self, event_type: type[T]) -> list[T]:
        return [e for e in self.events if isinstance(e, event_type)]
