"""Peer-facing block routes: blocks by CID, one at a time or batched (``blockexchange/wire.py``).

Both hand out only content-addressed bytes the asker verifies against the CID it asked for, so they are open
without the API token (``api/access.py``, :data:`~codex_node.api.access.OPEN_PEER_ROUTES`); they answer nothing
but stored blocks and "not here". A batch answer announces its length from the index before a block is read, and
reads each block where that lookup found it: a block deleted since is still sent if its bytes are still there
(bytes in a pack never change while it exists, ``docs/packs.md``), and a block whose bytes are gone or changed size
ends the answer early (the connection closes) rather than answering wrong bytes. They
count as downloads (``api/downloads.py``, ``--api-max-downloads``): a batch holds about three groups of
:data:`SERVE_READ_AHEAD` blocks, and its request names at most
:data:`~codex_node.blockexchange.wire.MAX_BATCH_CIDS` CIDs (the body is under the 256 KiB body limit).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, cast

import structlog
from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import Field

from codex_node.api.cutshort import AnswerCutShort
from codex_node.api.schemas import CamelModel
from codex_node.api.services import services_of
from codex_node.blockexchange.wire import HEADER_SIZE, MAX_BATCH_CIDS, MAX_FRAME_BYTES, MEDIA_TYPE, frame_into
from codex_node.data.cid import Cid, parse_cid
from codex_node.data.slots import BLOCK_SIZE
from codex_node.errors import CodexError
from codex_node.stores.blockmeta import BlockMeta
from codex_node.stores.repostore import RepoStore
from codex_node.utils.bufferpool import BufferPool

log = structlog.get_logger(__name__)

router = APIRouter(tags=["Blocks"], include_in_schema=False)
"""Not in ``openapi.yaml``: it is the Codex-compatible contract for clients, and these routes are the nodes' own
peer protocol (documented here and in ``blockexchange/wire.py``)."""

SERVE_READ_AHEAD = 32
"""Blocks of a batch read from the repo in one worker thread (2 MiB of 64 KiB blocks), the next group being read
while one is sent: a batch holds about three such groups (one read, one sent, one in the send buffer). 32 rather
than 16: the holder's CPU per 256 MiB served fell from 0.29 to 0.23 s of user time, and a download between two
nodes took 7 % less time (4 interleaved A/B rounds of 6 downloads); 64 measured no better than 32."""


class BlocksRequest(CamelModel):
    cids: list[str] = Field(max_length=MAX_BATCH_CIDS, description=f"At most {MAX_BATCH_CIDS} block CIDs")


def _repo(request: Request) -> RepoStore:
    return cast(RepoStore, services_of(request.app).repo)


@router.get(
    "/blocks/{cid}",
    response_class=Response,
    summary="One block by CID, for peers (open without the API token: the bytes are verifiable by their CID)",
    responses={
        200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
        400: {"description": "Malformed CID"},
        404: {"description": "Not stored on this node"},
    },
)
async def get_block(request: Request, cid: Annotated[str, Path(description="A block or manifest CID")]) -> Response:
    return Response(await _repo(request).get_block(parse_cid(cid)), media_type="application/octet-stream")


@router.post(
    "/blocks",
    response_class=StreamingResponse,
    summary="Many blocks by CID, framed, for peers (open without the API token: the bytes are verifiable)",
    description=(
        "Answers one frame per CID, in order: a status byte (0 found, 1 not here), a 4-byte big-endian length and "
        f"the block's bytes. Blocks over {MAX_FRAME_BYTES} bytes are answered 'not here' (ask for them alone)."
    ),
    responses={
        200: {"content": {MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}}},
        400: {"description": "Malformed body or CID"},
        422: {"description": f"More than {MAX_BATCH_CIDS} CIDs"},
    },
)
async def get_blocks(request: Request, body: BlocksRequest) -> StreamingResponse:
    cids = [parse_cid(text) for text in body.cids]  # all parsed before the answer starts: a bad one is a 400
    repo = _repo(request)
    # The answer's length is known from the index before a byte is read: sent with Content-Length, its body goes
    # to the socket as it is (chunked encoding would copy each group once more, and the asker parse chunk lines).
    metas = await asyncio.to_thread(repo.block_metas, cids)
    length = sum(HEADER_SIZE + (_served_size(meta) or 0) for meta in metas)
    return StreamingResponse(_frames(repo, cids, metas), media_type=MEDIA_TYPE, headers={"content-length": str(length)})


class _Changed(AnswerCutShort):
    """A block the answer's length counted is gone, moved to another size, or unreadable: the answer ends there
    (the connection closes; uvicorn does not log it as a crash, ``api/cutshort.py``)."""


_GROUP_BYTES = SERVE_READ_AHEAD * (HEADER_SIZE + BLOCK_SIZE)
_GROUPS = BufferPool(_GROUP_BYTES, 8, bytearray)
"""Group buffers: one is read into again once the server has sent it (nothing refers to it any more). 8 of them
(17 MiB at most) cover about three requests being answered at once; more allocate fresh buffers."""


def _read_group(repo: RepoStore, cids: list[Cid], metas: list[BlockMeta | None]) -> memoryview:
    """The frames of ``cids``, read in one worker thread, each as long as the index entries ``metas`` announced
    (``None``, or over :data:`MAX_FRAME_BYTES`: answered "not here"): the headers are written into one buffer and the
    blocks read straight into their places in it (no copy). :class:`_Changed` if a block no longer matches what was
    announced. Every byte of the buffer is written before it is handed out: a reused one holds no byte of the
    answer it served before."""
    sizes = [_served_size(meta) for meta in metas]
    length = sum(HEADER_SIZE + (size or 0) for size in sizes)
    if length <= _GROUP_BYTES:
        owner = _GROUPS.take()
        buffer = memoryview(owner)[:length]
        _GROUPS.give(owner)  # taken again only once the views of it handed out here are gone
    else:
        buffer = memoryview(bytearray(length))
    wanted: list[Cid] = []
    dests: list[memoryview] = []
    known: list[BlockMeta | None] = []
    at = 0
    for cid, size, meta in zip(cids, sizes, metas, strict=True):
        frame_into(buffer, at, size)
        at += HEADER_SIZE
        if size is not None:
            wanted.append(cid)
            dests.append(buffer[at : at + size])
            known.append(meta)
            at += size
    try:
        read = repo.read_blocks_into(wanted, dests, metas=known)
    except CodexError as e:  # a block gone bad on disk is not served; the asker goes to another peer
        raise _Changed(f"a block could not be read: {e!r}") from e
    for cid, ok in zip(wanted, read, strict=True):
        if not ok:
            raise _Changed(f"block {cid} was deleted or changed while it was served")
    return buffer


def _served_size(meta: BlockMeta | None) -> int | None:
    return None if meta is None or meta.size > MAX_FRAME_BYTES else meta.size


async def _frames(repo: RepoStore, cids: list[Cid], metas: list[BlockMeta | None]) -> AsyncIterator[memoryview]:
    """The answer group by group (:data:`SERVE_READ_AHEAD` blocks), the next group read while one is sent. A block
    that changed since the length was announced ends the answer early (the connection is closed): the asker takes
    the answer for a failed one and asks another peer."""
    groups = [
        (cids[i : i + SERVE_READ_AHEAD], metas[i : i + SERVE_READ_AHEAD]) for i in range(0, len(cids), SERVE_READ_AHEAD)
    ]
    ahead: asyncio.Future[memoryview] | None = None
    try:
        for i in range(len(groups)):
            current = ahead or asyncio.ensure_future(asyncio.to_thread(_read_group, repo, *groups[i]))
            ahead = None
            if i + 1 < len(groups):
                ahead = asyncio.ensure_future(asyncio.to_thread(_read_group, repo, *groups[i + 1]))
            try:
                yield await current
            except _Changed as e:
                log.warning("blocks not served", first=groups[i][0][0].text, error=str(e))
                raise
    finally:
        if ahead is not None and not ahead.done():
            await asyncio.wait([ahead])  # a thread cannot be cancelled: let it finish
