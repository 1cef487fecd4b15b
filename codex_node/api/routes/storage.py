"""The client side of the marketplace, as nim-codex serves it: request storage of a dataset, follow purchases.

- ``POST /storage/request/{cid}``: erasure-code a dataset this node holds into ``nodes`` slots surviving the loss
  of ``tolerance`` (``K = nodes - tolerance``, ``M = tolerance``), store the slots, post the request (approving
  the token first) and answer the purchase id (text, ``0x`` + 64 hex digits). Every rule of anchor §6 is checked
  **before** any encoding, and so is the wallet: a request the node's account cannot pay
  (``pricePerBytePerSecond × slotSize × duration × slots``) is refused with 422. Encoding runs in worker threads
  (``purchasing/protect.py``); a client that goes away cancels it and everything stored for it is deleted, and
  so is everything stored for a request the chain refused.
- ``GET /storage/purchases``: every purchase id; ``GET /storage/purchases/{id}``: one purchase
  (``{state, error?, request?, requestId}``), plus, beyond nim-codex, its transition ``history``.
"""

from __future__ import annotations

import re
import secrets
from typing import Annotated

import structlog
from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import Field

from codex_node.api.disconnect import CLIENT_GONE, until_disconnected
from codex_node.api.routes.sales import HistoryRead, StorageRequest
from codex_node.api.schemas import CamelModel, PositiveUint64, PositiveUInt256, StrictBody, error_responses
from codex_node.api.services import MarketDep, PurchasingDep, RepoDep
from codex_node.data.cid import parse_cid
from codex_node.data.erasure import ErasureLayout, ErasureParams
from codex_node.data.slots import cid_bytes
from codex_node.errors import (
    BlockNotFoundError,
    ContractRevertError,
    CorruptBlockError,
    InsufficientBlocksError,
    InvalidInputError,
    NotFoundError,
    ValidationError,
)
from codex_node.market.types import Ask, Content, RequestId
from codex_node.market.types import Request as StorageRequestRecord
from codex_node.purchasing.protect import protect_dataset, release
from codex_node.purchasing.records import PurchaseRecord, Transition

log = structlog.get_logger(__name__)

router = APIRouter(tags=["Marketplace"])

_ID = re.compile(r"(0x)?[0-9a-fA-F]{64}")
MAX_NODES = 256
"""The erasure coder's limit on K + M."""


class StorageRequestCreation(StrictBody):
    """nim-codex's ``StorageRequestCreation``. Rules (422): ``0 < expiry < duration <= requestDurationLimit``;
    ``tolerance >= 1`` and ``<= nodes``; ``1 < nodes - tolerance >= tolerance``; the dataset has at least
    ``nodes - tolerance`` blocks; the node's wallet holds the request's price."""

    duration: PositiveUint64 = Field(description="Seconds the slots are stored once the request starts")
    price_per_byte_per_second: PositiveUInt256 = Field(description="Tokens per byte of slot per second")
    proof_probability: PositiveUInt256 = Field(description="A proof is required on average every N periods")
    collateral_per_byte: PositiveUInt256 = Field(description="Tokens a host puts up per byte of slot")
    expiry: PositiveUint64 = Field(description="Seconds after posting until the request is cancelled if unfilled")
    nodes: Annotated[int, Field(ge=3, le=MAX_NODES)] = Field(3, description="Slots (K + M)")
    tolerance: Annotated[int, Field(ge=1, le=MAX_NODES)] = Field(1, description="Slots that may be lost (M)")


class Purchase(CamelModel):
    state: str = Field(description="pending, submitted, started, finished, failed, cancelled, errored or unknown")
    error: str | None = None
    request: StorageRequest | None = None
    request_id: str
    history: list[HistoryRead] = Field(default_factory=list, description="The purchase's transitions, oldest first")

    @classmethod
    def of(cls, record: PurchaseRecord, history: list[Transition]) -> Purchase:
        return cls(
            state=record.state,
            error=record.error,
            request=StorageRequest.of(record.request),
            request_id="0x" + record.id.hex(),
            history=[
                HistoryRead(at=t.at, **{"from": t.from_state, "to": t.to_state, "cause": t.cause}) for t in history
            ],
        )


def _request_id(text: str) -> RequestId:
    if not _ID.fullmatch(text):
        raise InvalidInputError(f"malformed purchase id: expected 0x followed by 64 hex digits, got {text!r}")
    return RequestId(bytes.fromhex(text.removeprefix("0x")))


