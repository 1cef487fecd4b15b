"""The typed results of :mod:`codex_node.client`: what each operation answers, parsed and checked.

These are the client's own models, not the API's (``api/schemas.py``, ``api/routes/*``). The API's models are
built on server-side records (the reservations book's ``Availability``, the repo's ``ManifestInfo``) and pull
FastAPI and the stores in with them; they serialize, these parse. Two definitions of a shape can drift, so
``tests/client/test_models.py`` holds each model here equal to its schema in ``openapi.yaml`` (same JSON names,
same required ones): the YAML is the one contract both sides are checked against.

The models are frozen; they ignore JSON fields they do not know (a newer node may add some), and token amounts —
decimal strings on the wire — are Python ``int``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

_DECIMAL = re.compile(r"[0-9]{1,78}")  # a uint256 has at most 78 digits


def _amount(value: Any) -> Any:
    if isinstance(value, str):
        if not _DECIMAL.fullmatch(value):
            raise ValueError("expected a token amount: a string of up to 78 decimal digits")
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("expected a token amount: a string of decimal digits")  # noqa: TRY004 (pydantic wants it)
    return value


Amount = Annotated[int, BeforeValidator(_amount)]
"""A token amount (uint256): a decimal string on the wire, an ``int`` here."""


class ClientModel(BaseModel):
    """Frozen; JSON names are the camelCase of the field names; unknown JSON fields are ignored."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="ignore")


# --- data ---------------------------------------------------------------------------------------------------------


class ManifestInfo(ClientModel):
    tree_cid: str
    dataset_size: int
    block_size: int
    protected: bool
    filename: str | None = None
    mimetype: str | None = None


class Dataset(ClientModel):
    """A dataset the node stores: its manifest CID and manifest."""

    cid: str
    manifest: ManifestInfo


class DataList(ClientModel):
    content: list[Dataset]


class Space(ClientModel):
    total_blocks: int
    quota_max_bytes: int
    quota_used_bytes: int
    quota_reserved_bytes: int


class Exists(ClientModel):
    has: bool


# --- sales --------------------------------------------------------------------------------------------------------


class StorageAsk(ClientModel):
    slots: int
    slot_size: int
    duration: int
    proof_probability: Amount
    price_per_byte_per_second: Amount
    collateral_per_byte: Amount
    max_slot_loss: int


class StorageContent(ClientModel):
    cid: str
    merkle_root: str


class StorageRequest(ClientModel):
    id: str
    client: str
    ask: StorageAsk
    content: StorageContent
    expiry: int
    nonce: str


class Slot(ClientModel):
    """A slot this node hosts, as the chain says."""

    id: str
    request: StorageRequest
    slot_index: int


class Reservation(ClientModel):
    id: str
    availability_id: str
    size: int
    request_id: str
    slot_index: int
    valid_until: int


class SaleTransition(ClientModel):
    """One transition of a sale: at ``at`` (unix seconds), from ``from_state`` to ``to_state``, moved by ``cause``."""

    at: int
    from_state: str | None = Field(alias="from")
    to_state: str = Field(alias="to")
    cause: str


class SlotSale(ClientModel):
    """The sale of one slot: its state, request, reservation and transition history."""

    state: str
    request_id: str
    slot_index: int
    request: StorageRequest | None = None
    reservation: Reservation | None = None
    history: list[SaleTransition]


class Purchase(ClientModel):
    """A purchase: its state (pending … finished, errored), error, request and transition history."""

    state: str
    error: str | None = None
    request: StorageRequest | None = None
    request_id: str
    history: list[SaleTransition] = []


class Availability(ClientModel):
    """Storage space and collateral the node offers."""

    id: str
    total_size: int
    free_size: int
    duration: int
    min_price_per_byte_per_second: Amount
    total_collateral: Amount
    total_remaining_collateral: Amount
    enabled: bool = True
    until: int = 0
    returning_size: int = 0


# --- debug --------------------------------------------------------------------------------------------------------


class CodexInfo(ClientModel):
    version: str
    revision: str
    contracts: str


class LocalNode(ClientModel):
    node_id: str
    peer_id: str
    record: str
    address: str
    seen: bool


class Table(ClientModel):
    local_node: LocalNode
    nodes: list[LocalNode]


class ChainInfo(ClientModel):
    chain_id: int
    marketplace_address: str
    token_address: str
    node_address: str


class DebugInfo(ClientModel):
    id: str
    addrs: list[str]
    repo: str
    spr: str
    announce_addresses: list[str]
    table: Table
    codex: CodexInfo
    marketplace: str
    chain: ChainInfo | None = None


class LogLevel(ClientModel):
    level: str


class BooksCheck(ClientModel):
    """Whether the availability, reservation and quota books balance; ``problems`` names each broken rule."""

    balanced: bool
    problems: list[str]


# --- downloads ----------------------------------------------------------------------------------------------------


class DownloadInfo(ClientModel):
    """What the node said about a download before its bytes: the size (``None`` if it did not say), the
    dataset's file name and media type (as the uploader gave them: untrusted text, never a path to write to)."""

    cid: str
    size: int | None = None
    filename: str | None = None
    mimetype: str | None = None
