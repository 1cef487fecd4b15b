"""Where a sale's slot data comes from: the ``SlotDataSource`` port.

(placeholder header; the local implementation follows once the repo store and manifests land)
"""

from __future__ import annotations

from typing import Protocol

from codex_node.market.types import Request
from codex_node.sales.context import OnBlocks


class SlotDataSource(Protocol):
    """Secures a slot's blocks in the local repo and manages their expiry for the sale."""

    async def fetch(
        self, request: Request, slot_index: int, expiry: int, on_blocks: OnBlocks, *, is_repairing: bool = False
    ) -> None:
        """Make every block of the slot present in the repo with an expiry of at least ``expiry``.

        Calls ``on_blocks(n)`` with the byte count of each batch of blocks that became part of the slot.
        """
        ...

    async def raise_expiry(self, request: Request, slot_index: int, expiry: int) -> None:
        """The sale goes on until ``expiry``: no block of the slot may expire earlier."""
        ...

    async def lower_expiry(self, request: Request, slot_index: int, expiry: int) -> None:
        """The sale ended: the slot's blocks need not outlive ``expiry`` on this sale's account."""
        ...
