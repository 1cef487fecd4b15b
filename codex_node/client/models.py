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


# --- peers --------------------------------------------------------------------------------------------------------


class PeerList(ClientModel):
    peers: list[str]


class HaveAnswer(ClientModel):
    have: list[str]


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


class DownloadProgress(ClientModel):
    """How far a slot's download got: ``bytes`` of ``total`` secured, as of ``at`` (unix seconds)."""

    at: int
    bytes: int
    total: int


class SaleTransition(ClientModel):
    """One transition of a sale: at ``at`` (unix seconds), from ``from_state`` to ``to_state``, moved by ``cause``;
    on a slot's SaleDownloading entry, ``progress`` says how far the download got."""

    at: int
    from_state: str | None = Field(alias="from")
    to_state: str = Field(alias="to")
    cause: str
    progress: DownloadProgress | None = None


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
    peer_id: str = ""
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


# --- the operator's view: health, alerts, samples, margins, sales by state -------------------------------------


class HealthCheck(ClientModel):
    name: str
    ok: bool
    detail: str


class HealthReport(ClientModel):
    """``GET /health`` when the node is ready (a node that is not answers 503: ``ServiceUnavailableError``)."""

    live: bool
    ready: bool
    checks: list[HealthCheck]


class AlertItem(ClientModel):
    key: str
    severity: str
    message: str
    since: int


class Alerts(ClientModel):
    active: list[AlertItem]
    checked_at: int | None


class SpaceSample(ClientModel):
    at: int
    quota_max_bytes: int
    quota_used_bytes: int
    quota_reserved_bytes: int
    disk_free_bytes: int | None


class ProofMarginItem(ClientModel):
    at: int
    slot_id: str
    period: int
    margin_seconds: int
    period_seconds: int


class SalesStates(ClientModel):
    agents: dict[str, int]
    outcomes: dict[str, int]


class ValidatorState(ClientModel):
    """``GET /validator``: the validator's group, what it watches and what it marked (``enabled`` false without one)."""

    enabled: bool
    groups: int | None = None
    group_index: int = 0
    slots_watched: int = 0
    last_period: int | None = None
    proofs_marked: int = 0
    mark_failures: dict[str, int] = {}
    lapsed_periods: int = 0


# --- the operator's view: account, ledger, sales history, request explainer, check --------------------------------


def _signed(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("-"):
        return -_amount(value[1:])
    return _amount(value)


SignedAmount = Annotated[int, BeforeValidator(_signed)]
"""A token flow: a decimal string that may start with ``-``."""


class LedgerTotals(ClientModel):
    earned: Amount
    lost: Amount
    net_flow: SignedAmount
    by_kind: dict[str, Amount]


class Account(ClientModel):
    """The node's wallet, where its collateral sits, and the ledger's totals."""

    address: str
    token_balance: Amount
    gas_balance: Amount | None
    collateral_locked: Amount
    collateral_promised: Amount
    collateral_reserved: Amount
    hosted_slots: int
    totals: LedgerTotals


class LedgerEntry(ClientModel):
    id: int
    at: int
    kind: str
    amount: Amount
    flow: SignedAmount
    request_id: str
    slot_index: int | None = None
    sale_id: int | None = None
    note: str = ""


class LedgerPage(ClientModel):
    entries: list[LedgerEntry]
    next: int | None
    """Pass as ``before`` for the next (older) page; ``None`` on the last."""


class SaleProof(ClientModel):
    period: int
    started_at: int
    landed_at: int
    time_to_land: int
    margin: int
    result: str
    error: str | None = None


class SaleMoney(ClientModel):
    kind: str
    amount: Amount
    flow: SignedAmount
    at: int


class Sale(ClientModel):
    """One sale of the history: outcome, reason or error, transitions, proofs, money."""

    id: int
    slot_id: str
    request_id: str
    slot_index: int
    state: str
    outcome: str
    started_at: int
    updated_at: int
    ended_at: int | None = None
    reason: str | None = None
    error: str | None = None
    transitions: list[SaleTransition]
    proofs: list[SaleProof]
    money: list[SaleMoney]
    net_flow: SignedAmount


class SalesPage(ClientModel):
    sales: list[Sale]
    next: int | None


class RuleCheck(ClientModel):
    rule: str
    passed: bool
    detail: str


class AvailabilityMatch(ClientModel):
    id: str
    matches: bool
    rules: list[RuleCheck]


class RequestMatch(ClientModel):
    """Whether the node would take a live request, and why, per availability and per rule."""

    request_id: str
    request_state: str | None
    would_take: bool
    reasons: list[str]
    notes: list[str]
    chosen_availability: str | None
    slot_collateral: Amount
    wallet_balance: Amount
    availabilities: list[AvailabilityMatch]


class CheckPart(ClientModel):
    name: str
    checked: int
    problems: list[str]


class NodeCheck(ClientModel):
    """``codex-node check``'s answer: ``ok`` when no part found a problem."""

    ok: bool
    parts: list[CheckPart]


# --- downloads ----------------------------------------------------------------------------------------------------


class DownloadInfo(ClientModel):
    """What the node said about a download before its bytes: the size (``None`` if it did not say), the
    dataset's file name and media type (as the uploader gave them: untrusted text, never a path to write to)."""

    cid: str
    size: int | None = None
    filename: str | None = None
    mimetype: str | None = None
