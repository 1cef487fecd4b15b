"""Filling: post collateral and the initial proof (``fillSlot``).

A slot in Repair takes less collateral than the reservation set aside (the repair reward is a discount): the
difference goes back to the availability *before* the fill, in one write with the reservation, so whatever ends
the sale — even the contract keeping what was posted — the books only ever miss what left the wallet.

``SlotFilled`` is not a reason to leave this state: it may be our own fill being reported before the call
returns. If another host won, the contract refuses our fill with ``SlotNotFree`` and the sale is ignored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from codex_node.errors import CodexError, SlotStateMismatchError
from codex_node.sales.states.base import SaleState, complete_despite_cancel
from codex_node.sales.states.cancelled import Cancelled
from codex_node.sales.states.errored import Errored
from codex_node.sales.states.failed import Failed
from codex_node.sales.states.filled import Filled
from codex_node.sales.states.ignored import Ignored

if TYPE_CHECKING:
    from codex_node.proofs import StorageProof
    from codex_node.sales.agent import SalesAgent
    from codex_node.sales.availability import Reservation


class Filling(SaleState):
    transitions: ClassVar[frozenset[str]] = frozenset({"Filled", "Ignored", "Errored", "Cancelled", "Failed"})

    def __init__(self, proof: StorageProof) -> None:
        self.proof = proof

    def on_cancelled(self) -> SaleState | None:
        return Cancelled()

    def on_failed(self) -> SaleState | None:
        return Failed()

    async def run(self, machine: SalesAgent) -> SaleState | None:
        market = machine.context.market
        request_id, index = machine.data.request_id, machine.data.slot_index
        try:
            collateral = await market.slot_collateral(request_id, index)
            await _set_aside_only(machine, collateral)
            await market.fill_slot(request_id, index, self.proof, collateral)
        except SlotStateMismatchError:
            return Ignored(reprocess=False, reason="slot no longer free")
        except CodexError as e:
            return Errored(e)
        machine.data.filled = True
        machine.log.info("slot filled", collateral=collateral)
        return Filled()


async def _set_aside_only(agent: SalesAgent, collateral: int) -> None:
    """Shrink the reservation's collateral to what the fill takes; the rest returns to the availability."""
    reservation = agent.data.reservation
    if reservation is None or collateral >= reservation.collateral:
        return

    def keep(lowered: Reservation) -> None:
        agent.data.reservation = lowered

    await complete_despite_cancel(
        agent.context.reservations.lower_collateral(reservation.id, reservation.availability_id, collateral), keep
    )
    agent.log.info("repair collateral discount returned", returned=reservation.collateral - collateral)
