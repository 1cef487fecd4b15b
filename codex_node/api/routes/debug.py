"""Debug routes under ``/api/codex/v1``: node information and the live log level (nim-codex paths).

They read the node (a :class:`~codex_node.api.services.NodeView`, ``None`` in apps built without a node) and its
config from the app's services. The embedded chain's dev routes live in ``devchain.py``.
"""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import APIRouter, Query
from pydantic import Field

from codex_node import buildinfo, logutils
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
from codex_node.api.services import NodeView, RepoDep, ReservationsDep, ServicesDep
from codex_node.errors import InvalidInputError
from codex_node.sales.accounting import check_books

log = structlog.get_logger(__name__)

router = APIRouter(tags=["Debug"])

MAX_TABLE_SHOWN = 200  # peers listed in /debug/info's table at most (best first)


@router.get("/debug/info", summary="Node identity, addresses, data dir, build and chain")
async def debug_info(services: ServicesDep) -> DebugInfo:
    node, config, peers = services.node, services.config, services.peers
    node_id = node.node_id if node is not None else ""
    url = node.api_url if node is not None else None
    addrs = [url] if url else []
    peer_id = peers.peer_id if peers is not None else node_id
    record = peers.record if peers is not None else None
    spr = record.text if record is not None else ""
    known = [] if peers is None else peers.entries()[:MAX_TABLE_SHOWN]
    return DebugInfo(
        id=node_id,
        peer_id=peer_id if peers is not None else "",
        addrs=addrs,
        repo=str(config.data_dir),
        spr=spr,
        announce_addresses=list(record.urls) if record is not None else addrs,
        table=Table(
            local_node=LocalNode(node_id=node_id, peer_id=peer_id, record=spr, address=url or "", seen=False),
            nodes=[
                LocalNode(
                    node_id=e.peer_id,
                    peer_id=e.peer_id,
                    record=e.record.text,
                    address=e.record.urls[0],
                    seen=e.verified,
                )
                for e in known
            ],
        ),
        codex=CodexInfo(version=buildinfo.version(), revision=buildinfo.revision(), contracts=buildinfo.contracts()),
        marketplace=config.chain_mode,
        chain=_chain_info(node),
    )


def _chain_info(node: NodeView | None) -> ChainInfo | None:
    """The wire form of the node's chain (a domain value of the market)."""
    if node is None or node.chain is None:
        return None
    return ChainInfo.model_validate(node.chain, from_attributes=True)


@router.post(
    "/debug/chronicles/loglevel",
    summary="Change the log level of the running node",
    responses=error_responses(400, s400="Unknown log level"),
)
async def set_log_level(
    level: Annotated[str, Query(description="debug, info, warning, error or critical (or trace, notice, warn, fatal)")],
) -> LogLevel:
    try:
        name = logutils.change_level(level)  # logs "log level changed" with the old and new level
    except ValueError as e:
        raise InvalidInputError(str(e)) from None
    return LogLevel(level=name)


# --- the books ------------------------------------------------------------------------------------------------------


class BooksCheck(CamelModel):
    balanced: bool = Field(description="True when no rule of the books is broken")
    problems: list[str] = Field(description="Each broken rule, naming the record and the numbers")


@router.get(
    "/debug/books",
    summary="Check the availability, reservation and quota books (ARCHITECTURE.md rule 1)",
    responses=error_responses(503, s503="The node runs without a marketplace"),
)
async def debug_books(reservations: ReservationsDep, repo: RepoDep) -> BooksCheck:
    """What ``sales.accounting.check_books`` finds on the books as persisted now; ``problems`` is empty when
    they balance. The sum of the stored blocks' sizes is not recounted here (``quota.used`` is taken as it is)."""
    quota = repo.quota()
    problems = check_books(
        await reservations.availabilities(),
        await reservations.all_reservations(),
        reserved=quota.reserved,
        used=quota.used,
        quota_max=quota.max,
    )
    return BooksCheck(balanced=not problems, problems=problems)
