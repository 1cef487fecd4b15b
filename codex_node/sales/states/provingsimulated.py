"""ProvingSimulated: Proving that submits a wrong proof in every N-th period in which a proof is due.

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
        """Periods proven so far: a proof sent again within its period (the challenge moved on) counts once."""
        self._last_period: int | None = None
        self._wrong = False

    async def submit(self, agent: SalesAgent, proof: StorageProof, period: int) -> int:
        if period != self._last_period:
            self._last_period = period
            self.proofs += 1
            self._wrong = self.proofs % self.every == 0
        if not self._wrong:
            return await super().submit(agent, proof, period)
        try:
            credited = await agent.context.market.submit_proof(agent.slot_id, agent.context.prover.corrupt(proof))
        except ProofInvalidError:
            agent.log.info("simulated proof failure: wrong proof rejected", period=period)
            self.deliberately_failed = "simulated proof failure: wrong proof rejected"
            return period  # this period is deliberately left unproven: no second attempt
        agent.log.warning("simulated proof failure: wrong proof was accepted", period=credited)
        return credited
