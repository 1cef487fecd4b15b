"""The seams inside the block exchange: getting verified blocks (``BlockGetter``) and rebuilding a slot
(``SlotRepairer``).

The fetcher implements :class:`BlockGetter` (local repo first, then peers found through
:class:`~codex_node.peers.port.Providers`); the repair uses it to read K other slots; the network slot data
source calls the :class:`SlotRepairer` for a slot whose sale fills it in ``Repair``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from codex_node.data.cid import Cid
from codex_node.data.merkle import Buffer
from codex_node.market.types import Request
from codex_node.sales.context import OnBlocks


class BlockGetter(Protocol):
    """Verified block bytes by CID, wherever they are."""

    async def get_blocks(
        self, cids: Sequence[Cid], *, hint: Cid | None = None, check_local: bool = True
    ) -> Sequence[Buffer]:
        """The bytes of every CID of ``cids``, in order (``bytes`` or views), each verified against its CID: from the
        local repo where it holds them, otherwise from peers (found through ``Providers`` for ``hint``, the manifest
        the blocks belong to, or else for each CID). Nothing is stored. Raises
        :class:`~codex_node.errors.BlocksUnavailableError` (saying how many were missing) when some cannot be had
        from anyone asked.

        ``check_local=False``: blocks read from the local repo are not hashed against their CIDs, for a caller
        that checks what it makes of them anyway (the repair checks each rebuilt block against its slot
        manifest, and its sources whenever one does not match or that manifest is lost). Blocks from peers are
        always checked: they decide which peer is avoided."""
        ...


class SlotRepairer(Protocol):
    """Rebuilds the blocks of a lost slot of a protected dataset into the local repo."""

    async def repair(self, request: Request, slot_index: int, expiry: int, on_blocks: OnBlocks) -> None:
        """Rebuild slot ``slot_index`` of the request's protected dataset (``request.content.cid``) from any K
        other slots, store its blocks and its slot manifest with an expiry of at least ``expiry``, calling
        ``on_blocks(n)`` with the bytes of each stored batch, and check the whole slot against its slot root.
        Raises :class:`~codex_node.errors.RepairError` when it cannot."""
        ...
