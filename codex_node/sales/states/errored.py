"""Errored: the sale cannot go on. Ends it, returning the bytes and every bit of collateral still ours.

Unlike nim-codex (which returned no collateral here, MARKETPLACE.md §5 #4), collateral that never went on chain
goes back to the availability; collateral in the contract comes back only through the contract
(``accounting.collateral_back`` reads the chain, so a fill whose call failed but was mined counts as posted).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from codex_node.sales.states.base import SaleState

if TYPE_CHECKING:
    from codex_node.sales.agent import SalesAgent


class Errored(SaleState):
    terminal: ClassVar[bool] = True
    transitions: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, error: BaseException, *, reprocess: bool = False) -> None:
        self.error = error
        self.reprocess = reprocess

    async def run(self, machine: SalesAgent) -> SaleState | None:
        machine.log.error("sale errored", error=repr(self.error))
        await machine.end_sale(reprocess=self.reprocess)
        return None
