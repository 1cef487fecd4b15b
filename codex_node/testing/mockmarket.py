"""``MockMarket``: the :class:`~codex_node.market.market.Market` port in memory, with injectable failures.

One ``MockMarket`` acts as one account (its signer). ``as_account(address)`` gives another account's view on the
same marketplace, so a test can run a client, several hosts and a validator against one shared state. The rules
live in :mod:`codex_node.testing.mockledger`; this module adds what a test needs around them:

- events: subscriptions delivered in emission order, handlers awaited one at a time; ``emit`` injects an event;
- failure injection: ``fail_next(method, error)`` makes the next call(s) of a method raise before touching state;
  ``on_call(method, hook)`` runs an awaitable before a method (to pause it, or to cancel the caller midway);
- a ``call_log`` of every port call this account made, to assert what the code under test did;
- tokens (``mint``), time (the injected clock), proof controls (``set_proof_required``, ``set_challenge``,
  ``set_pointer``, ``proof_validity_override``).

Every call yields to the event loop once before it takes effect, as a real transaction would; the state change
itself is atomic.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import structlog
from eth_utils.address import to_checksum_address

from codex_node.clock import Clock
from codex_node.market.deployment import DEV_CONFIG
from codex_node.market.market import E, EventHandler, Market
from codex_node.market.types import (
    SUBSCRIBABLE,
    Address,
    HistoryMark,
    MarketEvent,
    MarketplaceConfig,
    Periodicity,
    Request,
    RequestId,
    RequestState,
    Slot,
    SlotId,
    SlotPayment,
    SlotState,
)
from codex_node.testing.mockledger import MARKETPLACE_ADDRESS, MarketLedger, ProofVerifier

if TYPE_CHECKING:
    from codex_node.data.proof import StorageProof

log = structlog.get_logger(__name__)

__all__ = [
    "MARKETPLACE_ADDRESS",
    "MOCK_MARKET_CONFIG",
    "MarketCall",
    "MockMarket",
    "account",
]

MOCK_MARKET_CONFIG: Final = DEV_CONFIG
"""The configuration the embedded chain deploys with: the mock starts from the same rules as the real chain."""

MARKET_METHODS: Final = frozenset(
    {
        "get_signer", "config", "periodicity", "token_balance",
        "request_storage", "withdraw_funds", "my_requests",
        "get_request", "request_state", "request_end", "request_expires_at", "slot_state", "get_host",
        "get_active_slot", "current_collateral", "slot_collateral", "my_slots", "missing_proofs",
        "can_reserve_slot", "reserve_slot", "fill_slot", "free_slot", "submit_proof",
        "is_proof_required", "will_proof_be_required", "get_challenge", "get_pointer",
        "can_mark_proof_as_missing", "mark_proof_as_missing", "subscribe", "past_events", "history_mark",
    }
)  # fmt: skip
"""Names accepted by ``fail_next``/``on_call``: the port's methods."""

CallHook = Callable[[], Awaitable[None]]


def account(n: int) -> Address:
    """A deterministic test address (``account(1)`` = 0x…0001), distinct from ``MARKETPLACE_ADDRESS``."""
    if not 0 < n < 0xC0DE:
        raise ValueError("account numbers are 1..0xC0DD")
    return Address(to_checksum_address(n.to_bytes(20, "big")))


@dataclass(frozen=True, slots=True)
class MarketCall:
    """One call of a port method by one account."""

    method: str
    args: tuple[object, ...]


@dataclass(eq=False, slots=True)
class _Subscriber:
    event_type: type[object]
    handler: EventHandler[Any]
    active: bool = True


