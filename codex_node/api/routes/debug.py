"""Debug routes under ``/api/codex/v1``: node information and the live log level (nim-codex paths), and the
embedded chain's dev controls.

Reads ``request.app.state.node`` (a :class:`NodeView`, ``None`` in apps built without a node) and
``request.app.state.config``.

Dev-only chain routes (not in nim-codex): ``/debug/chain`` (the head), ``/debug/chain/travel`` (mine a block at a
later timestamp) and ``/debug/chain/request/{cid}`` (post a storage request for a dataset this node holds, paid
by the embedded chain's funded dev *client* account). They act on ``app.state.embedded_chain`` and exist for
tests and demos of a node run as a separate process (time travel, a client on an in-process chain). The embedded
chain is a dev chain in the data dir with a test token, so nothing of value is at stake; on a remote chain they
answer 404 and without a marketplace 503. They are not a client API: requesting storage as a client is
``POST /storage/request/{cid}`` (the purchasing side, not built yet).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Annotated, Protocol

import structlog
from fastapi import APIRouter, Path, Query, Request
from pydantic import Field

from codex_node import buildinfo, logutils
from codex_node.api.routes.sales import StorageRequest, UInt256
from codex_node.api.schemas import (
    CamelModel,
    ChainInfo,
    CodexInfo,
    DebugInfo,
    LocalNode,
    LogLevel,
    Table,
    error_responses,
)
from codex_node.config import DEFAULTS, NodeConfig
from codex_node.data.cid import parse_cid
from codex_node.errors import (
    ContractRevertError,
    InvalidInputError,
    MarketUnavailableError,
    NotFoundError,
    ProofDataError,
    ValidationError,
)
from codex_node.market.types import Ask
from codex_node.market.types import Request as StorageRequestRecord
from codex_node.proofs.slotdata import dataset_commitment
from codex_node.sales.accounting import check_books

if TYPE_CHECKING:
    from codex_node.market.embedded import EmbeddedChain
    from codex_node.market.onchain import OnChainMarket
    from codex_node.sales.reservations import Reservations
    from codex_node.stores.repostore import RepoStore

log = structlog.get_logger(__name__)

router = APIRouter(tags=["Debug"])


class NodeView(Protocol):
    """What the debug routes read from the running node."""

    @property
    def node_id(self) -> str: ...

    @property
    def api_url(self) -> str | None: ...

    @property
    def chain(self) -> ChainInfo | None: ...


@router.get("/debug/info", summary="Node identity, addresses, data dir, build and chain")
async def debug_info(request: Request) -> DebugInfo:
    node: NodeView | None = request.app.state.node
    config: NodeConfig = request.app.state.config or DEFAULTS
    node_id = node.node_id if node is not None else ""
    url = node.api_url if node is not None else None
    addrs = [url] if url else []
    return DebugInfo(
        id=node_id,
        addrs=addrs,
        repo=str(config.data_dir),
        spr="",
        announce_addresses=addrs,
        table=Table(
            local_node=LocalNode(node_id=node_id, peer_id=node_id, record="", address=url or "", seen=False),
            nodes=[],
        ),
        codex=CodexInfo(version=buildinfo.version(), revision=buildinfo.revision(), contracts=buildinfo.contracts()),
        marketplace=config.chain_mode,
        chain=node.chain if node is not None else None,
    )


@router.post(
    "/debug/chronicles/loglevel",
    summary="Change the log level of the running node",
    responses=error_responses(400, s400="Unknown log level"),
)
async def set_log_level(
    level: Annotated[str, Query(description="trace, debug, info, notice, warn, error or fatal")],
) -> LogLevel:
    try:
        name = logutils.set_level(level)
    except ValueError as e:
        raise InvalidInputError(str(e)) from None
    log.info("log level changed", level=name)
    return LogLevel(level=name)


# --- the embedded chain's dev controls -------------------------------------------------------------------------


class ChainHead(CamelModel):
    block: int = Field(description="Number of the latest block")
    timestamp: int = Field(description="Its timestamp (Unix seconds): the node's on-chain now")


class ChainTravel(CamelModel):
    timestamp: int = Field(gt=0, description="Unix seconds, later than the latest block")


class DevStorageRequest(CamelModel):
    """A storage request over a dataset this node holds; the slot size and content come from the dataset."""

    slots: int = Field(ge=1)
    duration: int = Field(gt=0, description="Seconds")
    expiry: int = Field(gt=0, description="Seconds after posting until the request is cancelled if unfilled")
    price_per_byte_per_second: UInt256
    proof_probability: UInt256
    collateral_per_byte: UInt256
    max_slot_loss: int = Field(0, ge=0)


def _embedded(request: Request) -> EmbeddedChain:
    state = request.app.state
    if getattr(state, "market", None) is None:
        raise MarketUnavailableError("this node runs without a marketplace")
    chain: EmbeddedChain | None = getattr(state, "embedded_chain", None)
    if chain is None:
        raise NotFoundError("this node runs a remote chain: the chain dev routes need the embedded chain")
    return chain


def _dev_client(request: Request, market: OnChainMarket, chain: EmbeddedChain) -> OnChainMarket:
    """The client account's view of the market, one per running market: one sender keeps its nonces in order."""
    state = request.app.state
    kept: tuple[OnChainMarket, OnChainMarket] | None = getattr(state, "dev_client", None)
    if kept is None or kept[0] is not market:
        kept = (market, market.for_account(chain.client_account))
        state.dev_client = kept
    return kept[1]


