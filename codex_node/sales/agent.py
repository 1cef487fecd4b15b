"""One sales agent per slot: an async state machine that carries a sale from Preparing (or Unknown) to its end.

The agent routes the three chain events it can receive to its current state's pure hooks, turns an unexpected
error of a ``run`` into ``Errored``, and ends the sale exactly once: block expiry lowered to the contract end, the
collateral that came back decided from the slot's on-chain state (``accounting.collateral_back``), then ``Sales``
returns the reservation's bytes and that collateral.

An agent never decides which events it receives: ``Sales`` routes them through an index. It never stops itself
either: ``Sales`` stops and drops it after the clean-up.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import structlog

from codex_node.errors import CodexError, SaleError
from codex_node.market.market import Market
from codex_node.market.types import Request, RequestId, Slot, SlotId, SlotPayment, SlotState, slot_id
from codex_node.sales.accounting import SlotOnChain, collateral_back
from codex_node.sales.context import SalesContext, SalesData
from codex_node.sales.ledger import EntryKind
from codex_node.sales.salebook import ProofRecord
from codex_node.sales.states.base import SaleState
from codex_node.sales.states.errored import Errored
from codex_node.utils.asyncstatemachine import Machine, State, TransitionListener
from codex_node.utils.wakeup import Wakeup

log = structlog.get_logger(__name__)


async def read_slot_on_chain(market: Market, sid: SlotId) -> SlotOnChain:
    """The facts ``accounting.collateral_back`` decides on: the slot's state, whether we host it, what it holds."""
    state = await market.slot_state(sid)
    host = await market.get_host(sid)
    hosted = host is not None and host == await market.get_signer()
    held = await market.current_collateral(sid) if hosted else 0
    return SlotOnChain(state, hosted, held)


def _cancelled(state: SaleState) -> SaleState | None:
    return state.on_cancelled()


def _failed(state: SaleState) -> SaleState | None:
    return state.on_failed()


def _slot_filled(state: SaleState) -> SaleState | None:
    return state.on_slot_filled()


