"""Dev-only routes of the embedded chain, under ``/api/codex/v1`` (not in nim-codex, not in ``openapi.yaml``).

- ``GET /debug/chain``: the latest block;
- ``POST /debug/chain/travel``: mine a block at a later timestamp (time travel).

They exist for tests and demos of a node run as a separate process, and are mounted only on a node configured
with the embedded chain (``api/app.py``): elsewhere they are unknown paths (404). The embedded chain is a dev
chain in the data dir with a test token, so nothing of value is at stake, but a request must still never break
the chain or the node: a travel beyond :data:`MAX_TRAVEL` is refused. Requesting storage is the real client
route, ``POST /storage/request/{cid}`` (``routes/storage.py``), paid by the node's own account.
"""

from __future__ import annotations

import structlog
from fastapi import APIRouter
from pydantic import Field

from codex_node.api.schemas import CamelModel, StrictBody, Uint64, error_responses
from codex_node.api.services import DevChainDep
from codex_node.errors import ValidationError

log = structlog.get_logger(__name__)

router = APIRouter(tags=["Dev chain"], include_in_schema=False)

MAX_TRAVEL = 100 * 365 * 24 * 3600
"""The furthest a travel may jump past the latest block (100 years): the chain's timestamps and every deadline
the contract derives from them (``uint64``) keep their headroom, so the chain goes on working after it."""


class ChainHead(CamelModel):
    block: int = Field(description="Number of the latest block")
    timestamp: int = Field(description="Its timestamp (Unix seconds): the node's on-chain now")


class ChainTravel(StrictBody):
    timestamp: Uint64 = Field(description="Unix seconds, later than the latest block and at most 100 years later")


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
