"""ProvingSimulated: Proving that submits a wrong proof every N-th time a proof is due.

Only with ``--simulate-proof-failures N``: it lets tests watch validators mark missed proofs, the host get slashed
and, after enough misses, the slot freed for repair. The contract's rejection of the wrong proof is expected and
only logged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from codex_node.errors import ProofInvalidError
from codex_node.sales.states.proving import Proving

if TYPE_CHECKING:
    from codex_node.proofs import StorageProof
    from codex_node.sales.agent import SalesAgent


class ProvingSimulated(Proving):
    transitions: ClassVar[frozenset[str]] = Proving.transitions

    def __init__(self, every: int) -> None:
        if every < 1:
            raise ValueError("a simulated failure needs a period of at least 1")
        self.every = every
        self.proofs = 0

    async def submit(self, agent: SalesAgent, proof: StorageProof, period: int) -> int:
        self.proofs += 1
        if self.proofs % self.every != 0:
            return await super().submit(agent, proof, period)
        try:
            credited = await agent.context.market.submit_proof(agent.slot_id, agent.context.prover.corrupt(proof))
        except ProofInvalidError:
            agent.log.info("simulated proof failure: wrong proof rejected", period=period)
            return period  # this period is deliberately left unproven: no second attempt
        agent.log.warning("simulated proof failure: wrong proof was accepted", period=credited)
        return credited
