"""The marketplace contract's rules as plain, synchronous Python: the state behind ``MockMarket``.

Mirrors ``contracts/contracts/Marketplace.sol`` (and ``Proofs.sol``, ``SlotReservations.sol``): the same derived
states, the same arithmetic, the same revert names, and reverts leave no trace (every check runs before the first
write, as a reverted transaction would). Two things differ on purpose, because a test must control them:

- time is an injected clock, and there are no blocks;
- the proof challenge, the pointer and "is a proof required" are deterministic functions of (slot, period) that a
  test can override per slot, instead of hashes of recent blocks.

This module must never do I/O or await: one call here is one atomic transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from eth_abi.abi import encode as abi_encode
from eth_hash.auto import keccak
from eth_utils.address import to_checksum_address

from codex_node.clock import Clock
from codex_node.errors import CodexError
from codex_node.market.market import revert_error as revert
from codex_node.market.types import (
    POINTERS,
    WRAP_MARGIN,
    Address,
    MarketEvent,
    MarketplaceConfig,
    Periodicity,
    ProofSubmitted,
    Request,
    RequestCancelled,
    RequestFailed,
    RequestFulfilled,
    RequestId,
    RequestState,
    Slot,
    SlotFilled,
    SlotFreed,
    SlotId,
    SlotPayment,
    SlotReservationsFull,
    SlotState,
    StorageRequested,
    slot_collateral,
    slot_id,
)

if TYPE_CHECKING:
    from codex_node.data.proof import StorageProof

BLOCK_SIZE = 65_536
"""Slot sizes must be whole blocks (docs/storage-proofs.md)."""

MARKETPLACE_ADDRESS = Address(to_checksum_address("0x000000000000000000000000000000000000c0de"))
"""Where the mock keeps the tokens the marketplace holds (payments, collateral)."""


@dataclass(frozen=True, slots=True)
class ProofTarget:
    """What a storage proof is checked against (the contract's ``ProofTarget``)."""

    challenge: bytes
    slot_id: SlotId
    slot_index: int
    slots: int
    slot_size: int
    dataset_root: bytes
    samples: int


ProofVerifier = Callable[["StorageProof", ProofTarget], bool]
"""Returns whether ``proof`` proves ``target``; ``MockMarket`` turns ``False`` into ``InvalidSlotProof``."""


# The records below are the contract's storage: mutable on purpose, and never handed out of this module.


@dataclass(slots=True)
class _RequestContext:
    state: RequestState
    funds_to_return: int
    slots_filled: int
    ends_at: int
    expires_at: int
    started_at: int = 0


@dataclass(slots=True)
class _SlotRecord:
    request_id: RequestId
    slot_index: int
    state: SlotState
    filled_at: int = 0
    current_collateral: int = 0
    host: Address | None = None


@dataclass(slots=True)
class _ProofRecord:
    started_at: int = 0
    probability: int = 0
    missed: int = 0
    received: set[int] = field(default_factory=set)
    marked_missing: set[int] = field(default_factory=set)


class MarketLedger:
    """All marketplace state shared by every account's ``MockMarket`` view. ``sender`` plays ``msg.sender``."""

    def __init__(self, clock: Clock, config: MarketplaceConfig, verifier: ProofVerifier | None = None) -> None:
        self.clock = clock
        self.config = config
        self.periodicity = Periodicity(config.proofs.period)
        self.verifier = verifier
        self.proof_validity_override: bool | None = None
        self.balances: dict[Address, int] = {}
        self._requests: dict[RequestId, Request] = {}
        self._contexts: dict[RequestId, _RequestContext] = {}
        self._slots: dict[SlotId, _SlotRecord] = {}
        self._reservations: dict[SlotId, list[Address]] = {}
        self._proofs: dict[SlotId, _ProofRecord] = {}
        self._my_requests: dict[Address, list[RequestId]] = {}
        self._my_slots: dict[Address, list[SlotId]] = {}
        self._required_override: dict[SlotId, bool] = {}
        self._challenge_override: dict[SlotId, bytes] = {}
        self._pointer_override: dict[SlotId, int] = {}
        self._outbox: list[MarketEvent] = []

    # --- plumbing -------------------------------------------------------------------------------------------

    def take_events(self) -> list[MarketEvent]:
        """Events emitted since the last call, in emission order."""
        events, self._outbox = self._outbox, []
        return events

    def _now(self) -> int:
        return self.clock.now()

    def _period(self) -> int:
        return self.periodicity.period_of(self._now())

    def _known_request(self, request_id: RequestId) -> tuple[Request, _RequestContext]:
        request = self._requests.get(request_id)
        if request is None:
            raise revert("UnknownRequest")
        return request, self._contexts[request_id]

    # --- tokens ---------------------------------------------------------------------------------------------

    def mint(self, address: Address, amount: int) -> None:
        if amount < 0:
            raise ValueError("cannot mint a negative amount")
        self.balances[address] = self.balances.get(address, 0) + amount

    def _require_balance(self, address: Address, amount: int) -> None:
        if self.balances.get(address, 0) < amount:
            raise revert("ERC20InsufficientBalance", f"{address} has less than {amount}")

    def _transfer(self, source: Address, destination: Address, amount: int) -> None:
        # Callers check balances before their first write; this re-check guards the mock's own arithmetic.
        self._require_balance(source, amount)
        self.balances[source] -= amount
        self.balances[destination] = self.balances.get(destination, 0) + amount

    # --- derived views --------------------------------------------------------------------------------------

    def get_request(self, request_id: RequestId) -> Request | None:
        return self._requests.get(request_id)

    def request_state(self, request_id: RequestId) -> RequestState:
        _, context = self._known_request(request_id)
        now = self._now()
        if context.state == RequestState.NEW and now > context.expires_at:
            return RequestState.CANCELLED
        if context.state in (RequestState.NEW, RequestState.STARTED) and now > context.ends_at:
            return RequestState.FINISHED
        return context.state

    def request_end(self, request_id: RequestId) -> int:
        state = self.request_state(request_id)
        context = self._contexts[request_id]
        if state in (RequestState.NEW, RequestState.STARTED):
            return context.ends_at
        if state == RequestState.CANCELLED:
            return context.expires_at
        return min(context.ends_at, self._now())

    def request_expires_at(self, request_id: RequestId) -> int:
        # Like the contract's requestExpiry: 0 for an unknown request rather than a revert.
        context = self._contexts.get(request_id)
        return context.expires_at if context is not None else 0

    def _derived_slot_state(self, request_id: RequestId, stored: SlotState) -> SlotState:
        if stored == SlotState.PAID:
            return SlotState.PAID
        request_state = self.request_state(request_id)
        if request_state == RequestState.CANCELLED:
            return SlotState.CANCELLED
        if request_state == RequestState.FINISHED:
            return SlotState.FINISHED
        if request_state == RequestState.FAILED:
            return SlotState.FAILED
        return stored

    def slot_state(self, slot: SlotId) -> SlotState:
        record = self._slots.get(slot)
        if record is None:
            return SlotState.FREE
        return self._derived_slot_state(record.request_id, record.state)

    def get_host(self, slot: SlotId) -> Address | None:
        record = self._slots.get(slot)
        return record.host if record is not None else None

    def get_active_slot(self, slot: SlotId) -> Slot | None:
        record = self._slots.get(slot)
        if record is None or record.state == SlotState.FREE:
            return None
        return Slot(self._requests[record.request_id], record.slot_index)

    def current_collateral(self, slot: SlotId) -> int:
        record = self._slots.get(slot)
        return record.current_collateral if record is not None else 0

    def slot_collateral(self, request_id: RequestId, slot_index: int) -> int:
        request, _ = self._known_request(request_id)
        if slot_index >= request.ask.slots:
            raise revert("InvalidSlot")
        state = self.slot_state(slot_id(request_id, slot_index))
        return slot_collateral(request.ask.collateral_per_slot, state, self.config.collateral)

    def missing_proofs(self, slot: SlotId) -> int:
        record = self._proofs.get(slot)
        return record.missed if record is not None else 0

    def my_requests(self, sender: Address) -> list[RequestId]:
        return list(self._my_requests.get(sender, []))

    def my_slots(self, sender: Address) -> list[SlotId]:
        return list(self._my_slots.get(sender, []))

    # --- client ---------------------------------------------------------------------------------------------

    def request_storage(self, sender: Address, request: Request) -> None:
        ask = request.ask
        rid = request.id
        if request.client != sender:
            raise revert("InvalidClientAddress")
        if rid in self._requests:
            raise revert("RequestAlreadyExists")
        if request.expiry == 0 or request.expiry >= ask.duration:
            raise revert("InvalidExpiry")
        if ask.slots == 0:
            raise revert("InsufficientSlots")
        if ask.max_slot_loss > ask.slots:
            raise revert("InvalidMaxSlotLoss")
        if ask.slot_size == 0 or ask.slot_size % BLOCK_SIZE != 0:
            raise revert("InvalidSlotSize")
        if ask.proof_probability == 0:
            raise revert("InsufficientProofProbability")
        if ask.collateral_per_byte == 0:
            raise revert("InsufficientCollateral")
        if ask.price_per_byte_per_second == 0:
            raise revert("InsufficientReward")
        if not request.content.cid:
            raise revert("InvalidCid")
        if ask.duration > self.config.request_duration_limit:
            raise revert("DurationExceedsLimit")
        self._require_balance(sender, ask.max_price)

        now = self._now()
        self._requests[rid] = request
        context = _RequestContext(
            state=RequestState.NEW,
            funds_to_return=ask.max_price,
            slots_filled=0,
            ends_at=now + ask.duration,
            expires_at=now + request.expiry,
        )
        self._contexts[rid] = context
        _add(self._my_requests, sender, rid)
        self._outbox.append(StorageRequested(rid, ask, context.expires_at))
        self._transfer(sender, MARKETPLACE_ADDRESS, ask.max_price)

    def withdraw_funds(self, sender: Address, request_id: RequestId) -> int:
        """Send the request's leftover funds back to its client; the amount sent."""
        request, context = self._known_request(request_id)
        if request.client != sender:
            raise revert("InvalidClientAddress")
        state = self.request_state(request_id)
        if state not in (RequestState.CANCELLED, RequestState.FAILED, RequestState.FINISHED):
            raise revert("InvalidState")
        if context.funds_to_return == 0:
            raise revert("NothingToWithdraw")

        if state == RequestState.CANCELLED:
            context.state = RequestState.CANCELLED
            self._outbox.append(RequestCancelled(request_id))
            # Each filled slot was charged until endsAt, but its host is only paid until expiresAt.
            context.funds_to_return += context.slots_filled * _payout(request, context.expires_at, context.ends_at)
        elif state == RequestState.FAILED:
            context.funds_to_return = request.ask.max_price
        else:
            context.state = RequestState.FINISHED
        amount, context.funds_to_return = context.funds_to_return, 0
        _remove(self._my_requests, request.client, request_id)
        self._transfer(MARKETPLACE_ADDRESS, sender, amount)
        return amount

    # --- host -----------------------------------------------------------------------------------------------

    def can_reserve_slot(self, sender: Address, request_id: RequestId, slot_index: int) -> bool:
        request = self._requests.get(request_id)
        if request is None or slot_index >= request.ask.slots:
            return False
        sid = slot_id(request_id, slot_index)
        reserved = self._reservations.get(sid, [])
        return (
            self.slot_state(sid) in (SlotState.FREE, SlotState.REPAIR)
            and len(reserved) < self.config.max_reservations
            and sender not in reserved
        )

    def reserve_slot(self, sender: Address, request_id: RequestId, slot_index: int) -> None:
        if not self.can_reserve_slot(sender, request_id, slot_index):
            raise revert("ReservationNotAllowed")
        reserved = self._reservations.setdefault(slot_id(request_id, slot_index), [])
        reserved.append(sender)
        if len(reserved) == self.config.max_reservations:
            self._outbox.append(SlotReservationsFull(request_id, slot_index))

    def fill_slot(
        self, sender: Address, request_id: RequestId, slot_index: int, proof: StorageProof, approved: int
    ) -> None:
        """``approved``: the allowance the host granted for this fill (the port approves it just before)."""
        request, context = self._known_request(request_id)
        if slot_index >= request.ask.slots:
            raise revert("InvalidSlot")
        sid = slot_id(request_id, slot_index)
        if sender not in self._reservations.get(sid, []):
            raise revert("ReservationRequired")
        record = self._slots.get(sid)
        # Derived as if the slot already belonged to the request, so a slot of an ended request is not Free.
        state = self._derived_slot_state(request_id, record.state if record is not None else SlotState.FREE)
        if state not in (SlotState.FREE, SlotState.REPAIR):
            raise revert("SlotNotFree")
        self._verify(sid, request, slot_index, proof)
        per_slot = request.ask.collateral_per_slot
        collateral = slot_collateral(per_slot, state, self.config.collateral)
        if approved < collateral:
            raise revert("ERC20InsufficientAllowance", f"approved {approved}, needs {collateral}")
        self._require_balance(sender, collateral)

        now = self._now()
        proofs = self._proofs.setdefault(sid, _ProofRecord())
        proofs.started_at = now
        proofs.probability = request.ask.proof_probability
        proofs.received.add(self.periodicity.period_of(now))
        self._outbox.append(ProofSubmitted(sid))
        record = self._slots.setdefault(sid, _SlotRecord(request_id, slot_index, SlotState.FREE))
        record.host = sender
        record.filled_at = now
        record.current_collateral = per_slot
        record.state = SlotState.FILLED
        context.slots_filled += 1
        context.funds_to_return -= _payout(request, now, context.ends_at)
        _add(self._my_slots, sender, sid)
        self._outbox.append(SlotFilled(request_id, slot_index))
        if context.slots_filled == request.ask.slots and context.state == RequestState.NEW:
            context.state = RequestState.STARTED
            context.started_at = now
            self._outbox.append(RequestFulfilled(request_id))
        self._transfer(sender, MARKETPLACE_ADDRESS, collateral)

    def free_slot(self, sender: Address, slot: SlotId) -> SlotPayment:
        record = self._slots.get(slot)
        if record is None or record.state == SlotState.FREE:
            raise revert("SlotIsFree")
        if record.host != sender:
            raise revert("InvalidSlotHost")
        state = self.slot_state(slot)
        if state == SlotState.PAID:
            raise revert("AlreadyPaid")
        context = self._contexts[record.request_id]
        if state == SlotState.FINISHED:
            context.state = RequestState.FINISHED
            return self._pay_out(slot, record, context.ends_at)
        if state == SlotState.CANCELLED:
            return self._pay_out(slot, record, context.expires_at)
        if state == SlotState.FAILED:
            _remove(self._my_slots, sender, slot)
        elif state == SlotState.FILLED:
            self._forcibly_free(slot, record)
        return SlotPayment()

    def submit_proof(self, sender: Address, slot: SlotId, proof: StorageProof) -> int:
        """Credit ``proof`` to the current period and return that period."""
        record = self._slots.get(slot)
        if record is None:
            raise revert("UnknownRequest")
        if record.host != sender:
            raise revert("ProofNotSubmittedByHost")
        proofs = self._proofs[slot]
        period = self._period()
        if period in proofs.received:
            raise revert("ProofAlreadySubmitted")
        self._verify(slot, self._requests[record.request_id], record.slot_index, proof)
        proofs.received.add(period)
        self._outbox.append(ProofSubmitted(slot))
        return period

    def _pay_out(self, slot: SlotId, record: _SlotRecord, end: int) -> SlotPayment:
        assert record.host is not None  # only hosted slots reach a payout
        host = record.host
        payout = _payout(self._requests[record.request_id], record.filled_at, end)
        collateral = record.current_collateral
        _remove(self._my_slots, host, slot)
        record.state = SlotState.PAID
        self._transfer(MARKETPLACE_ADDRESS, host, payout + collateral)
        return SlotPayment(payout, collateral)

    def _forcibly_free(self, slot: SlotId, record: _SlotRecord) -> None:
        request = self._requests[record.request_id]
        context = self._contexts[record.request_id]
        # The client was charged this host's payout until the end; a repairing host is charged anew.
        context.funds_to_return += _payout(request, record.filled_at, context.ends_at)
        if record.host is not None:
            _remove(self._my_slots, record.host, slot)
        self._reservations.pop(slot, None)
        record.state = SlotState.REPAIR
        record.filled_at = 0
        record.current_collateral = 0
        record.host = None
        context.slots_filled -= 1
        self._outbox.append(SlotFreed(record.request_id, record.slot_index))
        self._proofs[slot].missed = 0
        slots_lost = request.ask.slots - context.slots_filled
        if slots_lost > request.ask.max_slot_loss and context.state == RequestState.STARTED:
            context.state = RequestState.FAILED
            context.ends_at = self._now() - 1
            self._outbox.append(RequestFailed(record.request_id))

    # --- proofs ---------------------------------------------------------------------------------------------

    def set_proof_required(self, slot: SlotId, required: bool | None) -> None:
        _override(self._required_override, slot, required)

    def set_challenge(self, slot: SlotId, challenge: bytes | None) -> None:
        if challenge is not None and len(challenge) != 32:
            raise ValueError("a challenge is 32 bytes")
        _override(self._challenge_override, slot, challenge)

    def set_pointer(self, slot: SlotId, pointer: int | None) -> None:
        if pointer is not None and not 0 <= pointer < 256:
            raise ValueError("a pointer is in 0..255")
        _override(self._pointer_override, slot, pointer)

    def get_challenge(self, slot: SlotId) -> bytes:
        return self._challenge(slot, self._period())

    def get_pointer(self, slot: SlotId) -> int:
        return self._pointer(slot, self._period())

    def _challenge(self, slot: SlotId, period: int) -> bytes:
        override = self._challenge_override.get(slot)
        if override is not None:
            return override
        return keccak(abi_encode(["bytes32", "uint256"], [slot, period]))

    def _pointer(self, slot: SlotId, period: int) -> int:
        override = self._pointer_override.get(slot)
        if override is not None:
            return override
        # Without an override the pointer is never inside the downtime, so "required" alone decides, nor within
        # WRAP_MARGIN of the wrap, whose challenge a prover waits out.
        downtime = self.config.proofs.downtime
        spread = int.from_bytes(slot, "big") + period * self.config.proofs.downtime_product
        return downtime + spread % (POINTERS - WRAP_MARGIN - downtime)

    def _required(self, slot: SlotId, period: int) -> bool:
        """The contract's ``_getProofRequirement`` without the downtime part."""
        proofs = self._proofs.get(slot)
        if proofs is None or self.slot_state(slot) != SlotState.FILLED:
            return False
        # No proof is due in the period of the fill: the fill carried one.
        if period <= self.periodicity.period_of(proofs.started_at):
            return False
        override = self._required_override.get(slot)
        if override is not None:
            return override
        probability = proofs.probability * (256 - self.config.proofs.downtime) // 256
        challenge = int.from_bytes(self._challenge(slot, period), "big")
        return probability == 0 or challenge % probability == 0

    def _required_outside_downtime(self, slot: SlotId, period: int) -> bool:
        return self._required(slot, period) and self._pointer(slot, period) >= self.config.proofs.downtime

    def is_proof_required(self, slot: SlotId) -> bool:
        return self._required_outside_downtime(slot, self._period())

    def will_proof_be_required(self, slot: SlotId) -> bool:
        period = self._period()
        return self._required(slot, period) and self._pointer(slot, period) < self.config.proofs.downtime

    def _verify(self, slot: SlotId, request: Request, slot_index: int, proof: StorageProof) -> None:
        if self.proof_validity_override is not None:
            valid = self.proof_validity_override
        elif self.verifier is None:
            valid = True
        else:
            target = ProofTarget(
                challenge=self.get_challenge(slot),
                slot_id=slot,
                slot_index=slot_index,
                slots=request.ask.slots,
                slot_size=request.ask.slot_size,
                dataset_root=request.content.merkle_root,
                samples=self.config.proofs.proof_samples,
            )
            valid = self.verifier(proof, target)
        if not valid:
            raise revert("InvalidSlotProof")

    def _check_proof_missing(self, slot: SlotId, period: int) -> None:
        if self.slot_state(slot) != SlotState.FILLED:
            raise revert("SlotNotAcceptingProofs")
        end = self.periodicity.period_end(period)
        now = self._now()
        if end >= now:
            raise revert("PeriodNotEnded")
        if now >= end + self.config.proofs.timeout:
            raise revert("ValidationTimedOut")
        proofs = self._proofs[slot]
        if period in proofs.received:
            raise revert("ProofNotMissing")
        if not self._required_outside_downtime(slot, period):
            raise revert("ProofNotRequired")
        if period in proofs.marked_missing:
            raise revert("ProofAlreadyMarkedMissing")

    def can_mark_proof_as_missing(self, slot: SlotId, period: int) -> bool:
        try:
            self._check_proof_missing(slot, period)
        except CodexError:
            return False
        return True

    def mark_proof_as_missing(self, sender: Address, slot: SlotId, period: int) -> None:
        self._check_proof_missing(slot, period)
        record = self._slots[slot]
        request = self._requests[record.request_id]
        collateral = self.config.collateral
        slashed = request.ask.collateral_per_slot * collateral.slash_percentage // 100
        reward = slashed * collateral.validator_reward_percentage // 100
        proofs = self._proofs[slot]
        proofs.marked_missing.add(period)
        proofs.missed += 1
        record.current_collateral -= slashed
        if proofs.missed >= collateral.max_number_of_slashes:
            self._forcibly_free(slot, record)
        self._transfer(MARKETPLACE_ADDRESS, sender, reward)


K = TypeVar("K")
V = TypeVar("V")


def _payout(request: Request, start: int, end: int) -> int:
    return (end - start) * request.ask.price_per_slot_per_second


def _add(index: dict[K, list[V]], key: K, value: V) -> None:
    values = index.setdefault(key, [])
    if value not in values:
        values.append(value)


def _remove(index: dict[K, list[V]], key: K, value: V) -> None:
    values = index.get(key, [])
    if value in values:
        values.remove(value)


def _override(overrides: dict[SlotId, V], slot: SlotId, value: V | None) -> None:
    if value is None:
        overrides.pop(slot, None)
    else:
        overrides[slot] = value
