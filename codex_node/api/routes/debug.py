"""Debug routes under ``/api/codex/v1``: node information and the live log level (nim-codex paths).

Reads ``request.app.state.node`` (a :class:`NodeView`, ``None`` in apps built without a node) and
``request.app.state.config``.
"""

from __future__ import annotations

from typing import Annotated, Protocol

import structlog
from fastapi import APIRouter, Query, Request

from codex_node import buildinfo, logutils
from codex_node.api.schemas import ChainInfo, CodexInfo, DebugInfo, LocalNode, LogLevel, Table, error_responses
from codex_node.config import DEFAULTS, NodeConfig
from codex_node.errors import InvalidInputError

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
