"""What both clients do the same way on the wire: settings, headers, bounded reads, turning answers into results
or typed errors. Pure functions and small values; no I/O of their own.

The node's answers are hostile input like any bytes from the network: a JSON answer is read up to a bound
(:data:`MAX_JSON_BYTES`, checked against ``Content-Length`` before a byte is read and again while reading), an
error body up to :data:`MAX_ERROR_BYTES`, and a message only reaches the caller as one printable line.
The API token is sent as ``Authorization: Bearer …`` and appears in nothing this module returns but the headers.
"""

from __future__ import annotations

import json
import re
from email.message import Message
from urllib.parse import quote, urlsplit

import httpx

from codex_node.client.errors import (
    ERROR_TYPES,
    ApiError,
    ClientError,
    MalformedResponseError,
    NodeUnreachableError,
    RequestTimeoutError,
    ServiceUnavailableError,
    TransportError,
    printable_line,
)
from codex_node.client.models import DownloadInfo

DEFAULT_API_URL = "http://127.0.0.1:8080/api/codex/v1"
"""The API of a node run with the default flags on this host."""

DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=5.0)
"""5 s to connect (a node that is not there fails fast); 60 s for any one read or write (an upload's answer
comes once the node has stored the last block; a download's next bytes come as the node reads its blocks)."""

MAX_JSON_BYTES = 32 * 1024 * 1024
"""The largest JSON answer read (a list of many datasets stays far below it)."""
MAX_ERROR_BYTES = 64 * 1024
"""The largest error body read; the node's own are one short line."""
MAX_CID_BYTES = 1024

STREAM_CHUNK = 256 * 1024
"""Bytes an upload reads from a file at a time."""

_TOKEN = re.compile(r"[\x21-\x7e]{1,512}")
_CID = re.compile(r"[A-Za-z0-9]{8,200}")


def api_url(url: str) -> str:
    """``url`` checked to be an ``http(s)://host[:port][/path]`` URL; raises :class:`ValueError` saying why."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL with a host: {url!r} (e.g. {DEFAULT_API_URL})")
    if parts.username is not None or parts.password is not None:
        raise ValueError("the API URL must not hold credentials; give the token as the token (--api-token FILE)")
    if parts.query or parts.fragment:
        raise ValueError(f"the API URL takes no query or fragment: {url!r}")
    return url.rstrip("/")


def auth_headers(token: str | bytes | None) -> dict[str, str]:
    """The ``Authorization`` header for ``token``; raises :class:`ValueError` (never quoting the token)."""
    if token is None:
        return {}
    text = token.decode("ascii", errors="replace") if isinstance(token, bytes) else token
    text = text.strip()
    if not _TOKEN.fullmatch(text):
        raise ValueError("the API token must be 1 to 512 printable ASCII characters without spaces")
    return {"Authorization": f"Bearer {text}"}


# --- reading answers ----------------------------------------------------------------------------------------------


class BoundedBody:
    """Collects a body up to ``limit`` bytes; refuses a larger one as soon as it shows (by its declared length,
    or by the bytes read so far)."""

    def __init__(self, headers: httpx.Headers, limit: int, what: str) -> None:
        self._limit = limit
        self._what = what
        self._chunks: list[bytes] = []
        self._size = 0
        declared = content_length(headers)
        if declared is not None and declared > limit:
            raise MalformedResponseError(f"the node's {what} is {declared} bytes, over the {limit}-byte limit")

    def feed(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self._limit:
            raise MalformedResponseError(f"the node's {self._what} is over the {self._limit}-byte limit")
        self._chunks.append(chunk)

    def bytes(self) -> bytes:
        return b"".join(self._chunks)


def content_length(headers: httpx.Headers) -> int | None:
    value = headers.get("content-length")
    if value is None or not value.isdigit() or len(value) > 20:
        return None
    return int(value)


def error_for(status: int, headers: httpx.Headers, body: bytes, *, method: str, path: str) -> ClientError:
    """The typed error of an answer with ``status``; its message is the node's ``{"error": …}``."""
    if status < 400:
        # A redirect or another success than the one the operation answers: not what the API describes.
        return MalformedResponseError(f"the node answered {method} {path} with HTTP {status}, which the API never does")
    message = _error_message(status, body)
    kind = ERROR_TYPES.get(status, ApiError)
    if kind is ServiceUnavailableError:
        return ServiceUnavailableError(
            status, message, method=method, path=path, retry_after=retry_after(headers.get("retry-after"))
        )
    return kind(status, message, method=method, path=path)


