"""The Validator part: after each proof period, mark every required and missing proof of the watched slots.

What it does, in order:

1. **Restore** (``start``). It subscribes to the events it follows (:data:`~codex_node.validation.watchlist.FOLLOWED`)
   first, holding what they deliver, then reads the history of such events (``past_events``) and applies it, then
   what was held. So a restarted validator watches every slot filled before it stopped *and* while it was down, and
   no event between the history read and the subscription is lost (an event seen twice is harmless: applying
   events is idempotent in chain order, ``watchlist.py``). The history read is every event since the marketplace's
   deployment, unless a checkpoint of the same groups was saved (``checkpoint.py``: the slots watched, and the
   point of the history they account for, saved after each round and at stop): then the saved slots, and the
   events from that point on. Why its own checkpoint rather than the event stream's persisted cursor: the cursor
   is the node's, shared with Sales, and only replays what happened while the node was down; a node that becomes
   a validator (or changes its group) after running without one would miss every slot filled before (it has no
   checkpoint of that group, so it reads the whole history once).
2. **Rounds** (one task). When period ``p`` has ended (``now > periodEnd(p)``, as the contract's views see it:
   the chain clock, the latest block's time), each watched slot is read: a slot no longer Filled (finished,
   failed, cancelled, paid, or freed for repair) stops being watched; for a Filled one, every period still open
   to marking (``timing.py``) is offered to ``can_mark_proof_as_missing`` and, if the chain agrees,
   ``mark_proof_as_missing`` is sent. Slots are checked concurrently (at most :data:`CONCURRENCY` at once) so a
   long list is done within the contract's ``timeout``.
3. **Failures.** A marking transaction that fails is logged and counted (``codex_validator_mark_failures``) and
   the round goes on, unless the slot stopped being Filled meanwhile (two slots freed in one round can fail the
   request under a third one's marking: a race lost, not a failure; the slot is dropped). A slot whose check
   cannot read the chain is counted and checked again next period. A period whose window closed before the
   validator got to it is counted as lapsed. Cancellation is never
   swallowed: ``stop`` cancels the round task and awaits it.

The validator acts with the node's account: marking needs gas only, and the contract pays the caller a share of
each slash. It never reads the wall clock (the chain clock is injected) and never touches the node's sales.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

import structlog

from codex_node.errors import CodexError, ContractRevertError, ValidationFailedError
from codex_node.market.types import HistoryMark, MarketEvent, Periodicity, SlotFilled, SlotId, SlotState
from codex_node.utils.trackedtasks import TrackedTasks
from codex_node.validation import timing
from codex_node.validation.checkpoint import Checkpoint, CheckpointStore
from codex_node.validation.metrics import ValidatorMetrics
from codex_node.validation.watchlist import FOLLOWED, WatchedSlot, WatchList

if TYPE_CHECKING:
    from codex_node.clock import Clock
    from codex_node.market.market import E, EventHandler, Subscription
    from codex_node.market.types import MarketplaceConfig

log = structlog.get_logger(__name__)

CONCURRENCY: Final = 16
"""Slots checked at once in a round (each check is one or two chain reads, a mark one transaction)."""


class ValidatorMarket(Protocol):
    """What the validator needs of the marketplace (``OnChainMarket`` and ``MockMarket`` both provide it)."""

    async def config(self) -> MarketplaceConfig: ...

    async def periodicity(self) -> Periodicity: ...

    async def slot_state(self, slot_id: SlotId) -> SlotState: ...

    async def can_mark_proof_as_missing(self, slot_id: SlotId, period: int) -> bool: ...

    async def mark_proof_as_missing(self, slot_id: SlotId, period: int) -> None: ...

    async def past_events(self, since: HistoryMark | None = None) -> list[MarketEvent]:
        """Every marketplace event from the mark ``since`` on (``None``, or a mark whose history changed: since the
        deployment), in chain order (a read: nothing is delivered)."""
        ...

    async def history_mark(self) -> HistoryMark:
        """A mark of the history before which every event has been delivered to the subscribers (their handlers
        returned) and will not be delivered again."""
        ...

    async def subscribe(self, event_type: type[E], handler: EventHandler[E]) -> Subscription: ...


@dataclass(frozen=True, slots=True)
class ValidatorStatus:
    """What an operator reads of the validator (``GET /validator``)."""

    groups: int | None
    group_index: int
    slots_watched: int
    last_period: int | None
    proofs_marked: int
    mark_failures: dict[str, int]
    """Failed markings by reason (``codex_validator_mark_failures`` labels)."""
    lapsed_periods: int


class Validator:
    """See the module docstring. ``groups``/``group_index``: ``--validator-groups``/``--validator-group-index``."""

    def __init__(
        self,
        market: ValidatorMarket,
        clock: Clock,
        *,
        groups: int | None = None,
        group_index: int = 0,
        metrics: ValidatorMetrics | None = None,
        checkpoints: CheckpointStore | None = None,
    ) -> None:
        """``checkpoints``: where the watch list is saved after each round and at stop, and restored from at start
        (``checkpoint.py``); ``None``: the full history is read at every start."""
        self._market = market
        self._checkpoints = checkpoints
        self._clock = clock
        self.watched = WatchList(groups, group_index)
        self._metrics = metrics if metrics is not None else ValidatorMetrics()
        self._tasks = TrackedTasks("validator")
        self._subscriptions: list[Subscription] = []
        self._held: list[MarketEvent] | None = None
        self._last_period: int | None = None
        self.proofs_marked = 0
        self.mark_failures: Counter[str] = Counter()
        self.lapsed_periods = 0
        self.rounds = 0
        self._started = False
        self.history_from: HistoryMark | None = None
        """Where the last start read the history from (``None``: the deployment; else a checkpoint's mark)."""
        self._progress = asyncio.Condition()

    # --- lifecycle --------------------------------------------------------------------------------------------

    async def start(self) -> None:
        config = await self._market.config()
        periods = await self._market.periodicity()
        saved = self._checkpoints.load() if self._checkpoints is not None else None
        if saved is not None and (saved.groups, saved.group_index) != (self.watched.groups, self.watched.group_index):
            log.info("validator checkpoint of other groups ignored", groups=saved.groups, group_index=saved.group_index)
            saved = None
        since = None if saved is None else saved.since
        self.history_from = since
        self._held = []
        try:
            for event_type in FOLLOWED:
                self._subscriptions.append(await self._market.subscribe(event_type, self._on_event))
            history = [e for e in await self._market.past_events(since) if isinstance(e, FOLLOWED)]
        except BaseException:
            await self._unsubscribe()
            raise
        if saved is not None:
            self.watched.restore(saved.slots)
        self.watched.apply_all(history)
        self.watched.apply_all(self._held)  # delivered since the subscription: newer than (or also in) the history
        self._held = None
        self._started = True
        self._metrics.slots_watched.set(len(self.watched))
        log.info(
            "validator started",
            groups=self.watched.groups,
            group_index=self.watched.group_index,
            slots_watched=len(self.watched),
            events_read=len(history),
            history_from="deployment" if since is None else since.point,
        )
        self._tasks.spawn(self._run(periods, config.proofs.timeout), name="validator rounds")

    async def stop(self) -> None:
        await self._tasks.cancel_all()
        await self._unsubscribe()
        if self._started:  # not before: an empty list saved with a mark would hide the slots filled before it
            await self._save()
        failures = self.mark_failures.total()
        log.info("validator stopped", proofs_marked=self.proofs_marked, mark_failures=failures)

    async def _unsubscribe(self) -> None:
        subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            await subscription.unsubscribe()

    async def wait_checked(self, period: int) -> None:
        """Return once a round has checked ``period`` or a later one (for tests)."""
        async with self._progress:
            await self._progress.wait_for(lambda: self._last_period is not None and self._last_period >= period)

    def status(self) -> ValidatorStatus:
        return ValidatorStatus(
            groups=self.watched.groups,
            group_index=self.watched.group_index,
            slots_watched=len(self.watched),
            last_period=self._last_period,
            proofs_marked=self.proofs_marked,
            mark_failures=dict(self.mark_failures),
            lapsed_periods=self.lapsed_periods,
        )

    # --- events -----------------------------------------------------------------------------------------------

    async def _on_event(self, event: MarketEvent) -> None:
        if self._held is not None:
            self._held.append(event)
            return
        for slot in self.watched.apply(event):
            verb = "watching slot" if isinstance(event, SlotFilled) else "stopped watching slot"
            log.info(verb, slot_id=slot.slot_id.hex(), request_id=slot.request_id.hex(), slot_index=slot.slot_index)
        self._metrics.slots_watched.set(len(self.watched))

    # --- rounds -----------------------------------------------------------------------------------------------

    async def _run(self, periods: Periodicity, window: int) -> None:
        # ``window``: the contract's proof timeout. From the oldest period still open at start: a just-ended period
        # is checked at once.
        after = timing.oldest_open(periods, window, self._clock.now()) - 1
        while True:
            now = self._clock.now()
            lapsed = timing.lapsed(periods, window, now, after)
            if lapsed:
                self.lapsed_periods += lapsed
                self._metrics.lapsed_periods.inc(lapsed)
                log.warning("validator fell behind: periods lapsed unchecked", periods=lapsed, now=now)
            due = timing.due_periods(periods, window, now, after)
            if due:
                await self.run_round(due)
                after = due[-1]
            else:
                after = max(after, timing.oldest_open(periods, window, now) - 1)
            await self._clock.wait_until(timing.next_check(periods, window, self._clock.now(), after))

    async def run_round(self, due: list[int]) -> None:
        """Check every watched slot for the missing proofs of the periods ``due`` (oldest first)."""
        limit = asyncio.Semaphore(CONCURRENCY)

        async def bounded(slot: WatchedSlot) -> None:
            async with limit:
                await self._check(slot, due)

        async with asyncio.TaskGroup() as group:
            for slot in self.watched:
                group.create_task(bounded(slot))
        await self._save()
        self._last_period = due[-1]
        self._metrics.last_period.set(due[-1])
        self._metrics.rounds.inc()
        self._metrics.slots_watched.set(len(self.watched))
        log.debug("validation round done", periods=due, slots_watched=len(self.watched))
        self.rounds += 1
        async with self._progress:
            self._progress.notify_all()

    async def _save(self) -> None:
        """Save the watch list with the history mark it accounts for. The mark is read first: events delivered
        while it is read are in the list taken after it, and applied again after a restart (harmless). A failure
        is logged: the previous checkpoint stays, and is still right (only older)."""
        if self._checkpoints is None:
            return
        try:
            since = await self._market.history_mark()
            slots = tuple((slot.request_id, slot.slot_index) for slot in self.watched)
            self._checkpoints.save(Checkpoint(since, self.watched.groups, self.watched.group_index, slots))
        except CodexError as e:
            log.warning("validator checkpoint not saved", error=str(e))

    async def _check(self, slot: WatchedSlot, due: list[int]) -> None:
        """One slot's check: drop it if it is no longer Filled, else mark each due period's missing proof."""
        sid = slot.slot_id
        try:
            state = await self._market.slot_state(sid)
            if state != SlotState.FILLED:
                if self.watched.drop(sid) is not None:
                    log.info("stopped watching slot", slot_id=sid.hex(), state=state.name.lower())
                return
            for period in due:
                if not await self._market.can_mark_proof_as_missing(sid, period):
                    continue
                try:
                    await self._mark(slot, period)
                except ValidationFailedError as e:
                    if await self._ended_meanwhile(slot):
                        return
                    reason = _reason(e)
                    self.mark_failures[reason] += 1
                    self._metrics.mark_failures.labels(reason).inc()
                    log.warning(
                        "marking a missing proof failed", slot_id=sid.hex(), period=period, reason=reason, error=str(e)
                    )
        except CodexError as e:
            self._metrics.check_failures.inc()
            log.warning("slot check failed", slot_id=sid.hex(), error=repr(e))

    async def _ended_meanwhile(self, slot: WatchedSlot) -> bool:
        """Whether a refused marking only lost a race with the slot's end: another marking in the same round freed
        enough slots to fail the request (or the request ended) between the check and the transaction. That is
        no failure of the validator; the slot is dropped."""
        state = await self._market.slot_state(slot.slot_id)
        if state == SlotState.FILLED:
            return False
        if self.watched.drop(slot.slot_id) is not None:
            log.info("stopped watching slot", slot_id=slot.slot_id.hex(), state=state.name.lower())
        return True

    async def _mark(self, slot: WatchedSlot, period: int) -> None:
        try:
            await self._market.mark_proof_as_missing(slot.slot_id, period)
        except CodexError as e:
            raise ValidationFailedError(f"the chain refused or lost the marking: {e!r}") from e
        self.proofs_marked += 1
        self._metrics.marked.inc()
        log.info(
            "proof marked missing",
            slot_id=slot.slot_id.hex(),
            request_id=slot.request_id.hex(),
            slot_index=slot.slot_index,
            period=period,
        )


def _reason(error: ValidationFailedError) -> str:
    """The label of a failed marking: the contract error's name when it reverted, else the error's type."""
    cause = error.__cause__
    if isinstance(cause, ContractRevertError):
        return cause.error_name
    return type(cause).__name__ if cause is not None else type(error).__name__
