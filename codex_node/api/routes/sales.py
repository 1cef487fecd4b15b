"""Sales routes under ``/api/codex/v1``: the slots this node sells and the availabilities it offers.

Paths, schemas and error cases follow nim-codex's REST API (``codex-anchor.md`` §6): token amounts (UInt256) are
decimal strings, sizes, durations and timestamps are integers, ids are ``0x`` + 64 hex digits. Beyond nim-codex:

- ``GET /sales/slots/{slotId}`` adds the slot's transition ``history`` (with timestamps) and still answers once a
  sale has ended, as long as its history is kept, with the ending state (nim-codex forgot the slot at once);
- a PATCH over the quota answers 422, not 500 (MARKETPLACE.md §5 #12);
- availabilities show ``returningSize``: bytes of ended sales that come back once the repo has deleted them.

Handlers only translate HTTP: the reservations book and Sales raise errors from ``codex_node.errors`` and the
app's one handler maps them (``api/errors.py``). They read ``request.app.state.sales``, ``.reservations`` and
``.market``; when the node runs without a marketplace those are ``None`` and the routes answer 503.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from codex_node.api.schemas import error_responses
from codex_node.data.slots import content_cid_text
from codex_node.errors import InvalidInputError, MarketUnavailableError, NotFoundError
from codex_node.market.market import Market
from codex_node.market.types import Request as StorageRequestRecord
from codex_node.market.types import SlotId
from codex_node.sales.availability import Availability, Reservation
from codex_node.sales.history import HistoryEntry, SaleHistory
from codex_node.sales.reservations import Reservations
from codex_node.sales.sales import Sales
from codex_node.sales.wallet import require_offer_covered

router = APIRouter(tags=["Marketplace"])

UINT256_MAX = 2**256 - 1
_ID = re.compile(r"0x[0-9a-fA-F]{64}")

IdPath = Annotated[str, Path(description="0x followed by 64 hex digits")]
UInt256 = Annotated[int, Field(ge=0, le=UINT256_MAX, description="A token amount: a decimal string (or number)")]


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


# --- schemas ------------------------------------------------------------------------------------------------------


class SalesAvailability(_Camel):
    """``POST /sales/availability``: what the operator offers."""

    total_size: int = Field(description="Bytes offered")
    duration: int = Field(description="Longest contract (seconds) accepted")
    min_price_per_byte_per_second: UInt256
    total_collateral: UInt256 = Field(description="Collateral budget for all slots of this availability")
    enabled: bool = True
    until: int = Field(0, description="Latest time (Unix seconds) a hosted contract may end; 0: no limit")


class SalesAvailabilityPatch(_Camel):
    """``PATCH /sales/availability/{id}``: any subset of the fields; ``freeSize`` is refused with 422."""

    total_size: int | None = None
    free_size: int | None = None
    duration: int | None = None
    min_price_per_byte_per_second: UInt256 | None = None
    total_collateral: UInt256 | None = None
    enabled: bool | None = None
    until: int | None = None


class SalesAvailabilityRead(_Camel):
    id: str
    total_size: int
    duration: int
    min_price_per_byte_per_second: str
    total_collateral: str
    free_size: int
    total_remaining_collateral: str
    enabled: bool
    until: int
    returning_size: int = Field(description="Bytes of ended sales that return to freeSize once the repo freed them")

    @classmethod
    def of(cls, a: Availability) -> SalesAvailabilityRead:
        return cls(
            id=_hex(a.id),
            total_size=a.total_size,
            duration=a.duration,
            min_price_per_byte_per_second=str(a.min_price_per_byte_per_second),
            total_collateral=str(a.total_collateral),
            free_size=a.free_size,
            total_remaining_collateral=str(a.total_remaining_collateral),
            enabled=a.enabled,
            until=a.until,
            returning_size=a.returning_size,
        )


class ReservationRead(_Camel):
    id: str
    availability_id: str
    size: int = Field(description="Bytes of the slot not downloaded yet")
    request_id: str
    slot_index: int
    valid_until: int

    @classmethod
    def of(cls, r: Reservation) -> ReservationRead:
        return cls(
            id=_hex(r.id),
            availability_id=_hex(r.availability_id),
            size=r.size,
            request_id=_hex(r.request_id),
            slot_index=r.slot_index,
            valid_until=r.valid_until,
        )


class StorageAsk(_Camel):
    slots: int
    slot_size: int
    duration: int
    proof_probability: str
    price_per_byte_per_second: str
    collateral_per_byte: str
    max_slot_loss: int


class StorageContent(_Camel):
    cid: str
    merkle_root: str


class StorageRequest(_Camel):
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
            id=_hex(r.id),
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
            content=StorageContent(cid=content_cid_text(r.content.cid), merkle_root=_hex(r.content.merkle_root)),
            expiry=r.expiry,
            nonce=_hex(r.nonce),
        )


class SlotRead(_Camel):
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


class SlotAgentRead(_Camel):
    state: str = Field(description="SalePreparing … SaleFinished (nim-codex names), plus SaleSlotReserving")
    request_id: str
    slot_index: int
    request: StorageRequest | None = None
    reservation: ReservationRead | None = None
    history: list[HistoryRead] = Field(description="The slot's last transitions, oldest first")


# --- helpers ------------------------------------------------------------------------------------------------------


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


def _id(text: str, what: str) -> bytes:
    if not _ID.fullmatch(text):
        raise InvalidInputError(f"malformed {what}: expected 0x followed by 64 hex digits, got {text!r}")
    return bytes.fromhex(text[2:])


def _state(request: Request, name: str) -> Any:
    value = getattr(request.app.state, name, None)
    if value is None:
        raise MarketUnavailableError("this node runs without a marketplace: sales are not available")
    return value


def _sales(request: Request) -> Sales:
    sales: Sales = _state(request, "sales")
    return sales


def _reservations(request: Request) -> Reservations:
    reservations: Reservations = _state(request, "reservations")
    return reservations


def _market(request: Request) -> Market:
    market: Market = _state(request, "market")
    return market


# --- slots --------------------------------------------------------------------------------------------------------


@router.get("/sales/slots", summary="The slots this node hosts, as the chain says", responses=error_responses(503))
async def list_slots(request: Request) -> list[SlotRead]:
    market = _market(request)
    out = []
    for sid in await market.my_slots():
        slot = await market.get_active_slot(sid)
        if slot is not None:
            out.append(SlotRead(id=_hex(sid), request=StorageRequest.of(slot.request), slot_index=slot.slot_index))
    return out


@router.get(
    "/sales/slots/{slotId}",
    summary="The sale of one slot: its state, request, reservation and transition history",
    responses=error_responses(400, 404, 503, s400="Malformed slot id", s404="Provider not filling slot"),
)
async def get_slot(request: Request, slot_id: Annotated[str, Path(alias="slotId")]) -> SlotAgentRead:
    sales = _sales(request)
    sid = SlotId(_id(slot_id, "slot id"))
    history: SaleHistory | None = sales.history
    entries = [HistoryRead.of(e) for e in history.entries(sid)] if history is not None else []
    agent = sales.agent(sid)
    if agent is not None and agent.state is not None:
        data = agent.data
        return SlotAgentRead(
            state=agent.state.api_name,
            request_id=_hex(data.request_id),
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
            request_id=_hex(ended.request_id),
            slot_index=ended.slot_index,
            history=entries,
        )
    raise NotFoundError("Provider not filling slot")


# --- availabilities -----------------------------------------------------------------------------------------------


@router.get("/sales/availability", summary="Every availability this node offers", responses=error_responses(503))
async def list_availabilities(request: Request) -> list[SalesAvailabilityRead]:
    return [SalesAvailabilityRead.of(a) for a in await _reservations(request).availabilities()]


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
async def create_availability(request: Request, body: SalesAvailability) -> SalesAvailabilityRead:
    await require_offer_covered(_market(request), _reservations(request), body.total_collateral)
    availability = await _reservations(request).create_availability(
        body.total_size,
        body.duration,
        body.min_price_per_byte_per_second,
        body.total_collateral,
        enabled=body.enabled,
        until=body.until,
    )
    return SalesAvailabilityRead.of(availability)


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
    request: Request, id: IdPath, body: Annotated[SalesAvailabilityPatch, Body()]
) -> Response:
    availability_id = _id(id, "availability id")
    given = body.model_fields_set
    changes = {name: getattr(body, name) for name in given if getattr(body, name) is not None}
    if "total_collateral" in changes:
        await require_offer_covered(
            _market(request), _reservations(request), changes["total_collateral"], availability_id=availability_id
        )
    await _reservations(request).update_availability(availability_id, **changes)
    return Response(status_code=204)


@router.get(
    "/sales/availability/{id}/reservations",
    summary="The reservations (slots being sold or hosted) of one availability",
    responses=error_responses(400, 404, 503, s400="Malformed id", s404="No such availability"),
)
async def list_reservations(request: Request, id: IdPath) -> list[ReservationRead]:
    availability_id = _id(id, "availability id")
    return [ReservationRead.of(r) for r in await _reservations(request).reservations(availability_id)]
