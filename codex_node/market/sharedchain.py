"""An embedded chain shared by several nodes of one process, and the account one of them signs with on it.

A node normally starts (and stops) the embedded chain in its own data dir. Tests of a network run several nodes
in one process on one chain: the test starts the chain, and hands each node a :class:`SharedChain`::

    chain = EmbeddedChain(tmp_path / "chain"); await chain.start()
    node = Node(config, chain=await SharedChain.join(chain, index=1))   # signs with derived account 1

The node then uses that chain and account instead of ``<data-dir>/chain`` and its ``node.key``; it never starts
nor stops the chain (its owner does, after every node stopped). Its event stream is woken whenever the chain's
head moves (a block of any node's transaction, a mining tick, a time jump through any node's dev route), so every
node's on-chain clock follows the shared chain at once.

This module never starts or stops a chain; nothing in a single node's run uses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from codex_node.market.embedded import EmbeddedChain


@dataclass(frozen=True, slots=True)
class SharedChain:
    """A started embedded chain the node does not own, and the funded account it signs with on it."""

    chain: EmbeddedChain
    account: LocalAccount

    @classmethod
    async def join(cls, chain: EmbeddedChain, *, index: int) -> SharedChain:
        """The chain with its ``index``-th derived account, funded (``EmbeddedChain.funded_account``)."""
        return cls(chain, await chain.funded_account(index))
