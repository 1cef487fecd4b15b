"""Payout: the contract has ended; collect payment and collateral (``freeSlot``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from codex_node.errors import CodexError
from codex_node.sales.states.base import SaleState
from codex_node.sales.states.errored import Errored
from codex_node.sales.states.finished import Finished

if TYPE_CHECKING:
    from codex_node.sales.agent import SalesAgent


class Payout(SaleState):
    transitions: ClassVar[frozenset[str]] = frozenset({"Finished", "Errored"})

    async def run(self, machine: SalesAgent) -> SaleState | None:
        try:
            await machine.context.market.free_slot(machine.slot_id)
        except CodexError as e:
            return Errored(e)
        return Finished()
