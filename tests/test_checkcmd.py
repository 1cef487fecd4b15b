"""``codex-node check``: flags, the request it makes through the client, what it prints and its exit codes."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from codex_node import checkcmd
from codex_node.cli import build_parser, main
from codex_node.client import CodexClient, NodeCheck

OK = {"ok": True, "parts": [{"name": "books", "checked": 3, "problems": []}]}
BAD = {
    "ok": False,
    "parts": [
        {"name": "books", "checked": 3, "problems": []},
        {"name": "slots", "checked": 1, "problems": ["slot 0x05: no sale runs for it"]},
    ],
}


def parse(*argv: str) -> Any:
    return build_parser().parse_args(["check", *argv])


def test_the_api_url_may_name_the_api_prefix_or_not() -> None:
    for url in ("http://127.0.0.1:9000", "http://127.0.0.1:9000/", "http://127.0.0.1:9000/api/codex/v1"):
        with checkcmd.connect(parse("--api-url", url), {}) as client:
            assert client.api_url == "http://127.0.0.1:9000/api/codex/v1"
    with checkcmd.connect(parse(), {"CODEX_API_URL": "http://127.0.0.1:9001"}) as client:
        assert client.api_url == "http://127.0.0.1:9001/api/codex/v1"
    with checkcmd.connect(parse(), {}) as client:
        assert client.api_url == "http://127.0.0.1:8080/api/codex/v1"


def test_a_url_that_is_not_http_is_refused_naming_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--api-url", "ftp://x"], env={}) == 2
    assert "check: error: --api-url" in capsys.readouterr().err


def test_a_token_file_others_may_read_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret-token-0123456789")
    token.chmod(0o644)
    assert main(["check", "--api-token", str(token)], env={}) == 2
    assert "--api-token" in capsys.readouterr().err


def test_the_client_asks_the_check_route_with_the_token_and_verify() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=OK)

    with CodexClient(token="s3cret-token-0123456789", transport=httpx.MockTransport(answer)) as client:
        assert client.debug_check(verify=True).ok
    assert seen[0].url.path == "/api/codex/v1/debug/check"
    assert seen[0].url.params["verify"] == "true"
    assert seen[0].headers["Authorization"] == "Bearer s3cret-token-0123456789"


def test_problems_are_printed_one_per_line_and_sound_parts_say_ok() -> None:
    assert checkcmd.render(NodeCheck.model_validate(BAD)) == [
        "ok      books: 3 checked",
        "PROBLEM slots: slot 0x05: no sale runs for it",
    ]


def test_an_unreachable_node_exits_1_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["check", "--api-url", f"http://127.0.0.1:{port}"], env={}) == 1
    err = capsys.readouterr().err
    assert err.startswith("codex-node check: error: ")
    assert err.count("\n") == 1
