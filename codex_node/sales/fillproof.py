"""The proof ``fillSlot`` checks, built for a period whose challenge is stable (InitialProving, and Filling when
its challenge moved on before the fill landed).

The challenge points at a recent block hash; near the end of the pointer's range (the last ``downtime``
positions) the pointed-at block changes within the period, so the proof waits for a period where it does not. It
is built at the start of a period, so the fill has the whole period to land before the challenge changes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from codex_node.market.types import POINTERS

if TYPE_CHECKING:
    from codex_node.proofs import StorageProof
    from codex_node.sales.agent import SalesAgent


async def fill_proof(agent: SalesAgent) -> tuple[StorageProof, bytes]:
    """Wait for the next period with a stable challenge; the proof of the slot for it, and the challenge."""
    market = agent.context.market
    clock = agent.context.clock
    periodicity = await market.periodicity()
    downtime = (await market.config()).proofs.downtime
    await clock.wait_until(periodicity.period_end(periodicity.period_of(clock.now())))
    while await market.get_pointer(agent.slot_id) > POINTERS - downtime:
        await clock.wait_until(periodicity.period_end(periodicity.period_of(clock.now())))
    challenge = await market.get_challenge(agent.slot_id)
    return await agent.context.prover.prove(agent.slot, challenge), challenge
