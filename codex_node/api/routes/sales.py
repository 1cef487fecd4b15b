"""Sales routes under ``/api/codex/v1``: the slots this node sells and the availabilities it offers.

Paths, schemas and error cases follow nim-codex's REST API (``codex-anchor.md`` §6): token amounts (UInt256) are
decimal strings, sizes, durations and timestamps are integers, ids are ``0x`` + 64 hex digits. Beyond nim-codex:

- ``GET /sales/slots/{slotId}`` adds the slot's transition ``history`` (with timestamps) and still answers once a
  sale has ended, as long as its history is kept, with the ending state (nim-codex forgot the slot at once);
- a PATCH over the quota answers 422, not 500 (MARKETPLACE.md §5 #12);
- availabilities show ``returningSize``: bytes of ended sales that come back once the repo has deleted them;
- ``GET /sales/history`` lists every sale the node started (active, finished, ignored with the reason, errored
  with the error, …), newest first, paged, each with its transitions, proofs and money;
  ``GET /sales/history/{saleId}`` is one of them;
- ``GET /sales/requests/{requestId}/match`` explains, per availability and per rule, whether the node would take
  a live request (``sales/explain.py``).

Handlers only translate HTTP: the reservations book and Sales raise errors from ``codex_node.errors`` and the
app's one handler maps them (``api/errors.py``). They declare the parts they use (``api/services.py``); when the
node runs without a marketplace those are absent and the routes answer 503.

The availability models are built from the records of ``sales/availability.py`` (each field is declared once,
there, with its width): the bodies are strict (``api/schemas.py``: 400 malformed, 422 invalid).
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field, field_serializer
from pydantic.alias_generators import to_camel
from pydantic.dataclasses import dataclass

from codex_node.api.schemas import (
    BODY_CONFIG,
    CamelModel,
    error_responses,
    record_json_schema,
    strict_json_types,
)
from codex_node.api.services import MarketDep, ReservationsDep, SalesDep, ServicesDep
from codex_node.data.slots import content_cid_text
from codex_node.errors import InvalidInputError, NotFoundError
from codex_node.market.types import Request as StorageRequestRecord
from codex_node.market.types import RequestId, SlotId
from codex_node.sales.availability import (
    Availability,
    AvailabilityPatch,
    AvailabilityTerms,
    Kind,
    Reservation,
    field_kinds,
    hex0x,
)
from codex_node.sales.explain import RequestExplanation, explain_request
from codex_node.sales.history import HistoryEntry, SaleHistory
from codex_node.sales.ledger import EarningsLedger, LedgerEntry
from codex_node.sales.matching import AvailabilityVerdict
from codex_node.sales.salebook import OUTCOMES, ProofRecord, SaleRecord, Transition
from codex_node.sales.wallet import require_offer_covered, wallet_balance

router = APIRouter(tags=["Marketplace"])

_ID = re.compile(r"0x[0-9a-fA-F]{64}")

IdPath = Annotated[str, Path(description="0x followed by 64 hex digits")]


# --- schemas ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, config=ConfigDict(**BODY_CONFIG, json_schema_extra=record_json_schema(AvailabilityTerms)))
class SalesAvailability(AvailabilityTerms):
    """``POST /sales/availability``: what the operator offers (the fields of ``AvailabilityTerms``)."""

    _json_types = strict_json_types(AvailabilityTerms)


@dataclass(frozen=True, config=ConfigDict(**BODY_CONFIG, json_schema_extra=record_json_schema(AvailabilityPatch)))
class SalesAvailabilityPatch(AvailabilityPatch):
    """``PATCH /sales/availability/{id}``: any subset of the fields; ``freeSize`` is refused with 422."""

    _json_types = strict_json_types(AvailabilityPatch)


_AMOUNTS = [name for name, kind in field_kinds(Availability).items() if kind is Kind.DECIMAL]


@dataclass(
    frozen=True,
    config=ConfigDict(
        alias_generator=to_camel, validate_by_name=True, json_schema_extra=record_json_schema(Availability)
    ),
)
class SalesAvailabilityRead(Availability):
    """An availability as the API shows it: its record, with amounts as decimal strings and the id in hex.

    ``returningSize``: bytes of ended sales that return to ``freeSize`` once the repo freed them."""

    @field_serializer("id")
    def _id(self, value: bytes) -> str:
        return hex0x(value)

    @field_serializer(*_AMOUNTS)
    def _amount(self, value: int) -> str:
        return str(value)

    @classmethod
    def of(cls, a: Availability) -> SalesAvailabilityRead:
        return cls(**{name: getattr(a, name) for name in field_kinds(Availability)})


class ReservationRead(CamelModel):
    id: str
    availability_id: str
    size: int = Field(description="Bytes of the slot not downloaded yet")
    request_id: str
    slot_index: int
    valid_until: int

    @classmethod
    def of(cls, r: Reservation) -> ReservationRead:
        return cls(
            id=hex0x(r.id),
            availability_id=hex0x(r.availability_id),
            size=r.size,
            request_id=hex0x(r.request_id),
            slot_index=r.slot_index,
            valid_until=r.valid_until,
        )


class StorageAsk(CamelModel):
    slots: int
    slot_size: int
    duration: int
    proof_probability: str
    price_per_byte_per_second: str
    collateral_per_byte: str
    max_slot_loss: int


class StorageContent(CamelModel):
    cid: str
    merkle_root: str


class StorageRequest(CamelModel):
    id: str
    client: str
    ask: StorageAsk
    content: StorageContent
    expiry: int = Field(description="Seconds after the request was posted until it is cancelled if unfilled")
    nonce: str

    @classmethod
    def of(cls, r: StorageRequestRecord) -> StorageRequest:
        ask = r.ask
        return cls(
            id=hex0x(r.id),
            client=r.client,
            ask=StorageAsk(
                slots=ask.slots,
                slot_size=ask.slot_size,
                duration=ask.duration,
                proof_probability=str(ask.proof_probability),
                price_per_byte_per_second=str(ask.price_per_byte_per_second),
                collateral_per_byte=str(ask.collateral_per_byte),
                max_slot_loss=ask.max_slot_loss,
            ),
            content=StorageContent(cid=content_cid_text(r.content.cid), merkle_root=hex0x(r.content.merkle_root)),
            expiry=r.expiry,
            nonce=hex0x(r.nonce),
        )


class SlotRead(CamelModel):
    id: str
    request: StorageRequest
    slot_index: int


class ProgressRead(BaseModel):
    model_config = ConfigDict(frozen=True)

    at: int = Field(description="Unix seconds of the last update (at most one a second while downloading)")
    bytes: int = Field(description="Bytes of the slot secured in the repo so far")
    total: int = Field(description="The slot's size in bytes")


class HistoryRead(BaseModel):
    model_config = ConfigDict(populate_by_name=True, frozen=True)

    at: int = Field(description="Unix seconds")
    from_state: str | None = Field(alias="from")
    to_state: str = Field(alias="to")
    cause: str = Field(description="What moved the sale: start, run, or the chain event")
    progress: ProgressRead | None = Field(
        default=None, description="On a SaleDownloading entry of a slot's history: how far its download got"
    )

    @classmethod
    def of(cls, e: HistoryEntry) -> HistoryRead:
        p = e.progress
        return cls(
            at=e.at,
            from_state=e.from_state,
            to_state=e.to_state,
            cause=e.cause,
            progress=None if p is None else ProgressRead(at=p.at, bytes=p.nbytes, total=p.total),
        )

    @classmethod
    def of_transition(cls, t: Transition) -> HistoryRead:
        return cls(at=t.at, from_state=t.from_state, to_state=t.to_state, cause=t.cause)


class SlotAgentRead(CamelModel):
    state: str = Field(description="SalePreparing … SaleFinished (nim-codex names), plus SaleSlotReserving")
    request_id: str
    slot_index: int
    request: StorageRequest | None = None
    reservation: ReservationRead | None = None
    history: list[HistoryRead] = Field(description="The slot's last transitions, oldest first")


class ProofRead(CamelModel):
    period: int
    started_at: int = Field(description="When the proof round started (unix seconds, chain time)")
    landed_at: int = Field(description="When the proof was on chain, or the round gave up")
    time_to_land: int = Field(description="landedAt - startedAt, seconds")
    margin: int = Field(description="Seconds from landedAt to the end of the period: how close to a missed proof")
    result: str = Field(description="submitted, already (on chain before a restart) or failed")
    error: str | None = None

    @classmethod
    def of(cls, p: ProofRecord) -> ProofRead:
        return cls(
            period=p.period,
            started_at=p.started_at,
            landed_at=p.landed_at,
            time_to_land=p.time_to_land,
            margin=p.margin,
            result=p.result,
            error=p.error,
        )


class SaleMoneyRead(CamelModel):
    kind: str
    amount: str
    flow: str = Field(description="The effect on the token balance, signed")
    at: int

    @classmethod
    def of(cls, e: LedgerEntry) -> SaleMoneyRead:
        return cls(kind=e.kind.value, amount=str(e.amount), flow=str(e.flow), at=e.at)


class SaleRead(CamelModel):
    id: int = Field(description="The sale's id (a slot may be sold more than once)")
    slot_id: str
    request_id: str
    slot_index: int
    state: str = Field(description="The current or last state (SalePreparing … SaleFinished)")
    outcome: str = Field(description="active, finished, cancelled, failed, ignored or errored")
    started_at: int
    updated_at: int
    ended_at: int | None = None
    reason: str | None = Field(default=None, description="Why an ignored sale was ignored (the rules that failed)")
    error: str | None = Field(default=None, description="What ended an errored sale")
    transitions: list[HistoryRead]
    proofs: list[ProofRead]
    money: list[SaleMoneyRead] = Field(description="The sale's ledger entries")
    net_flow: str = Field(description="Σ flow of the money: the sale's effect on the token balance")

    @classmethod
    def of(cls, r: SaleRecord, money: list[LedgerEntry]) -> SaleRead:
        return cls(
            id=r.id,
            slot_id=hex0x(r.slot_id),
            request_id=hex0x(r.request_id),
            slot_index=r.slot_index,
            state=r.state,
            outcome=r.outcome,
            started_at=r.started_at,
            updated_at=r.updated_at,
            ended_at=r.ended_at,
            reason=r.reason,
            error=r.error,
            transitions=[HistoryRead.of_transition(t) for t in r.transitions],
            proofs=[ProofRead.of(p) for p in r.proofs],
            money=[SaleMoneyRead.of(e) for e in money],
            net_flow=str(sum(e.flow for e in money)),
        )


class SalesPage(CamelModel):
    sales: list[SaleRead]
    next: int | None = Field(description="Pass as `before` for the next (older) page; null on the last page")


class RuleRead(CamelModel):
    rule: str = Field(description="enabled, size, duration, collateral, price or until")
    passed: bool
    detail: str = Field(description="The numbers compared")


class AvailabilityMatchRead(CamelModel):
    id: str
    matches: bool
    rules: list[RuleRead]

    @classmethod
    def of(cls, v: AvailabilityVerdict) -> AvailabilityMatchRead:
        return cls(
            id=hex0x(v.availability_id),
            matches=v.matches,
            rules=[RuleRead(rule=c.rule, passed=c.passed, detail=c.detail) for c in v.checks],
        )


class RequestMatchRead(CamelModel):
    request_id: str
    request_state: str | None = Field(description="new, started, cancelled, finished, failed")
    would_take: bool = Field(description="A sale of one of its slots would go ahead now")
    reasons: list[str] = Field(description="Why not (empty when wouldTake)")
    notes: list[str]
    chosen_availability: str | None = Field(description="The availability a sale would reserve from")
    slot_collateral: str
    wallet_balance: str
    availabilities: list[AvailabilityMatchRead]

    @classmethod
    def of(
        cls, request_id: RequestId, state: str | None, collateral: int, balance: int, e: RequestExplanation
    ) -> RequestMatchRead:
        return cls(
            request_id=hex0x(request_id),
            request_state=state,
            would_take=e.would_take,
            reasons=list(e.reasons),
            notes=list(e.notes),
            chosen_availability=None if e.chosen is None else hex0x(e.chosen),
            slot_collateral=str(collateral),
            wallet_balance=str(balance),
            availabilities=[AvailabilityMatchRead.of(v) for v in e.verdicts],
        )


# --- helpers ------------------------------------------------------------------------------------------------------


def _id(text: str, what: str) -> bytes:
    if not _ID.fullmatch(text):
        raise InvalidInputError(f"malformed {what}: expected 0x followed by 64 hex digits, got {text!r}")
    return bytes.fromhex(text[2:])


# --- slots --------------------------------------------------------------------------------------------------------


@router.get("/sales/slots", summary="The slots this node hosts, as the chain says", responses=error_responses(503))
async def list_slots(market: MarketDep) -> list[SlotRead]:
    out = []
    for sid in await market.my_slots():
        slot = await market.get_active_slot(sid)
        if slot is not None:
            out.append(SlotRead(id=hex0x(sid), request=StorageRequest.of(slot.request), slot_index=slot.slot_index))
    return out


@router.get(
    "/sales/slots/{slotId}",
    summary="The sale of one slot: its state, request, reservation and transition history",
    responses=error_responses(400, 404, 503, s400="Malformed slot id", s404="Provider not filling slot"),
)
async def get_slot(sales: SalesDep, slot_id: Annotated[str, Path(alias="slotId")]) -> SlotAgentRead:
    sid = SlotId(_id(slot_id, "slot id"))
    history: SaleHistory | None = sales.history
    entries = [HistoryRead.of(e) for e in history.entries(sid)] if history is not None else []
    agent = sales.agent(sid)
    if agent is not None and agent.state is not None:
        data = agent.data
        return SlotAgentRead(
            state=agent.state.api_name,
            request_id=hex0x(data.request_id),
            slot_index=data.slot_index,
            request=None if data.request is None else StorageRequest.of(data.request),
            reservation=None if data.reservation is None else ReservationRead.of(data.reservation),
            history=entries,
        )
    ended = history.ended_sale(sid) if history is not None else None
    if ended is not None and entries:
        # The sale has ended and its agent is gone; the kept history tells how it ended.
        return SlotAgentRead(
            state=entries[-1].to_state,
            request_id=hex0x(ended.request_id),
            slot_index=ended.slot_index,
            history=entries,
        )
    raise NotFoundError("Provider not filling slot")


# --- history ------------------------------------------------------------------------------------------------------

MAX_PAGE = 500


def _sale_read(record: SaleRecord, ledger: EarningsLedger | None) -> SaleRead:
    return SaleRead.of(record, [] if ledger is None else ledger.of_sale(record.id))


@router.get(
    "/sales/history",
    summary="Every sale this node started, newest first, with its transitions, proofs and money",
    responses=error_responses(
        400,
        422,
        503,
        s400="An unknown state, or limit/since/before not an integer",
        s422="limit/since/before out of range",
    ),
)
async def list_sale_history(
    sales: SalesDep,
    services: ServicesDep,
    state: Annotated[str | None, Query(description="Only sales of this outcome: " + ", ".join(OUTCOMES))] = None,
    since: Annotated[int | None, Query(ge=0, description="Only sales started at or after (unix seconds)")] = None,
    before: Annotated[int | None, Query(ge=0, description="Only sales with a smaller id (a page's `next`)")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Sales per page")] = 50,
) -> SalesPage:
    if state is not None and state not in OUTCOMES:
        raise InvalidInputError(f"unknown state {state!r}: expected one of {', '.join(OUTCOMES)}")
    book = sales.book
    if book is None:
        return SalesPage(sales=[], next=None)
    records = book.page(outcome=state, since=since, before=before, limit=limit + 1)
    more = len(records) > limit
    records = records[:limit]
    return SalesPage(
        sales=[_sale_read(r, services.ledger) for r in records], next=records[-1].id if more and records else None
    )


@router.get(
    "/sales/history/{saleId}",
    summary="One sale of the history",
    responses=error_responses(
        400, 404, 422, 503, s400="Malformed sale id", s404="No such sale (or pruned)", s422="A negative sale id"
    ),
)
async def get_sale_history(
    sales: SalesDep, services: ServicesDep, sale_id: Annotated[int, Path(alias="saleId", ge=0)]
) -> SaleRead:
    record = None if sales.book is None else sales.book.get(sale_id)
    if record is None:
        raise NotFoundError(f"sale {sale_id} not found")
    return _sale_read(record, services.ledger)


# --- the request explainer ------------------------------------------------------------------------------------------


@router.get(
    "/sales/requests/{requestId}/match",
    summary="Would this node take a live storage request? Per availability and per rule",
    responses=error_responses(400, 404, 503, s400="Malformed request id", s404="The chain has no such request"),
)
async def match_request(
    market: MarketDep,
    sales: SalesDep,
    reservations: ReservationsDep,
    request_id: Annotated[str, Path(alias="requestId")],
) -> RequestMatchRead:
    rid = RequestId(_id(request_id, "request id"))
    request = await market.get_request(rid)
    if request is None:
        raise NotFoundError(f"request {request_id} not found on chain")
    state = await market.request_state(rid)
    request_end = await market.request_end(rid)
    balance = await wallet_balance(market)
    collateral = request.ask.collateral_per_slot
    explanation = explain_request(
        request.ask,
        state=state,
        now=sales.clock.now(),
        expires_at=await market.request_expires_at(rid),
        request_end=request_end,
        availabilities=await reservations.availabilities(),
        wallet_balance=balance,
        slot_collateral=collateral,
    )
    return RequestMatchRead.of(rid, None if state is None else state.name.lower(), collateral, balance, explanation)


# --- availabilities -----------------------------------------------------------------------------------------------


@router.get("/sales/availability", summary="Every availability this node offers", responses=error_responses(503))
async def list_availabilities(reservations: ReservationsDep) -> list[SalesAvailabilityRead]:
    return [SalesAvailabilityRead.of(a) for a in await reservations.availabilities()]


@router.post(
    "/sales/availability",
    status_code=201,
    summary="Offer storage space and collateral for sale",
    responses=error_responses(
        400,
        422,
        503,
        s400="Malformed JSON or a missing field",
        s422="A size, duration, price or collateral of 0, a negative until, not enough quota, or more collateral "
        "than the wallet holds",
    ),
)
async def create_availability(
    reservations: ReservationsDep, market: MarketDep, body: SalesAvailability
) -> SalesAvailabilityRead:
    await require_offer_covered(market, reservations, body.total_collateral)
    return SalesAvailabilityRead.of(await reservations.create_availability(body))


@router.patch(
    "/sales/availability/{id}",
    status_code=204,
    summary="Change an availability (any subset of its fields)",
    responses=error_responses(
        400,
        404,
        422,
        503,
        s400="Malformed id or JSON",
        s404="No such availability",
        s422="freeSize given, a size of 0, totalSize below the bytes in use, not enough quota, "
        "until before a hosted slot's end, or raised collateral the wallet cannot cover",
    ),
)
async def update_availability(
    reservations: ReservationsDep, market: MarketDep, id: IdPath, body: SalesAvailabilityPatch
) -> Response:
    availability_id = _id(id, "availability id")
    if body.total_collateral is not None:
        await require_offer_covered(market, reservations, body.total_collateral, availability_id=availability_id)
    await reservations.update_availability(availability_id, body)
    return Response(status_code=204)


@router.get(
    "/sales/availability/{id}/reservations",
    summary="The reservations (slots being sold or hosted) of one availability",
    responses=error_responses(400, 404, 503, s400="Malformed id", s404="No such availability"),
)
async def list_reservations(reservations: ReservationsDep, id: IdPath) -> list[ReservationRead]:
    return [ReservationRead.of(r) for r in await reservations.reservations(_id(id, "availability id"))]
