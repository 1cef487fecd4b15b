"""The asyncio client: :class:`AsyncCodexClient`, the same methods as :class:`~codex_node.client.CodexClient`.

Each method is one line over :mod:`~codex_node.client.operations`, like the blocking client's; only the sending
and the moving of streamed bytes differ. File reads and writes of uploads and downloads run in a worker thread,
so a large transfer never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, TypeVar

import httpx

from codex_node.client import operations as ops
from codex_node.client import wire
from codex_node.client.models import (
    Account,
    Alerts,
    Availability,
    BooksCheck,
    Dataset,
    DebugInfo,
    DownloadInfo,
    HealthReport,
    LedgerPage,
    NodeCheck,
    ProofMarginItem,
    Purchase,
    RequestMatch,
    Reservation,
    Sale,
    SalesPage,
    SalesStates,
    Slot,
    SlotSale,
    Space,
    SpaceSample,
    ValidatorState,
)
from codex_node.client.sync import Progress

T = TypeVar("T")

AsyncUploadSource = bytes | bytearray | memoryview | os.PathLike[str] | AsyncIterable[bytes] | Iterable[bytes]
"""Bytes, a path to a file, or an (async) iterator of byte chunks (streamed, never held whole)."""


class AsyncCodexClient:
    """The asyncio twin of :class:`~codex_node.client.CodexClient` (same arguments, same methods, awaited)."""

    def __init__(
        self,
        api_url: str = wire.DEFAULT_API_URL,
        *,
        token: str | bytes | None = None,
        timeout: float | httpx.Timeout = wire.DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.api_url = wire.api_url(api_url)
        self._http = httpx.AsyncClient(
            base_url=self.api_url,
            headers=wire.auth_headers(token),
            timeout=timeout,
            transport=transport,
            follow_redirects=False,  # a node never redirects; following one would send the token elsewhere
        )

    async def __aenter__(self) -> AsyncCodexClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def __repr__(self) -> str:
        return f"AsyncCodexClient({self.api_url!r})"

    # --- data -------------------------------------------------------------------------------------------------

    async def list_data(self) -> list[Dataset]:
        return await self._run(ops.list_data())

    async def upload(
        self,
        source: AsyncUploadSource,
        *,
        filename: str | None = None,
        mimetype: str | None = None,
        on_progress: Progress | None = None,
    ) -> str:
        """Store ``source`` on the node as one dataset; returns its CID (see :meth:`CodexClient.upload`)."""
        content, length, name = await _upload_body(source)
        if on_progress is not None:
            content = _counted(content, length, on_progress)
        headers = wire.upload_headers(filename if filename is not None else name, mimetype, length)
        op = ops.UPLOAD
        body = await self._send(op, op.path, content=content, headers=headers, limit=wire.MAX_CID_BYTES)
        return wire.parse_cid(body)

    async def download(
        self, cid: str, dest: os.PathLike[str] | BinaryIO, *, on_progress: Progress | None = None
    ) -> DownloadInfo:
        """Write the dataset ``cid`` to ``dest`` (see :meth:`CodexClient.download`)."""
        if isinstance(dest, os.PathLike):
            return await self._download_to_path(cid, Path(dest), on_progress)
        async with self.stream_download(cid) as download:
            done = 0
            async for chunk in download:
                await asyncio.to_thread(dest.write, chunk)
                done += len(chunk)
                if on_progress is not None:
                    on_progress(done, download.info.size)
            return download.info

    @asynccontextmanager
    async def stream_download(self, cid: str) -> AsyncIterator[AsyncDownload]:
        """The dataset ``cid`` as an :class:`AsyncDownload`: its ``info``, then its bytes by ``async for``."""
        async with self._stream(ops.DOWNLOAD, cid) as download:
            yield download

    @asynccontextmanager
    async def stream_from_network(self, cid: str) -> AsyncIterator[AsyncDownload]:
        """The dataset ``cid`` fetched by the node from its peers while it streams it (the node stores nothing)."""
        async with self._stream(ops.NETWORK_STREAM, cid) as download:
            yield download

    async def fetch_from_network(self, cid: str, dest: BinaryIO) -> DownloadInfo:
        """Write the dataset ``cid``, which the node fetches from its peers as it streams, to the open ``dest``."""
        async with self.stream_from_network(cid) as download:
            async for chunk in download:
                dest.write(chunk)
            return download.info

    async def download_from_network(self, cid: str) -> Dataset:
        """Have the node fetch the dataset ``cid`` from its peers in the background; returns its manifest."""
        return await self._run(ops.download_from_network(cid))

    async def manifest_from_network(self, cid: str) -> Dataset:
        """The manifest of the dataset ``cid``, fetched by the node from its peers."""
        return await self._run(ops.manifest_from_network(cid))

    @asynccontextmanager
    async def _stream(self, op: ops.Operation, cid: str) -> AsyncIterator[AsyncDownload]:
        path = ops.fill(op, cid=cid)
        try:
            async with self._http.stream(op.method, path) as response:
                if response.status_code != op.ok:
                    body = await self._read(response, wire.MAX_ERROR_BYTES, "error answer")
                    raise wire.error_for(response.status_code, response.headers, body, method=op.method, path=path)
                yield AsyncDownload(wire.download_info(cid, response.headers), response)
        except httpx.HTTPError as e:
            raise wire.transport_error(e, op.method, path, self.api_url) from e

    async def delete(self, cid: str) -> None:
        return await self._run(ops.delete(cid))

    async def exists(self, cid: str) -> bool:
        return await self._run(ops.exists(cid))

    async def space(self) -> Space:
        return await self._run(ops.space())

    # --- sales ------------------------------------------------------------------------------------------------

    async def list_slots(self) -> list[Slot]:
        return await self._run(ops.list_slots())

    async def get_slot(self, slot_id: str) -> SlotSale:
        return await self._run(ops.get_slot(slot_id))

    async def list_availabilities(self) -> list[Availability]:
        return await self._run(ops.list_availabilities())

    async def create_availability(
        self,
        *,
        total_size: int,
        duration: int,
        min_price_per_byte_per_second: int,
        total_collateral: int,
        enabled: bool = True,
        until: int = 0,
    ) -> Availability:
        return await self._run(
            ops.create_availability(
                total_size=total_size,
                duration=duration,
                min_price_per_byte_per_second=min_price_per_byte_per_second,
                total_collateral=total_collateral,
                enabled=enabled,
                until=until,
            )
        )

    async def update_availability(
        self,
        availability_id: str,
        *,
        total_size: int | None = None,
        duration: int | None = None,
        min_price_per_byte_per_second: int | None = None,
        total_collateral: int | None = None,
        enabled: bool | None = None,
        until: int | None = None,
    ) -> None:
        return await self._run(
            ops.update_availability(
                availability_id,
                total_size=total_size,
                duration=duration,
                min_price_per_byte_per_second=min_price_per_byte_per_second,
                total_collateral=total_collateral,
                enabled=enabled,
                until=until,
            )
        )

    async def list_reservations(self, availability_id: str) -> list[Reservation]:
        return await self._run(ops.list_reservations(availability_id))

    # --- peers ------------------------------------------------------------------------------------------------

    async def peer_id(self) -> str:
        """The node's peer id."""
        return await self._run(ops.peer_id())

    async def spr(self) -> str:
        """The node's signed peer record (``spr:…``)."""
        return await self._run(ops.spr())

    async def connect(self, peer_id: str, addrs: list[str] | None = None) -> None:
        """Have the node reach ``peer_id`` at ``addrs`` (its API URLs) or the URLs it knows."""
        return await self._run(ops.connect(peer_id, addrs))

    async def peers(self, spr: str | None = None) -> list[str]:
        """The signed records of the peers the node shares (peer exchange); ``spr`` introduces the caller."""
        return await self._run(ops.peers(spr))

    async def have(self, cid: list[str]) -> list[str]:
        """Which of these CIDs the node holds."""
        return await self._run(ops.have(cid))

    # --- debug ------------------------------------------------------------------------------------------------

    async def debug_info(self) -> DebugInfo:
        return await self._run(ops.debug_info())

    async def set_log_level(self, level: str) -> str:
        return await self._run(ops.set_log_level(level))

    async def debug_books(self) -> BooksCheck:
        """Whether the sales books balance (the node's own check of its accounting)."""
        return await self._run(ops.debug_books())

    # --- the operator's view ------------------------------------------------------------------------------------

    async def health(self) -> HealthReport:
        """Readiness with its checks (a node that is not ready raises ``ServiceUnavailableError``)."""
        return await self._run(ops.health())

    async def alerts(self) -> Alerts:
        return await self._run(ops.alerts())

    async def space_history(self, since: int = 0, limit: int = 1440) -> list[SpaceSample]:
        return await self._run(ops.space_history(since, limit))

    async def proof_margins(self, limit: int = 512) -> list[ProofMarginItem]:
        return await self._run(ops.proof_margins(limit))

    async def sales_states(self) -> SalesStates:
        return await self._run(ops.sales_states())

    async def validator(self) -> ValidatorState:
        """The validator's group, watched slots and the proofs it marked missing (``enabled`` false without one)."""
        return await self._run(ops.validator())

    async def account(self) -> Account:
        """The wallet (token and gas balances), where the collateral sits, and the earnings ledger's totals."""
        return await self._run(ops.account())

    async def ledger(self, limit: int = 50, before: int | None = None) -> LedgerPage:
        """A page of the earnings ledger, newest first; ``before``: the previous page's ``next``."""
        return await self._run(ops.ledger(limit, before))

    async def sale_history(
        self, state: str | None = None, since: int | None = None, before: int | None = None, limit: int = 50
    ) -> SalesPage:
        """A page of every sale the node started, newest first (``state``: active, finished, cancelled, failed,
        ignored or errored; ``since``: started at or after, unix seconds; ``before``: the previous page's ``next``)."""
        return await self._run(ops.sale_history(state, since, before, limit))

    async def sale(self, sale_id: int) -> Sale:
        """One sale of the history, with its transitions, proofs and money."""
        return await self._run(ops.sale(sale_id))

    async def match_request(self, request_id: str) -> RequestMatch:
        """Would the node take this live request now? Per availability and per matching rule."""
        return await self._run(ops.match_request(request_id))

    async def debug_check(self, verify: bool = False) -> NodeCheck:
        """The node's check of its books, repo, hosted slots and ledger (``verify``: read every block back)."""
        return await self._run(ops.debug_check(verify))

    async def request_storage(
        self,
        cid: str,
        *,
        duration: int,
        price_per_byte_per_second: int,
        proof_probability: int,
        collateral_per_byte: int,
        expiry: int,
        nodes: int = 3,
        tolerance: int = 1,
    ) -> str:
        """Erasure-code dataset ``cid`` and request storage for it; the purchase id."""
        return await self._run(
            ops.request_storage(
                cid,
                duration=duration,
                price_per_byte_per_second=price_per_byte_per_second,
                proof_probability=proof_probability,
                collateral_per_byte=collateral_per_byte,
                expiry=expiry,
                nodes=nodes,
                tolerance=tolerance,
            )
        )

    async def list_purchases(self) -> list[str]:
        return await self._run(ops.list_purchases())

    async def get_purchase(self, purchase_id: str) -> Purchase:
        return await self._run(ops.get_purchase(purchase_id))

    # --- the one way requests go --------------------------------------------------------------------------------

    async def _run(self, call: ops.Call[T]) -> T:
        op = call.operation
        body = await self._send(op, call.path, params=call.params, json=call.json, limit=wire.MAX_JSON_BYTES)
        return call.parse(body)

    async def _send(
        self,
        op: ops.Operation,
        path: str,
        *,
        limit: int,
        params: Mapping[str, str | list[str]] | None = None,
        json: Mapping[str, object] | None = None,
        content: bytes | AsyncIterable[bytes] | Iterable[bytes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> bytes:
        """Send one request; the success body (up to ``limit`` bytes), or raise the typed error."""
        try:
            async with self._http.stream(
                op.method, path, params=params, json=json, content=content, headers=headers
            ) as response:
                status = response.status_code
                if status == op.ok:
                    body = await self._read(response, limit, "answer")
                else:
                    body = await self._read(response, wire.MAX_ERROR_BYTES, "error answer")
        except httpx.HTTPError as e:
            raise wire.transport_error(e, op.method, path, self.api_url) from e
        if status != op.ok:
            raise wire.error_for(status, response.headers, body, method=op.method, path=path)
        return body

    @staticmethod
    async def _read(response: httpx.Response, limit: int, what: str) -> bytes:
        reader = wire.BoundedBody(response.headers, limit, what)
        async for chunk in response.aiter_bytes():
            reader.feed(chunk)
        return reader.bytes()

    async def _download_to_path(self, cid: str, dest: Path, on_progress: Progress | None) -> DownloadInfo:
        fd, temp_name = await asyncio.to_thread(
            tempfile.mkstemp, prefix=f".{dest.name}.", suffix=".part", dir=dest.parent
        )
        temp = Path(temp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                info = await self.download(cid, out, on_progress=on_progress)
            await asyncio.to_thread(temp.replace, dest)
        finally:
            # After a failure: nothing half written (after success: already gone). Not awaited in a thread: it
            # must run even when the task is being cancelled.
            temp.unlink(missing_ok=True)  # noqa: ASYNC240
        return info


class AsyncDownload:
    """An open download: :attr:`info` from the headers; ``async for`` the bytes (checked against the size)."""

    def __init__(self, info: DownloadInfo, response: httpx.Response) -> None:
        self.info = info
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        received = 0
        async for chunk in self._response.aiter_bytes():
            received += len(chunk)
            yield chunk
        wire.check_complete(self.info, received)


async def _upload_body(
    source: AsyncUploadSource,
) -> tuple[bytes | AsyncIterable[bytes] | Iterable[bytes], int | None, str | None]:
    if isinstance(source, str):
        raise TypeError("upload takes bytes, a Path to a file, a binary file or an iterator of bytes; not a str")
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        return data, len(data), None
    if isinstance(source, os.PathLike):
        path = Path(source)
        size = (await asyncio.to_thread(path.stat)).st_size  # a missing file fails here, before the node is asked
        return _file_chunks(path), size, path.name
    return source, None, None


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    f = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(f.read, wire.STREAM_CHUNK):
            yield chunk
    finally:
        f.close()


async def _counted(
    content: bytes | AsyncIterable[bytes] | Iterable[bytes], total: int | None, on_progress: Progress
) -> AsyncIterator[bytes]:
    done = 0
    async for chunk in _chunks(content):
        yield chunk
        done += len(chunk)
        on_progress(done, total)


async def _chunks(content: bytes | AsyncIterable[bytes] | Iterable[bytes]) -> AsyncIterator[bytes]:
    if isinstance(content, bytes):
        for i in range(0, len(content), wire.STREAM_CHUNK):
            yield content[i : i + wire.STREAM_CHUNK]
    elif isinstance(content, AsyncIterable):
        async for chunk in content:
            yield chunk
    else:
        for chunk in content:
            yield chunk
