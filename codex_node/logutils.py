"""Logging for the node process: structlog configured once, to stderr, as text or JSON; level changeable live.

* ``text``: one line per event for people, ``timestamp [level] event  key=value …``. Values are made compact:
  bytes and long hex ids show as ``0x1234…abcd``, CIDs as ``bafkre…q3z4ai``, and integers logged under a key
  ending in ``size`` or ``bytes`` (``slot_size``, ``totalSize``, ``quota_used_bytes``) as ``64KiB``/``1.5GiB``.
* ``json``: one JSON object per line for machines. Nothing is shortened (a tool wants the full id to join on):
  bytes are full ``0x`` hex, CIDs their text, sizes plain integers, and structured values (dataclasses such as
  ``ChainHead``, pydantic models, mappings) nested JSON objects — never a Python ``repr`` in a string.

A few milestones (:data:`MILESTONES`: ``node started``, ``node stopped``) are shown at every level, so a node run
at ``--log-level warning`` still says once that it is up and where it serves.

Standard-library loggers (uvicorn, web3, …) go through the same renderer so the output has one shape.
The level is a process-wide setting read by the first processor, so :func:`set_level` takes effect at once,
also for loggers structlog has already cached (``POST /api/codex/v1/debug/chronicles/loglevel?level=…``).

Nothing here is called by library code: only the CLI configures logging. Tests capture logs with
``structlog.testing.capture_logs()`` regardless of this module.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import structlog
from structlog.types import EventDict, Processor, WrappedLogger

from codex_node.units import format_size
from codex_node.utils.redact import RedactFilter, redact_text

_log = structlog.get_logger(__name__)

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
# A CIDv1 in base32, the form data/cid.py writes (``bafkrei…``). Matched on the text, so that this module, which
# every layer uses, needs no import of the data layer's Cid type.
_CID_RE = re.compile(r"^b[a-z2-7]{40,}$")
_SHORT_BYTES = 8  # bytes values up to this length are shown whole


class _Level:
    """The process-wide minimum level (a number from :data:`LEVELS`)."""

    value = logging.INFO


def parse_level(text: str) -> str:
    """A level name (chronicles names accepted, any case) → its canonical name; ValueError if unknown."""
    name = text.strip().lower()
    name = _ALIASES.get(name, name)
    if name not in LEVELS:
        raise ValueError(
            f"'{text}' is not a log level (use debug, info, warning, error or critical; "
            "nim-codex's trace, notice, warn and fatal also work)"
        )
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


def change_level(text: str) -> str:
    """:func:`set_level` for a change while the node runs, said in one ``log level changed`` line.

    The line is a warning, logged before the change when the new level would hide it and after it otherwise, so
    it shows whenever either level lets warnings through. ValueError on an unknown level (nothing changes).
    """
    old = get_level()
    name = parse_level(text)
    quieter = LEVELS[name] > logging.WARNING
    if quieter:
        _log.warning("log level changed", old_level=old, new_level=name)
    set_level(name)
    if not quieter:
        _log.warning("log level changed", old_level=old, new_level=name)
    return name


# --- processors (pure: event dict in, event dict out) --------------------------------------------------------

MILESTONES = frozenset({"node started", "node stopped"})
"""Events shown at every level: one line saying the node is up (and where), one saying it stopped."""


def filter_level(_logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    if _METHOD_LEVELS.get(method_name, logging.INFO) < _Level.value and event_dict.get("event") not in MILESTONES:
        raise structlog.DropEvent
    return event_dict


def short_hex(data: bytes | bytearray | memoryview | str) -> str:
    """``0x`` hex, cut to ``0x1234…abcd`` when longer than :data:`_SHORT_BYTES` bytes."""
    text = data.removeprefix("0x").lower() if isinstance(data, str) else bytes(data).hex()
    if len(text) <= 2 * _SHORT_BYTES:
        return "0x" + text
    return f"0x{text[:4]}…{text[-4:]}"


def short_cid(cid: object) -> str:
    """A CID (or its text) cut to ``bafkre…q3z4ai``."""
    text = str(cid)
    return text if len(text) <= 16 else f"{text[:6]}…{text[-6:]}"


def _own_str(value: object) -> bool:
    """Whether ``value``'s type says how it reads as text (a CID does; a plain dataclass only has a repr)."""
    return type(value).__str__ is not object.__str__


def compact_value(key: str, value: object) -> object:
    """How ``value`` logged under ``key`` reads in text logs."""
    if isinstance(value, bytes | bytearray | memoryview):
        return short_hex(value)
    if isinstance(value, str) and _HEX_ID_RE.match(value):
        return short_hex(value)
    if isinstance(value, str) or (not isinstance(value, int | float | bool) and value is not None and _own_str(value)):
        text = str(value)
        if _CID_RE.match(text):
            return short_cid(text)
    if isinstance(value, int) and not isinstance(value, bool) and key.lower().endswith(("size", "bytes")):
        return format_size(value)
    return value


def compact_text(_logger: WrappedLogger, _method_name: str, event_dict: EventDict) -> EventDict:
    for key, value in event_dict.items():
        if key != "event":
            event_dict[key] = compact_value(key, value)
    return event_dict


def json_default(value: object) -> object:
    """JSON form of values ``json`` cannot encode.

    Bytes are full ``0x`` hex; a value whose type has a text form (a CID, a path) that text; structured values
    JSON objects (a dataclass by its fields, a pydantic model by its JSON dump, any other mapping by its items),
    their fields encoded by this same function; collections lists; anything else its ``str``.
    """
    if isinstance(value, bytes | bytearray | memoryview):
        return "0x" + bytes(value).hex()
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump) and not isinstance(value, type):
        return model_dump(mode="json")
    if _own_str(value):
        return str(value)  # a value that has a text form (a CID, a path) is written as that text
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, set | frozenset | tuple | list):
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
