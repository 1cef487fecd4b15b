"""Network data routes under ``/api/codex/v1``: a dataset fetched from peers (``codex-anchor.md`` §6).

``POST /data/{cid}/network`` starts a background download into the repo and answers the dataset's ``DataItem``;
``GET /data/{cid}/network/stream`` streams the dataset while it is fetched (bounded memory, nothing stored);
``GET /data/{cid}/network/manifest`` fetches only the manifest. Each takes a dataset manifest CID (a block CID or a
protected manifest CID is a 422) and answers 404 when no peer asked has it, 503 on a node without the block
exchange. The work is :class:`~codex_node.blockexchange.datasets.NetworkDatasets`'.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from fastapi.responses import StreamingResponse

from codex_node.api.routes.data import CidPath, DataItem, ManifestItem, content_disposition
from codex_node.api.services import ServicesDep
from codex_node.blockexchange.datasets import NetworkDatasets
from codex_node.data.cid import parse_cid
from codex_node.errors import NetworkUnavailableError

router = APIRouter(tags=["Data"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Malformed CID"},
    404: {"description": "No peer asked has the dataset (or its manifest)"},
    422: {"description": "The CID is not a dataset manifest CID"},
    503: {"description": "This node runs without the block exchange"},
}


def get_network(services: ServicesDep) -> NetworkDatasets:
    if services.network is None:
        raise NetworkUnavailableError("this node runs without the block exchange (no marketplace or no peers)")
    return services.network


NetworkDep = Annotated[NetworkDatasets, Depends(get_network)]


@router.post(
    "/data/{cid}/network",
    summary="Download a dataset from the network into this node, in the background",
    responses=_ERRORS,
)
async def download_from_network(cid: CidPath, network: NetworkDep) -> DataItem:
    parsed = parse_cid(cid)
    manifest = await network.download(parsed)
    return DataItem(cid=parsed.text, manifest=ManifestItem.of(manifest.info))


@router.get(
    "/data/{cid}/network/stream",
    response_class=StreamingResponse,
    summary="Stream a dataset while it is fetched from the network (nothing is stored)",
    responses={
        200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
        **_ERRORS,
    },
)
async def stream_from_network(cid: CidPath, network: NetworkDep) -> Response:
    parsed = parse_cid(cid)
    manifest = await network.manifest(parsed)
    info = manifest.info
    headers = {"Content-Length": str(info.dataset_size)}
    if info.filename:
        headers["Content-Disposition"] = content_disposition(info.filename)
    return StreamingResponse(
        network.stream(parsed, manifest), media_type=info.mimetype or "application/octet-stream", headers=headers
    )


@router.get(
    "/data/{cid}/network/manifest",
    summary="Fetch only a dataset's manifest from the network",
    responses=_ERRORS,
)
async def manifest_from_network(cid: CidPath, network: NetworkDep) -> DataItem:
    parsed = parse_cid(cid)
    manifest = await network.manifest(parsed)
    return DataItem(cid=parsed.text, manifest=ManifestItem.of(manifest.info))
