"""The one place where errors become HTTP responses.

Every error answer has the body ``{"error": "<one line>"}`` (``application/json``). nim-codex answers errors with
the bare message as text; Codex clients read error bodies as text and show them, so they still show the message,
while our own client and scripts get one machine-readable shape for every error.

Status codes by error type (the first match wins, so a ``BlockNotFoundError`` — a ``StoreError`` and a
``NotFoundError`` — is a 404):

=================================================================  ======
``NotFoundError`` (unknown CID, availability, slot, purchase …)    404
``DatasetInUseError`` (deleting data that active sales hold)       409
``ValidationError`` (well-formed input that breaks a rule)         422
``InvalidInputError`` incl. ``InvalidCidError`` (malformed input)  400
``QuotaNotEnoughError``                                            422
``DiskFullError`` (the data dir's disk is full)                    507
``BytesOutOfBoundsError``/``UntilOutOfBoundsError``/collateral     422
``MarketUnavailableError`` (running with ``--no-marketplace``)     503
``NetworkUnavailableError`` (no block exchange on this node)       503
any other ``CodexError``                                           500
any other exception (a bug): ``{"error": "internal error"}``       500
=================================================================  ======

Requests FastAPI itself refuses follow the same rule (documented in ``openapi.yaml``): **malformed → 400** (not
JSON, a required field or parameter missing, a value of the wrong JSON type: ``true`` or ``1e30`` for an integer,
``"yes"`` for a boolean, ``"1e30"`` for a token amount); **well-formed but invalid → 422** (a value outside its
bounds, ``2**64`` for a ``uint64``; a field the body does not declare, named in the message; a broken rule). When
a body is both, 400 wins: it has to be fixed first. HTTP errors Starlette raises (unknown path 404, wrong method
405) get the same body shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from codex_node.errors import (
    BytesOutOfBoundsError,
    CodexError,
    CollateralOutOfBoundsError,
    DatasetInUseError,
    DiskFullError,
    InvalidInputError,
    MarketUnavailableError,
    NetworkUnavailableError,
    NotFoundError,
    QuotaNotEnoughError,
    UntilOutOfBoundsError,
    ValidationError,
)

log = structlog.get_logger(__name__)

_STATUS: tuple[tuple[type[CodexError], int], ...] = (
    (NotFoundError, 404),
    (DatasetInUseError, 409),
    (ValidationError, 422),
    (InvalidInputError, 400),
    (QuotaNotEnoughError, 422),
    (DiskFullError, 507),
    (BytesOutOfBoundsError, 422),
    (UntilOutOfBoundsError, 422),
    (CollateralOutOfBoundsError, 422),
    (MarketUnavailableError, 503),
    (NetworkUnavailableError, 503),
)

# pydantic error types that mean "malformed" (400); any other type is well-formed but invalid (422).
_MALFORMED_SUFFIXES = ("_type", "_parsing")
_MALFORMED_TYPES = frozenset({"json_invalid", "missing", "missing_argument", "model_attributes_type"})
# A field the body does not declare (models say extra_forbidden, dataclasses unexpected_keyword_argument): 422.
_UNKNOWN_FIELD_TYPES = frozenset({"extra_forbidden", "unexpected_keyword_argument"})


def status_for(error: CodexError) -> int:
    for kind, status in _STATUS:
        if isinstance(error, kind):
            return status
    return 500


def one_line(message: str) -> str:
    """Messages become one line: clients print them, and log lines must not be split."""
    return " ".join(message.split())


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": one_line(message)}, status_code=status)


def _is_malformed(error: dict[str, Any]) -> bool:
    kind = str(error.get("type", ""))
    if kind in _UNKNOWN_FIELD_TYPES:
        return False
    return kind in _MALFORMED_TYPES or kind.endswith(_MALFORMED_SUFFIXES)


def _message(error: dict[str, Any]) -> str:
    if error.get("type") in _UNKNOWN_FIELD_TYPES:
        return "unknown field"
    return str(error.get("msg", "invalid"))


def describe_validation(errors: Sequence[dict[str, Any]]) -> tuple[int, str]:
    """Status and one-line message for FastAPI's request validation errors."""
    status = 400 if any(_is_malformed(e) for e in errors) else 422
    parts = []
    for e in errors:
        loc = ".".join(str(p) for p in e.get("loc", ()))
        parts.append(f"{loc}: {_message(e)}" if loc else _message(e))
    return status, "invalid request: " + "; ".join(parts)


async def _codex_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CodexError)
    status = status_for(exc)
    if status == 500:
        log.error("request failed", method=request.method, path=request.url.path, error=repr(exc))
    elif status == 503:  # the node runs without that part (--no-marketplace): the operator's choice, not a fault
        log.debug("request refused: part not running", method=request.method, path=request.url.path)
    return error_response(status, str(exc) or type(exc).__name__)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    status, message = describe_validation(exc.errors())
    return error_response(status, message)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    response = error_response(exc.status_code, str(exc.detail))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _unexpected_error(_request: Request, _exc: Exception) -> JSONResponse:
    # Starlette re-raises the exception after sending this answer, so the server logs it with its traceback.
    return error_response(500, "internal error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(Exception, _unexpected_error)
    app.add_exception_handler(CodexError, _codex_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
