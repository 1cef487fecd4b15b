"""Data routes under ``/api/codex/v1``: upload, list, download, delete datasets and blocks; storage space.

Paths and schemas follow nim-codex's REST API (``codex-anchor.md`` §6), with ``/data/{cid}/exists`` answering
``{"has": bool}`` as its spec says (nim-codex's code answers ``{"<cid>": bool}``). Handlers only translate HTTP
to store calls: they raise errors from ``codex_node.errors`` and the app's one exception handler turns them into
responses (malformed CID → 400, unknown CID → 404, quota or invalid header → 422).

The store is the app's services' repo (``api/services.py``; a :class:`~codex_node.stores.repostore.RepoStore`).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from email.message import Message
from typing import Annotated, cast
from urllib.parse import quote

import structlog
from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import PlainTextResponse, StreamingResponse
from starlette.requests import ClientDisconnect

from codex_node.api.schemas import CamelModel as _Camel
from codex_node.api.services import services_of
from codex_node.api.zerocopy import ZeroCopyResponse, offers_zerocopy
from codex_node.data.cid import Cid, parse_cid
from codex_node.data.manifest import Manifest, ManifestInfo
from codex_node.errors import DatasetInUseError, QuotaNotEnoughError, ValidationError
from codex_node.stores import spans
from codex_node.stores.blockfiles import Spans
from codex_node.stores.datasets import store_dataset
from codex_node.stores.repostore import RepoStore, in_thread

log = structlog.get_logger(__name__)

router = APIRouter(tags=["Data"])

_TOKEN = r"[A-Za-z0-9!#$&^_.+-]+"
_MIMETYPE = re.compile(rf"{_TOKEN}/{_TOKEN}(\s*;\s*{_TOKEN}=(\"[^\"\\]*\"|{_TOKEN}))*")
_MAX_HEADER_VALUE = 255

DOWNLOAD_READ_BLOCKS = 8
"""Blocks a download reads at a time (512 KiB), one such chunk being sent while the next is read. A client that
stops reading holds about three such chunks (the third is the copy in the transport's send buffer);
``api/downloads.py`` caps how many downloads there are."""

CidPath = Annotated[str, Path(description="A CID: a manifest (the dataset) or a single block")]


class ManifestItem(_Camel):
    tree_cid: str
    dataset_size: int
    block_size: int
    protected: bool
    filename: str | None = None
    mimetype: str | None = None

    @classmethod
    def of(cls, info: ManifestInfo) -> ManifestItem:
        return cls(
            tree_cid=info.tree_cid.text,
            dataset_size=info.dataset_size,
            block_size=info.block_size,
            protected=info.protected,
            filename=info.filename,
            mimetype=info.mimetype,
        )


class DataItem(_Camel):
    cid: str
    manifest: ManifestItem


class DataList(_Camel):
    content: list[DataItem]


class Space(_Camel):
    total_blocks: int
    quota_max_bytes: int
    quota_used_bytes: int
    quota_reserved_bytes: int


class Exists(_Camel):
    has: bool


def _repo(request: Request) -> RepoStore:
    return cast(RepoStore, services_of(request.app).repo)  # a node serves only once its repo runs


def _mimetype(request: Request) -> str | None:
    value = request.headers.get("content-type")
    if value is None:
        return None
    value = value.strip()
    if len(value) > _MAX_HEADER_VALUE or not _MIMETYPE.fullmatch(value):
        raise ValidationError(f"invalid Content-Type {value[:80]!r}: expected type/subtype")
    return value


def _filename(request: Request) -> str | None:
    value = request.headers.get("content-disposition")
    if value is None:
        return None
    header = Message()
    header["content-disposition"] = value
    name = header.get_filename()
    if name is None:
        return None
    if not name or len(name) > _MAX_HEADER_VALUE or any(c in name for c in "/\\\0"):
        raise ValidationError(f"invalid filename {name[:80]!r} in Content-Disposition")
    return name


def content_disposition(filename: str) -> str:
    quoted = quote(filename)
    if quoted == filename:
        return f'attachment; filename="{filename}"'
    return f"attachment; filename*=utf-8''{quoted}"


@router.post(
    "/data",
    response_class=PlainTextResponse,
    summary="Upload a file; returns the manifest CID",
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "The dataset's CID"},
        422: {"description": "Over the storage quota, or an invalid Content-Type / Content-Disposition"},
        507: {"description": "The data dir's disk is full (nothing of the upload is kept)"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def upload(request: Request) -> PlainTextResponse:
    """Streams the body into 64 KiB blocks and stores a manifest; nothing is kept if the upload fails."""
    repo = _repo(request)
    mimetype = _mimetype(request)
    filename = _filename(request)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > repo.quota().available:
        # Refuse before reading a byte; the running check still guards uploads without a length.
        raise QuotaNotEnoughError(
            f"not enough storage quota: {declared} bytes sent, {repo.quota().available} available"
        )
    try:
        cid = await store_dataset(repo, request.stream(), filename=filename, mimetype=mimetype)
    except ClientDisconnect:
        # Nothing was kept (store_dataset logged "upload aborted"); the client is gone, so nobody reads this.
        return PlainTextResponse("client disconnected", status_code=400)
    return PlainTextResponse(cid.text)


@router.get("/data", summary="List the datasets stored on this node")
async def list_data(request: Request) -> DataList:
    return DataList(
        content=[DataItem(cid=cid.text, manifest=ManifestItem.of(info)) for cid, info in _repo(request).manifests()]
    )


@router.get(
    "/data/{cid}",
    response_class=StreamingResponse,
    summary="Download a dataset (manifest CID) or a single block (block CID) from this node",
    responses={
        200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
        400: {"description": "Malformed CID"},
        404: {"description": "Not stored on this node"},
    },
)
async def download(request: Request, cid: CidPath) -> Response:
    repo = _repo(request)
    parsed = parse_cid(cid)
    # Zero-copy when the server offers it and no --verify-reads asks to hash what is sent (api/zerocopy.py).
    zerocopy = offers_zerocopy(request.scope) and not repo.verify_reads
    if not parsed.is_manifest:
        if zerocopy:
            block = await in_thread(spans.open_block, repo, parsed)
            return ZeroCopyResponse(_one(block), content_length=block.length, media_type="application/octet-stream")
        return Response(await repo.get_block(parsed), media_type="application/octet-stream")
    manifest = await repo.get_manifest(parsed)
    info = manifest.info
    headers = {}
    if info.filename:
        headers["Content-Disposition"] = content_disposition(info.filename)
    if zerocopy:
        return ZeroCopyResponse(
            spans.iter_dataset_spans(repo, manifest, blocks_per_open=DOWNLOAD_READ_BLOCKS),
            content_length=info.dataset_size,
            media_type=info.mimetype or "application/octet-stream",
            headers=headers,
        )
    headers["Content-Length"] = str(info.dataset_size)
    return StreamingResponse(
        _stream(repo, parsed, manifest), media_type=info.mimetype or "application/octet-stream", headers=headers
    )


async def _one(block: Spans) -> AsyncIterator[Spans]:
    yield block


async def _stream(repo: RepoStore, cid: Cid, manifest: Manifest) -> AsyncIterator[memoryview]:
    try:
        async for chunk in repo.iter_dataset(manifest, blocks_per_read=DOWNLOAD_READ_BLOCKS):
            yield chunk
    except Exception:
        # The status line is already sent; all we can do is cut the response short and say why in the log.
        log.exception("dataset download failed midway", cid=cid.text)
        raise


@router.delete(
    "/data/{cid}",
    status_code=204,
    response_class=Response,
    summary="Delete a dataset (manifest CID, with its blocks) or a single block",
    responses={
        400: {"description": "Malformed CID"},
        404: {"description": "Not stored on this node"},
        409: {"description": "The dataset holds slot data of sales that have not ended"},
    },
)
async def delete(request: Request, cid: CidPath) -> Response:
    parsed = parse_cid(cid)
    holds = services_of(request.app).dataset_holds
    until = None if holds is None else holds.held_until(parsed)
    if until is not None:
        raise DatasetInUseError(
            f"{parsed} holds slot data of sales that run until {until} (unix time); delete it after they end"
        )
    await _repo(request).del_block(parsed)
    return Response(status_code=204)


@router.get(
    "/data/{cid}/exists",
    summary="Whether this node stores the CID",
    responses={400: {"description": "Malformed CID"}},
)
async def exists(request: Request, cid: CidPath) -> Exists:
    return Exists(has=_repo(request).has_block(parse_cid(cid)))


@router.get("/space", summary="Storage quota and usage")
async def space(request: Request) -> Space:
    repo = _repo(request)
    quota = repo.quota()
    return Space(
        total_blocks=repo.total_blocks,
        quota_max_bytes=quota.max,
        quota_used_bytes=quota.used,
        quota_reserved_bytes=quota.reserved,
    )
