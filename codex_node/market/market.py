"""The Market port: everything the node asks of the marketplace contract, in our own types.

Implementations: ``market.onchain.OnChainMarket`` (web3.py, real chain) and ``testing.mockmarket.MockMarket``
(in memory, injectable failures). One shared test suite runs against both so the mock cannot drift from the chain.

Errors: contract reverts surface as :class:`~codex_node.errors.MarketError` subclasses where the node reacts to
them (``SlotStateMismatchError`` for ``SlotNotFree``, ``SlotReservationNotAllowedError``, ``ProofInvalidError``)
and as :class:`~codex_node.errors.ContractRevertError` (with the Solidity error name) otherwise.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

from codex_node.errors import (
    CodexError,
    ContractRevertError,
    MarketError,
    ProofInvalidError,
    SlotReservationNotAllowedError,
    SlotStateMismatchError,
)
from codex_node.market.types import (
    Address,
    MarketEvent,
    MarketplaceConfig,
    Periodicity,
    Request,
    RequestId,
    RequestState,
    Slot,
    SlotId,
    SlotPayment,
    SlotState,
)

if TYPE_CHECKING:
    from codex_node.data.proof import StorageProof

E = TypeVar("E", bound=MarketEvent)

# Reverts the node reacts to get their own exception type; every other revert stays a ContractRevertError.
_TYPED_REVERTS: dict[str, type[MarketError]] = {
    "SlotNotFree": SlotStateMismatchError,
    "ReservationNotAllowed": SlotReservationNotAllowedError,
    "InvalidProofShape": ProofInvalidError,
    "InvalidCellProof": ProofInvalidError,
    "InvalidSlotProof": ProofInvalidError,
}


def revert_error(error_name: str, message: str = "") -> CodexError:
    """The exception a contract revert named ``error_name`` surfaces as, for every Market implementation.

    Shared so that ``OnChainMarket`` and ``MockMarket`` cannot map the same revert to different types.
    """
    typed = _TYPED_REVERTS.get(error_name)
    if typed is not None:
        return typed(f"{error_name}: {message}" if message else error_name)
    return ContractRevertError(error_name, message)


EventHandler = Callable[[E], Awaitable[None]]


class Subscription(Protocol):
    async def unsubscribe(self) -> None: ...


class Market(Protocol):
    """Typed access to the marketplace. Every method is safe to cancel: a cancelled caller never leaves a nonce gap."""

    # --- identity and configuration ---
    async def get_signer(self) -> Address: ...

    async def config(self) -> MarketplaceConfig: ...

    async def periodicity(self) -> Periodicity: ...

    async def token_balance(self, address: Address) -> int: ...

    # --- client side ---
    async def request_storage(self, request: Request) -> None:
        """Approve ``request.ask.max_price`` and post the request."""
        ...

    async def withdraw_funds(self, request_id: RequestId) -> int:
        """Withdraw what the request has left for its client; the tokens that came back."""
        ...

    async def my_requests(self) -> list[RequestId]: ...

    # --- views ---
    async def get_request(self, request_id: RequestId) -> Request | None: ...

    async def request_state(self, request_id: RequestId) -> RequestState | None:
        """``None`` when the request does not exist."""
        ...

    async def request_end(self, request_id: RequestId) -> int: ...

    async def request_expires_at(self, request_id: RequestId) -> int: ...

    async def slot_state(self, slot_id: SlotId) -> SlotState: ...

    async def get_host(self, slot_id: SlotId) -> Address | None: ...

    async def get_active_slot(self, slot_id: SlotId) -> Slot | None: ...

    async def current_collateral(self, slot_id: SlotId) -> int: ...

    async def slot_collateral(self, request_id: RequestId, slot_index: int) -> int:
        """Collateral to post for this slot now (repair discount applied when the slot is in Repair)."""
        ...

    async def my_slots(self) -> list[SlotId]: ...

    async def missing_proofs(self, slot_id: SlotId) -> int: ...

    # --- host side ---
    async def can_reserve_slot(self, request_id: RequestId, slot_index: int) -> bool: ...

    async def reserve_slot(self, request_id: RequestId, slot_index: int) -> None: ...

    async def fill_slot(self, request_id: RequestId, slot_index: int, proof: StorageProof, collateral: int) -> None:
        """Approve ``collateral`` and fill the slot; the proof must verify for the current period."""
        ...

    async def free_slot(self, slot_id: SlotId) -> SlotPayment:
        """End our hosting of the slot; returns what the contract paid us for it (the earnings ledger's record)."""
        ...

    async def submit_proof(self, slot_id: SlotId, proof: StorageProof) -> int:
        """Submit a proof of the current challenge; return the period it was credited to.

        That is the period of the block the proof landed in, which is not always the period it was built in: a
        proof built at the end of one period can be mined in the next and count for that one.
        """
        ...

    # --- proofs and validation ---
    async def is_proof_required(self, slot_id: SlotId) -> bool: ...

    async def will_proof_be_required(self, slot_id: SlotId) -> bool: ...

    async def get_challenge(self, slot_id: SlotId) -> bytes: ...

    async def get_pointer(self, slot_id: SlotId) -> int: ...

    async def can_mark_proof_as_missing(self, slot_id: SlotId, period: int) -> bool: ...

    async def mark_proof_as_missing(self, slot_id: SlotId, period: int) -> None: ...

    # --- events ---
    async def subscribe(self, event_type: type[E], handler: EventHandler[E]) -> Subscription:
        """Call ``handler`` for every future event of ``event_type``, in chain order, each exactly once."""
        ...