def _error_message(status: int, body: bytes) -> str:
    try:
        decoded = json.loads(body)
    except ValueError:
        decoded = None
    if isinstance(decoded, dict) and isinstance(decoded.get("error"), str) and decoded["error"].strip():
        return printable_line(decoded["error"])
    reason = httpx.codes.get_reason_phrase(status) or "error"
    return f"{reason} (the node gave no error message)"


def retry_after(value: str | None) -> float | None:
    """Seconds of a ``Retry-After`` header; ``None`` when absent or not a plain number of seconds (at most a day)."""
    if value is None or not value.strip().isdigit() or len(value.strip()) > 6:
        return None
    return float(min(int(value.strip()), 86400))


def parse_cid(body: bytes) -> str:
    """The CID an upload answered (plain text), checked to look like one."""
    text = body.decode("ascii", errors="replace").strip()
    if not _CID.fullmatch(text):
        raise MalformedResponseError(f"the node's answer to an upload is not a CID: {printable_line(text, 80)!r}")
    return text


def download_info(cid: str, headers: httpx.Headers) -> DownloadInfo:
    """What the headers of a download say: size, and the uploader's file name and media type (one printable line
    each; the file name is never a path)."""
    filename = None
    disposition = headers.get("content-disposition")
    if disposition is not None:
        header = Message()
        header["content-disposition"] = disposition[:1024]
        name = header.get_filename()
        if name:
            filename = printable_line(name.replace("/", "_").replace("\\", "_"), 255)
    mimetype = headers.get("content-type")
    # A size is only checked against bytes as sent: a body a proxy compressed is decoded on the way in.
    encoded = headers.get("content-encoding", "identity").strip().lower() != "identity"
    return DownloadInfo(
        cid=cid,
        size=None if encoded else content_length(headers),
        filename=filename,
        mimetype=printable_line(mimetype, 255) if mimetype else None,
    )


def check_complete(info: DownloadInfo, received: int) -> None:
    """Raise when a download stopped short of (or went past) the size the node announced."""
    if info.size is not None and received != info.size:
        raise MalformedResponseError(
            f"download of {info.cid} ended after {received} bytes; the node announced {info.size}"
        )


# --- requests -----------------------------------------------------------------------------------------------------


def upload_headers(filename: str | None, mimetype: str | None, length: int | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    if mimetype is not None:
        headers["Content-Type"] = mimetype
    if filename is not None:
        quoted = quote(filename)
        headers["Content-Disposition"] = (
            f'attachment; filename="{filename}"' if quoted == filename else f"attachment; filename*=utf-8''{quoted}"
        )
    if length is not None:
        headers["Content-Length"] = str(length)
    return headers


def transport_error(error: httpx.HTTPError, method: str, path: str, base_url: str) -> ClientError:
    """Our error for one of httpx's (the caller chains it as the cause)."""
    where = f"{method} {base_url}{path}"
    if isinstance(error, httpx.ConnectTimeout):
        return NodeUnreachableError(f"could not connect to the node at {base_url}: timed out")
    if isinstance(error, httpx.TimeoutException):
        return RequestTimeoutError(f"{where}: the node took too long ({type(error).__name__})")
    if isinstance(error, httpx.ConnectError):
        return NodeUnreachableError(f"could not connect to the node at {base_url}: {_reason(error)}")
    if isinstance(error, httpx.TransportError):
        return TransportError(f"{where}: the connection failed: {_reason(error)}")
    return ClientError(f"{where}: {_reason(error)}")


def _reason(error: BaseException) -> str:
    return printable_line(str(error), 200) or type(error).__name__
