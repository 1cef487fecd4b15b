"""``codex-node upload``, ``download``, ``request`` and ``purchases``: thin commands over :mod:`codex_node.client`
for operators who would rather type than curl.

They talk to a running node through ``--api-url`` (default: the local node's) with the token of ``--api-token
FILE`` (the file the node was given). A progress bar goes to stderr, only when stderr is a terminal. Errors are
one line on stderr: exit 1 when the node refused or could not be reached, 2 for a bad flag or argument. The data
itself goes to stdout (the CID of an upload; a download without ``-o``; the purchase id of a request) so the
commands compose in a pipe.

This module is imported by ``cli.py`` only when one of its commands runs, and imports the client lazily too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TextIO

from codex_node.errors import ConfigError
from codex_node.units import format_size, parse_duration

if TYPE_CHECKING:
    from codex_node.client import CodexClient
    from codex_node.client.models import Purchase

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


# --- request ------------------------------------------------------------------------------------------------------


def add_request_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cid", metavar="CID", help="the dataset to store (its CID, as upload printed it)")
    terms = parser.add_argument_group("the request's terms")
    terms.add_argument(
        "--duration", metavar="DURATION", required=True, help="how long the hosts keep the data, e.g. 7d or 3600"
    )
    terms.add_argument(
        "--expiry",
        metavar="DURATION",
        required=True,
        help="how long the request waits for its slots to be filled before it is cancelled (less than --duration)",
    )
    terms.add_argument(
        "--price-per-byte-per-second", metavar="TOKENS", required=True, help="price offered, in token units"
    )
    terms.add_argument("--collateral-per-byte", metavar="TOKENS", required=True, help="collateral hosts must post")
    terms.add_argument(
        "--proof-probability", metavar="N", default="100", help="a proof is asked about every N periods [default: 100]"
    )
    terms.add_argument("--nodes", metavar="N", type=int, default=3, help="slots: hosts that store a part [default: 3]")
    terms.add_argument(
        "--tolerance", metavar="N", type=int, default=1, help="slots that may be lost without losing data [default: 1]"
    )
    add_connection_arguments(parser)


def run_request(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    duration = _duration("--duration", args.duration)
    expiry = _duration("--expiry", args.expiry)
    price = _amount("--price-per-byte-per-second", args.price_per_byte_per_second)
    collateral = _amount("--collateral-per-byte", args.collateral_per_byte)
    probability = _amount("--proof-probability", args.proof_probability)
    with connect(args, env) as client:
        purchase_id = client.request_storage(
            args.cid,
            duration=duration,
            price_per_byte_per_second=price,
            proof_probability=probability,
            collateral_per_byte=collateral,
            expiry=expiry,
            nodes=args.nodes,
            tolerance=args.tolerance,
        )
    print(purchase_id)
    return 0


def _duration(flag: str, text: str) -> int:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise ConfigError(flag, str(e)) from None


def _amount(flag: str, text: str) -> int:
    if not text.isdecimal():
        raise ConfigError(flag, f"expected a whole number of token units, got '{text}'")
    return int(text)


# --- purchases ----------------------------------------------------------------------------------------------------


def add_purchases_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", metavar="ID", nargs="?", help="one purchase (its id, as request printed it)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_connection_arguments(parser)


def run_purchases(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    with connect(args, env) as client:
        if args.id is not None:
            purchases = [(args.id, client.get_purchase(args.id))]
        else:
            purchases = [(pid, client.get_purchase(pid)) for pid in client.list_purchases()]
    if args.json:
        document = {pid: p.model_dump(mode="json", by_alias=True) for pid, p in purchases}
        print(json.dumps(document[args.id] if args.id is not None else document, indent=2))
    elif args.id is not None:
        print(describe_purchase(args.id, purchases[0][1]))
    else:
        for pid, purchase in purchases:
            error = f"  {purchase.error}" if purchase.error else ""
            print(f"{pid}  {purchase.state}{error}")
    return 0


def describe_purchase(purchase_id: str, purchase: Purchase) -> str:
    """A purchase for people: its state, the request's terms and its transitions."""
    lines = [f"purchase  {purchase_id}", f"state     {purchase.state}"]
    if purchase.error:
        lines.append(f"error     {purchase.error}")
    lines.append(f"request   {purchase.request_id}")
    request = purchase.request
    if request is not None:
        ask = request.ask
        lines.append(f"slots     {ask.slots} of {format_size(ask.slot_size)}, {ask.duration} s")
        lines.append(f"content   {request.content.cid}")
    for t in purchase.history:
        lines.append(f"  {t.at}  {t.from_state or '-'} -> {t.to_state}  {t.cause}")
    return "\n".join(lines)


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
