"""Sales: the node's side of the storage market. Queues the slots seen on chain, runs one agent per slot.

``Sales`` wires the parts together and owns their life: the slot queue and its workers, the agents, the one
cancellation timer service, the market subscriptions. It

- turns chain events into slot-queue changes and routes them to the agents they concern, through an index keyed
  by ``(requestId, slotIndex)`` and by ``requestId`` — never by asking every agent;
- holds a slot-queue worker only until its agent reports the slot Filled or the sale cleaned up;
- counts availability saves: a sale that found no availability goes back to the queue *seen* only if no
  availability was saved since its worker took the slot (else the save, which cleared the seen flags of the
  queued slots while this one was out, would be lost on it and the paused queue would never try it again);
- ends every sale through :meth:`on_clean_up`: the reservation's bytes and the collateral that came back return
  to the availability in one atomic write (and not at all a second time), the slot may go back to the queue, and
  the agent is stopped and dropped;
- on start, resumes every slot the chain says we host through ``Unknown`` and ends the reservations of slots that
  are not active any more, returning their bytes and collateral; then subscribes to the market's events.

Requests posted while the node was down are not looked up here (the Market has no query for open requests): they
arrive as ``StorageRequested`` in the event stream's catch-up, which the composition root starts only after
``Sales.start`` (``marketplace.py``), so these handlers are subscribed and queue them; the catch-up's later
events (``SlotFilled``, ``RequestFulfilled``, …) and the queue's expiry drop the ones that are no longer open
(``tests/sales/test_sales_catchup.py``).

It never decides what a sale does next: that is the states' job.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import structlog

from codex_node.clock import Clock
from codex_node.errors import CodexError, QueueNotRunningError, SlotQueueItemExistsError
from codex_node.market.market import Market, Subscription
from codex_node.market.types import (
    MarketEvent,
    RequestCancelled,
    RequestFailed,
    RequestFulfilled,
    RequestId,
    RequestState,
    SlotFilled,
    SlotFreed,
    SlotId,
    SlotReservationsFull,
    SlotState,
    StorageRequested,
    slot_id,
)
from codex_node.sales.agent import SalesAgent
from codex_node.sales.availability import Availability, Reservation
from codex_node.sales.context import SalesContext, SalesData, SlotProver
from codex_node.sales.datasource import SlotDataSource
from codex_node.sales.history import SaleHistory
from codex_node.sales.metrics import SalesMetrics
from codex_node.sales.reservations import Reservations
from codex_node.sales.slotqueue import SlotQueue, SlotQueueItem, item_for_slot, items_for_request
from codex_node.sales.states.base import SaleState
from codex_node.sales.states.preparing import Preparing
from codex_node.sales.states.unknown import Unknown
from codex_node.sales.timers import CancellationTimers
from codex_node.utils.asyncstatemachine import Machine, State
from codex_node.utils.trackedtasks import TrackedTasks

log = structlog.get_logger(__name__)

AgentKey = tuple[RequestId, int]


class Sales:
    """See the module docstring. Build, :meth:`start`, and :meth:`stop` in that order; start again after stop."""

    def __init__(
        self,
        *,
        market: Market,
        clock: Clock,
        reservations: Reservations,
        queue: SlotQueue,
        data_source: SlotDataSource,
        prover: SlotProver,
        history: SaleHistory | None = None,
        metrics: SalesMetrics | None = None,
        simulate_proof_failures: int = 0,
        rng: random.Random | None = None,
    ) -> None:
        self.market = market
        self.clock = clock
        self.reservations = reservations
        self.queue = queue
        self.history = history
        self.metrics = metrics
        self.timers = CancellationTimers(market, clock, self._on_request_expired)
        self.context = SalesContext(
            market=market,
            clock=clock,
            reservations=reservations,
            data_source=data_source,
            prover=prover,
            timers=self.timers,
            hooks=self,
            simulate_proof_failures=simulate_proof_failures,
        )
        self._rng = rng or random.Random()
        self._agents: dict[AgentKey, SalesAgent] = {}
        self._by_request: dict[RequestId, set[int]] = {}
        self._by_slot: dict[SlotId, SalesAgent] = {}
        self._workers: dict[AgentKey, asyncio.Event] = {}
        self._availability_saves = 0
        self._saves_when_taken: dict[AgentKey, int] = {}
        self._subscriptions: list[Subscription] = []
        self._tasks = TrackedTasks("sales")
        self.running = False

    # --- life ---------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Resume hosted slots, start the queue and the timers, and follow the chain."""
        self._tasks.reopen()
        await self._load()
        self.reservations.on_availability_saved = self._on_availability_saved
        self.queue.start(self._process_slot)
        self.timers.start()
        await self._subscribe()
        self.running = True
        log.info("sales started", resumed=len(self._agents))

    async def stop(self) -> None:
        """Stop following the chain, stop the queue, the timers and every agent; wait for all of it."""
        self.running = False
        subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            await subscription.unsubscribe()
        self.reservations.on_availability_saved = None
        await self.queue.stop()
        await self.timers.stop()
        agents = list(self._agents.values())
        for agent in agents:
            self._forget(agent)
        await asyncio.gather(*(agent.stop() for agent in agents))
        await self._tasks.cancel_all()
        log.info("sales stopped", agents=len(agents))

    # --- queries (API) ------------------------------------------------------------------------------------------

    def agents(self) -> list[SalesAgent]:
        return list(self._agents.values())

    def agent(self, slot: SlotId) -> SalesAgent | None:
        return self._by_slot.get(slot)

    def agents_of(self, request_id: RequestId) -> list[SalesAgent]:
        return [self._agents[(request_id, i)] for i in self._by_request.get(request_id, ())]

    # --- start-up -----------------------------------------------------------------------------------------------

    async def _load(self) -> None:
        """Resume the slots we host (chain truth) and end the reservations of all others."""
        market = self.market
        active = {}
        for sid in await market.my_slots():
            slot = await market.get_active_slot(sid)
            if slot is not None:
                active[sid] = slot
        leftovers = [r for r in await self.reservations.all_reservations() if _slot_of(r) not in active]
        returned = {r.id: await self._collateral_back(r) for r in leftovers}
        await self.reservations.delete_inactive_reservations(
            active.keys(), returned_collateral=lambda r: returned.get(r.id)
        )
        held = {(r.request_id, r.slot_index): r for r in await self.reservations.all_reservations()}
        for slot in active.values():
            key = (slot.request.id, slot.slot_index)
            if key in self._agents:
                continue
            data = SalesData(slot.request.id, slot.slot_index, request=slot.request, reservation=held.get(key))
            self._new_agent(data).start(Unknown())

    async def _collateral_back(self, reservation: Reservation) -> int | None:
        """How much of a leftover reservation's collateral is back in our hands (``None``: all of it).

        The reservation's slot is no longer ours on chain. If the contract paid it out, its collateral came back
        with the payout; if its request failed while we hosted it, the contract kept it; if it went to repair
        after we had stored all of it, we were most likely slashed out of it. Otherwise it never left.
        """
        sid = _slot_of(reservation)
        try:
            state = await self.market.slot_state(sid)
            ours = await self.market.get_host(sid) == await self.market.get_signer()
            if state == SlotState.PAID and ours:
                return await self.market.current_collateral(sid)
        except CodexError as e:
            log.warning("could not read a leftover slot's state", slot_id=sid.hex(), error=repr(e))
            return None
        if state == SlotState.FAILED and ours:
            return 0
        if state == SlotState.REPAIR and reservation.size == 0:
            return 0
        return None

    async def _subscribe(self) -> None:
        handlers: list[tuple[type[Any], Callable[[Any], Awaitable[None]]]] = [
            (StorageRequested, self._on_storage_requested),
            (RequestFulfilled, self._on_request_fulfilled),
            (RequestFailed, self._on_request_failed),
            (RequestCancelled, self._on_request_cancelled),
            (SlotFilled, self._on_slot_filled),
            (SlotFreed, self._on_slot_freed),
            (SlotReservationsFull, self._on_slot_reservations_full),
        ]
        for event_type, handler in handlers:
            self._subscriptions.append(await self.market.subscribe(event_type, _guarded(handler)))

    # --- chain events -------------------------------------------------------------------------------------------

    async def _on_storage_requested(self, event: StorageRequested) -> None:
        self._push(items_for_request(event, rng=self._rng))

    async def _on_request_fulfilled(self, event: RequestFulfilled) -> None:
        self.queue.delete_request(event.request_id)
        self.timers.forget(event.request_id)

    async def _on_request_failed(self, event: RequestFailed) -> None:
        self.queue.delete_request(event.request_id)
        for agent in self.agents_of(event.request_id):
            agent.on_failed()

    async def _on_request_cancelled(self, event: RequestCancelled) -> None:
        await self._on_request_expired(event.request_id)

    async def _on_request_expired(self, request_id: RequestId) -> None:
        self.queue.delete_request(request_id)
        for agent in self.agents_of(request_id):
            agent.on_cancelled()

    async def _on_slot_filled(self, event: SlotFilled) -> None:
        self.queue.delete(event.request_id, event.slot_index)
        agent = self._agents.get((event.request_id, event.slot_index))
        if agent is not None:
            agent.on_slot_filled()

    async def _on_slot_freed(self, event: SlotFreed) -> None:
        market = self.market
        request = await market.get_request(event.request_id)
        if request is None:
            return
        collateral = await market.slot_collateral(event.request_id, event.slot_index)
        # The item's expiry is absolute (anchor defect #2 used the request's relative expiry): the last moment the
        # slot can be filled — the request's expiry while it has not started, its end once it has.
        if await market.request_state(event.request_id) == RequestState.NEW:
            deadline = await market.request_expires_at(event.request_id)
        else:
            deadline = await market.request_end(event.request_id)
        item = item_for_slot(
            event.request_id, event.slot_index, request.ask, expires_at=deadline, collateral=collateral
        )
        self._push([item])

    async def _on_slot_reservations_full(self, event: SlotReservationsFull) -> None:
        self.queue.delete(event.request_id, event.slot_index)

    def _push(self, items: Iterable[SlotQueueItem]) -> None:
        for item in items:
            if item.ident in self._agents:
                continue  # already selling this slot (e.g. an event replayed after a restart)
            try:
                self.queue.push(item)
            except SlotQueueItemExistsError:
                continue
            except QueueNotRunningError:
                return

    def _on_availability_saved(self, _availability: Availability) -> None:
        # Every item that found no availability so far deserves another look (seen flags), and the queue runs.
        self._availability_saves += 1
        self.queue.clear_seen_flags()
        self.queue.unpause()

    # --- agents -------------------------------------------------------------------------------------------------

    async def _process_slot(self, item: SlotQueueItem) -> None:
        """One slot-queue worker's job: run the slot's sale until it is Filled or cleaned up."""
        key = item.ident
        if key in self._agents:
            return
        released = asyncio.Event()
        self._workers[key] = released
        self._saves_when_taken[key] = self._availability_saves
        agent = self._new_agent(SalesData(item.request_id, item.slot_index, slot_queue_item=item))
        try:
            agent.start(Preparing())
            await released.wait()
        finally:
            if self._workers.get(key) is released:
                del self._workers[key]

    def _new_agent(self, data: SalesData) -> SalesAgent:
        agent = SalesAgent(self.context, data, [self._on_transition])
        self._agents[agent.key] = agent
        self._by_request.setdefault(data.request_id, set()).add(data.slot_index)
        self._by_slot[agent.slot_id] = agent
        return agent

    def _forget(self, agent: SalesAgent) -> bool:
        """Drop ``agent`` from every index and free its worker; ``False`` if it was not indexed (any more)."""
        data = agent.data
        key = agent.key
        if self._agents.get(key) is not agent:
            return False
        del self._agents[key]
        del self._by_slot[agent.slot_id]
        indices = self._by_request[data.request_id]
        indices.discard(data.slot_index)
        if not indices:
            del self._by_request[data.request_id]
            self.timers.forget(data.request_id)
        if self.metrics is not None:
            self.metrics.agent_removed(agent.state)
        self._saves_when_taken.pop(key, None)
        worker = self._workers.pop(key, None)
        if worker is not None:
            worker.set()
        return True

    def on_filled(self, agent: SalesAgent) -> None:
        """:class:`~codex_node.sales.context.AgentHooks`: the worker is free for other slots."""
        worker = self._workers.pop(agent.key, None)
        if worker is not None:
            worker.set()

    async def on_clean_up(self, agent: SalesAgent, returned_collateral: int, reprocess: bool) -> None:
        """:class:`~codex_node.sales.context.AgentHooks`: end the sale's books, then drop the agent."""
        data = agent.data
        forgotten = False
        # An availability saved since the worker took the slot may be the one this sale did not find.
        missed_save = self._saves_when_taken.get(agent.key, self._availability_saves) != self._availability_saves
        try:
            reservation = data.reservation
            if reservation is not None:
                await self.reservations.delete_reservation(
                    reservation.id, reservation.availability_id, returned_collateral
                )
        finally:
            # Sales.stop() forgets every agent before stopping it; a clean-up racing with it leaves the rest to it.
            forgotten = self._forget(agent)
            if forgotten:
                if self.history is not None:
                    self.history.ended(agent.slot_id, data.request_id, data.slot_index)
                # Not awaited: this runs inside the agent's own state task, which the agent's stop() cancels.
                self._tasks.spawn(agent.stop(), name="sales-agent-stop")
        item = data.slot_queue_item
        if forgotten and reprocess and item is not None and self.running:
            # Back in the queue as seen: it is tried again once an availability changes, or at once (unseen) if
            # one changed while this sale was looking.
            self._push([item.with_seen(not missed_save)])

    def _on_transition(
        self, machine: Machine[Any], from_state: State[Any] | None, to_state: State[Any], cause: str
    ) -> None:
        agent: SalesAgent = machine  # type: ignore[assignment]
        source = from_state if isinstance(from_state, SaleState) else None
        target: SaleState = to_state  # type: ignore[assignment]
        agent.log.info(
            "sale state",
            from_state=None if source is None else source.api_name,
            to_state=target.api_name,
            cause=cause,
        )
        if self.metrics is not None:
            self.metrics.on_transition(machine, from_state, to_state, cause)
        if self.history is not None:
            try:
                self.history.record(agent.slot_id, None if source is None else source.api_name, target.api_name, cause)
            except CodexError as e:
                agent.log.warning("could not record the sale's history", error=repr(e))


def _slot_of(reservation: Reservation) -> SlotId:
    return slot_id(reservation.request_id, reservation.slot_index)


def _guarded(handler: Callable[[Any], Awaitable[None]]) -> Callable[[MarketEvent], Awaitable[None]]:
    """A failing event handler is logged and does not stop the event stream for the others."""

    async def guarded(event: MarketEvent) -> None:
        try:
            await handler(event)
        except CodexError as e:
            log.warning("sales event handler failed", market_event=type(event).__name__, error=repr(e))

    return guarded
