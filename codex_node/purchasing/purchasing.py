"""Purchasing: the node's purchases, one :class:`~codex_node.purchasing.machine.PurchaseMachine` each.

:meth:`Purchasing.purchase` persists a new purchase as pending, runs its machine and returns once the request is
on the chain (submitted) — or raises what stopped it (the purchase is then forgotten: it never reached the
chain, and the caller releases the slots it stored). :meth:`Purchasing.start` resumes every purchase whose
record is not over (a terminal state with its funds withdrawn) from the chain's view of its request, then
subscribes to the request events that wake the machines (fulfilled, cancelled, failed) and to chain
reorganisations, which wake them all.

A part of the node (``marketplace.py``): started after the Market is built and before its event stream starts,
stopped before it.
"""

from __future__ import annotations

import structlog

from codex_node.clock import Clock
from codex_node.errors import CodexError, NotFoundError
from codex_node.market.market import Market, Subscription
from codex_node.market.types import (
    ChainReorganised,
    MarketEvent,
    Request,
    RequestCancelled,
    RequestFailed,
    RequestFulfilled,
    RequestId,
)
from codex_node.purchasing.machine import PurchaseContext, PurchaseMachine, PurchaseState
from codex_node.purchasing.metrics import PurchaseMetrics
from codex_node.purchasing.records import PurchaseRecord, PurchaseStore, Transition
from codex_node.purchasing.states.errored import PurchaseErrored
from codex_node.purchasing.states.pending import PurchasePending
from codex_node.purchasing.states.unknown import PurchaseUnknown
from codex_node.sales.ledger import MoneyRecorder
from codex_node.stores.kv import KVStore

log = structlog.get_logger(__name__)

TERMINAL = frozenset({"finished", "cancelled", "failed", "errored"})


class Purchasing:
    def __init__(
        self, market: Market, clock: Clock, kv: KVStore, metrics: PurchaseMetrics, money: MoneyRecorder | None = None
    ) -> None:
        self.market = market
        self.store = PurchaseStore(kv, clock)
        self.context = PurchaseContext(market, clock, self.store, metrics, money)
        self._machines: dict[RequestId, PurchaseMachine] = {}
        self._subscriptions: list[Subscription] = []

    async def start(self) -> None:
        resumed = 0
        for record in self.store.all():
            if record.state in TERMINAL and record.withdrawn:
                continue
            if record.state == "errored":
                continue  # nothing more to do for it; it stays listed
            self._run(record, PurchaseUnknown())
            resumed += 1
        for event_type in (RequestFulfilled, RequestCancelled, RequestFailed, ChainReorganised):
            self._subscriptions.append(await self.market.subscribe(event_type, self._on_event))
        log.info("purchasing started", resumed=resumed, purchases=len(self.store.ids()))

    async def stop(self) -> None:
        for subscription in self._subscriptions:
            await subscription.unsubscribe()
        self._subscriptions.clear()
        for machine in list(self._machines.values()):
            await machine.stop()
        self._machines.clear()

    async def purchase(self, request: Request) -> PurchaseRecord:
        """Post ``request`` as a new purchase (module docstring); its record once it is submitted."""
        record = PurchaseRecord(request, "pending")
        self.store.save(record)
        machine = self._run(record, PurchasePending())
        # Cancelled here (the node stops), the machine goes on until Purchasing stops it: the request may be in
        # flight, so the record stays and a restart settles it from the chain (submitted, or errored).
        state = await machine.wait_for_state(lambda s: s.api_name != "pending")
        if isinstance(state, PurchaseErrored):
            await self._forget(machine)
            if machine.failure is not None:
                raise machine.failure
            raise CodexError(state.error or "the request could not be posted")
        return machine.record

    def get(self, request_id: RequestId) -> PurchaseRecord:
        machine = self._machines.get(request_id)
        if machine is not None:
            return machine.record
        record = self.store.get(request_id)
        if record is None:
            raise NotFoundError(f"no purchase 0x{request_id.hex()} on this node")
        return record

    def ids(self) -> list[RequestId]:
        return self.store.ids()

    def history(self, request_id: RequestId) -> list[Transition]:
        return self.store.history(request_id)

    def machine(self, request_id: RequestId) -> PurchaseMachine | None:
        return self._machines.get(request_id)

    # --- internals ----------------------------------------------------------------------------------------------

    def _run(self, record: PurchaseRecord, initial: PurchaseState) -> PurchaseMachine:
        machine = PurchaseMachine(record, self.context)
        self._machines[record.id] = machine
        machine.start(initial)
        return machine

    async def _forget(self, machine: PurchaseMachine) -> None:
        await machine.stop()
        self._machines.pop(machine.request_id, None)
        self.store.delete(machine.request_id)
        self.context.metrics.forget(machine.record.state)

    async def _on_event(self, event: MarketEvent) -> None:
        if isinstance(event, ChainReorganised):  # what a waiting purchase read of the chain may be gone
            for waiting in list(self._machines.values()):
                waiting.poke()
            return
        if not isinstance(event, RequestFulfilled | RequestCancelled | RequestFailed):
            return
        machine = self._machines.get(event.request_id)
        if machine is not None:
            machine.poke()
