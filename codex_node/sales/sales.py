"""Sales: the node's side of the storage market. Queues the slots seen on chain, runs one agent per slot.

``Sales`` wires the parts together and owns their life: the slot queue and its workers, the agents, the one
cancellation timer service, the market subscriptions. It

- turns chain events into slot-queue changes and routes them to the agents they concern, through an index keyed
  by ``(requestId, slotIndex)`` and by ``requestId`` — never by asking every agent;
- keeps one :class:`_Sale` record per sale (its agent, the slot-queue worker waiting on it, the availability-save
  count when that worker took the slot), indexed by slot id and by request id;
- holds a slot-queue worker only until its agent reports the slot Filled (``worker_released``) or the sale ended;
- counts availability saves: a sale that found no availability goes back to the queue *seen* only if no
  availability was saved since its worker took the slot (else the save, which cleared the seen flags of the
  queued slots while this one was out, would be lost on it and the paused queue would never try it again);
- ends every sale through :meth:`sale_ended`: the reservation's bytes and the collateral that came back return
  to the availability in one atomic write (and not at all a second time), the slot may go back to the queue, and
  the agent is stopped and dropped;
- on start, resumes every slot the chain says we host through ``Unknown``, resumes through ``Resuming`` (keeping
  their reservations) the sales that were stopped before their fill while their slot can still be filled, and
  ends every other reservation, returning its bytes and the collateral ``accounting.collateral_back`` decides;
  then subscribes to the market's events. Resumed sales run beside the slot-queue workers, not in one: at most
  ``max_workers`` of them were in progress when the node stopped.

Requests seen before the stop are remembered (``openrequests.py``): on start, after resuming, each one the chain
still lists as New and unexpired gets its free slots queued again (not the slots we host or resume); the others are
forgotten. The fulfilled, failed and cancelled events and the expiry timers forget them while running.

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
from dataclasses import dataclass
from typing import Any, Final

import structlog

from codex_node.clock import Clock
from codex_node.errors import CodexError, QueueNotRunningError, SlotQueueItemExistsError
from codex_node.market.market import Market, Subscription
from codex_node.market.types import (
    ChainReorganised,
    MarketEvent,
    Request,
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
from codex_node.sales.accounting import collateral_back
from codex_node.sales.agent import SalesAgent, read_slot_on_chain
from codex_node.sales.availability import Availability, Reservation
from codex_node.sales.context import SalesContext, SalesData, SlotProver
from codex_node.sales.datasource import SlotDataSource
from codex_node.sales.history import SaleHistory
from codex_node.sales.ledger import EarningsLedger, EntryKind
from codex_node.sales.metrics import SalesMetrics
from codex_node.sales.openrequests import OpenRequests
from codex_node.sales.proofmargin import ProofMargins
from codex_node.sales.reservations import Reservations
from codex_node.sales.salebook import SaleBook
from codex_node.sales.slotqueue import SlotQueue, SlotQueueItem, item_for_slot, items_for_request
from codex_node.sales.states.base import SaleState
from codex_node.sales.states.errored import Errored
from codex_node.sales.states.ignored import Ignored
from codex_node.sales.states.preparing import Preparing
from codex_node.sales.states.proving import Proving
from codex_node.sales.states.resuming import Resuming
from codex_node.sales.states.unknown import Unknown
from codex_node.sales.testhold import SaleHold
from codex_node.sales.timers import CancellationTimers
from codex_node.utils.asyncstatemachine import Machine, State
from codex_node.utils.trackedtasks import TrackedTasks

log = structlog.get_logger(__name__)

RETRY_SECONDS: Final = 10
"""A slot whose sale met an unreachable chain before the fill is queued again (unseen) this long after: once per
this many seconds during an outage, at once after it (a few seconds of a request's expiry)."""


@dataclass(eq=False, slots=True)
class _Sale:
    """One sale in progress: its agent and, while a slot-queue worker waits on it, that worker's release."""

    agent: SalesAgent
    worker: asyncio.Event | None = None
    """Set to let the worker go (the slot is Filled or the sale ended); ``None`` for sales no worker waits on."""
    saves_when_taken: int | None = None
    """The availability-save count when the worker took the slot (see the module docstring)."""

    def release_worker(self) -> None:
        if self.worker is not None:
            self.worker.set()
            self.worker = None


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
        hold: SaleHold | None = None,
        open_requests: OpenRequests | None = None,
        proof_margins: ProofMargins | None = None,
        ledger: EarningsLedger | None = None,
    ) -> None:
        self.market = market
        self.clock = clock
        self.reservations = reservations
        self.queue = queue
        self.history = history
        self.metrics = metrics
        self.open_requests = open_requests
        self.ledger = ledger
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
            hold=hold if hold is not None else SaleHold.from_env(),
            proof_margins=proof_margins,
            ledger=ledger,
            book=None if history is None else history.book,
            download_progress=history,
        )
        self._rng = rng or random.Random()
        self._sales: dict[SlotId, _Sale] = {}
        self._by_request: dict[RequestId, set[SlotId]] = {}
        self._availability_saves = 0
        self._stop_listening: Callable[[], None] | None = None
        self._subscriptions: list[Subscription] = []
        self._tasks = TrackedTasks("sales")
        self.running = False

    # --- life ---------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Resume hosted slots, start the queue and the timers, and follow the chain."""
        self._tasks.reopen()
        await self._load()
        resumed = len(self._sales)
        self._stop_listening = self.reservations.listen_saved(self._on_availability_saved)
        self.queue.start(self._process_slot)
        self.timers.start()
        await self._requeue_open_requests()
        await self._subscribe()
        self.running = True
        log.info("sales started", resumed=resumed)

    async def stop(self) -> None:
        """Stop following the chain, stop the queue, the timers and every agent; wait for all of it."""
        self.running = False
        subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            await subscription.unsubscribe()
        if self._stop_listening is not None:
            self._stop_listening()
            self._stop_listening = None
        await self.queue.stop()
        await self.timers.stop()
        agents = [sale.agent for sale in self._sales.values()]
        for agent in agents:
            self._forget(agent)
        await asyncio.gather(*(agent.stop() for agent in agents))
        await self._tasks.cancel_all()
        log.info("sales stopped", agents=len(agents))

    # --- queries (API) ------------------------------------------------------------------------------------------

    @property
    def book(self) -> SaleBook | None:
        """Every sale started (``GET /sales/history``); ``None`` when this Sales keeps no history."""
        return None if self.history is None else self.history.book

    def agents(self) -> list[SalesAgent]:
        return [sale.agent for sale in self._sales.values()]

    def agent(self, slot: SlotId) -> SalesAgent | None:
        sale = self._sales.get(slot)
        return None if sale is None else sale.agent

    def agents_of(self, request_id: RequestId) -> list[SalesAgent]:
        return [self._sales[sid].agent for sid in self._by_request.get(request_id, ())]

    # --- start-up -----------------------------------------------------------------------------------------------

    async def _load(self) -> None:
        """Resume the slots we host (chain truth) and the sales stopped before their fill; end all other
        reservations."""
        market = self.market
        active = {}
        for sid in await market.my_slots():
            slot = await market.get_active_slot(sid)
            if slot is not None:
                active[sid] = slot
        resumable: dict[SlotId, tuple[Reservation, Request]] = {}
        for r in await self.reservations.all_reservations():
            sid = _slot_of(r)
            if sid not in active and sid not in resumable:
                request = await self._still_fillable(r)
                if request is not None:
                    resumable[sid] = (r, request)
        leftovers = [
            r for r in await self.reservations.all_reservations() if _slot_of(r) not in active | resumable.keys()
        ]
        returned = {r.id: await self._collateral_back(r) for r in leftovers}
        await self.reservations.delete_inactive_reservations(
            active.keys() | resumable.keys(), returned_collateral=lambda r: returned[r.id]
        )
        held = {(r.request_id, r.slot_index): r for r in await self.reservations.all_reservations()}
        for sid, slot in active.items():
            if sid in self._sales:
                continue
            data = SalesData(
                slot.request.id,
                slot.slot_index,
                request=slot.request,
                reservation=held.get((slot.request.id, slot.slot_index)),
                filled=True,
            )
            agent = self._new_sale(data)
            if data.reservation is not None:
                # The node may have stopped between its fill and the ledger's record of it: the chain says the
                # fill went through, the reservation says what it posted, and the ledger records it once.
                agent.record_money(EntryKind.COLLATERAL_POSTED, data.reservation.collateral)
            agent.start(Unknown())
        for sid, (reservation, request) in resumable.items():
            if sid in self._sales:
                continue
            # Blocks of this sale may carry its expiry already: its end must lower them again.
            data = SalesData(
                request.id,
                reservation.slot_index,
                request=request,
                reservation=reservation,
                stored=reservation.downloaded > 0,
            )
            self._new_sale(data).start(Resuming())
        if self.history is not None:
            try:
                orphans = self.history.book.end_orphans(set(self._sales))
            except CodexError as e:
                log.warning("could not end the sale records the restart left open", error=repr(e))
            else:
                if orphans:
                    log.info("sale records ended at start-up: their sales did not resume", sales=orphans)

    async def _still_fillable(self, reservation: Reservation) -> Request | None:
        """The request of a reservation whose slot we do not host, if the sale can still fill it: the request is
        open, the slot free (or in repair) and its deadline not passed. ``None`` otherwise, or when the chain
        cannot say (the reservation then ends as before)."""
        market = self.market
        sid = _slot_of(reservation)
        try:
            request = await market.get_request(reservation.request_id)
            if request is None:
                return None
            state = await market.request_state(reservation.request_id)
            if state == RequestState.NEW:
                deadline = await market.request_expires_at(reservation.request_id)
            elif state == RequestState.STARTED:
                deadline = await market.request_end(reservation.request_id)
            else:
                return None
            if self.clock.now() >= deadline:
                return None
            if await market.slot_state(sid) not in (SlotState.FREE, SlotState.REPAIR):
                return None
        except CodexError as e:
            log.warning("could not check whether a stopped sale can go on", slot_id=sid.hex(), error=repr(e))
            return None
        return request

    async def _requeue_open_requests(self) -> None:
        """Queue again the free slots of every remembered request the chain still lists as New and unexpired;
        forget the others. A request the chain cannot be asked about stays remembered for the next start."""
        remembered = self.open_requests
        if remembered is None:
            return
        requeued = 0
        for record in remembered.all():
            request_id = record.request_id
            try:
                if self.clock.now() > record.expires_at or await self.market.request_state(request_id) != (
                    RequestState.NEW
                ):
                    remembered.forget(request_id)
                    continue
                free = [
                    i
                    for i in range(record.ask.slots)
                    if slot_id(request_id, i) not in self._sales
                    and await self.market.slot_state(slot_id(request_id, i)) == SlotState.FREE
                ]
            except CodexError as e:
                log.warning("could not check a remembered open request", request_id=request_id.hex(), error=repr(e))
                continue
            self._rng.shuffle(free)
            collateral = record.ask.collateral_per_slot
            self._push(
                item_for_slot(request_id, i, record.ask, expires_at=record.expires_at, collateral=collateral)
                for i in free
            )
            requeued += len(free)
        if len(remembered):
            log.info("open requests queued again", requests=len(remembered), slots=requeued)

    async def _collateral_back(self, reservation: Reservation) -> int:
        """How much of a leftover reservation's collateral is back in our hands (``accounting.collateral_back``)."""
        sid = _slot_of(reservation)
        try:
            on_chain = await read_slot_on_chain(self.market, sid)
        except CodexError as e:
            log.warning("could not read a leftover slot's state", slot_id=sid.hex(), error=repr(e))
            return collateral_back(reservation, None, filled=None)
        return collateral_back(reservation, on_chain, filled=None)

    async def _subscribe(self) -> None:
        handlers: list[tuple[type[Any], Callable[[Any], Awaitable[None]]]] = [
            (StorageRequested, self._on_storage_requested),
            (RequestFulfilled, self._on_request_fulfilled),
            (RequestFailed, self._on_request_failed),
            (RequestCancelled, self._on_request_cancelled),
            (SlotFilled, self._on_slot_filled),
            (SlotFreed, self._on_slot_freed),
            (SlotReservationsFull, self._on_slot_reservations_full),
            (ChainReorganised, self._on_chain_reorganised),
        ]
        for event_type, handler in handlers:
            self._subscriptions.append(await self.market.subscribe(event_type, _guarded(handler)))

    # --- chain events -------------------------------------------------------------------------------------------

    async def _on_storage_requested(self, event: StorageRequested) -> None:
        self._push(items_for_request(event, rng=self._rng))
        if self.open_requests is not None:
            self.open_requests.remember(event.request_id, event.ask, event.expires_at)

    async def _on_request_fulfilled(self, event: RequestFulfilled) -> None:
        self.queue.delete_request(event.request_id)
        self.timers.forget(event.request_id)
        self._forget_open(event.request_id)

    async def _on_request_failed(self, event: RequestFailed) -> None:
        self.queue.delete_request(event.request_id)
        for agent in self.agents_of(event.request_id):
            agent.on_failed()
        self._forget_open(event.request_id)

    async def _on_request_cancelled(self, event: RequestCancelled) -> None:
        await self._on_request_expired(event.request_id)

    async def _on_request_expired(self, request_id: RequestId) -> None:
        self.queue.delete_request(request_id)
        for agent in self.agents_of(request_id):
            agent.on_cancelled()
        self._forget_open(request_id)

    async def _on_slot_filled(self, event: SlotFilled) -> None:
        self.queue.delete(event.request_id, event.slot_index)
        sale = self._sales.get(slot_id(event.request_id, event.slot_index))
        if sale is not None:
            sale.agent.on_slot_filled()

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

    async def _on_chain_reorganised(self, event: ChainReorganised) -> None:
        # A proving sale would read its slot only at the next period; its fill may have left the chain now. The
        # other states read the chain at each of their steps (a sale entering Proving reads its slot first).
        proving = [agent for agent in self.agents() if isinstance(agent.state, Proving)]
        log.info(
            "chain reorganised: proving sales read their slots again", from_block=event.first_block, sales=len(proving)
        )
        for agent in proving:
            agent.poke()

    def _forget_open(self, request_id: RequestId) -> None:
        # Last in each handler: a store that cannot write must not keep the queue and the agents from hearing it.
        if self.open_requests is not None:
            self.open_requests.forget(request_id)

    def _push(self, items: Iterable[SlotQueueItem]) -> None:
        for item in items:
            if slot_id(item.request_id, item.slot_index) in self._sales:
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
        """One slot-queue worker's job: run the slot's sale until it is Filled or ended."""
        if slot_id(item.request_id, item.slot_index) in self._sales:
            return
        released = asyncio.Event()
        data = SalesData(item.request_id, item.slot_index, slot_queue_item=item)
        agent = self._new_sale(data, worker=released, saves_when_taken=self._availability_saves)
        agent.start(Preparing())
        await released.wait()

    def _new_sale(
        self, data: SalesData, *, worker: asyncio.Event | None = None, saves_when_taken: int | None = None
    ) -> SalesAgent:
        agent = SalesAgent(self.context, data, [self._on_transition])
        if self.history is not None:
            try:
                data.sale_id = self.history.book.begin(agent.slot_id, data.request_id, data.slot_index)
                agent.log = agent.log.bind(sale_id=data.sale_id)
            except CodexError as e:
                agent.log.warning("could not begin the sale's record", error=repr(e))
        self._sales[agent.slot_id] = _Sale(agent, worker, saves_when_taken)
        self._by_request.setdefault(data.request_id, set()).add(agent.slot_id)
        return agent

    def _forget(self, agent: SalesAgent) -> _Sale | None:
        """Drop ``agent``'s sale from both indexes and free its worker; ``None`` if it was not indexed (any more)."""
        sale = self._sales.get(agent.slot_id)
        if sale is None or sale.agent is not agent:
            return None
        del self._sales[agent.slot_id]
        request_id = agent.data.request_id
        slots = self._by_request[request_id]
        slots.discard(agent.slot_id)
        if not slots:
            del self._by_request[request_id]
            self.timers.forget(request_id)
        if self.metrics is not None:
            self.metrics.agent_removed(agent.state)
        sale.release_worker()
        return sale

    def worker_released(self, agent: SalesAgent) -> None:
        """:class:`~codex_node.sales.context.AgentHooks`: the slot is filled; its worker is free for other slots."""
        sale = self._sales.get(agent.slot_id)
        if sale is not None and sale.agent is agent:
            sale.release_worker()

    async def sale_ended(
        self, agent: SalesAgent, returned_collateral: int, reprocess: bool, *, retry: bool = False
    ) -> None:
        """:class:`~codex_node.sales.context.AgentHooks`: end the sale's books, then drop the agent."""
        data = agent.data
        sale: _Sale | None = self._sales.get(agent.slot_id)
        # An availability saved since the worker took the slot may be the one this sale did not find. Counted
        # before this sale's own return below, which is a save too.
        missed_save = sale is not None and sale.saves_when_taken not in (None, self._availability_saves)
        try:
            reservation = data.reservation
            if reservation is not None:
                await self.reservations.delete_reservation(
                    reservation.id, reservation.availability_id, returned_collateral
                )
        finally:
            # Sales.stop() forgets every agent before stopping it; an ending racing with it leaves the rest to it.
            sale = self._forget(agent)
            if sale is not None:
                if self.history is not None:
                    self.history.ended(agent.slot_id, data.request_id, data.slot_index)
                # Not awaited: this runs inside the agent's own state task, which the agent's stop() cancels.
                self._tasks.spawn(agent.stop(), name="sales-agent-stop")
        item = data.slot_queue_item
        if sale is not None and retry and item is not None and self.running:
            # The chain did not answer: a seen item would wait for an availability change that may never come, an
            # unseen one pushed now would spin through the outage. Back unseen, a while later.
            self._tasks.spawn(self._retry_later(item), name="sales-retry")
        elif sale is not None and reprocess and item is not None and self.running:
            # Back unseen (tried at once) after a missed save, else seen (tried once an availability changes).
            self._push([item.with_seen(not missed_save)])

    async def _retry_later(self, item: SlotQueueItem) -> None:
        await self.clock.wait_until(self.clock.now() + RETRY_SECONDS)
        if self.running and self.clock.now() < item.expires_at:
            log.info(
                "slot queued again after a chain error", request_id=item.request_id.hex(), slot_index=item.slot_index
            )
            self._push([item.with_seen(False)])

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
                if agent.data.sale_id is not None:
                    self.history.book.transition(
                        agent.data.sale_id,
                        None if source is None else source.api_name,
                        target.api_name,
                        cause,
                        reason=target.reason if isinstance(target, Ignored) else None,
                        error=repr(target.error) if isinstance(target, Errored) else None,
                    )
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
