"""Peer routes under ``/api/codex/v1``: the node's identity and record, connecting to a peer, peer exchange, "have".

``/peerid``, ``/spr``, ``/peers`` and ``/have`` are peer-facing: they need no ``--api-token`` (listed in
``api/access.py``) and serve only the node's public identity, signed records and which content-addressed blocks
it holds. ``/connect/{peerId}`` is the operator's and needs the token like the rest of the API.
``/peerid`` and ``/spr`` answer text, or JSON when the request's ``Accept`` prefers ``application/json``
(as nim-codex). Every input is bounded: at most 64 CIDs per "have", one record per exchange.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import Field

from codex_node.api.errors import error_response
from codex_node.api.schemas import CamelModel, error_responses
from codex_node.api.services import PeersDep, RepoDep
from codex_node.data.cid import parse_cid
from codex_node.errors import InvalidInputError, PeerError
from codex_node.peers.identity import PEER_ID_MAX_TEXT
from codex_node.peers.record import MAX_TEXT
from codex_node.peers.wire import EXCHANGE_LIMIT, HAVE_LIMIT

router = APIRouter(tags=["Node"])


class PeerIdAnswer(CamelModel):
    id: str = Field(description="The node's peer id (libp2p style, 12D3KooW…)")


class SprAnswer(CamelModel):
    spr: str = Field(description="The node's signed peer record (spr:…; docs/network.md)")


class PeerList(CamelModel):
    peers: list[str] = Field(
        description=f"Signed records (spr:…) of peers this node reached itself, at most {EXCHANGE_LIMIT}"
    )


class HaveAnswer(CamelModel):
    have: list[str] = Field(description="The CIDs asked for that this node holds")


def _text_or_json(text_schema: str, model: type[CamelModel]) -> dict[int | str, dict[str, Any]]:
    return {
        200: {
            "description": text_schema,
            "content": {
                "text/plain": {"schema": {"type": "string"}},
                "application/json": {"schema": model.model_json_schema()},
            },
        }
    }


_CONNECTED: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Connected"}
}


def wants_json(accept: str | None) -> bool:
    """Whether ``Accept`` names ``application/json`` before ``text/plain`` (no preference: text, as nim-codex)."""
    for item in (accept or "").split(","):
        media = item.split(";")[0].strip().lower()
        if media == "application/json":
            return True
        if media == "text/plain":
            return False
    return False


@router.get(
    "/peerid",
    summary="The node's peer id (text, or JSON {id}); no token needed",
    response_class=PlainTextResponse,
    responses=_text_or_json("The peer id", PeerIdAnswer),
)
async def peer_id(peers: PeersDep, request: Request) -> Response:
    if wants_json(request.headers.get("accept")):
        return JSONResponse(PeerIdAnswer(id=peers.peer_id).model_dump())
    return PlainTextResponse(peers.peer_id)


@router.get(
    "/spr",
    summary="The node's signed peer record (text, or JSON {spr}); no token needed",
    response_class=PlainTextResponse,
    responses=_text_or_json("The record", SprAnswer)
    # Descriptions only: the app gives error answers the JSON error body (a model here would be text/plain).
    | {503: {"description": "The node has no URL to announce (its API listens on 0.0.0.0: --api-announce-url)"}},
)
async def spr(peers: PeersDep, request: Request) -> Response:
    record = peers.record
    if record is None:
        return error_response(
            503, "this node has no peer record: its API listens on the any-address; start it with --api-announce-url"
        )
    if wants_json(request.headers.get("accept")):
        return JSONResponse(SprAnswer(spr=record.text).model_dump())
    return PlainTextResponse(record.text)


@router.get(
    "/connect/{peerId}",
    summary="Reach a peer at the given API URLs (or its known ones) and keep its record",
    response_class=PlainTextResponse,
    responses=_CONNECTED
    | {400: {"description": "Malformed peer id or address, or the peer was not found at any address"}},
)
async def connect(
    peers: PeersDep,
    peer_id: Annotated[str, Path(alias="peerId", max_length=PEER_ID_MAX_TEXT)],
    addrs: Annotated[
        list[str] | None, Query(description="API URLs of the peer (http://host:port[/api/codex/v1]); at most 8")
    ] = None,
) -> PlainTextResponse:
    try:
        await peers.connect(peer_id, addrs or [])
    except PeerError as e:
        raise InvalidInputError(str(e)) from None
    return PlainTextResponse("Successfully connected to peer")


@router.get(
    "/peers",
    summary="Peer exchange: signed records of the peers this node reached itself; no token needed",
    responses=error_responses(400, s400="The caller's own record (spr) does not verify"),
)
async def exchange(
    peers: PeersDep,
    spr: Annotated[
        str | None,
        Query(max_length=MAX_TEXT, description="The caller's own signed record, so this node learns it too"),
    ] = None,
) -> PeerList:
    if spr is not None:
        peers.learn(spr)  # a record that does not verify is a PeerRecordError: 400
    return PeerList(peers=[r.text for r in peers.share(EXCHANGE_LIMIT)])


@router.get(
    "/have",
    summary="Which of these CIDs this node holds (content-addressed: no token needed)",
    responses=error_responses(400, s400="Not a CID, or more than 64 CIDs"),
)
async def have(
    repo: RepoDep,
    cid: Annotated[list[str], Query(description=f"A CID to look up (repeatable, at most {HAVE_LIMIT})")],
) -> HaveAnswer:
    if len(cid) > HAVE_LIMIT:
        raise InvalidInputError(f"ask about at most {HAVE_LIMIT} CIDs at once")
    parsed = [parse_cid(text) for text in cid]  # InvalidCidError: 400
    return HaveAnswer(have=[c.text for c in dict.fromkeys(parsed) if repo.has_block(c)])
