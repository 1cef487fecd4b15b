"""Response pieces shared by the routers: the error body, its OpenAPI description, the debug schemas.

JSON field names are camelCase as in nim-codex's API (``announceAddresses``, ``quotaMaxBytes``); Python names are
snake_case (``CamelModel`` maps them).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class CamelModel(BaseModel):
    """Frozen model whose JSON names are the camelCase of its field names."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class ErrorBody(BaseModel):
    """Body of every error answer (see ``api/errors.py``)."""

    error: str


_DEFAULT_DESCRIPTIONS = {
    400: "Malformed request (bad JSON, a missing or mistyped field, a malformed CID)",
    404: "Not found",
    422: "Well-formed but refused (breaks a rule, or not enough quota)",
    500: "Internal error",
    503: "The node runs without a marketplace",
}


def error_responses(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries for error statuses, with the shared body schema.

    ``error_responses(400, 404, s404="Unknown availability")`` — a description keyword is ``s`` + the status.
    """
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        out[status] = {
            "model": ErrorBody,
            "description": descriptions.get(f"s{status}", _DEFAULT_DESCRIPTIONS.get(status, "Error")),
        }
    return out


# --- debug ---------------------------------------------------------------------------------------------------


class CodexInfo(CamelModel):
    version: str
    revision: str
    contracts: str


class LocalNode(CamelModel):
    node_id: str
    peer_id: str
    record: str
    address: str
    seen: bool


class Table(CamelModel):
    local_node: LocalNode
    nodes: list[LocalNode]


class ChainInfo(CamelModel):
    """The chain the node works with (set by the chain layer; absent with ``--no-marketplace``)."""

    chain_id: int
    marketplace_address: str
    token_address: str
    node_address: str


class DebugInfo(CamelModel):
    """nim-codex's ``DebugInfo`` shape plus ``marketplace`` (``embedded``/``remote``/``none``) and ``chain``.

    ``addrs`` are the API URLs peers fetch blocks from; ``spr`` and the table's ``nodes`` stay empty (no DHT).
    """

    id: str
    addrs: list[str]
    repo: str
    spr: str
    announce_addresses: list[str]
    table: Table
    codex: CodexInfo
    marketplace: str
    chain: ChainInfo | None = None


class LogLevel(BaseModel):
    level: str
