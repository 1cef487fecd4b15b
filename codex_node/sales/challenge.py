"""The challenge a proof is built for: one the contract still checks when the proof's transaction runs.

The contract's challenge of a slot hashes the block ``pointer`` blocks back; the pointer grows by one per block and
wraps after 255 (Proofs.sol), and only the wrap changes the hashed block. A view runs in the latest block, the
proof's transaction in a later one: its gas estimate already runs in the next block on eth-tester and the embedded
chain, and it is mined one or more blocks later on every chain. A challenge read with the pointer at 255 is gone
in the very next block: the node proved it, the estimate refused the proof (``InvalidCellProof``), and a view read
again, still in the same latest block, showed the same challenge, so the period went unproven (the end-to-end
restart test: 1/256 per slot and period, about one run in thirty). A chain that estimates in the latest block
mines such a proof instead, and it fails there, its gas spent.

:func:`stable_challenge` therefore never returns a challenge read within :data:`~codex_node.market.types.WRAP_MARGIN`
blocks of the wrap: it waits for the blocks that wrap the pointer, after which the challenge holds for ~250 blocks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from codex_node.market.types import POINTERS, WRAP_MARGIN

if TYPE_CHECKING:
    from codex_node.clock import Clock
    from codex_node.market.market import Market
    from codex_node.market.types import SlotId


async def stable_challenge(market: Market, clock: Clock, slot_id: SlotId) -> bytes:
    """The slot's challenge, read at least ``WRAP_MARGIN`` blocks before its pointer wraps."""
    while await market.get_pointer(slot_id) >= POINTERS - WRAP_MARGIN:
        # The next block: a block is stamped at least a second after its parent, and the clock is the chain's.
        await clock.wait_until(clock.now() + 1)
    # Read after the pointer: a block mined in between moves it one step on, still short of the wrap.
    return await market.get_challenge(slot_id)