@router.post(
    "/storage/request/{cid}",
    response_class=PlainTextResponse,
    summary="Erasure-code a dataset and request storage for it; returns the purchase id",
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "The purchase id (hex)"},
        # Descriptions only: the app gives error answers the JSON error body (a model here would be text/plain).
        **{
            status: {"description": response["description"]}
            for status, response in error_responses(
                400,
                404,
                422,
                503,
                s400="Malformed CID or body",
                s404="The dataset is not stored on this node",
                s422="A rule of the body broken, a dataset too small for K blocks, a wallet short of the price, or "
                "the marketplace refused the request",
            ).items()
        },
    },
)
async def request_storage(
    request: Request,
    repo: RepoDep,
    market: MarketDep,
    purchasing: PurchasingDep,
    cid: Annotated[str, Path(description="The dataset's manifest CID")],
    body: StorageRequestCreation,
) -> Response:
    dataset = parse_cid(cid)
    if body.expiry >= body.duration:
        raise ValidationError(f"expiry ({body.expiry}) must be less than duration ({body.duration})")
    if body.tolerance > body.nodes:
        raise ValidationError(f"tolerance ({body.tolerance}) cannot exceed nodes ({body.nodes})")
    params = ErasureParams.from_request(body.nodes, body.tolerance)  # 422 when 1 < K >= M fails
    config = await market.config()
    if body.duration > config.request_duration_limit:
        raise ValidationError(
            f"duration ({body.duration}) exceeds the marketplace's limit ({config.request_duration_limit} seconds)"
        )
    if not dataset.is_manifest:
        raise ValidationError(f"{cid} is not a dataset manifest CID: request storage of an uploaded dataset")
    if not repo.has_block(dataset):
        raise NotFoundError(f"dataset {cid} is not stored on this node")
    try:
        manifest = await repo.get_manifest(dataset)
    except (BlockNotFoundError, CorruptBlockError) as e:
        raise ValidationError(f"manifest {cid} is not readable here: {e}") from e
    if manifest.block_count < params.k:
        raise InsufficientBlocksError(
            f"the dataset has {manifest.block_count} blocks; nodes - tolerance = {params.k} needs at least as many "
            "(upload more data or use fewer nodes)"
        )
    layout = ErasureLayout(params, manifest.info.dataset_size)
    ask = Ask(
        proof_probability=body.proof_probability,
        price_per_byte_per_second=body.price_per_byte_per_second,
        collateral_per_byte=body.collateral_per_byte,
        slots=params.slots,
        slot_size=layout.slot_size,
        duration=body.duration,
        max_slot_loss=params.m,
    )
    me = await market.get_signer()
    balance = await market.token_balance(me)
    if balance < ask.max_price:
        raise ValidationError(
            f"the node's account {me} holds {balance} tokens; this request costs {ask.max_price} "
            f"(pricePerBytePerSecond × slotSize {layout.slot_size} × duration × {params.slots} slots)"
        )
    protected = await until_disconnected(request, protect_dataset(repo, dataset, manifest, params))
    if protected is None:
        log.info("storage request abandoned while encoding: the client left", cid=cid)
        return Response(status_code=CLIENT_GONE)
    record = StorageRequestRecord(
        client=me,
        ask=ask,
        content=Content(cid=cid_bytes(protected.cid), merkle_root=protected.manifest.dataset_root),
        expiry=body.expiry,
        nonce=secrets.token_bytes(32),
    )
    try:
        await purchasing.purchase(record)
    except ContractRevertError as e:
        await release(repo, protected)
        raise ValidationError(f"the marketplace refused the request: {e}") from e
    except Exception:
        await release(repo, protected)
        raise
    # Cancelled while posting (the node stops): the request may be on chain already, so its slots stay (a restart
    # settles the purchase from the chain; unused slots expire with the repo's TTL).
    log.info(
        "storage requested",
        request_id=record.id.hex(),
        cid=cid,
        protected=protected.cid.text,
        nodes=params.slots,
        tolerance=params.m,
        slot_size=layout.slot_size,
    )
    return PlainTextResponse("0x" + record.id.hex())


@router.get("/storage/purchases", summary="The ids of every purchase of this node", responses=error_responses(503))
async def list_purchases(purchasing: PurchasingDep) -> list[str]:
    return ["0x" + i.hex() for i in purchasing.ids()]


@router.get(
    "/storage/purchases/{id}",
    summary="One purchase: its state, error, request and transition history",
    responses=error_responses(400, 404, 503, s400="Malformed purchase id", s404="No such purchase"),
)
async def get_purchase(purchasing: PurchasingDep, id: Annotated[str, Path()]) -> Purchase:
    request_id = _request_id(id)
    return Purchase.of(purchasing.get(request_id), purchasing.history(request_id))