class _EventBus:
    """Delivers events to subscribers in emission order, one handler at a time.

    A handler that calls the market (and so emits more events) does not get those events delivered inside its own
    call: they are queued behind the current one, as a chain would order them.
    """

    def __init__(self) -> None:
        self._subscribers: list[_Subscriber] = []
        # Each pending event carries the subscribers it still has to reach, fixed when it was emitted.
        self._pending: deque[tuple[MarketEvent, deque[_Subscriber]]] = deque()
        self._delivering = False
        self.history: list[MarketEvent] = []
        self.handler_errors: list[BaseException] = []

    def subscribe(self, event_type: type[object], handler: EventHandler[Any]) -> _Subscriber:
        if event_type not in SUBSCRIBABLE:
            raise TypeError(f"{event_type!r} is not a marketplace event type")
        subscriber = _Subscriber(event_type, handler)
        self._subscribers.append(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: _Subscriber) -> None:
        subscriber.active = False
        if subscriber in self._subscribers:
            self._subscribers.remove(subscriber)

    def publish(self, events: list[MarketEvent]) -> None:
        for event in events:
            self.history.append(event)
            targets = deque(s for s in self._subscribers if isinstance(event, s.event_type))
            self._pending.append((event, targets))

    @property
    def delivered(self) -> int:
        """Events of :attr:`history` delivered to every subscriber they were for (pending ones come last)."""
        return len(self.history) - len(self._pending)

    async def deliver(self) -> None:
        """Deliver everything pending, unless a delivery is already running (it will pick these up)."""
        if self._delivering:
            return
        self._delivering = True
        try:
            while self._pending:
                event, targets = self._pending[0]
                if not targets:
                    self._pending.popleft()
                    continue
                subscriber = targets.popleft()
                if subscriber.active:
                    await self._call(subscriber, event)
        finally:
            # A cancelled delivery leaves the rest pending; the next call of any account delivers it.
            self._delivering = False

    async def _call(self, subscriber: _Subscriber, event: MarketEvent) -> None:
        try:
            await subscriber.handler(event)
        except Exception as error:  # a failing handler must not stop delivery to the others
            self.handler_errors.append(error)
            log.exception("market event handler failed", event_type=type(event).__name__)


class _MockSubscription:
    def __init__(self, bus: _EventBus, subscriber: _Subscriber) -> None:
        self._bus = bus
        self._subscriber = subscriber

    async def unsubscribe(self) -> None:
        self._bus.unsubscribe(self._subscriber)


