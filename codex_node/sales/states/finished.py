"""Finished: the contract paid out; the collateral it returned and the slot's bytes go back to the availability."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from codex_node.sales.states.base import SaleState

if TYPE_CHECKING:
    from codex_node.sales.agent import SalesAgent


class Finished(SaleState):
    terminal: ClassVar[bool] = True
    transitions: ClassVar[frozenset[str]] = frozenset()

    async def run(self, machine: SalesAgent) -> SaleState | None:
        returned = await machine.end_sale()
        machine.log.info("sale finished", returned_collateral=returned)
        return None
