"""Marketplace value types: our own, so no web3 type leaks past the Market boundary.

Mirrors the contract's structs (anchor §5.1, MARKETPLACE.md §1). Identifiers are computed exactly as the contract
computes them: ``requestId = keccak256(abi.encode(request))``, ``slotId = keccak256(abi.encode(requestId, index))``.
All values are immutable.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import IntEnum
from typing import NewType

from eth_abi.abi import encode as abi_encode
from eth_hash.auto import keccak

RequestId = NewType("RequestId", bytes)
"""32 bytes."""
SlotId = NewType("SlotId", bytes)
"""32 bytes."""
Address = NewType("Address", str)
"""A checksummed 0x-address."""

ASK_ABI_TYPE = "(uint256,uint256,uint256,uint64,uint64,uint64,uint64)"
CONTENT_ABI_TYPE = "(bytes,bytes32)"
REQUEST_ABI_TYPE = f"(address,{ASK_ABI_TYPE},{CONTENT_ABI_TYPE},uint64,bytes32)"


class RequestState(IntEnum):
    """Contract enum ``RequestState`` (same order)."""

    NEW = 0
    STARTED = 1
    CANCELLED = 2
    FINISHED = 3
    FAILED = 4


class SlotState(IntEnum):
    """Contract enum ``SlotState`` (same order)."""

    FREE = 0
    FILLED = 1
    FINISHED = 2
    FAILED = 3
    PAID = 4
    CANCELLED = 5
    REPAIR = 6


@dataclass(frozen=True, slots=True)
class Ask:
    """What the client asks for and pays (token amounts in the token's smallest unit)."""

    proof_probability: int
    price_per_byte_per_second: int
    collateral_per_byte: int
    slots: int
    slot_size: int
    duration: int
    max_slot_loss: int

    @property
    def collateral_per_slot(self) -> int:
        return self.collateral_per_byte * self.slot_size

    @property
    def price_per_slot_per_second(self) -> int:
        return self.price_per_byte_per_second * self.slot_size

    @property
    def max_price(self) -> int:
        return self.slots * self.duration * self.price_per_slot_per_second

    def to_abi(self) -> tuple[int, int, int, int, int, int, int]:
        return (
            self.proof_probability,
            self.price_per_byte_per_second,
            self.collateral_per_byte,
            self.slots,
            self.slot_size,
            self.duration,
            self.max_slot_loss,
        )


@dataclass(frozen=True, slots=True)
class Content:
    """``cid``: the protected manifest's CID bytes; ``merkle_root``: the dataset root of the storage proofs."""

    cid: bytes
    merkle_root: bytes

    def to_abi(self) -> tuple[bytes, bytes]:
        return (self.cid, self.merkle_root)


@dataclass(frozen=True, slots=True)
class Request:
    """A storage request. ``expiry`` is relative: seconds after creation until the request is cancelled if unfilled."""

    client: Address
    ask: Ask
    content: Content
    expiry: int
    nonce: bytes

    def to_abi(self) -> tuple[str, tuple[int, ...], tuple[bytes, bytes], int, bytes]:
        return (self.client, self.ask.to_abi(), self.content.to_abi(), self.expiry, self.nonce)

    @property
    def id(self) -> RequestId:
        return request_id(self)


# Ids are hashed ABI encodings (slow in eth_abi, ~0.5 ms) and code asks for them all the time: cache them.
@functools.lru_cache(maxsize=4096)
def request_id(request: Request) -> RequestId:
    return RequestId(keccak(abi_encode([REQUEST_ABI_TYPE], [request.to_abi()])))


@functools.lru_cache(maxsize=4096)
def slot_id(req_id: RequestId, slot_index: int) -> SlotId:
    return SlotId(keccak(abi_encode(["bytes32", "uint256"], [req_id, slot_index])))


@dataclass(frozen=True, slots=True)
class Slot:
    request: Request
    slot_index: int

    @property
    def id(self) -> SlotId:
        return slot_id(self.request.id, self.slot_index)


@dataclass(frozen=True, slots=True)
class SlotPayment:
    """What a ``freeSlot`` paid this host: the payout and the collateral back (both 0 when it paid nothing: a
    failed request's slot, or a running slot given up)."""

    payout: int = 0
    collateral: int = 0


@dataclass(frozen=True, slots=True)
class CollateralConfig:
    repair_reward_percentage: int
    max_number_of_slashes: int
    slash_percentage: int
    validator_reward_percentage: int


@dataclass(frozen=True, slots=True)
class ProofConfig:
    period: int
    timeout: int
    downtime: int
    downtime_product: int
    proof_samples: int


@dataclass(frozen=True, slots=True)
class MarketplaceConfig:
    collateral: CollateralConfig
    proofs: ProofConfig
    max_reservations: int
    request_duration_limit: int


@dataclass(frozen=True, slots=True)
class ChainInfo:
    """The chain a running node works with: its id, the contracts, and the node's own account.

    A domain value (the marketplace builds it once it knows its chain); the API turns it into its wire model.
    """

    chain_id: int
    marketplace_address: str
    token_address: str
    node_address: str


POINTERS = 256
"""The challenge pointer runs over the last 256 block hashes (the EVM's BLOCKHASH window) and wraps after 255."""
WRAP_MARGIN = 4
"""Blocks a proof may take from the view that read its challenge to the block it lands in: a challenge read this
close to the pointer's wrap is not used (``sales/challenge.py`` waits the wrap out)."""


@dataclass(frozen=True, slots=True)
class Periodicity:
    """Proof periods: period ``p`` covers ``[p*seconds, (p+1)*seconds)``."""

    seconds: int

    def period_of(self, timestamp: int) -> int:
        return timestamp // self.seconds

    def period_start(self, period: int) -> int:
        return period * self.seconds

    def period_end(self, period: int) -> int:
        return (period + 1) * self.seconds


def slot_collateral(collateral_per_slot: int, state: SlotState, config: CollateralConfig) -> int:
    """Collateral a host must post to fill a slot: discounted by the repair reward when repairing (anchor §5.2)."""
    if state == SlotState.REPAIR:
        return collateral_per_slot * (100 - config.repair_reward_percentage) // 100
    return collateral_per_slot


# --- events (one class per contract event) --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StorageRequested:
    request_id: RequestId
    ask: Ask
    expires_at: int
    """Absolute timestamp (the contract emits ``expiresAt``)."""


@dataclass(frozen=True, slots=True)
class RequestFulfilled:
    request_id: RequestId


@dataclass(frozen=True, slots=True)
class RequestCancelled:
    request_id: RequestId


@dataclass(frozen=True, slots=True)
class RequestFailed:
    request_id: RequestId


@dataclass(frozen=True, slots=True)
class SlotFilled:
    request_id: RequestId
    slot_index: int


@dataclass(frozen=True, slots=True)
class SlotFreed:
    request_id: RequestId
    slot_index: int


@dataclass(frozen=True, slots=True)
class SlotReservationsFull:
    request_id: RequestId
    slot_index: int


@dataclass(frozen=True, slots=True)
class ProofSubmitted:
    slot_id: SlotId


@dataclass(frozen=True, slots=True)
class HistoryMark:
    """A point of the marketplace's event history (a block number on a chain) before which every event has been
    delivered to the subscribers and will not be delivered again, and what tells later whether the history up to
    it is still the same (on a chain: the hash block ``point`` had; ``None``: nothing to check)."""

    point: int
    anchor: bytes | None = None


@dataclass(frozen=True, slots=True)
class ChainReorganised:
    """Not a contract log: the event stream found that blocks whose logs it delivered left the chain (a
    reorganisation, a Hardhat ``evm_revert``) and delivers again from ``first_block``. Whatever a subscriber
    believed because of those logs (a fill, a proof) may be gone: it reads the chain again."""

    first_block: int


MarketEvent = (
    StorageRequested
    | RequestFulfilled
    | RequestCancelled
    | RequestFailed
    | SlotFilled
    | SlotFreed
    | SlotReservationsFull
    | ProofSubmitted
    | ChainReorganised
)

EVENT_TYPES: tuple[type[MarketEvent], ...] = (
    StorageRequested,
    RequestFulfilled,
    RequestCancelled,
    RequestFailed,
    SlotFilled,
    SlotFreed,
    SlotReservationsFull,
    ProofSubmitted,
)
"""The contract's events (each has a log in the ABI)."""

SUBSCRIBABLE: tuple[type[MarketEvent], ...] = (*EVENT_TYPES, ChainReorganised)
"""What ``Market.subscribe`` accepts: the contract's events and the stream's own :class:`ChainReorganised`."""
