"""Logging: text and JSON output, compact values, stdlib loggers in the same shape, the level changed live."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import structlog
from pydantic import BaseModel

from codex_node import logutils
from codex_node.data.cid import block_cid
from codex_node.logutils import compact_value, configure_logging, get_level, parse_level, set_level

REQUEST_ID = bytes(range(32))


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state; put it back so other tests see the defaults."""
    config = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    chatty = {name: logging.getLogger(name).level for name in ("uvicorn", "httpx", "asyncio")}
    saved_level = logutils._Level.value
    yield
    structlog.configure(**config)
    root.handlers, root.level = handlers, level
    for name, lvl in chatty.items():
        logging.getLogger(name).setLevel(lvl)
    logutils._Level.value = saved_level


def capture(fmt: str, level: str = "info", *, cache: bool = False) -> io.StringIO:
    out = io.StringIO()
    configure_logging(level, fmt, stream=out, cache=cache)
    return out


def json_lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_json_output_is_one_object_per_line_with_full_values() -> None:
    out = capture("json")
    cid = block_cid(b"hello")
    log = structlog.get_logger("codex_node.sales.agent")
    log.info("slot filled", request_id=REQUEST_ID, slot_index=2, slot_size=65536, cid=cid)
    log.warning("second")
    first, second = json_lines(out)
    assert first["event"] == "slot filled"
    assert first["level"] == "info"
    assert first["logger"] == "codex_node.sales.agent"
    assert first["request_id"] == "0x" + REQUEST_ID.hex()  # JSON keeps ids whole, for tools to join on
    assert first["slot_size"] == 65536
    assert first["cid"] == cid.text
    assert first["timestamp"].endswith("Z")
    assert second["level"] == "warning"


def test_text_output_is_one_key_value_line_with_compact_values() -> None:
    out = capture("text")
    cid = block_cid(b"hello")
    structlog.get_logger("codex_node.sales.agent").info(
        "slot filled", request_id=REQUEST_ID, slot_index=2, slot_size=65536, quota_used_bytes=3 * 2**29, cid=cid
    )
    (line,) = out.getvalue().splitlines()
    assert "slot filled" in line
    assert "[info" in line
    assert "request_id=0x0001…1e1f" in line
    assert "slot_index=2" in line
    assert "slot_size=64KiB" in line
    assert "quota_used_bytes=1.5GiB" in line
    assert f"cid={cid.text[:6]}…{cid.text[-6:]}" in line
    assert "codex_node.sales.agent" in line


def test_an_exception_is_logged_with_its_traceback_in_both_formats() -> None:
    for fmt in ("text", "json"):
        out = capture(fmt)
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            structlog.get_logger("t").exception("failed")
        assert "boom" in out.getvalue()
        assert "RuntimeError" in out.getvalue()
        if fmt == "json":
            (entry,) = json_lines(out)
            assert entry["level"] == "error"


def test_stdlib_loggers_come_out_in_the_same_format() -> None:
    out = capture("json")
    logging.getLogger("some.library").warning("disk %s", "full")
    (entry,) = json_lines(out)
    assert entry == {**entry, "event": "disk full", "level": "warning", "logger": "some.library"}


def test_events_below_the_level_are_dropped() -> None:
    out = capture("json", "warning")
    log = structlog.get_logger("t")
    log.info("quiet")
    log.debug("quieter")
    log.error("loud")
    logging.getLogger("lib").info("quiet too")
    assert [e["event"] for e in json_lines(out)] == ["loud"]


def test_set_level_takes_effect_at_once_even_for_cached_loggers() -> None:
    out = capture("json", "info", cache=True)
    log = structlog.get_logger("t")
    log.debug("before")  # first use: structlog caches this logger with the current processors
    set_level("debug")
    log.debug("after")
    logging.getLogger("lib").debug("stdlib after")
    assert [e["event"] for e in json_lines(out)] == ["after", "stdlib after"]
    assert get_level() == "debug"


