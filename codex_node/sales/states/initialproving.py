"""InitialProving: build the proof that ``fillSlot`` checks, for a period whose challenge is stable
(``sales/fillproof.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from codex_node.errors import CodexError
from codex_node.sales.fillproof import fill_proof
from codex_node.sales.states.base import SaleState
from codex_node.sales.states.cancelled import Cancelled
from codex_node.sales.states.errored import Errored
from codex_node.sales.states.failed import Failed
from codex_node.sales.states.filling import Filling
from codex_node.sales.states.ignored import Ignored

if TYPE_CHECKING:
    from codex_node.sales.agent import SalesAgent


class InitialProving(SaleState):
    transitions: ClassVar[frozenset[str]] = frozenset({"Filling", "Ignored", "Errored", "Cancelled", "Failed"})

    def on_cancelled(self) -> SaleState | None:
        return Cancelled()

    def on_failed(self) -> SaleState | None:
        return Failed()

    def on_slot_filled(self) -> SaleState | None:
        return Ignored(reprocess=False, reason="slot filled by another host")

    async def run(self, machine: SalesAgent) -> SaleState | None:
        try:
            proof, challenge = await fill_proof(machine)
        except CodexError as e:
            return Errored(e)
        return Filling(proof, challenge)
