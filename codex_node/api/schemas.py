"""Pieces shared by the routers: the camelCase models, strict request bodies, the error body and its OpenAPI
description, the debug schemas.

JSON field names are camelCase as in nim-codex's API (``announceAddresses``, ``quotaMaxBytes``); Python names are
snake_case (``CamelModel`` maps them).

**Request bodies are strict** (:class:`StrictBody`, :func:`strict_json_types`): a field must have its JSON type —
an integer is a JSON integer (``true`` and ``1.0`` are not), a boolean is ``true``/``false`` (``"yes"`` is not),
a token amount is a JSON integer or a string of decimal digits; every integer is bounded by what the contract and
the node can hold; a field the body does not declare is refused. How a refusal is answered (``api/errors.py``):
**400** when the body is malformed — not JSON, a required field missing, a value of the wrong JSON type;
**422** when it is well-formed but invalid — a value out of its range, an unknown field, or a broken rule.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import re
import textwrap
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, WithJsonSchema, field_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from codex_node.sales.availability import UINT64_MAX, UINT256_MAX, Kind, field_kinds

_DECIMAL = re.compile(r"[0-9]+")
_AMOUNT_DIGITS = len(str(UINT256_MAX))  # 78


class CamelModel(BaseModel):
    """Frozen model whose JSON names are the camelCase of its field names."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


# --- strict request bodies -----------------------------------------------------------------------------------------


def _json_integer(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PydanticCustomError("int_type", "Input should be a JSON integer")
    return value


def _json_boolean(value: Any) -> Any:
    if not isinstance(value, bool):
        raise PydanticCustomError("bool_type", "Input should be true or false")
    return value


def _json_amount(value: Any) -> Any:
    if isinstance(value, str):
        if not _DECIMAL.fullmatch(value):
            raise PydanticCustomError("int_parsing", "Input should be a string of decimal digits")
        if len(value) > _AMOUNT_DIGITS:  # well-formed but too large: the bound (422), without a huge int()
            raise PydanticCustomError("less_than_equal", f"Input should be less than or equal to {UINT256_MAX}")
        return int(value)
    return _json_integer(value)


_CHECKS: dict[Kind, Callable[[Any], Any]] = {
    Kind.INT: _json_integer,
    Kind.BOOL: _json_boolean,
    Kind.DECIMAL: _json_amount,
}

AMOUNT_JSON_SCHEMA: dict[str, Any] = {
    "anyOf": [{"type": "string", "pattern": "^[0-9]+$"}, {"type": "integer", "minimum": 0}],
    "description": "A token amount (uint256): a string of decimal digits, or a JSON integer",
}

BODY_CONFIG = ConfigDict(alias_generator=to_camel, validate_by_name=True, extra="forbid")
"""The pydantic config of a request body built on a domain record (``pydantic.dataclasses.dataclass``)."""


def strict_json_types(record: type) -> Any:
    """A validator for a request body built on the domain ``record``: each field must have its JSON type
    (:class:`~codex_node.sales.availability.Kind`); ``None`` passes where the field allows it.

    Use it in the body's class: ``_json_types = strict_json_types(AvailabilityTerms)``."""
    kinds = field_kinds(record)

    def check(_cls: type, value: Any, info: ValidationInfo) -> Any:
        if value is None or info.field_name is None:
            return value
        return _CHECKS[kinds[info.field_name]](value)

    return field_validator("*", mode="before")(classmethod(check))


def record_json_schema(record: type) -> Callable[[dict[str, Any]], None]:
    """``json_schema_extra`` for a model built on the domain ``record``: each field is described by the docstring
    it has on the record, and a token amount (in a request body) is a decimal string or an integer."""
    docs = attribute_docs(record)
    kinds = field_kinds(record)

    def patch(schema: dict[str, Any]) -> None:
        for name, kind in kinds.items():
            prop = schema["properties"].get(to_camel(name))
            if prop is None:
                continue
            if kind is Kind.DECIMAL and prop.get("type") != "string":  # a body's amount; a response's is a string
                prop.clear()
                prop.update(AMOUNT_JSON_SCHEMA)
            if name in docs:
                prop["description"] = docs[name]

    return patch


def attribute_docs(cls: type) -> dict[str, str]:
    """The docstrings under the field declarations of ``cls`` and its bases (the nearest class wins)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue  # a class without source (builtins)
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, after in itertools.pairwise(body):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


class StrictBody(CamelModel):
    """A request body declared here (not built on a domain record): strict JSON types, unknown fields refused."""

    model_config = ConfigDict(strict=True, extra="forbid")


Uint64 = Annotated[int, Field(ge=0, le=UINT64_MAX)]
"""An integer the contract holds as ``uint64`` (sizes, durations, timestamps, counts)."""
PositiveUint64 = Annotated[int, Field(ge=1, le=UINT64_MAX)]
"""A ``uint64`` the contract refuses when 0."""
UInt256 = Annotated[int, BeforeValidator(_json_amount), Field(ge=0, le=UINT256_MAX), WithJsonSchema(AMOUNT_JSON_SCHEMA)]
"""A token amount (``uint256``): a string of decimal digits or a JSON integer."""
PositiveUInt256 = Annotated[
    int, BeforeValidator(_json_amount), Field(ge=1, le=UINT256_MAX), WithJsonSchema(AMOUNT_JSON_SCHEMA)
]
"""A token amount the contract refuses when 0."""


class ErrorBody(BaseModel):
    """Body of every error answer (see ``api/errors.py``)."""

    error: str


_DEFAULT_DESCRIPTIONS = {
    400: "Malformed request (not JSON, a missing field, a value of the wrong JSON type, a malformed CID)",
    404: "Not found",
    422: "Well-formed but refused (a value out of bounds, an unknown field, a broken rule, not enough quota)",
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

    ``addrs`` is the URL the API serves at; ``announceAddresses`` the API URLs the node's signed record (``spr``)
    tells peers; the table's ``nodes`` are the peers it knows (``seen``: reached by this node itself).
    """

    id: str
    peer_id: str = ""
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
