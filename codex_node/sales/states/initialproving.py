"""InitialProving: build the proof that ``fillSlot`` checks, for a period whose challenge is stable.

The challenge points at a recent block hash; near the end of the pointer's range (the last ``downtime``
positions) the pointed-at block changes within the period, so we wait for a period where it does not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from codex_node.errors import CodexError
from codex_node.sales.states.base import SaleState
from codex_node.sales.states.cancelled import Cancelled
from codex_node.sales.states.errored import Errored
from codex_node.sales.states.failed import Failed
from codex_node.sales.states.filling import Filling
from codex_node.sales.states.ignored import Ignored

if TYPE_CHECKING:
    from codex_node.sales.agent import SalesAgent

POINTER_RANGE = 256
"""The challenge pointer runs over the last 256 block hashes (the EVM's BLOCKHASH window)."""


class InitialProving(SaleState):
    transitions: ClassVar[frozenset[str]] = frozenset({"Filling", "Ignored", "Errored", "Cancelled", "Failed"})

    def on_cancelled(self) -> SaleState | None:
        return Cancelled()

    def on_failed(self) -> SaleState | None:
        return Failed()

    def on_slot_filled(self) -> SaleState | None:
        return Ignored(reprocess=False, reason="slot filled by another host")

    async def run(self, machine: SalesAgent) -> SaleState | None:
        market = machine.context.market
        clock = machine.context.clock
        try:
            periodicity = await market.periodicity()
            downtime = (await market.config()).proofs.downtime
            await clock.wait_until(periodicity.period_end(periodicity.period_of(clock.now())))
            while await market.get_pointer(machine.slot_id) > POINTER_RANGE - downtime:
                await clock.wait_until(periodicity.period_end(periodicity.period_of(clock.now())))
            challenge = await market.get_challenge(machine.slot_id)
            proof = await machine.context.prover.prove(machine.slot, challenge)
        except CodexError as e:
            return Errored(e)
        return Filling(proof)
