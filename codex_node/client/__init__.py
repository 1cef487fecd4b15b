"""A typed Python client of a codex-node's REST API (httpx; blocking and asyncio).

::

    from pathlib import Path
    from codex_node.client import CodexClient

    with CodexClient("http://127.0.0.1:8080/api/codex/v1", token=Path("api-token").read_text()) as node:
        cid = node.upload(Path("photo.jpg"))            # streamed from the file
        node.download(cid, Path("copy.jpg"))            # streamed to the file, written whole or not at all
        print(node.space().quota_used_bytes)

:class:`AsyncCodexClient` has the same methods, awaited. Every error status raises its own type
(:mod:`codex_node.client.errors`, e.g. :class:`NotFoundApiError` for 404) carrying the node's message; a node
that cannot be reached raises :class:`NodeUnreachableError`. The client is a layer above the API: it imports
nothing of the server (its models are its own, checked against ``openapi.yaml`` by the tests).

The client logs nothing (a library printing to a script's stdout would corrupt a download piped there): what
went wrong is in the exception it raises. The token is never part of an exception, a ``repr`` or a log line.

Layout: ``operations.py`` describes each operation once (path, method, success status, parser); ``sync.py`` and
``aio.py`` run those descriptions; ``wire.py`` holds what both do the same way; ``models.py`` the typed results.
"""

from codex_node.client.aio import AsyncCodexClient, AsyncDownload
from codex_node.client.errors import (
    ApiError,
    BadRequestError,
    ClientClosedRequestError,
    ClientError,
    ConflictError,
    ForbiddenError,
    InsufficientStorageError,
    MalformedResponseError,
    MisdirectedRequestError,
    NodeUnreachableError,
    NotFoundApiError,
    PayloadTooLargeError,
    RequestTimeoutError,
    ServiceUnavailableError,
    TransportError,
    UnauthorizedError,
    UnprocessableError,
)
from codex_node.client.models import (
    Account,
    Alerts,
    Availability,
    BooksCheck,
    Dataset,
    DebugInfo,
    DownloadInfo,
    DownloadProgress,
    HealthReport,
    LedgerEntry,
    LedgerPage,
    ManifestInfo,
    NodeCheck,
    ProofMarginItem,
    Purchase,
    RequestMatch,
    Reservation,
    Sale,
    SalesPage,
    SalesStates,
    SaleTransition,
    Slot,
    SlotSale,
    Space,
    SpaceSample,
    StorageRequest,
    ValidatorState,
)
from codex_node.client.sync import CodexClient, Download
from codex_node.client.wire import DEFAULT_API_URL, DEFAULT_TIMEOUT

__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_TIMEOUT",
    "Account",
    "Alerts",
    "ApiError",
    "AsyncCodexClient",
    "AsyncDownload",
    "Availability",
    "BadRequestError",
    "BooksCheck",
    "ClientClosedRequestError",
    "ClientError",
    "CodexClient",
    "ConflictError",
    "Dataset",
    "DebugInfo",
    "Download",
    "DownloadInfo",
    "DownloadProgress",
    "ForbiddenError",
    "HealthReport",
    "InsufficientStorageError",
    "LedgerEntry",
    "LedgerPage",
    "MalformedResponseError",
    "ManifestInfo",
    "MisdirectedRequestError",
    "NodeCheck",
    "NodeUnreachableError",
    "NotFoundApiError",
    "PayloadTooLargeError",
    "ProofMarginItem",
    "Purchase",
    "RequestMatch",
    "RequestTimeoutError",
    "Reservation",
    "Sale",
    "SaleTransition",
    "SalesPage",
    "SalesStates",
    "ServiceUnavailableError",
    "Slot",
    "SlotSale",
    "Space",
    "SpaceSample",
    "StorageRequest",
    "TransportError",
    "UnauthorizedError",
    "UnprocessableError",
    "ValidatorState",
]