class MockMarket:
    """The Market port in memory. See the module docstring for the test controls."""

    def __init__(
        self,
        clock: Clock,
        *,
        signer: str = "0x0000000000000000000000000000000000000001",
        config: MarketplaceConfig = MOCK_MARKET_CONFIG,
        verifier: ProofVerifier | None = None,
    ) -> None:
        """``verifier`` checks proofs; ``None`` accepts every proof (use ``proof_validity_override`` to reject)."""
        self._setup(MarketLedger(clock, config, verifier), _EventBus(), signer)

    def _setup(self, ledger: MarketLedger, bus: _EventBus, signer: str) -> None:
        self._ledger = ledger
        self._bus = bus
        self._signer = Address(to_checksum_address(signer))
        self.call_log: list[MarketCall] = []
        self._failures: dict[str, deque[BaseException]] = {}
        self._hooks: dict[str, CallHook] = {}

    def as_account(self, address: str) -> MockMarket:
        """Another account's view of the same marketplace, with its own call log, failures and hooks."""
        view = MockMarket.__new__(MockMarket)
        view._setup(self._ledger, self._bus, address)
        return view

    # --- test controls ----------------------------------------------------------------------------------------

    @property
    def signer(self) -> Address:
        return self._signer

    @property
    def clock(self) -> Clock:
        return self._ledger.clock

    def mint(self, address: str, amount: int) -> None:
        self._ledger.mint(Address(to_checksum_address(address)), amount)

    def fail_next(self, method: str, error: BaseException, *, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` by this account raise ``error`` without changing any state."""
        _check_method(method)
        self._failures.setdefault(method, deque()).extend([error] * times)

    def clear_failures(self) -> None:
        self._failures.clear()

    def on_call(self, method: str, hook: CallHook | None) -> None:
        """Await ``hook()`` at the start of every call of ``method`` by this account (``None`` removes it)."""
        _check_method(method)
        if hook is None:
            self._hooks.pop(method, None)
        else:
            self._hooks[method] = hook

    def calls(self, method: str) -> list[tuple[object, ...]]:
        """The arguments of each call of ``method`` this account made, oldest first."""
        _check_method(method)
        return [c.args for c in self.call_log if c.method == method]

    @property
    def proof_validity_override(self) -> bool | None:
        """``True``/``False`` forces every proof (any account) to verify or not; ``None`` uses the verifier."""
        return self._ledger.proof_validity_override

    @proof_validity_override.setter
    def proof_validity_override(self, value: bool | None) -> None:
        self._ledger.proof_validity_override = value

    def set_proof_required(self, slot_id: SlotId, required: bool | None) -> None:
        """Force whether a proof is due in every period after the fill (``None``: back to the probability rule).

        The contract's structural rules still hold: nothing is required from a slot that is not Filled, nor in the
        period in which it was filled.
        """
        self._ledger.set_proof_required(slot_id, required)

    def set_challenge(self, slot_id: SlotId, challenge: bytes | None) -> None:
        """Fix the slot's 32-byte challenge for every period (``None``: per-period default)."""
        self._ledger.set_challenge(slot_id, challenge)

    def set_pointer(self, slot_id: SlotId, pointer: int | None) -> None:
        """Fix the slot's pointer; below ``downtime`` means "in downtime" (``None``: default, never in downtime)."""
        self._ledger.set_pointer(slot_id, pointer)

    async def emit(self, event: MarketEvent) -> None:
        """Inject ``event`` as if the chain had emitted it, and deliver it (with anything else pending)."""
        self._bus.publish([event])
        await self._bus.deliver()

    @property
    def emitted(self) -> list[MarketEvent]:
        """Every event the marketplace emitted or a test injected, in order."""
        return list(self._bus.history)

    @property
    def handler_errors(self) -> list[BaseException]:
        """Exceptions raised by event handlers (logged, and kept here so tests can assert there were none)."""
        return list(self._bus.handler_errors)

    # --- plumbing ---------------------------------------------------------------------------------------------

    async def _enter(self, method: str, *args: object) -> None:
        self.call_log.append(MarketCall(method, args))
        hook = self._hooks.get(method)
        if hook is not None:
            await hook()
        # Yield once, as sending a transaction or a query would, so callers see real interleavings.
        await asyncio.sleep(0)
        failures = self._failures.get(method)
        if failures:
            raise failures.popleft()

    async def _commit(self) -> None:
        # Only reached when the ledger call did not revert: a revert emits nothing, like a reverted transaction.
        self._bus.publish(self._ledger.take_events())
        await self._bus.deliver()

    # --- identity and configuration ---------------------------------------------------------------------------

    async def get_signer(self) -> Address:
        await self._enter("get_signer")
        return self._signer

    async def config(self) -> MarketplaceConfig:
        await self._enter("config")
        return self._ledger.config

    async def periodicity(self) -> Periodicity:
        await self._enter("periodicity")
        return self._ledger.periodicity

    async def token_balance(self, address: Address) -> int:
        await self._enter("token_balance", address)
        return self._ledger.balances.get(Address(to_checksum_address(address)), 0)

    # --- client side ------------------------------------------------------------------------------------------

    async def request_storage(self, request: Request) -> None:
        await self._enter("request_storage", request)
        self._ledger.request_storage(self._signer, request)
        await self._commit()

    async def withdraw_funds(self, request_id: RequestId) -> int:
        await self._enter("withdraw_funds", request_id)
        amount = self._ledger.withdraw_funds(self._signer, request_id)
        await self._commit()
        return amount

    async def my_requests(self) -> list[RequestId]:
        await self._enter("my_requests")
        return self._ledger.my_requests(self._signer)

    # --- views ------------------------------------------------------------------------------------------------

    async def get_request(self, request_id: RequestId) -> Request | None:
        await self._enter("get_request", request_id)
        return self._ledger.get_request(request_id)

    async def request_state(self, request_id: RequestId) -> RequestState | None:
        await self._enter("request_state", request_id)
        if self._ledger.get_request(request_id) is None:
            return None
        return self._ledger.request_state(request_id)

    async def request_end(self, request_id: RequestId) -> int:
        await self._enter("request_end", request_id)
        return self._ledger.request_end(request_id)

    async def request_expires_at(self, request_id: RequestId) -> int:
        await self._enter("request_expires_at", request_id)
        return self._ledger.request_expires_at(request_id)

    async def slot_state(self, slot_id: SlotId) -> SlotState:
        await self._enter("slot_state", slot_id)
        return self._ledger.slot_state(slot_id)

    async def get_host(self, slot_id: SlotId) -> Address | None:
        await self._enter("get_host", slot_id)
        return self._ledger.get_host(slot_id)

    async def get_active_slot(self, slot_id: SlotId) -> Slot | None:
        await self._enter("get_active_slot", slot_id)
        return self._ledger.get_active_slot(slot_id)

    async def current_collateral(self, slot_id: SlotId) -> int:
        await self._enter("current_collateral", slot_id)
        return self._ledger.current_collateral(slot_id)

    async def slot_collateral(self, request_id: RequestId, slot_index: int) -> int:
        await self._enter("slot_collateral", request_id, slot_index)
        return self._ledger.slot_collateral(request_id, slot_index)

    async def my_slots(self) -> list[SlotId]:
        await self._enter("my_slots")
        return self._ledger.my_slots(self._signer)

    async def missing_proofs(self, slot_id: SlotId) -> int:
        await self._enter("missing_proofs", slot_id)
        return self._ledger.missing_proofs(slot_id)

    # --- host side --------------------------------------------------------------------------------------------

    async def can_reserve_slot(self, request_id: RequestId, slot_index: int) -> bool:
        await self._enter("can_reserve_slot", request_id, slot_index)
        return self._ledger.can_reserve_slot(self._signer, request_id, slot_index)

    async def reserve_slot(self, request_id: RequestId, slot_index: int) -> None:
        await self._enter("reserve_slot", request_id, slot_index)
        self._ledger.reserve_slot(self._signer, request_id, slot_index)
        await self._commit()

    async def fill_slot(self, request_id: RequestId, slot_index: int, proof: StorageProof, collateral: int) -> None:
        await self._enter("fill_slot", request_id, slot_index, proof, collateral)
        self._ledger.fill_slot(self._signer, request_id, slot_index, proof, collateral)
        await self._commit()

    async def free_slot(self, slot_id: SlotId) -> SlotPayment:
        await self._enter("free_slot", slot_id)
        payment = self._ledger.free_slot(self._signer, slot_id)
        await self._commit()
        return payment

    async def submit_proof(self, slot_id: SlotId, proof: StorageProof) -> int:
        await self._enter("submit_proof", slot_id, proof)
        period = self._ledger.submit_proof(self._signer, slot_id, proof)
        await self._commit()
        return period

    # --- proofs and validation --------------------------------------------------------------------------------

    async def is_proof_required(self, slot_id: SlotId) -> bool:
        await self._enter("is_proof_required", slot_id)
        return self._ledger.is_proof_required(slot_id)

    async def will_proof_be_required(self, slot_id: SlotId) -> bool:
        await self._enter("will_proof_be_required", slot_id)
        return self._ledger.will_proof_be_required(slot_id)

    async def get_challenge(self, slot_id: SlotId) -> bytes:
        await self._enter("get_challenge", slot_id)
        return self._ledger.get_challenge(slot_id)

    async def get_pointer(self, slot_id: SlotId) -> int:
        await self._enter("get_pointer", slot_id)
        return self._ledger.get_pointer(slot_id)

    async def can_mark_proof_as_missing(self, slot_id: SlotId, period: int) -> bool:
        await self._enter("can_mark_proof_as_missing", slot_id, period)
        return self._ledger.can_mark_proof_as_missing(slot_id, period)

    async def mark_proof_as_missing(self, slot_id: SlotId, period: int) -> None:
        await self._enter("mark_proof_as_missing", slot_id, period)
        self._ledger.mark_proof_as_missing(self._signer, slot_id, period)
        await self._commit()

    # --- events -----------------------------------------------------------------------------------------------

    async def past_events(self, since: HistoryMark | None = None) -> list[MarketEvent]:
        """Every event emitted so far from position ``since.point`` of the history (``None``: the first) on, in
        order (the validator's history read after a restart)."""
        await self._enter("past_events", since)
        return list(self._bus.history[0 if since is None else since.point :])

    async def history_mark(self) -> HistoryMark:
        """The position in the history of the first event not delivered to every subscriber yet (no anchor: the
        mock's history never changes)."""
        await self._enter("history_mark")
        return HistoryMark(self._bus.delivered)

    async def subscribe(self, event_type: type[E], handler: EventHandler[E]) -> _MockSubscription:
        await self._enter("subscribe", event_type)
        return _MockSubscription(self._bus, self._bus.subscribe(event_type, handler))


def _check_method(method: str) -> None:
    if method not in MARKET_METHODS:
        raise ValueError(f"{method!r} is not a Market method")


if TYPE_CHECKING:
    # mypy proves here that MockMarket satisfies the port, so the two cannot drift apart silently.
    def _is_a_market(mock: MockMarket) -> Market:
        return mock
