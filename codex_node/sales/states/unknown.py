"""Unknown: the entry state of a sale resumed after a restart. The chain says where the sale stands."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from codex_node.errors import CodexError, SaleError
from codex_node.market.types import SlotState
from codex_node.sales.states.base import SaleState
from codex_node.sales.states.cancelled import Cancelled
from codex_node.sales.states.errored import Errored
from codex_node.sales.states.failed import Failed
from codex_node.sales.states.filled import Filled
from codex_node.sales.states.finished import Finished
from codex_node.sales.states.payout import Payout

if TYPE_CHECKING:
    from codex_node.sales.agent import SalesAgent


class Unknown(SaleState):
    transitions: ClassVar[frozenset[str]] = frozenset(
        {"Filled", "Payout", "Finished", "Failed", "Cancelled", "Errored"}
    )

    def on_cancelled(self) -> SaleState | None:
        return Cancelled()

    def on_failed(self) -> SaleState | None:
        return Failed()

    async def run(self, machine: SalesAgent) -> SaleState | None:
        try:
            return await self._resume(machine)
        except CodexError as e:
            return Errored(e)

    async def _resume(self, agent: SalesAgent) -> SaleState:
        market = agent.context.market
        data = agent.data
        await agent.load_request()
        # The slot came from mySlots: our fill went through and its blocks are in the repo under this sale's expiry.
        data.filled = True
        data.stored = True
        state = await market.slot_state(agent.slot_id)
        if state == SlotState.FILLED:
            return Filled()
        if state == SlotState.FINISHED:
            return Payout()
        if state == SlotState.PAID:
            # Paid before the crash: the collateral came back with the payout (Finished reads how much).
            return Finished()
        if state == SlotState.FAILED:
            return Failed()
        if state == SlotState.CANCELLED:
            return Cancelled()
        if state == SlotState.REPAIR:
            raise SaleError("the slot was freed for repair while the node was down")
        raise SaleError("the slot is free: it is not ours")