class SalesAgent(Machine[SaleState]):
    """The machine that runs one sale. Two agents are the same sale when their ``(request_id, slot_index)`` match."""

    def __init__(self, context: SalesContext, data: SalesData, listeners: Iterable[TransitionListener] = ()) -> None:
        super().__init__(listeners)
        self.context = context
        self.data = data
        self.slot_id: SlotId = slot_id(data.request_id, data.slot_index)
        # The slot id on every line (every state change included), so that grep finds a sale.
        self.log = log.bind(request_id=data.request_id.hex(), slot_index=data.slot_index, slot_id=self.slot_id.hex())
        self._ended = False
        self._wakeup = Wakeup()

    # --- identity -------------------------------------------------------------------------------------------------

    @property
    def key(self) -> tuple[RequestId, int]:
        return (self.data.request_id, self.data.slot_index)

    @property
    def request(self) -> Request:
        """The request; only valid once Preparing or Unknown has fetched it."""
        if self.data.request is None:
            raise SaleError("the sale's request is not known yet")
        return self.data.request

    @property
    def slot(self) -> Slot:
        return Slot(self.request, self.data.slot_index)

    @property
    def ended(self) -> bool:
        return self._ended

    # --- chain events (routed here by Sales) ---------------------------------------------------------------------

    def on_cancelled(self) -> None:
        self.schedule(_cancelled, "RequestCancelled")

    def on_failed(self) -> None:
        self.schedule(_failed, "RequestFailed")

    def on_slot_filled(self) -> None:
        self.schedule(_slot_filled, "SlotFilled")

    def poke(self) -> None:
        """The chain reorganised: a state waiting between its reads of the chain (Proving) reads it again now."""
        self._wakeup.poke()

    async def wait(self, deadline: int) -> None:
        """Until the chain clock reaches ``deadline`` or :meth:`poke` is called, whichever comes first (a poke
        that came while the state was not waiting ends the next wait at once)."""
        await self._wakeup.wait(self.context.clock, deadline)

    # --- helpers for the states ----------------------------------------------------------------------------------

    async def load_request(self) -> Request:
        """Fetch the request from the chain if the sale does not hold it yet, and have the timers watch its
        expiry (the first step of Preparing, Resuming and Unknown)."""
        market = self.context.market
        data = self.data
        if data.request is None:
            data.request = await market.get_request(data.request_id)
            if data.request is None:
                raise SaleError("request not found on chain")
        self.context.timers.watch(data.request_id, await market.request_expires_at(data.request_id))
        return data.request

    async def hosts_slot(self) -> bool:
        """Whether the chain names this node as the slot's host (our collateral is in the contract)."""
        market = self.context.market
        host = await market.get_host(self.slot_id)
        return host is not None and host == await market.get_signer()

    def reserved_collateral(self) -> int:
        """The collateral the reservation took from the availability (0 without a reservation)."""
        return 0 if self.data.reservation is None else self.data.reservation.collateral

    async def slot_on_chain(self) -> SlotOnChain | None:
        """The slot as the chain sees it now (``None`` if it cannot be read): what decides the collateral back."""
        try:
            return await read_slot_on_chain(self.context.market, self.slot_id)
        except CodexError as e:
            self.log.warning("could not read the slot's state at the end of the sale", error=repr(e))
            return None

    # --- the sale's records ----------------------------------------------------------------------------------------

    def record_money(self, kind: EntryKind, amount: int) -> None:
        """Put ``amount`` of ``kind`` in the earnings ledger, once per sale (a resumed sale records nothing twice).
        A failing write is logged: the chain has the truth, and the sale must go on."""
        ledger = self.context.ledger
        if ledger is None:
            return
        data = self.data
        fact = f"{kind.value}/{self.slot_id.hex()}/{data.sale_id}"
        try:
            ledger.record(kind, data.request_id, amount, fact=fact, slot_index=data.slot_index, sale_id=data.sale_id)
        except CodexError as e:
            self.log.warning("could not record the sale's money", kind=kind.value, amount=amount, error=repr(e))

    def record_payment(self, payment: SlotPayment) -> None:
        """What a ``freeSlot`` paid: the payout, the collateral back, and what slashing took from the collateral."""
        self.record_money(EntryKind.PAYOUT, payment.payout)
        self.record_money(EntryKind.COLLATERAL_RETURNED, payment.collateral)
        if payment.payout or payment.collateral:
            full = self.data.request.ask.collateral_per_slot if self.data.request is not None else 0
            self.record_money(EntryKind.SLASHED, max(0, full - payment.collateral))

    def record_download(self, nbytes: int, total: int) -> None:
        """``nbytes`` of the slot's ``total`` are in the repo: the slot's history shows it (throttled there)."""
        recorder = self.context.download_progress
        if recorder is None:
            return
        try:
            recorder.progress(self.slot_id, nbytes, total)
        except CodexError as e:
            self.log.warning("could not record the download's progress", nbytes=nbytes, error=repr(e))

    def record_proof(self, proof: ProofRecord) -> None:
        book = self.context.book
        if book is None or self.data.sale_id is None:
            return
        try:
            book.proof(self.data.sale_id, proof)
        except CodexError as e:
            self.log.warning("could not record the proof", period=proof.period, error=repr(e))

    def _record_lost_collateral(self, chain: SlotOnChain | None) -> None:
        """Our fill went through and the collateral will not come back: slashed out (the slot went to repair)
        or kept by the contract (the request failed). Counted once per sale; a paid slot's slashes are counted
        by :meth:`record_payment` under the same fact."""
        if not self.data.filled or chain is None or (chain.hosted and chain.state != SlotState.FAILED):
            return
        reservation = self.data.reservation
        if reservation is not None:
            posted = reservation.collateral
        elif self.data.request is not None:
            posted = self.data.request.ask.collateral_per_slot
        else:
            return
        self.record_money(EntryKind.SLASHED, posted)

    def worker_released(self) -> None:
        """The slot is ours: the slot-queue worker may take other slots."""
        self.context.hooks.worker_released(self)

    async def end_sale(self, *, reprocess: bool = False, retry: bool = False) -> int:
        """End the sale once: lower the slot's block expiry to the contract end, decide the collateral that came
        back, then hand back to Sales. Returns that collateral (0 on a repeated call).

        Lowering comes first: if the node dies between the two steps, the restart's reservation clean-up still
        returns the bytes, whereas the other order could leave the blocks with their sale expiry forever.
        """
        if self._ended:
            return 0
        self._ended = True
        data = self.data
        if data.stored and data.request is not None:
            try:
                contract_end = await self.context.market.request_end(data.request_id)
                await self.context.data_source.lower_expiry(data.request, data.slot_index, contract_end)
                await self.context.prover.forget(self.slot)
            except CodexError as e:
                # The accounting below must still happen; the blocks then live until their earlier expiry.
                self.log.warning("could not lower the slot's block expiry", error=repr(e))
        returned = 0
        if data.reservation is not None or data.filled:
            chain = await self.slot_on_chain()
            self._record_lost_collateral(chain)
            if data.reservation is not None:
                returned = collateral_back(data.reservation, chain, filled=data.filled)
        await self.context.hooks.sale_ended(self, returned, reprocess, retry=retry)
        return returned

    # --- machine --------------------------------------------------------------------------------------------------

    async def perform(self, state: SaleState) -> State[Any] | None:
        hold = self.context.hold
        if hold is None:
            return await state.run(self)
        if hold.applies(state.api_name, after=False):
            self.log.warning("sale parked by the test hold", state=state.api_name, when="before")
            await hold.park()
        result = await state.run(self)
        if hold.applies(state.api_name, after=True):
            self.log.warning("sale parked by the test hold", state=state.api_name, when="after")
            await hold.park()
        return result

    def on_run_error(self, state: SaleState, error: Exception) -> SaleState | None:
        if state.terminal:
            # An ending that itself failed must not loop through Errored again; Sales drops the agent anyway.
            self.log.error("sale clean-up failed", state=state.name, error=repr(error))
            return None
        self.log.error("unexpected error in sale state", state=state.name, error=repr(error))
        return Errored(error)
