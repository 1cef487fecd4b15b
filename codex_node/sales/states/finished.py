"""Finished: the contract paid out; the collateral it returned and the slot's bytes go back to the availability."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from codex_node.sales.states.base import SaleState

if TYPE_CHECKING:
    from codex_node.sales.agent import SalesAgent


class Finished(SaleState):
    terminal: ClassVar[bool] = True
    transitions: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, returned_collateral: int) -> None:
        self.returned_collateral = returned_collateral

    async def run(self, machine: SalesAgent) -> SaleState | None:
        machine.log.info("sale finished", returned_collateral=self.returned_collateral)
        await machine.end_sale(self.returned_collateral)
        return None
