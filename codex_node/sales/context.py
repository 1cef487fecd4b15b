"""What a sales agent needs from the rest of the node, and the per-sale data it carries.

The agent and its states see the node only through the ports below (plus ``Market`` and ``Clock``); ``Sales``
builds one :class:`SalesContext` with the real implementations and the unit tests build one with fakes.

This module must never start tasks or do I/O itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from codex_node.clock import Clock
from codex_node.market.market import Market
from codex_node.market.types import Request, RequestId, Slot, SlotId

if TYPE_CHECKING:
    from codex_node.proofs import StorageProof
    from codex_node.sales.agent import SalesAgent
    from codex_node.sales.availability import Availability, Reservation
    from codex_node.sales.datasource import SlotDataSource
    from codex_node.sales.ledger import EarningsLedger
    from codex_node.sales.matching import AvailabilityVerdict
    from codex_node.sales.proofmargin import ProofMargins
    from codex_node.sales.salebook import SaleBook
    from codex_node.sales.slotqueue import SlotQueueItem
    from codex_node.sales.testhold import SaleHold


OnBlocks = Callable[[int], Awaitable[None]]
"""Called by a data source with the byte count of every batch of slot blocks it has secured in the repo."""


class SalesReservations(Protocol):
    """The part of the reservations book an agent uses (``sales.reservations.Reservations`` implements it)."""

    async def find_availability(
        self,
        size: int,
        duration: int,
        price_per_byte_per_second: int,
        collateral_per_byte: int,
        valid_until: int,
    ) -> Availability | None: ...

    async def explain_match(
        self,
        size: int,
        duration: int,
        price_per_byte_per_second: int,
        collateral_per_byte: int,
        valid_until: int,
    ) -> list[AvailabilityVerdict]:
        """Every availability's verdict on a slot, rule by rule (why ``find_availability`` found none)."""
        ...

    async def create_reservation(
        self,
        availability_id: bytes,
        slot_size: int,
        request_id: RequestId,
        slot_index: int,
        collateral_per_byte: int,
        valid_until: int,
    ) -> Reservation: ...

    async def release(self, reservation_id: bytes, availability_id: bytes, nbytes: int) -> None: ...

    async def lower_collateral(self, reservation_id: bytes, availability_id: bytes, collateral: int) -> Reservation:
        """Keep only ``collateral`` in the reservation; the rest returns to the availability now."""
        ...


class DownloadProgress(Protocol):
    """Where a slot's download progress is kept (``sales.history.SaleHistory`` implements it)."""

    def progress(self, slot: SlotId, nbytes: int, total: int) -> bool:
        """``nbytes`` of the slot's ``total`` are secured; the recorder decides how often it writes."""
        ...


class SlotProver(Protocol):
    """Builds storage proofs for the slots this node hosts (``proofs.prover.Prover`` implements it)."""

    async def prove(self, slot: Slot, challenge: bytes) -> StorageProof: ...

    def corrupt(self, proof: StorageProof) -> StorageProof:
        """A well-formed proof that the contract rejects (``--simulate-proof-failures``)."""
        ...

    async def forget(self, slot: Slot) -> None:
        """Drop whatever the prover cached for ``slot`` (the sale ended)."""
        ...


class CancellationTimers(Protocol):
    """The one timer service that notices requests expiring unfilled (``sales.timers.CancellationTimers``)."""

    def watch(self, request_id: RequestId, expires_at: int) -> None: ...


class AgentHooks(Protocol):
    """How an agent reports back to ``Sales``."""

    def worker_released(self, agent: SalesAgent) -> None:
        """The slot is filled by this host: the slot-queue worker may go."""
        ...

    async def sale_ended(
        self, agent: SalesAgent, returned_collateral: int, reprocess: bool, *, retry: bool = False
    ) -> None:
        """The sale ended: return the reservation's bytes and ``returned_collateral`` and forget the agent; queue the
        slot again (``reprocess``: seen; ``retry``: unseen, after :data:`~codex_node.sales.sales.RETRY_SECONDS`)."""
        ...


@dataclass(frozen=True, slots=True)
class SalesContext:
    """Everything shared by all agents of one ``Sales``."""

    market: Market
    clock: Clock
    reservations: SalesReservations
    data_source: SlotDataSource
    prover: SlotProver
    timers: CancellationTimers
    hooks: AgentHooks
    simulate_proof_failures: int = 0
    """Submit a wrong proof every N-th period (0: never). For tests of slashing and validation only."""
    hold: SaleHold | None = None
    """Park sales in one state (subprocess tests that kill the node there only; ``sales.testhold``)."""
    proof_margins: ProofMargins | None = None
    """Where each landed proof's margin to its period's end is recorded (``sales.proofmargin``)."""
    ledger: EarningsLedger | None = None
    """Where the states record the money of a sale (``SalesAgent.record_money``); ``None``: not recorded."""
    book: SaleBook | None = None
    """Where the proofs of a sale are recorded (``SalesAgent.record_proof``); ``None``: not recorded."""
    download_progress: DownloadProgress | None = None
    """Where a slot's download progress is recorded (``SalesAgent.record_download``); ``None``: not recorded."""


class SalesData:
    """What one agent knows about its sale. Mutated only by the agent's states."""

    __slots__ = (
        "filled",
        "request",
        "request_id",
        "reservation",
        "sale_id",
        "slot_index",
        "slot_queue_item",
        "stored",
    )

    def __init__(
        self,
        request_id: RequestId,
        slot_index: int,
        *,
        request: Request | None = None,
        reservation: Reservation | None = None,
        slot_queue_item: SlotQueueItem | None = None,
        filled: bool = False,
        stored: bool = False,
    ) -> None:
        self.request_id = request_id
        self.slot_index = slot_index
        self.request = request
        self.reservation = reservation
        self.slot_queue_item = slot_queue_item
        self.filled = filled
        """This node's ``fillSlot`` went through (Filling saw it, or the sale was resumed from ``mySlots``). Only
        what the chain cannot say any more (after a repair took the slot away) is read from it: see
        ``accounting.collateral_back``."""
        self.sale_id: int | None = None
        """The sale's id in the sale book (``sales.salebook``), once ``Sales`` has begun its record."""
        self.stored = stored
        """The slot's blocks were secured in the repo with a sale expiry that must be lowered when the sale ends."""
