"""Errored: the sale cannot go on. Ends it, returning the bytes and every bit of collateral still ours.

Unlike nim-codex (which returned no collateral here, MARKETPLACE.md §5 #4), collateral that never went on chain
goes back to the availability; collateral in the contract comes back only through the contract
(``accounting.collateral_back`` reads the chain, so a fill whose call failed but was mined counts as posted).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from codex_node.errors import (
    ChainError,
    ChainMismatchError,
    ContractRevertError,
    DeploymentFileError,
    SaleError,
    TransactionError,
)
from codex_node.sales.ledger import EntryKind
from codex_node.sales.states.base import SaleState

if TYPE_CHECKING:
    from codex_node.sales.agent import SalesAgent


def chain_unreachable(error: BaseException) -> bool:
    """Whether ``error`` says only that the chain could not be asked (the provider failed, timed out or answered an
    HTTP error), not that the chain or the contract said no: the same step may well succeed once it answers."""
    refusals = (ContractRevertError, TransactionError, ChainMismatchError, DeploymentFileError)
    return isinstance(error, ChainError) and not isinstance(error, refusals)


class Errored(SaleState):
    terminal: ClassVar[bool] = True
    transitions: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, error: BaseException, *, reprocess: bool = False, retry: bool = False) -> None:
        self.error = error
        self.reprocess = reprocess
        self.retry = retry
        """The slot is tried again, as new, a while later (a step before the fill met an unreachable chain)."""

    async def run(self, machine: SalesAgent) -> SaleState | None:
        machine.log.error("sale errored", error=repr(self.error), retry=self.retry)
        await machine.end_sale(reprocess=self.reprocess, retry=self.retry)
        return None


def fill_left_the_chain(agent: SalesAgent) -> Errored:
    """The sale's slot is free on chain although our fill went through: the blocks holding the fill left the chain
    (a reorganisation; Hardhat's ``evm_revert``). The collateral is in our wallet again (the transfer left with the
    fill), so the sale ends as if it never filled (all collateral back to the availability, the ledger's posting
    undone) and the slot goes back to the queue, to be sold again while the request is open.

    Were the lost fill mined again later (a real reorganisation may take it back from the pool), the chain would
    list the slot among ours with no sale running: the start-up resume and ``codex-node check`` see that."""
    if agent.data.filled:
        agent.data.filled = False
        agent.record_money(EntryKind.COLLATERAL_RETURNED, agent.reserved_collateral())
    agent.log.warning("our fill of the slot is no longer on chain (blocks left the chain): selling the slot again")
    return Errored(SaleError("the slot is free: our fill is no longer on chain"), reprocess=True)
