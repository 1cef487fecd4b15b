"""Dev-only routes of the embedded chain, under ``/api/codex/v1`` (not in nim-codex, not in ``openapi.yaml``).

- ``GET /debug/chain``: the latest block;
- ``POST /debug/chain/travel``: mine a block at a later timestamp (time travel);
- ``POST /debug/chain/request/{cid}``: post a storage request for a dataset this node holds, paid by the embedded
  chain's funded dev *client* account.

They exist for tests and demos of a node run as a separate process, and are mounted only on a node configured
with the embedded chain (``api/app.py``): elsewhere they are unknown paths (404). The embedded chain is a dev
chain in the data dir with a test token, so nothing of value is at stake, but a request must still never break
the chain or the node: every value is bounded before any work starts (a travel beyond :data:`MAX_TRAVEL`, a
field the contract would refuse, more slots than the dataset has blocks), and hashing a dataset for a request
stops as soon as its client has gone. They are not a client API: requesting storage as a client is
``POST /storage/request/{cid}`` (the purchasing side, not built yet).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable
from typing import Annotated, TypeVar

import structlog
from fastapi import APIRouter, Path, Request, Response
from pydantic import Field

from codex_node.api.routes.sales import StorageRequest
from codex_node.api.schemas import (
    CamelModel,
    PositiveUint64,
    PositiveUInt256,
    StrictBody,
    Uint64,
    error_responses,
)
from codex_node.api.services import DevChainDep, RepoDep
from codex_node.data.cid import parse_cid
from codex_node.errors import (
    BlockNotFoundError,
    ContractRevertError,
    CorruptBlockError,
    NotFoundError,
    ProofDataError,
    ValidationError,
)
from codex_node.market.types import Ask
from codex_node.market.types import Request as StorageRequestRecord
from codex_node.proofs.slotdata import dataset_commitment

log = structlog.get_logger(__name__)

router = APIRouter(tags=["Dev chain"], include_in_schema=False)

MAX_TRAVEL = 100 * 365 * 24 * 3600
"""The furthest a travel may jump past the latest block (100 years): the chain's timestamps and every deadline
the contract derives from them (``uint64``) keep their headroom, so the chain goes on working after it."""

CLIENT_GONE = 499
"""Status of an answer nobody reads: the client left before the work was done (nginx's convention)."""

T = TypeVar("T")


class ChainHead(CamelModel):
    block: int = Field(description="Number of the latest block")
    timestamp: int = Field(description="Its timestamp (Unix seconds): the node's on-chain now")


class ChainTravel(StrictBody):
    timestamp: Uint64 = Field(description="Unix seconds, later than the latest block and at most 100 years later")


class DevStorageRequest(StrictBody):
    """A storage request over a dataset this node holds; the slot size and content come from the dataset.

    Bounds are the contract's (``Marketplace.requestStorage``), checked before any work: ``slots`` ≥ 1 and at
    most the dataset's blocks, ``0 < expiry < duration <= requestDurationLimit``, ``maxSlotLoss <= slots``, and
    price, proof probability and collateral per byte ≥ 1."""

    slots: PositiveUint64
    duration: PositiveUint64 = Field(description="Seconds")
    expiry: PositiveUint64 = Field(description="Seconds after posting until the request is cancelled if unfilled")
    price_per_byte_per_second: PositiveUInt256
    proof_probability: PositiveUInt256
    collateral_per_byte: PositiveUInt256
    max_slot_loss: Uint64 = 0


async def _head(dev: DevChainDep) -> ChainHead:
    timestamp = await dev.chain.latest_timestamp()
    return ChainHead(block=dev.chain.head, timestamp=timestamp)


@router.get("/debug/chain", summary="Dev: the embedded chain's latest block")
async def chain_head(dev: DevChainDep) -> ChainHead:
    return await _head(dev)


@router.post(
    "/debug/chain/travel",
    summary="Dev: mine a block of the embedded chain at a later timestamp (time travel)",
    responses=error_responses(422, s422="Not later than the latest block, or more than 100 years later"),
)
async def chain_travel(dev: DevChainDep, body: ChainTravel) -> ChainHead:
    latest = await dev.chain.latest_timestamp()
    if body.timestamp <= latest:
        raise ValidationError(f"timestamp {body.timestamp} is not later than the latest block's ({latest})")
    if body.timestamp - latest > MAX_TRAVEL:
        raise ValidationError(
            f"timestamp {body.timestamp} is more than {MAX_TRAVEL} seconds (100 years) after the latest block's "
            f"({latest}); travel at most to {latest + MAX_TRAVEL}"
        )
    await dev.chain.travel_to(body.timestamp)
    dev.market.events.wake()  # the node sees the jump now, not at its next poll
    log.info("embedded chain travelled", timestamp=body.timestamp, block=dev.chain.head)
    return await _head(dev)


@router.post(
    "/debug/chain/request/{cid}",
    summary="Dev: the embedded chain's client account requests storage of a dataset this node holds",
    response_model=StorageRequest,
    responses=error_responses(
        400,
        404,
        422,
        s400="Malformed CID or body",
        s404="The dataset is not here",
        s422="A field the contract refuses, more slots than the dataset has blocks, or the marketplace refused",
    ),
)
async def chain_request(
    request: Request,
    dev: DevChainDep,
    repo: RepoDep,
    cid: Annotated[str, Path(description="The dataset's manifest CID")],
    body: DevStorageRequest,
) -> StorageRequest | Response:
    dataset = parse_cid(cid)
    if body.expiry >= body.duration:
        raise ValidationError(f"expiry ({body.expiry}) must be less than duration ({body.duration})")
    if body.max_slot_loss > body.slots:
        raise ValidationError(f"maxSlotLoss ({body.max_slot_loss}) must not exceed slots ({body.slots})")
    limit = (await dev.market.config()).request_duration_limit
    if body.duration > limit:
        raise ValidationError(f"duration ({body.duration}) exceeds the marketplace's limit ({limit} seconds)")
    if not repo.has_block(dataset):
        raise NotFoundError(f"dataset {cid} is not stored on this node")
    try:
        manifest = await repo.get_manifest(dataset)
    except (BlockNotFoundError, CorruptBlockError) as e:
        raise ValidationError(f"manifest {cid} is not readable here: {e}") from e
    if body.slots > manifest.block_count:
        raise ValidationError(
            f"slots ({body.slots}) must not exceed the dataset's {manifest.block_count} blocks: every slot holds data"
        )
    try:
        commitment = await until_disconnected(request, dataset_commitment(repo, dataset, body.slots))
    except ProofDataError as e:
        raise ValidationError(str(e)) from e
    if commitment is None:
        log.info("dev storage request abandoned: the client left", cid=cid, slots=body.slots)
        return Response(status_code=CLIENT_GONE)
    storage_request = StorageRequestRecord(
        client=await dev.client.get_signer(),
        ask=Ask(
            proof_probability=body.proof_probability,
            price_per_byte_per_second=body.price_per_byte_per_second,
            collateral_per_byte=body.collateral_per_byte,
            slots=body.slots,
            slot_size=commitment.slot_size,
            duration=body.duration,
            max_slot_loss=body.max_slot_loss,
        ),
        content=commitment.content,
        expiry=body.expiry,
        nonce=secrets.token_bytes(32),
    )
    try:
        await dev.client.request_storage(storage_request)
    except ContractRevertError as e:
        raise ValidationError(f"the marketplace refused the request: {e}") from e
    log.info("dev storage request posted", request_id=storage_request.id.hex(), cid=cid, slots=body.slots)
    return StorageRequest.of(storage_request)


async def until_disconnected(request: Request, work: Awaitable[T]) -> T | None:
    """``work``'s result, or ``None`` once the client has gone (then ``work`` is cancelled and awaited).

    The body has been read whole, so the next ASGI message is the client's disconnect."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, gone):
            pending.cancel()  # no-op on the one that finished; on cancellation of this request, both
        await asyncio.gather(task, gone, return_exceptions=True)
    if task.cancelled():
        return None
    return task.result()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
