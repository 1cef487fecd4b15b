"""Logging for the node process: structlog configured once, to stderr, as text or JSON; level changeable live.

* ``text``: one line per event for people, ``timestamp [level] event  key=value …``. Values are made compact:
  bytes and long hex ids show as ``0x1234…abcd``, CIDs as ``bafkre…q3z4ai``, and integers logged under a key
  ending in ``size`` or ``bytes`` (``slot_size``, ``totalSize``, ``quota_used_bytes``) as ``64KiB``/``1.5GiB``.
* ``json``: one JSON object per line for machines. Nothing is shortened (a tool wants the full id to join on):
  bytes are full ``0x`` hex, CIDs their text, sizes plain integers.

Standard-library loggers (uvicorn, web3, …) go through the same renderer so the output has one shape.
The level is a process-wide setting read by the first processor, so :func:`set_level` takes effect at once,
also for loggers structlog has already cached (``POST /api/codex/v1/debug/chronicles/loglevel?level=…``).

Nothing here is called by library code: only the CLI configures logging. Tests capture logs with
``structlog.testing.capture_logs()`` regardless of this module.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from typing import Any, TextIO

import structlog
from structlog.types import EventDict, Processor, WrappedLogger

from codex_node.data.cid import Cid
from codex_node.units import format_size
from codex_node.utils.redact import RedactFilter, redact_text

LOG_FORMATS = ("text", "json")
LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
# nim-codex (chronicles) level names, so Codex operators' habits and scripts keep working.
_ALIASES = {"trace": "debug", "notice": "info", "warn": "warning", "fatal": "critical"}
# structlog method name → level.
_METHOD_LEVELS = {**LEVELS, "warn": logging.WARNING, "exception": logging.ERROR, "fatal": logging.CRITICAL}
# Libraries that narrate their normal operation at INFO; shown only when the node runs at debug.
_CHATTY = ("uvicorn", "httpx", "httpcore", "web3", "urllib3", "asyncio")

_HEX_ID_RE = re.compile(r"^0x[0-9a-fA-F]{24,}$")
_SHORT_BYTES = 8  # bytes values up to this length are shown whole


class _Level:
    """The process-wide minimum level (a number from :data:`LEVELS`)."""

    value = logging.INFO


def parse_level(text: str) -> str:
    """A level name (chronicles names accepted, any case) → its canonical name; ValueError if unknown."""
    name = text.strip().lower()
    name = _ALIASES.get(name, name)
    if name not in LEVELS:
        raise ValueError(f"'{text}' is not a log level (use trace, debug, info, notice, warn, error or fatal)")
    return name


def get_level() -> str:
    return next(name for name, n in LEVELS.items() if n == _Level.value)


def set_level(text: str) -> str:
    """Change the level of every logger now; returns the canonical name. ValueError on an unknown level."""
    name = parse_level(text)
    _Level.value = LEVELS[name]
    logging.getLogger().setLevel(_Level.value)
    for lib in _CHATTY:
        logging.getLogger(lib).setLevel(_Level.value if _Level.value <= logging.DEBUG else logging.WARNING)
    return name


# --- processors (pure: event dict in, event dict out) --------------------------------------------------------


def filter_level(_logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    if _METHOD_LEVELS.get(method_name, logging.INFO) < _Level.value:
        raise structlog.DropEvent
    return event_dict


def short_hex(data: bytes | bytearray | memoryview | str) -> str:
    """``0x`` hex, cut to ``0x1234…abcd`` when longer than :data:`_SHORT_BYTES` bytes."""
    text = data.removeprefix("0x").lower() if isinstance(data, str) else bytes(data).hex()
    if len(text) <= 2 * _SHORT_BYTES:
        return "0x" + text
    return f"0x{text[:4]}…{text[-4:]}"


def short_cid(cid: Cid | str) -> str:
    text = str(cid)
    return text if len(text) <= 16 else f"{text[:6]}…{text[-6:]}"


def compact_value(key: str, value: object) -> object:
    """How ``value`` logged under ``key`` reads in text logs."""
    if isinstance(value, bytes | bytearray | memoryview):
        return short_hex(value)
    if isinstance(value, Cid):
        return short_cid(value)
    if isinstance(value, str) and _HEX_ID_RE.match(value):
        return short_hex(value)
    if isinstance(value, int) and not isinstance(value, bool) and key.lower().endswith(("size", "bytes")):
        return format_size(value)
    return value


def compact_text(_logger: WrappedLogger, _method_name: str, event_dict: EventDict) -> EventDict:
    for key, value in event_dict.items():
        if key != "event":
            event_dict[key] = compact_value(key, value)
    return event_dict


def json_default(value: object) -> object:
    """JSON form of values ``json`` cannot encode: bytes as full hex, everything else by ``str``."""
    if isinstance(value, bytes | bytearray | memoryview):
        return "0x" + bytes(value).hex()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def add_logger_name(logger: WrappedLogger, _method_name: str, event_dict: EventDict) -> EventDict:
    record = event_dict.get("_record")
    name = record.name if record is not None else getattr(logger, "name", None)
    if name:
        event_dict["logger"] = name
    return event_dict


def redact_line(_logger: WrappedLogger, _method_name: str, event_dict: EventDict) -> EventDict | str:
    """The rendered line without provider secrets (``utils/redact.py``); the last processor of every chain, so it
    receives the renderer's string (typed as structlog types every processor)."""
    line: object = event_dict
    return redact_text(line) if isinstance(line, str) else event_dict


# --- configuration -----------------------------------------------------------------------------------------------


class _NamedWriteLogger(structlog.WriteLogger):
    """A WriteLogger that remembers the name given to ``get_logger`` (the module), for the ``logger`` key."""

    def __init__(self, file: TextIO, name: str) -> None:
        super().__init__(file)
        self.name = name


class _Factory:
    def __init__(self, file: TextIO) -> None:
        self._file = file

    def __call__(self, *args: Any) -> _NamedWriteLogger:
        return _NamedWriteLogger(self._file, str(args[0]) if args else "")


def _renderer(fmt: str, stream: TextIO) -> list[Processor]:
    if fmt == "json":
        return [
            structlog.processors.dict_tracebacks,
            structlog.processors.JSONRenderer(serializer=json.dumps, default=json_default),
        ]
    colors = stream.isatty() and "NO_COLOR" not in os.environ
    return [
        compact_text,
        structlog.dev.ConsoleRenderer(colors=colors, exception_formatter=structlog.dev.plain_traceback),
    ]


def configure_logging(
    level: str = "info", fmt: str = "text", *, stream: TextIO | None = None, cache: bool = True
) -> None:
    """Send every log event (structlog and stdlib) to ``stream`` (stderr) as ``fmt``, from ``level`` up.

    ``cache`` lets structlog cache bound loggers (the real process); tests that reconfigure pass False.
    """
    if fmt not in LOG_FORMATS:
        raise ValueError(f"unknown log format {fmt!r}")
    out = stream if stream is not None else sys.stderr
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    render = [*_renderer(fmt, out), redact_line]  # the finished line: tracebacks and library texts included
    structlog.configure(
        processors=[filter_level, *shared, *render],
        logger_factory=_Factory(out),
        wrapper_class=structlog.make_filtering_bound_logger(logging.NOTSET),
        cache_logger_on_first_use=cache,
    )
    handler = logging.StreamHandler(out)
    handler.addFilter(RedactFilter())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *render],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    set_level(level)
