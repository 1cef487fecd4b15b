"""Sales routes under ``/api/codex/v1``: the slots this node sells and the availabilities it offers.

Paths, schemas and error cases follow nim-codex's REST API (``codex-anchor.md`` §6): token amounts (UInt256) are
decimal strings, sizes, durations and timestamps are integers, ids are ``0x`` + 64 hex digits. Beyond nim-codex:

- ``GET /sales/slots/{slotId}`` adds the slot's transition ``history`` (with timestamps) and still answers once a
  sale has ended, as long as its history is kept, with the ending state (nim-codex forgot the slot at once);
- a PATCH over the quota answers 422, not 500 (MARKETPLACE.md §5 #12);
- availabilities show ``returningSize``: bytes of ended sales that come back once the repo has deleted them.

Handlers only translate HTTP: the reservations book and Sales raise errors from ``codex_node.errors`` and the
app's one handler maps them (``api/errors.py``). They declare the parts they use (``api/services.py``); when the
node runs without a marketplace those are absent and the routes answer 503.

The availability models are built from the records of ``sales/availability.py`` (each field is declared once,
there, with its width): the bodies are strict (``api/schemas.py``: 400 malformed, 422 invalid).
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Path, Response
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
from codex_node.api.services import MarketDep, ReservationsDep, SalesDep
from codex_node.data.slots import content_cid_text
from codex_node.errors import InvalidInputError, NotFoundError
from codex_node.market.types import Request as StorageRequestRecord
from codex_node.market.types import SlotId
from codex_node.sales.availability import (
    Availability,
    AvailabilityPatch,
    AvailabilityTerms,
    Kind,
    Reservation,
    field_kinds,
    hex0x,
)
from codex_node.sales.history import HistoryEntry, SaleHistory
from codex_node.sales.wallet import require_offer_covered

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


class HistoryRead(BaseModel):
    model_config = ConfigDict(populate_by_name=True, frozen=True)

    at: int = Field(description="Unix seconds")
    from_state: str | None = Field(alias="from")
    to_state: str = Field(alias="to")
    cause: str = Field(description="What moved the sale: start, run, or the chain event")

    @classmethod
    def of(cls, e: HistoryEntry) -> HistoryRead:
        return cls(at=e.at, from_state=e.from_state, to_state=e.to_state, cause=e.cause)


class SlotAgentRead(CamelModel):
    state: str = Field(description="SalePreparing … SaleFinished (nim-codex names), plus SaleSlotReserving")
    request_id: str
    slot_index: int
    request: StorageRequest | None = None
    reservation: ReservationRead | None = None
    history: list[HistoryRead] = Field(description="The slot's last transitions, oldest first")


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
