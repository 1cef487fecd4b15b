"""The node's event loop: uvloop when installed, asyncio's otherwise (``utils/eventloop.py``)."""

from __future__ import annotations

import asyncio
import sys
import types

import pytest

from codex_node.utils import eventloop


class _Loop(asyncio.SelectorEventLoop):
    """Stands for uvloop's loop class."""


def _fake_uvloop(monkeypatch: pytest.MonkeyPatch) -> list[asyncio.AbstractEventLoop]:
    made: list[asyncio.AbstractEventLoop] = []

    def new_event_loop() -> asyncio.AbstractEventLoop:
        made.append(_Loop())
        return made[-1]

    module = types.ModuleType("fake_uvloop")
    module.new_event_loop = new_event_loop  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_uvloop", module)
    return made


def test_the_node_runs_on_the_installed_fast_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    made = _fake_uvloop(monkeypatch)

    async def main() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    loop = eventloop.run(main(), module="fake_uvloop")
    assert made == [loop]


def test_without_it_the_node_runs_on_asyncios_loop() -> None:
    async def main() -> str:
        return eventloop.loop_name(asyncio.get_running_loop())

    assert eventloop.loop_factory("no_such_loop_module") is None
    assert eventloop.run(main(), module="no_such_loop_module") == "asyncio"


def test_the_http_parser_named_is_httptools_only_when_it_imports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "httptools", types.ModuleType("httptools"))
    assert eventloop.http_parser() == "httptools"
    monkeypatch.setitem(sys.modules, "httptools", None)  # an import of it now raises ImportError
    assert eventloop.http_parser() == "h11"
