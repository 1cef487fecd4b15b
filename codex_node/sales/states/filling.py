"""Filling: post collateral and the initial proof (``fillSlot``).

A slot in Repair takes less collateral than the reservation set aside (the repair reward is a discount): the
difference goes back to the availability *before* the fill, in one write with the reservation, so whatever ends
the sale — even the contract keeping what was posted — the books only ever miss what left the wallet.

``SlotFilled`` is not a reason to leave this state: it may be our own fill being reported before the call
returns. If another host won, the contract refuses our fill with ``SlotNotFree`` and the sale is ignored.

The contract checks the proof against the challenge of the block the fill runs in. A fill slower than the rest of
the period (a busy chain, a slow RPC) meets the next period's challenge and is refused (``InvalidCellProof``)
although the data is fine: when the challenge read again differs from the one proven, the next period's
challenge is proven (``sales/fillproof.py``) and the fill sent again, at most :data:`FILL_ATTEMPTS` fills in all.
Refused with the challenge unchanged, the proof itself is wrong and the sale errs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from codex_node.errors import CodexError, ProofInvalidError, SlotStateMismatchError
from codex_node.sales.fillproof import fill_proof
from codex_node.sales.ledger import EntryKind
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


FILL_ATTEMPTS = 3
"""Fills tried per sale when each one's challenge moved on before it landed."""


class Filling(SaleState):
    transitions: ClassVar[frozenset[str]] = frozenset({"Filled", "Ignored", "Errored", "Cancelled", "Failed"})

    def __init__(self, proof: StorageProof, challenge: bytes | None = None) -> None:
        self.proof = proof
        self.challenge = challenge
        """The challenge ``proof`` answers (``None``: unknown, a refused proof then errs)."""

    def on_cancelled(self) -> SaleState | None:
        return Cancelled()

    def on_failed(self) -> SaleState | None:
        return Failed()

    async def run(self, machine: SalesAgent) -> SaleState | None:
        market = machine.context.market
        request_id, index = machine.data.request_id, machine.data.slot_index
        proof, challenge = self.proof, self.challenge
        for attempt in range(1, FILL_ATTEMPTS + 1):
            try:
                collateral = await market.slot_collateral(request_id, index)
                await _set_aside_only(machine, collateral)
                await market.fill_slot(request_id, index, proof, collateral)
                break
            except SlotStateMismatchError:
                return Ignored(reprocess=False, reason="slot no longer free")
            except ProofInvalidError as e:
                if attempt == FILL_ATTEMPTS or not await _moved_on(machine, challenge):
                    return Errored(e)
                machine.log.warning("the challenge moved on before the fill landed: proving again", attempt=attempt)
            except CodexError as e:
                return Errored(e)
            try:
                proof, challenge = await fill_proof(machine)
            except CodexError as e:
                return Errored(e)
        machine.data.filled = True
        machine.record_money(EntryKind.COLLATERAL_POSTED, collateral)
        machine.log.info("slot filled", collateral=collateral)
        return Filled()


async def _moved_on(agent: SalesAgent, challenge: bytes | None) -> bool:
    """Whether the slot's challenge is no longer ``challenge`` (``None``, or unreadable: not known to have)."""
    if challenge is None:
        return False
    try:
        return await agent.context.market.get_challenge(agent.slot_id) != challenge
    except CodexError:
        return False


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
