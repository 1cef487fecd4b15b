"""The blocking client: :class:`CodexClient`.

Each method is one line over :mod:`~codex_node.client.operations` (which says what to send and how to parse the
answer); :meth:`CodexClient._run` sends and reads, :mod:`~codex_node.client.wire` turns the answer into a result
or a typed error. Uploads and downloads stream: memory stays bounded by a chunk whatever the size.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
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

T = TypeVar("T")

Progress = Callable[[int, int | None], None]
"""Called with the bytes moved so far and the total (``None`` when unknown)."""

UploadSource = bytes | bytearray | memoryview | os.PathLike[str] | BinaryIO | Iterable[bytes]
"""Bytes, a path to a file, a binary file object, or an iterator of byte chunks (streamed, never held whole)."""


class CodexClient:
    """A client of one node's REST API (``api_url``, e.g. ``http://127.0.0.1:8080/api/codex/v1``).

    ``token`` is the node's ``--api-token`` (sent as ``Authorization: Bearer …``, never logged). ``timeout``
    bounds connecting and each read or write (:data:`~codex_node.client.wire.DEFAULT_TIMEOUT`). ``transport``
    replaces the network (tests: an in-process app, a mock). Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        api_url: str = wire.DEFAULT_API_URL,
        *,
        token: str | bytes | None = None,
        timeout: float | httpx.Timeout = wire.DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.api_url = wire.api_url(api_url)
        self._http = httpx.Client(
            base_url=self.api_url,
            headers=wire.auth_headers(token),
            timeout=timeout,
            transport=transport,
            follow_redirects=False,  # a node never redirects; following one would send the token elsewhere
        )

    def __enter__(self) -> CodexClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:
        return f"CodexClient({self.api_url!r})"

    # --- data -------------------------------------------------------------------------------------------------

    def list_data(self) -> list[Dataset]:
        return self._run(ops.list_data())

    def upload(
        self,
        source: UploadSource,
        *,
        filename: str | None = None,
        mimetype: str | None = None,
        on_progress: Progress | None = None,
    ) -> str:
        """Store ``source`` on the node as one dataset; returns its CID. A path's file name is sent unless
        ``filename`` is given; ``mimetype`` becomes the dataset's media type."""
        content, length, name = _upload_body(source)
        if on_progress is not None:
            content = _counted(content, length, on_progress)
        headers = wire.upload_headers(filename if filename is not None else name, mimetype, length)
        op = ops.UPLOAD
        body = self._send(op, op.path, content=content, headers=headers, limit=wire.MAX_CID_BYTES)
        return wire.parse_cid(body)

    def download(
        self, cid: str, dest: os.PathLike[str] | BinaryIO, *, on_progress: Progress | None = None
    ) -> DownloadInfo:
        """Write the dataset (or block) ``cid`` to ``dest``: a path, written whole or not at all (a temporary
        file beside it is renamed once every byte arrived), or an open binary file."""
        if isinstance(dest, os.PathLike):
            return self._download_to_path(cid, Path(dest), on_progress)
        with self.stream_download(cid) as download:
            done = 0
            for chunk in download:
                dest.write(chunk)
                done += len(chunk)
                if on_progress is not None:
                    on_progress(done, download.info.size)
            return download.info

    @contextmanager
    def stream_download(self, cid: str) -> Iterator[Download]:
        """The dataset ``cid`` as a :class:`Download`: its :attr:`~Download.info`, then its bytes by iteration."""
        with self._stream(ops.DOWNLOAD, cid) as download:
            yield download

    @contextmanager
    def stream_from_network(self, cid: str) -> Iterator[Download]:
        """The dataset ``cid`` fetched by the node from its peers while it streams it (the node stores nothing)."""
        with self._stream(ops.NETWORK_STREAM, cid) as download:
            yield download

    def fetch_from_network(self, cid: str, dest: BinaryIO) -> DownloadInfo:
        """Write the dataset ``cid``, which the node fetches from its peers as it streams, to the open ``dest``."""
        with self.stream_from_network(cid) as download:
            for chunk in download:
                dest.write(chunk)
            return download.info

    def download_from_network(self, cid: str) -> Dataset:
        """Have the node fetch the dataset ``cid`` from its peers in the background; returns its manifest."""
        return self._run(ops.download_from_network(cid))

    def manifest_from_network(self, cid: str) -> Dataset:
        """The manifest of the dataset ``cid``, fetched by the node from its peers."""
        return self._run(ops.manifest_from_network(cid))

    @contextmanager
    def _stream(self, op: ops.Operation, cid: str) -> Iterator[Download]:
        path = ops.fill(op, cid=cid)
        try:
            with self._http.stream(op.method, path) as response:
                if response.status_code != op.ok:
                    body = self._read(response, wire.MAX_ERROR_BYTES, "error answer")
                    raise wire.error_for(response.status_code, response.headers, body, method=op.method, path=path)
                yield Download(wire.download_info(cid, response.headers), response)
        except httpx.HTTPError as e:
            raise wire.transport_error(e, op.method, path, self.api_url) from e

    def delete(self, cid: str) -> None:
        return self._run(ops.delete(cid))

    def exists(self, cid: str) -> bool:
        return self._run(ops.exists(cid))

    def space(self) -> Space:
        return self._run(ops.space())

    # --- sales ------------------------------------------------------------------------------------------------

    def list_slots(self) -> list[Slot]:
        return self._run(ops.list_slots())

    def get_slot(self, slot_id: str) -> SlotSale:
        return self._run(ops.get_slot(slot_id))

    def list_availabilities(self) -> list[Availability]:
        return self._run(ops.list_availabilities())

    def create_availability(
        self,
        *,
        total_size: int,
        duration: int,
        min_price_per_byte_per_second: int,
        total_collateral: int,
        enabled: bool = True,
        until: int = 0,
    ) -> Availability:
        return self._run(
            ops.create_availability(
                total_size=total_size,
                duration=duration,
                min_price_per_byte_per_second=min_price_per_byte_per_second,
                total_collateral=total_collateral,
                enabled=enabled,
                until=until,
            )
        )

    def update_availability(
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
        return self._run(
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

    def list_reservations(self, availability_id: str) -> list[Reservation]:
        return self._run(ops.list_reservations(availability_id))

    # --- peers ------------------------------------------------------------------------------------------------

    def peer_id(self) -> str:
        """The node's peer id."""
        return self._run(ops.peer_id())

    def spr(self) -> str:
        """The node's signed peer record (``spr:…``)."""
        return self._run(ops.spr())

    def connect(self, peer_id: str, addrs: list[str] | None = None) -> None:
        """Have the node reach ``peer_id`` at ``addrs`` (its API URLs) or the URLs it knows."""
        return self._run(ops.connect(peer_id, addrs))

    def peers(self, spr: str | None = None) -> list[str]:
        """The signed records of the peers the node shares (peer exchange); ``spr`` introduces the caller."""
        return self._run(ops.peers(spr))

    def have(self, cid: list[str]) -> list[str]:
        """Which of these CIDs the node holds."""
        return self._run(ops.have(cid))

    # --- debug ------------------------------------------------------------------------------------------------

    def debug_info(self) -> DebugInfo:
        return self._run(ops.debug_info())

    def set_log_level(self, level: str) -> str:
        return self._run(ops.set_log_level(level))

    def debug_books(self) -> BooksCheck:
        """Whether the sales books balance (the node's own check of its accounting)."""
        return self._run(ops.debug_books())

    # --- the operator's view ------------------------------------------------------------------------------------

    def health(self) -> HealthReport:
        """Readiness with its checks (a node that is not ready raises ``ServiceUnavailableError``)."""
        return self._run(ops.health())

    def alerts(self) -> Alerts:
        return self._run(ops.alerts())

    def space_history(self, since: int = 0, limit: int = 1440) -> list[SpaceSample]:
        return self._run(ops.space_history(since, limit))

    def proof_margins(self, limit: int = 512) -> list[ProofMarginItem]:
        return self._run(ops.proof_margins(limit))

    def sales_states(self) -> SalesStates:
        return self._run(ops.sales_states())

    def validator(self) -> ValidatorState:
        """The validator's group, watched slots and the proofs it marked missing (``enabled`` false without one)."""
        return self._run(ops.validator())

    def account(self) -> Account:
        """The wallet (token and gas balances), where the collateral sits, and the earnings ledger's totals."""
        return self._run(ops.account())

    def ledger(self, limit: int = 50, before: int | None = None) -> LedgerPage:
        """A page of the earnings ledger, newest first; ``before``: the previous page's ``next``."""
        return self._run(ops.ledger(limit, before))

    def sale_history(
        self, state: str | None = None, since: int | None = None, before: int | None = None, limit: int = 50
    ) -> SalesPage:
        """A page of every sale the node started, newest first (``state``: active, finished, cancelled, failed,
        ignored or errored; ``since``: started at or after, unix seconds; ``before``: the previous page's ``next``)."""
        return self._run(ops.sale_history(state, since, before, limit))

    def sale(self, sale_id: int) -> Sale:
        """One sale of the history, with its transitions, proofs and money."""
        return self._run(ops.sale(sale_id))

    def match_request(self, request_id: str) -> RequestMatch:
        """Would the node take this live request now? Per availability and per matching rule."""
        return self._run(ops.match_request(request_id))

    def debug_check(self, verify: bool = False) -> NodeCheck:
        """The node's check of its books, repo, hosted slots and ledger (``verify``: read every block back)."""
        return self._run(ops.debug_check(verify))

    def request_storage(
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
        return self._run(
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

    def list_purchases(self) -> list[str]:
        return self._run(ops.list_purchases())

    def get_purchase(self, purchase_id: str) -> Purchase:
        return self._run(ops.get_purchase(purchase_id))

    # --- the one way requests go --------------------------------------------------------------------------------

    def _run(self, call: ops.Call[T]) -> T:
        op = call.operation
        body = self._send(op, call.path, params=call.params, json=call.json, limit=wire.MAX_JSON_BYTES)
        return call.parse(body)

    def _send(
        self,
        op: ops.Operation,
        path: str,
        *,
        limit: int,
        params: Mapping[str, str | list[str]] | None = None,
        json: Mapping[str, object] | None = None,
        content: bytes | Iterable[bytes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> bytes:
        """Send one request; the success body (up to ``limit`` bytes), or raise the typed error."""
        try:
            with self._http.stream(
                op.method, path, params=params, json=json, content=content, headers=headers
            ) as response:
                status = response.status_code
                if status == op.ok:
                    body = self._read(response, limit, "answer")
                else:
                    body = self._read(response, wire.MAX_ERROR_BYTES, "error answer")
        except httpx.HTTPError as e:
            raise wire.transport_error(e, op.method, path, self.api_url) from e
        if status != op.ok:
            raise wire.error_for(status, response.headers, body, method=op.method, path=path)
        return body

    @staticmethod
    def _read(response: httpx.Response, limit: int, what: str) -> bytes:
        reader = wire.BoundedBody(response.headers, limit, what)
        for chunk in response.iter_bytes():
            reader.feed(chunk)
        return reader.bytes()

    def _download_to_path(self, cid: str, dest: Path, on_progress: Progress | None) -> DownloadInfo:
        fd, temp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent or ".")
        temp = Path(temp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                info = self.download(cid, out, on_progress=on_progress)
            temp.replace(dest)
        finally:
            temp.unlink(missing_ok=True)  # after a failure: nothing half written (after success: already gone)
        return info


class Download:
    """An open download: :attr:`info` from the headers; iterate for the bytes. A body shorter or longer than
    the size the node announced raises :class:`~codex_node.client.errors.MalformedResponseError` at its end."""

    def __init__(self, info: DownloadInfo, response: httpx.Response) -> None:
        self.info = info
        self._response = response

    def __iter__(self) -> Iterator[bytes]:
        received = 0
        for chunk in self._response.iter_bytes():
            received += len(chunk)
            yield chunk
        wire.check_complete(self.info, received)


def _upload_body(source: UploadSource) -> tuple[bytes | Iterable[bytes], int | None, str | None]:
    """The body to send, its length if known, and the file name a path gives."""
    if isinstance(source, str):
        raise TypeError("upload takes bytes, a Path to a file, a binary file or an iterator of bytes; not a str")
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        return data, len(data), None
    if isinstance(source, os.PathLike):
        path = Path(source)
        size = path.stat().st_size  # a missing file fails here, before the node is asked anything
        return _file_chunks(path), size, path.name
    if hasattr(source, "read"):
        reader: BinaryIO = source  # type: ignore[assignment]  # narrowed by the read attribute
        return iter(lambda: reader.read(wire.STREAM_CHUNK), b""), None, None
    return source, None, None  # an iterable of bytes, by elimination


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(wire.STREAM_CHUNK):
            yield chunk


def _counted(content: bytes | Iterable[bytes], total: int | None, on_progress: Progress) -> Iterator[bytes]:
    chunks: Iterable[bytes] = (
        (content[i : i + wire.STREAM_CHUNK] for i in range(0, len(content), wire.STREAM_CHUNK))
        if isinstance(content, bytes)
        else content
    )
    done = 0
    for chunk in chunks:
        yield chunk
        done += len(chunk)
        on_progress(done, total)
