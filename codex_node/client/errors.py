"""The errors of :mod:`codex_node.client`: one type per error status the node answers, plus the transport's.

They hang under :class:`~codex_node.errors.CodexError` (so a script catches "anything codex" with one type), but
in their own branch, :class:`ClientError`, and never as a server-side type: a 404 a peer answered is not a 404
this node should answer (``api/errors.py`` maps server-side types only). ::

    CodexError
    └── ClientError                          the client could not get a valid answer
        ├── TransportError                   no answer: connection refused or broken (``.__cause__``: httpx's)
        │   ├── NodeUnreachableError         could not connect; nothing was sent
        │   └── RequestTimeoutError          connect, read or write took longer than the client's timeout
        ├── MalformedResponseError           an answer that is not what the API describes (bad JSON, too large,
        │                                    a wrong shape, a cut download)
        └── ApiError                         the node answered an error status (any status without a type below)
            ├── BadRequestError          400 malformed input
            ├── UnauthorizedError        401 no or wrong API token
            ├── ForbiddenError           403 a cross-origin Origin
            ├── NotFoundApiError         404 unknown CID, availability, slot
            ├── ConflictError            409 e.g. deleting a dataset that sales still hold
            ├── PayloadTooLargeError     413 a body over the API's limit
            ├── MisdirectedRequestError  421 a Host the node does not answer for
            ├── UnprocessableError       422 well-formed but refused (out of bounds, quota, a broken rule)
            ├── ClientClosedRequestError 499 the node saw the request's client go away
            ├── ServiceUnavailableError  503 no marketplace, or too many downloads (``.retry_after`` seconds)
            └── InsufficientStorageError 507

An :class:`ApiError` carries the node's own message (its ``{"error": …}`` body), made one printable line: the
message comes from the network and may end up on a terminal, so control characters never pass through.
"""

from __future__ import annotations

from codex_node.errors import CodexError

MAX_MESSAGE_CHARS = 1000
"""An error message longer than this (from a hostile or broken node) is cut."""


class ClientError(CodexError):
    """The client could not get a valid answer from the node."""


class TransportError(ClientError):
    """No answer: the connection was refused, broke, or the node closed it mid-answer."""


class NodeUnreachableError(TransportError):
    """Could not connect to the node (nothing was sent)."""


class RequestTimeoutError(TransportError):
    """Connecting, sending or reading took longer than the client's timeout."""


class MalformedResponseError(ClientError):
    """The node's answer is not what the API describes: not JSON, too large, a wrong shape, a cut download."""


class ApiError(ClientError):
    """The node answered an error status. ``message`` is the node's (one printable line)."""

    status: int = 0

    def __init__(self, status: int, message: str, *, method: str = "", path: str = "") -> None:
        self.status = status
        self.message = message
        self.method = method
        self.path = path
        super().__init__(f"{message} (HTTP {status})")


class BadRequestError(ApiError):
    """400: the request is malformed (not JSON, a missing field, a wrong JSON type, a malformed CID)."""


class UnauthorizedError(ApiError):
    """401: the node runs with ``--api-token`` and the request carried no token or a wrong one."""


class ForbiddenError(ApiError):
    """403: a state-changing request with an Origin the node does not allow."""


class NotFoundApiError(ApiError):
    """404: the CID, availability or slot is unknown to the node."""


class ConflictError(ApiError):
    """409: the request conflicts with the node's state (e.g. the dataset holds data of running sales)."""


class PayloadTooLargeError(ApiError):
    """413: the request body is over the API's limit."""


class MisdirectedRequestError(ApiError):
    """421: the node does not answer for the Host the request named (``--api-allowed-host``)."""


class UnprocessableError(ApiError):
    """422: well-formed but refused — a value out of bounds, an unknown field, not enough quota, a broken rule."""


class ClientClosedRequestError(ApiError):
    """499: the node saw the request's client go away before it answered."""


class ServiceUnavailableError(ApiError):
    """503: the part is not running (no marketplace) or the node is busy; ``retry_after`` in seconds if it said."""

    def __init__(
        self, status: int, message: str, *, method: str = "", path: str = "", retry_after: float | None = None
    ) -> None:
        super().__init__(status, message, method=method, path=path)
        self.retry_after = retry_after


class InsufficientStorageError(ApiError):
    """507: the node has no room for what was asked."""


ERROR_TYPES: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundApiError,
    409: ConflictError,
    413: PayloadTooLargeError,
    421: MisdirectedRequestError,
    422: UnprocessableError,
    499: ClientClosedRequestError,
    503: ServiceUnavailableError,
    507: InsufficientStorageError,
}
"""The typed error of each status; any other error status raises a plain :class:`ApiError`."""


def printable_line(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` as one line of printable characters (control characters become spaces), at most ``limit`` long."""
    cleaned = "".join(c if c.isprintable() else " " for c in text[: limit * 2])
    line = " ".join(cleaned.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
