"""The operator's commands: ``keygen`` (a new key, mode 600, never over a file), ``status`` (one screen from a
running node, table or JSON) and ``account`` (balances of a key on a chain, or the running node's account)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account

from codex_node.cli import main
from codex_node.config import read_private_key
from codex_node.market.deployment import Deployment
from tests.harness import hardhat
from tests.harness.nodeprocess import NodeProcess, start_node

CLI = [sys.executable, "-m", "codex_node.cli"]


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEX_")}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False)


# --- keygen -------------------------------------------------------------------------------------------------------


def test_keygen_writes_a_private_key_file_and_prints_only_its_address(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "node.key"
    old = os.umask(0o022)
    try:
        assert main(["keygen", str(path)], env={}) == 0
    finally:
        os.umask(old)
    out = capsys.readouterr().out.strip()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = read_private_key(path)  # the form run --eth-private-key reads (and its mode check passes)
    assert Account.from_key(key).address == out
    assert key.hex() not in out


def test_keygen_never_overwrites_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "node.key"
    path.write_text("precious\n")
    assert main(["keygen", str(path)], env={}) == 2
    assert "already exists" in capsys.readouterr().err
    assert path.read_text() == "precious\n"


def test_keygen_into_a_missing_directory_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keygen", str(tmp_path / "nowhere" / "k")], env={}) == 2
    assert "does not exist" in capsys.readouterr().err


# --- status and account against a node ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    proc = start_node(tmp_path_factory.mktemp("status") / "data")
    try:
        yield proc
    finally:
        proc.stop()


def origin(node: NodeProcess) -> str:
    return node.api.removesuffix("/api/codex/v1")


@pytest.mark.slow
def test_status_prints_one_screen_of_a_ready_node(node: NodeProcess) -> None:
    result = run_cli("status", "--api-url", origin(node))
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for section in ("node", "chain", "account", "storage", "sales", "alerts"):
        assert any(line.startswith(section) for line in text.splitlines()), (section, text)
    assert "ready" in text
    assert "peer id" in text
    assert "12D3KooW" in text
    assert "caught up   yes" in text or "caught up  yes" in text or " yes" in text


@pytest.mark.slow
def test_status_json_has_every_section(node: NodeProcess) -> None:
    result = run_cli("status", "--api-url", origin(node), "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert set(status) == {"node", "chain", "account", "storage", "sales", "alerts"}
    assert status["node"]["ready"] is True
    assert status["node"]["peerId"].startswith("12D3KooW")
    assert status["node"]["peers"] == 0
    assert status["chain"]["caughtUp"] is True
    assert status["account"]["address"].startswith("0x")
    assert status["storage"]["quotaFreeBytes"] == status["storage"]["quotaMaxBytes"]
    assert set(status["sales"]) == {"agents", "outcomes"}
    assert status["alerts"] == []


@pytest.mark.slow
def test_account_without_a_provider_asks_the_running_node(node: NodeProcess) -> None:
    result = run_cli("account", "--api-url", origin(node), "--json")
    assert result.returncode == 0, result.stderr
    assert int(json.loads(result.stdout)["tokenBalance"]) > 0


def test_status_of_a_node_that_is_not_there_exits_1_in_one_line() -> None:
    result = run_cli("status", "--api-url", "http://127.0.0.1:9")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "cannot reach the node" in result.stderr


def test_status_with_a_bad_url_or_token_file_exits_2_naming_the_flag(tmp_path: Path) -> None:
    bad_url = run_cli("status", "--api-url", "ftp://x")
    assert (bad_url.returncode, "--api-url" in bad_url.stderr) == (2, True)
    loose = tmp_path / "token"
    loose.write_text("a-token-of-enough-length")
    loose.chmod(0o644)
    bad_token = run_cli("status", "--api-token", str(loose))
    assert (bad_token.returncode, "--api-token" in bad_token.stderr) == (2, True)


def test_account_with_a_key_and_an_address_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "k"
    assert main(["keygen", str(key)], env={}) == 0
    result = run_cli(
        "account",
        "--eth-provider",
        "http://127.0.0.1:9",
        "--eth-private-key",
        str(key),
        "--eth-account",
        "0x" + "1" * 40,
    )
    assert result.returncode == 2
    assert "--eth-account" in result.stderr


# --- account on a chain (Hardhat) -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chain() -> Iterator[hardhat.HardhatNode]:
    if not hardhat.available():
        pytest.skip("Hardhat is not installed (npm ci in contracts/)")
    with hardhat.HardhatNode() as n:
        yield n


@pytest.mark.hardhat
def test_account_reads_gas_and_token_balances_of_a_key_on_a_chain(chain: hardhat.HardhatNode, tmp_path: Path) -> None:
    out = tmp_path / "deployment.json"
    deployed = run_cli("deploy", "--eth-provider", chain.url, "--eth-account", chain.accounts[0], "--output", str(out))
    assert deployed.returncode == 0, deployed.stderr
    d = Deployment.load(out)
    result = run_cli(
        "account", "--eth-provider", chain.url, "--eth-account", chain.accounts[0], "--deployment", str(out), "--json"
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["address"].lower() == chain.accounts[0].lower()
    assert found["token"] == d.token
    assert int(found["gasBalance"]) == int(hardhat.rpc(chain.url, "eth_getBalance", [chain.accounts[0], "latest"]), 16)
    call = {"to": d.token, "data": "0x70a08231" + chain.accounts[0][2:].lower().rjust(64, "0")}  # balanceOf
    assert int(found["tokenBalance"]) == int(hardhat.rpc(chain.url, "eth_call", [call, "latest"]), 16)
    by_marketplace = run_cli(
        "account",
        "--eth-provider",
        chain.url,
        "--eth-account",
        chain.accounts[0],
        "--marketplace-address",
        d.marketplace,
        "--json",
    )
    assert json.loads(by_marketplace.stdout)["token"] == d.token
