"""One purchase's state machine, on the generic machine of ``utils/asyncstatemachine.py`` (like a sales agent).

States (``purchasing/states/``), with nim-codex's names as the API shows them::

    pending ──requestStorage──▶ submitted ──all slots filled──▶ started ──end──▶ finished
                                   │                               │
                                   └──expiry, unfilled──▶ cancelled└──too many slots lost──▶ failed
    any run that raises ──▶ errored

``finished``, ``cancelled``, ``failed`` and ``errored`` are terminal; the first three withdraw the request's
leftover funds on entry (``withdrawFunds``). Every transition is persisted with its cause (``records.py``) by a
listener, so a restart resumes each purchase from its record and the chain's view of its request
(``PurchaseUnknown``).

Waiting: ``submitted`` and ``started`` sleep until their deadline on the chain clock or until a marketplace
event about their request arrives (:meth:`PurchaseMachine.poke`), then read the request's state from the chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import structlog

from codex_node.clock import Clock
from codex_node.market.market import Market
from codex_node.market.types import Request, RequestId
from codex_node.purchasing.metrics import PurchaseMetrics
from codex_node.purchasing.records import PurchaseRecord, PurchaseStore, with_state
from codex_node.sales.ledger import MoneyRecorder
from codex_node.utils.asyncstatemachine import Machine, State
from codex_node.utils.wakeup import Wakeup

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class PurchaseContext:
    market: Market
    clock: Clock
    store: PurchaseStore
    metrics: PurchaseMetrics
    money: MoneyRecorder | None = None
    """Where the payment and the refund are recorded (the node's earnings ledger)."""


class PurchaseState(State["PurchaseMachine"]):
    """A purchase state; ``api_name`` is what ``GET /storage/purchases/{id}`` shows."""

    api_name: ClassVar[str] = "unknown"
    error: str | None = None


class PurchaseMachine(Machine[PurchaseState]):
    def __init__(self, record: PurchaseRecord, context: PurchaseContext) -> None:
        super().__init__()
        self.record = record
        self.context = context
        self._wakeup = Wakeup()
        self.failure: Exception | None = None
        """The error that sent the machine to errored (``Purchasing.purchase`` re-raises it)."""
        self.add_listener(self._persist)

    @property
    def request(self) -> Request:
        return self.record.request

    @property
    def request_id(self) -> RequestId:
        return self.record.id

    def poke(self) -> None:
        """A marketplace event about this request arrived: the waiting state reads the chain again."""
        self._wakeup.poke()

    async def wait(self, deadline: int) -> None:
        """Until the chain clock passes ``deadline`` or :meth:`poke` is called, whichever comes first."""
        await self._wakeup.wait(self.context.clock, deadline)

    def mark_withdrawn(self) -> None:
        self.record = PurchaseRecord(self.record.request, self.record.state, self.record.error, withdrawn=True)
        self.context.store.save(self.record)

    def on_run_error(self, state: PurchaseState, error: Exception) -> PurchaseState | None:
        from codex_node.purchasing.states.errored import PurchaseErrored

        self.failure = error
        log.warning("purchase errored", request_id=self.request_id.hex(), state=state.name, error=repr(error))
        return PurchaseErrored(f"{state.api_name}: {error}")

    def _persist(self, machine: Machine[Any], from_state: State[Any] | None, to_state: State[Any], cause: str) -> None:
        assert isinstance(to_state, PurchaseState)
        before = self.record.state
        self.record = with_state(self.record, to_state.api_name, to_state.error)
        self.context.store.save(self.record, before if from_state is not None else None, cause)
        self.context.metrics.transition(before if from_state is not None else None, to_state.api_name)
        log.info(
            "purchase state",
            request_id=self.request_id.hex(),
            state=to_state.api_name,
            cause=cause,
            error=to_state.error,
        )
