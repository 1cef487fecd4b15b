"""Proving: once per period, follow the slot's on-chain state and submit a proof whenever one is required.

The chain decides how the sale goes on: Finished → Payout, Cancelled/Failed → that ending (also when the event
was missed, e.g. across a restart), Repair (we were slashed out) or an unexpected Paid → Errored, Free (our fill
left the chain with its blocks) → Errored, the slot queued again (``errored.fill_left_the_chain``).
A failed proof is logged and retried next period; it must not end a sale that may still be paid. The next round
is timed from the period a round *started* in, so a period that begins while a proof is being made is proven at
once, not skipped — unless the proof itself landed in that new period and was credited to it (the chain says which
period a proof counts for; the log says that period, not the one the proof was built in).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from codex_node.errors import CodexError, ContractRevertError, ProofInvalidError, SaleError
from codex_node.market.types import Periodicity, SlotState
from codex_node.sales.challenge import stable_challenge
from codex_node.sales.proofmargin import record_proof_margin
from codex_node.sales.salebook import ProofRecord
from codex_node.sales.states.base import SaleState
from codex_node.sales.states.cancelled import Cancelled
from codex_node.sales.states.errored import Errored, fill_left_the_chain
from codex_node.sales.states.failed import Failed
from codex_node.sales.states.payout import Payout

if TYPE_CHECKING:
    from codex_node.proofs import StorageProof
    from codex_node.sales.agent import SalesAgent


class Proving(SaleState):
    transitions: ClassVar[frozenset[str]] = frozenset({"Payout", "Errored", "Cancelled", "Failed"})

    deliberately_failed: str | None = None
    """Set by ``submit`` when it left the period unproven on purpose (``ProvingSimulated``): the round's record
    says failed, with this reason."""

    def on_cancelled(self) -> SaleState | None:
        return Cancelled()

    def on_failed(self) -> SaleState | None:
        return Failed()

    async def run(self, machine: SalesAgent) -> SaleState | None:
        try:
            return await self._prove_each_period(machine)
        except CodexError as e:
            return Errored(e)

    async def _prove_each_period(self, agent: SalesAgent) -> SaleState:
        market = agent.context.market
        clock = agent.context.clock
        periodicity = await market.periodicity()
        ends = await market.request_end(agent.data.request_id)
        while True:
            period = periodicity.period_of(clock.now())
            read_at = clock.now()
            state = await market.slot_state(agent.slot_id)
            if state == SlotState.FILLED:
                credited = await self._prove_if_required(agent, period, periodicity)
                # A proof mined in the next period counts for that one: it is proven too, so wait it out.
                period = max(period, credited or period)
            elif state == SlotState.FINISHED:
                return Payout()
            elif state == SlotState.CANCELLED:
                return Cancelled()
            elif state == SlotState.FAILED:
                return Failed()
            elif state == SlotState.REPAIR:
                raise SaleError("the slot was freed for repair: this host lost it")
            elif state == SlotState.FREE:
                return fill_left_the_chain(agent)
            else:
                raise SaleError(f"the slot is {state.name.lower()}, not filled")
            if read_at <= ends < clock.now():
                continue  # the request ended while this round ran: its final state now, not a period later
            # From the period this round started in: if it ended meanwhile (a slow proof), the next round is now.
            # Woken at the request's end too, so the payout does not wait for the period to run out, and at once
            # when the chain reorganised (our fill or proof may have left it): the slot is read again.
            next_round = periodicity.period_end(period) + 1
            if clock.now() <= ends:
                next_round = min(next_round, ends + 1)
            await agent.wait(next_round)

    async def _prove_if_required(self, agent: SalesAgent, period: int, periodicity: Periodicity) -> int | None:
        """Prove ``period`` if the chain asks for a proof; the period the proof was credited to, if one landed.
        Every round that tried is kept in the sale's record (``_record``)."""
        market = agent.context.market
        started = agent.context.clock.now()
        self.deliberately_failed = None
        try:
            if not (
                await market.is_proof_required(agent.slot_id) or await market.will_proof_be_required(agent.slot_id)
            ):
                return None
            credited = await self._prove(agent, period)
        except ContractRevertError as e:
            if e.error_name != "ProofAlreadySubmitted":
                agent.log.warning("proof not submitted", period=period, error=repr(e))
                _record(agent, period, periodicity, started, "failed", repr(e))
                return None
            # A restarted node proves the period it may already have proven before it stopped: nothing is missing.
            agent.log.info("proof of this period already on chain", period=period)
            _record(agent, period, periodicity, started, "already")
            return None
        except CodexError as e:
            agent.log.warning("proof not submitted", period=period, error=repr(e))
            _record(agent, period, periodicity, started, "failed", repr(e))
            return None
        if credited is None:
            _record(agent, period, periodicity, started, "failed", "the period ended before its proof landed")
        elif self.deliberately_failed is not None:
            _record(agent, credited, periodicity, started, "failed", self.deliberately_failed)
        else:
            _record(agent, credited, periodicity, started, "submitted")
        return credited

    async def _prove(self, agent: SalesAgent, period: int) -> int | None:
        """Prove the current challenge; once more if the challenge moved on before the proof landed.

        The challenge points at a block hash ``pointer`` blocks back; the pointer grows by one per block and wraps
        every 256 blocks, and at the wrap the challenge changes. ``stable_challenge`` does not read it within a few
        blocks of the wrap (``sales/challenge.py``), but a proof slower than those blocks may still meet the wrap
        and be refused (``ProofInvalidError``) although the data is fine. The challenge is then read again past
        the wrap (a chain that estimates in the next block refuses the proof while the latest block still shows
        the old challenge), and the new one, stable for the next ~250 blocks, is proven at once instead of leaving
        the period unproven (a slashable miss). Refused with the challenge unchanged, the proof itself is wrong.
        If the *period* ended meanwhile, the proof was for a period that is over: the next round proves the new one.
        """
        market = agent.context.market
        clock = agent.context.clock
        challenge = await stable_challenge(market, clock, agent.slot_id)
        proof = await agent.context.prover.prove(agent.slot, challenge)
        try:
            return await self.submit(agent, proof, period)
        except ProofInvalidError:
            periodicity = await market.periodicity()
            if periodicity.period_of(clock.now()) != period:
                agent.log.warning("period ended before its proof landed", period=period)
                return None
            fresh = await stable_challenge(market, clock, agent.slot_id)
            if fresh == challenge:
                raise  # the proof itself is wrong: nothing a new attempt would change
            agent.log.info("challenge changed while the proof was in flight; proving again", period=period)
            return await self.submit(agent, await agent.context.prover.prove(agent.slot, fresh), period)

    async def submit(self, agent: SalesAgent, proof: StorageProof, period: int) -> int:
        """Submit ``proof`` built in ``period``; log and return the period the chain credited it to."""
        credited = await agent.context.market.submit_proof(agent.slot_id, proof)
        if credited == period:
            agent.log.info("proof submitted", period=credited)
        else:  # built at the end of one period, mined in the next: it proves the next one
            agent.log.info("proof submitted", period=credited, built_in_period=period)
        await record_proof_margin(agent, credited)
        return credited


def _record(
    agent: SalesAgent, period: int, periodicity: Periodicity, started: int, result: str, error: str | None = None
) -> None:
    """Keep the round in the sale's record: when it started and landed, and how far from the end of the period
    it counts for (the margin to a missed proof)."""
    landed = agent.context.clock.now()
    margin = periodicity.period_end(period) - landed
    agent.record_proof(ProofRecord(period, started, landed, margin, result, error))
    agent.log.info("proof round", period=period, result=result, margin=margin, time_to_land=landed - started)
