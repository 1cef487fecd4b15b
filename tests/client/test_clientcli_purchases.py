"""``codex-node request`` and ``codex-node purchases`` against a real node on its embedded chain."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from codex_node import cli
from tests.client.conftest import RunningNode
from tests.harness import nodeprocess

pytestmark = pytest.mark.slow

TERMS = [
    "--duration",
    "1h",
    "--expiry",
    "10m",
    "--price-per-byte-per-second",
    "1",
    "--collateral-per-byte",
    "1",
    "--proof-probability",
    "1",
    "--nodes",
    "3",
    "--tolerance",
    "1",
]


@pytest.fixture(scope="module")
def market_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A node on its embedded chain (its account holds tokens); yields its API URL."""
    base = tmp_path_factory.mktemp("market-node")
    node = nodeprocess.start_node(base / "data", log_dir=base)
    try:
        yield node.api
    finally:
        if node.running:
            node.proc.kill()
            node.proc.wait()


def uploaded(api: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    (tmp_path / "data.bin").write_bytes(os.urandom(300_000))  # 5 blocks: enough for K = 2
    assert cli.main(["upload", str(tmp_path / "data.bin"), "--api-url", api], env={}) == 0
    return capsys.readouterr().out.strip()


def test_request_prints_the_purchase_id_and_purchases_lists_and_shows_it(
    market_node: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cid = uploaded(market_node, tmp_path, capsys)
    assert cli.main(["request", cid, *TERMS, "--api-url", market_node], env={}) == 0
    out, err = capsys.readouterr()
    purchase_id = out.strip()
    assert len(bytes.fromhex(purchase_id.removeprefix("0x"))) == 32, out
    assert err == ""

    assert cli.main(["purchases", "--api-url", market_node], env={}) == 0
    listed = capsys.readouterr().out.splitlines()
    [line] = [x for x in listed if x.startswith(purchase_id)]
    assert line.split()[1] in ("pending", "submitted")

    assert cli.main(["purchases", purchase_id, "--json", "--api-url", market_node], env={}) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["requestId"] == purchase_id
    assert shown["request"]["ask"]["slots"] == 3
    assert shown["request"]["ask"]["duration"] == 3600

    assert cli.main(["purchases", purchase_id, "--api-url", market_node], env={}) == 0
    text = capsys.readouterr().out
    assert f"purchase  {purchase_id}" in text
    assert "slots     3 of" in text


def test_a_request_the_node_refuses_is_one_line_naming_the_rule_and_exit_1(
    market_node: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cid = uploaded(market_node, tmp_path, capsys)
    terms = [*TERMS[:-2], "--tolerance", "3"]  # tolerance may not exceed nodes - tolerance
    assert cli.main(["request", cid, *terms, "--api-url", market_node], env={}) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("codex-node request: error: ")
    assert "(HTTP 422)" in line
    assert "tolerance" in line


def test_a_node_without_a_marketplace_answers_503(
    running_node: RunningNode, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--api-url", running_node.api, "--api-token", str(running_node.token_file)]
    assert cli.main(["purchases", *flags], env={}) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert "(HTTP 503)" in line


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--duration", "soon"),
        ("--expiry", "1x"),
        ("--price-per-byte-per-second", "1.5"),
        ("--collateral-per-byte", "-1"),
        ("--proof-probability", "many"),
    ],
)
def test_bad_terms_exit_2_naming_the_flag(flag: str, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    terms = list(TERMS)
    terms[terms.index(flag) + 1] = value
    unreachable = "http://127.0.0.1:1/api/codex/v1"  # never contacted: the flags are refused first
    assert cli.main(["request", "zDvZRwzmAny", *terms, "--api-url", unreachable], env={}) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert flag in line