def test_chatty_libraries_are_quiet_unless_debugging() -> None:
    out = capture("json", "info")
    logging.getLogger("uvicorn.error").info("Started server process")
    assert out.getvalue() == ""
    set_level("debug")
    logging.getLogger("uvicorn.error").info("Started server process")
    assert [e["event"] for e in json_lines(out)] == ["Started server process"]


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("debug", "debug"),
        ("TRACE", "debug"),
        ("notice", "info"),
        ("warn", "warning"),
        ("fatal", "critical"),
        ("Error", "error"),
    ],
)
def test_parse_level_accepts_our_names_and_the_nim_codex_ones(text: str, name: str) -> None:
    assert parse_level(text) == name


def test_an_unknown_level_is_refused_and_changes_nothing() -> None:
    capture("json", "info")
    with pytest.raises(ValueError, match="not a log level"):
        set_level("verbose")
    assert get_level() == "info"


@pytest.mark.parametrize(
    ("key", "value", "shown"),
    [
        ("data", b"\x01\x02", "0x0102"),
        ("digest", bytes(32), "0x0000…0000"),
        ("slot_id", "0x" + "ab" * 32, "0xabab…abab"),
        ("address", "0x" + "12" * 20, "0x1212…1212"),
        ("name", "0x12", "0x12"),
        ("totalSize", 1024, "1KiB"),
        ("bytes", 10, "10B"),
        ("slot_index", 1024, 1024),
        ("enabled_size", True, True),
        ("note", "plain", "plain"),
    ],
)
def test_compact_value(key: str, value: object, shown: object) -> None:
    assert compact_value(key, value) == shown


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="log format"):
        configure_logging("info", "xml", stream=io.StringIO())


@dataclass(frozen=True)
class _Head:
    number: int
    hash: bytes
    cid: object


class _Model(BaseModel):
    chain_id: int
    name: str


def test_json_renders_structured_values_as_objects_not_python_reprs() -> None:
    out = capture("json")
    cid = block_cid(b"x")
    structlog.get_logger("t").info(
        "chain moved", head=_Head(469, b"\xab" * 32, cid), info=_Model(chain_id=1, name="dev"), seen={"a": [1, 2]}
    )
    (line,) = json_lines(out)
    assert line["head"] == {"number": 469, "hash": "0x" + "ab" * 32, "cid": cid.text}
    assert line["info"] == {"chain_id": 1, "name": "dev"}
    assert line["seen"] == {"a": [1, 2]}


def test_changing_the_level_live_says_the_old_and_new_level() -> None:
    out = capture("json", "info")
    logutils.change_level("debug")
    (line,) = json_lines(out)
    assert (line["event"], line["old_level"], line["new_level"]) == ("log level changed", "info", "debug")
    assert get_level() == "debug"


def test_changing_to_a_quieter_level_still_shows_the_change() -> None:
    out = capture("json", "info")
    logutils.change_level("error")
    structlog.get_logger("t").warning("hidden now")
    assert [(e["event"], e["new_level"]) for e in json_lines(out)] == [("log level changed", "error")]


def test_the_unknown_level_error_names_every_level() -> None:
    with pytest.raises(ValueError, match="not a log level") as caught:
        parse_level("verbose")
    for name in ("debug", "info", "warning", "error", "critical"):
        assert name in str(caught.value)


@pytest.mark.parametrize("level", ["warning", "error", "critical"])
def test_node_started_shows_at_every_level(level: str) -> None:
    out = capture("json", level)
    log = structlog.get_logger("codex_node.node")
    log.info("node started", api="http://127.0.0.1:8080/api/codex/v1")
    log.info("something routine")
    log.info("node stopped")
    assert [e["event"] for e in json_lines(out)] == ["node started", "node stopped"]


def test_text_logs_shorten_cids_given_as_text_too() -> None:
    text = block_cid(b"x").text
    assert compact_value("cid", text) == f"{text[:6]}…{text[-6:]}"