async def _head(chain: EmbeddedChain) -> ChainHead:
    timestamp = await chain.latest_timestamp()
    return ChainHead(block=chain.head, timestamp=timestamp)


_CHAIN_ERRORS = error_responses(404, 503, s404="The node runs a remote chain", s503="The node runs no marketplace")


@router.get("/debug/chain", summary="Dev: the embedded chain's latest block", responses=_CHAIN_ERRORS)
async def chain_head(request: Request) -> ChainHead:
    return await _head(_embedded(request))


@router.post(
    "/debug/chain/travel",
    summary="Dev: mine a block of the embedded chain at a later timestamp (time travel)",
    responses={**_CHAIN_ERRORS, **error_responses(422, s422="Not later than the latest block")},
)
async def chain_travel(request: Request, body: ChainTravel) -> ChainHead:
    chain = _embedded(request)
    latest = await chain.latest_timestamp()
    if body.timestamp <= latest:
        raise ValidationError(f"timestamp {body.timestamp} is not later than the latest block's ({latest})")
    await chain.travel_to(body.timestamp)
    market: OnChainMarket = request.app.state.market
    market.events.wake()  # the node sees the jump now, not at its next poll
    log.info("embedded chain travelled", timestamp=body.timestamp, block=chain.head)
    return await _head(chain)


@router.post(
    "/debug/chain/request/{cid}",
    summary="Dev: the embedded chain's client account requests storage of a dataset this node holds",
    responses={
        **_CHAIN_ERRORS,
        **error_responses(
            400,
            404,
            422,
            s400="Malformed CID or body",
            s404="The dataset is not here, or the node runs a remote chain",
            s422="The dataset cannot be cut into the slots, or the marketplace refused the request",
        ),
    },
)
async def chain_request(
    request: Request, cid: Annotated[str, Path(description="The dataset's manifest CID")], body: DevStorageRequest
) -> StorageRequest:
    chain = _embedded(request)
    market: OnChainMarket = request.app.state.market
    repo: RepoStore = request.app.state.repo
    dataset = parse_cid(cid)
    if not repo.has_block(dataset):
        raise NotFoundError(f"dataset {cid} is not stored on this node")
    try:
        commitment = await dataset_commitment(repo, dataset, body.slots)
    except ProofDataError as e:
        raise ValidationError(str(e)) from e
    client = _dev_client(request, market, chain)
    storage_request = StorageRequestRecord(
        client=await client.get_signer(),
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
        await client.request_storage(storage_request)
    except ContractRevertError as e:
        raise ValidationError(f"the marketplace refused the request: {e}") from e
    log.info("dev storage request posted", request_id=storage_request.id.hex(), cid=cid, slots=body.slots)
    return StorageRequest.of(storage_request)


# --- the books ------------------------------------------------------------------------------------------------------


class BooksCheck(CamelModel):
    balanced: bool = Field(description="True when no rule of the books is broken")
    problems: list[str] = Field(description="Each broken rule, naming the record and the numbers")


@router.get(
    "/debug/books",
    summary="Check the availability, reservation and quota books (ARCHITECTURE.md rule 1)",
    responses=error_responses(503, s503="The node runs without a marketplace"),
)
async def debug_books(request: Request) -> BooksCheck:
    """What ``sales.accounting.check_books`` finds on the books as persisted now; ``problems`` is empty when
    they balance. The sum of the stored blocks' sizes is not recounted here (``quota.used`` is taken as it is)."""
    state = request.app.state
    reservations: Reservations | None = getattr(state, "reservations", None)
    repo: RepoStore | None = getattr(state, "repo", None)
    if reservations is None or repo is None:
        raise MarketUnavailableError("this node runs without a marketplace: it keeps no sales books")
    quota = repo.quota()
    problems = check_books(
        await reservations.availabilities(),
        await reservations.all_reservations(),
        reserved=quota.reserved,
        used=quota.used,
        quota_max=quota.max,
    )
    return BooksCheck(balanced=not problems, problems=problems)
