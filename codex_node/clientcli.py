"""``codex-node upload`` and ``codex-node download``: thin commands over :mod:`codex_node.client` for operators
who would rather type than curl.

They talk to a running node through ``--api-url`` (default: the local node's) with the token of ``--api-token
FILE`` (the file the node was given). A progress bar goes to stderr, only when stderr is a terminal. Errors are
one line on stderr: exit 1 when the node refused or could not be reached, 2 for a bad flag or argument. The data
itself goes to stdout (the CID of an upload; a download without ``-o``) so the commands compose in a pipe.

This module is imported by ``cli.py`` only when one of its commands runs, and imports the client lazily too.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TextIO

from codex_node.errors import ConfigError
from codex_node.units import format_size

if TYPE_CHECKING:
    from codex_node.client import CodexClient

DEFAULT_API_URL = "http://127.0.0.1:8080/api/codex/v1"  # the client's default (client/wire.py), kept import-free
API_URL_ENV = "CODEX_API_URL"
API_TOKEN_ENV = "CODEX_API_TOKEN"


# --- flags --------------------------------------------------------------------------------------------------------


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("node options")
    group.add_argument(
        "--api-url",
        metavar="URL",
        help=f"REST API of the node [default: {DEFAULT_API_URL}; env: {API_URL_ENV}]",
    )
    group.add_argument(
        "--api-token",
        metavar="FILE",
        type=Path,
        help=f"file holding the node's API token (the node's --api-token FILE) [env: {API_TOKEN_ENV}]",
    )
    group.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=float,
        default=60.0,
        help="longest wait to connect, or for the node's next bytes [default: 60]",
    )


def add_upload_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="the file to upload ('-' reads standard input)")
    parser.add_argument("--mimetype", metavar="TYPE", help="media type stored with the dataset, e.g. image/jpeg")
    parser.add_argument("--filename", metavar="NAME", help="file name stored with the dataset [default: FILE's]")
    add_connection_arguments(parser)


def add_download_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cid", metavar="CID", help="the dataset's CID (as upload printed it)")
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        type=Path,
        help="write to FILE (whole or not at all) instead of standard output",
    )
    add_connection_arguments(parser)


def connect(args: argparse.Namespace, env: Mapping[str, str]) -> CodexClient:
    """A client for ``--api-url`` / ``--api-token`` / ``--timeout``; a bad value raises :class:`ConfigError`."""
    import httpx

    from codex_node.client import CodexClient
    from codex_node.config import read_api_token

    url = args.api_url or env.get(API_URL_ENV) or DEFAULT_API_URL
    token_path = args.api_token or (Path(env[API_TOKEN_ENV]) if env.get(API_TOKEN_ENV) else None)
    token = None
    if token_path is not None:
        try:
            token = read_api_token(token_path)
        except (OSError, ValueError) as e:
            raise ConfigError("--api-token", _one_line(e)) from None
    if not 0 < args.timeout <= 86400:
        raise ConfigError("--timeout", f"expected seconds between 0 and 86400, got {args.timeout}")
    try:
        return CodexClient(url, token=token, timeout=httpx.Timeout(args.timeout, connect=min(args.timeout, 10.0)))
    except ValueError as e:
        raise ConfigError("--api-url", _one_line(e)) from None


# --- upload -------------------------------------------------------------------------------------------------------


def run_upload(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    source: Path | BinaryIO
    if args.file == "-":
        source = sys.stdin.buffer
    else:
        source = Path(args.file)
        if not source.is_file():
            raise ConfigError("FILE", f"{args.file}: no such file")
        if not os.access(source, os.R_OK):
            raise ConfigError("FILE", f"{args.file}: not readable")
    with connect(args, env) as client:
        bar = ProgressBar.on(sys.stderr, "upload")
        try:
            cid = client.upload(source, filename=args.filename, mimetype=args.mimetype, on_progress=bar)
        finally:
            bar.finish()  # ends the bar's line, also before an error line
    print(cid)
    return 0


# --- download -----------------------------------------------------------------------------------------------------


def run_download(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    output: Path | None = args.output
    if output is None and sys.stdout.isatty():
        raise ConfigError("-o", "give -o FILE: the dataset would be written to the terminal")
    if output is not None and not output.parent.is_dir():
        raise ConfigError("-o", f"{output.parent} is not a directory")
    if output is not None and output.is_dir():
        raise ConfigError("-o", f"{output} is a directory; name the file to write")
    with connect(args, env) as client:
        bar = ProgressBar.on(sys.stderr, "download")
        try:
            if output is None:
                client.download(args.cid, sys.stdout.buffer, on_progress=bar)
                sys.stdout.buffer.flush()
            else:
                client.download(args.cid, output, on_progress=bar)
        finally:
            bar.finish()  # ends the bar's line, also before an error line
    return 0


# --- progress -----------------------------------------------------------------------------------------------------


class ProgressBar:
    """A one-line text bar redrawn in place (``\\r``) on a terminal; nothing at all on anything else.

    Redrawn only when its text changes (a percent, or each MiB when the total is unknown), so a fast transfer
    does not flood the terminal; no clock is read."""

    WIDTH = 30

    def __init__(self, stream: TextIO | None, label: str) -> None:
        self._stream = stream
        self._label = label
        self._shown = ""

    @classmethod
    def on(cls, stream: TextIO, label: str) -> ProgressBar:
        """A bar on ``stream`` if it is a terminal, else one that draws nothing."""
        return cls(stream if stream.isatty() else None, label)

    def __call__(self, done: int, total: int | None) -> None:
        if self._stream is None:
            return
        text = self.render(done, total)
        if text != self._shown:
            self._shown = text
            self._stream.write("\r" + text)
            self._stream.flush()

    def render(self, done: int, total: int | None) -> str:
        if total is None or total <= 0:
            return f"{self._label} {format_size(done - done % (1 << 20))}"
        fraction = min(done / total, 1.0)
        filled = int(fraction * self.WIDTH)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        return f"{self._label} [{bar}] {int(fraction * 100):3d}% of {format_size(total)}"

    def finish(self) -> None:
        if self._stream is not None and self._shown:
            self._stream.write("\n")
            self._stream.flush()


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__
