"""``codex-node check``: flags, the request it makes, what it prints and its exit codes."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from codex_node import checkcmd
from codex_node.cli import build_parser, main
from codex_node.errors import CodexError

OK = {"ok": True, "parts": [{"name": "books", "checked": 3, "problems": []}]}
BAD = {
    "ok": False,
    "parts": [
        {"name": "books", "checked": 3, "problems": []},
        {"name": "slots", "checked": 1, "problems": ["slot 0x05: no sale runs for it"]},
    ],
}


def settings(*argv: str, env: dict[str, str] | None = None) -> checkcmd.CheckSettings:
    args = build_parser().parse_args(["check", *argv])
    return checkcmd.settings(args, env or {})


def test_the_api_url_defaults_to_the_local_node_and_may_come_from_the_environment() -> None:
    assert settings().api_url == "http://127.0.0.1:8080"
    assert settings(env={"CODEX_API_URL": "http://127.0.0.1:9000/"}).api_url == "http://127.0.0.1:9000"


def test_a_url_that_is_not_http_is_refused_naming_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--api-url", "ftp://x"], env={}) == 2
    assert "check: error: --api-url" in capsys.readouterr().err


def test_a_token_file_others_may_read_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret-token-0123456789")
    token.chmod(0o644)
    assert main(["check", "--api-token", str(token)], env={}) == 2
    assert "--api-token" in capsys.readouterr().err


def test_the_request_carries_the_token_and_the_read_blocks_flag(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret-token-0123456789")
    token.chmod(0o600)
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=OK)

    chosen = settings("--api-token", str(token), "--read-blocks")
    assert checkcmd.fetch(chosen, transport=httpx.MockTransport(answer)) == OK
    assert seen[0].url.path == "/api/codex/v1/debug/check"
    assert seen[0].url.params["readBlocks"] == "true"
    assert seen[0].headers["Authorization"] == "Bearer s3cret-token-0123456789"


def test_problems_are_printed_one_per_line_and_sound_parts_say_ok() -> None:
    assert checkcmd.render(BAD) == [
        "ok      books: 3 checked",
        "PROBLEM slots: slot 0x05: no sale runs for it",
    ]


@pytest.mark.parametrize(
    ("status", "body", "says"),
    [
        (401, {"error": "missing or wrong bearer token"}, "the node answered 401: missing or wrong bearer token"),
        (200, {"something": "else"}, "did not answer a check"),
    ],
)
def test_a_refusal_or_a_stranger_s_answer_is_one_line(status: int, body: dict[str, Any], says: str) -> None:
    transport = httpx.MockTransport(lambda _: httpx.Response(status, json=body))
    with pytest.raises(CodexError, match=says):
        checkcmd.fetch(settings(), transport=transport)


def test_an_unreachable_node_exits_1_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["check", "--api-url", f"http://127.0.0.1:{port}"], env={}) == 1
    err = capsys.readouterr().err
    assert err.startswith("codex-node check: error: cannot reach the node at http://127.0.0.1:")
    assert err.count("\n") == 1
