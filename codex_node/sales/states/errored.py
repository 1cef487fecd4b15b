"""Errored: the sale cannot go on. Ends it, returning the bytes and every bit of collateral still ours.

Unlike nim-codex (which returned no collateral here, MARKETPLACE.md §5 #4), collateral that never went on chain
goes back to the availability; collateral already in the contract comes back only through the contract.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from codex_node.errors import CodexError
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
        if machine.unposted_collateral() > 0:
            try:
                # A fill whose call failed may still have been mined; then the collateral is in the contract.
                if await machine.hosts_slot():
                    machine.data.collateral_posted = True
            except CodexError as e:
                machine.log.warning("could not check the slot's host", error=repr(e))
        await machine.end_sale(machine.unposted_collateral(), reprocess=self.reprocess)
        return None
