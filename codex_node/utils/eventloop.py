"""Running the node's event loop: uvloop when it is installed, asyncio's own loop otherwise.

uvloop (and httptools, which uvicorn picks by itself when it is installed: ``http="auto"``) are dependencies
(uvloop not on Windows, where it has no build): on the upload benchmark they take the server's event-loop
thread, which bounds an HTTP upload, from h11's pure-Python parsing and the selector's reader churn to C
(``docs/packs.md`` has the numbers).
Without them everything works the same, only slower. This module must never require either.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

_T = TypeVar("_T")


def loop_factory(module: str = "uvloop") -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's ``new_event_loop`` if ``module`` imports, else ``None`` (asyncio's default loop)."""
    try:
        found = importlib.import_module(module)
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = found.new_event_loop
    return factory


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """``uvloop`` or ``asyncio``: what the logs say the node runs on."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


def http_parser() -> str:
    """The HTTP/1.1 parser uvicorn picks (``http="auto"``): ``httptools`` when installed, else ``h11``."""
    try:
        importlib.import_module("httptools")
    except ImportError:
        return "h11"
    return "httptools"


def run(main: Coroutine[Any, Any, _T], *, module: str = "uvloop") -> _T:
    """:func:`asyncio.run` on the fastest loop installed."""
    with asyncio.Runner(loop_factory=loop_factory(module)) as runner:
        return runner.run(main)
