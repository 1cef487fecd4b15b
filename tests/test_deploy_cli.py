"""``codex-node deploy``: one-line errors (exit 2 for flags, 1 for the chain) and a real deployment to Hardhat."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from codex_node.cli import EXIT_USAGE, build_parser, main
from codex_node.deploycmd import settings
from codex_node.market.deployment import Deployment
from tests.harness import hardhat

SCRIPT = Path(sys.executable).with_name("codex-node")
HARDHAT_ACCOUNT_0 = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The installed console script, with no CODEX_* variables from the test's environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEX_")}
    return subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


def assert_one_line(stderr: str, *fragments: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("codex-node deploy: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "deployer.key"
    path.write_text(hardhat.DEV_KEY_0 + "\n")
    path.chmod(0o600)
    return path


# --- flags: exit 2, one line naming the flag (checked before anything connects) ---------------------------------


@pytest.mark.parametrize(
    ("args", "flag", "fragment"),
    [
        ([], "--eth-provider", "is required"),
        (["--eth-provider", "http://127.0.0.1:8545"], "--eth-private-key", "--eth-account ADDRESS"),
        (["--eth-provider", "localhost", "--eth-account", HARDHAT_ACCOUNT_0], "--eth-provider", "not a URL"),
        (["--eth-provider", "http://127.0.0.1:8545", "--eth-account", "0x12"], "--eth-account", "not an Ethereum"),
        (
            [
                "--eth-provider",
                "http://127.0.0.1:8545",
                "--eth-account",
                HARDHAT_ACCOUNT_0,
                "--output",
                "/nonexistent/d.json",
            ],
            "--output",
            "does not exist",
        ),
    ],
)
def test_a_bad_flag_exits_2_with_one_line_naming_it(
    capsys: pytest.CaptureFixture[str], args: list[str], flag: str, fragment: str
) -> None:
    assert main(["deploy", *args], env={}) == EXIT_USAGE
    assert_one_line(capsys.readouterr().err, flag, fragment)


def test_a_key_file_and_an_account_together_are_refused(capsys: pytest.CaptureFixture[str], key_file: Path) -> None:
    args = [
        "--eth-provider",
        "http://127.0.0.1:8545",
        "--eth-private-key",
        str(key_file),
        "--eth-account",
        HARDHAT_ACCOUNT_0,
    ]
    assert main(["deploy", *args], env={}) == EXIT_USAGE
    assert_one_line(capsys.readouterr().err, "--eth-account", "not both")


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_a_key_file_others_may_read_is_refused(capsys: pytest.CaptureFixture[str], key_file: Path) -> None:
    key_file.chmod(0o640)
    assert main(["deploy", "--eth-provider", "http://127.0.0.1:8545", "--eth-private-key", str(key_file)], env={}) == 2
    err = capsys.readouterr().err
    assert_one_line(err, "--eth-private-key", "chmod 600")
    assert hardhat.DEV_KEY_0[2:] not in err


def test_the_flags_may_come_from_the_environment(key_file: Path) -> None:
    args = build_parser().parse_args(["deploy"])
    env = {"CODEX_ETH_PROVIDER": "ws://127.0.0.1:8546", "CODEX_ETH_PRIVATE_KEY": str(key_file)}
    chosen = settings(args, env)
    assert chosen.provider == "ws://127.0.0.1:8546"
    assert chosen.key_file == key_file
    assert chosen.account is None
    assert chosen.output is None


# --- the chain: one line (exit 2 when the provider cannot be reached, 1 when the deployment fails) ----------------


def test_an_unreachable_provider_exits_2_with_one_line_naming_the_flag() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run_cli("deploy", "--eth-provider", f"http://127.0.0.1:{port}", "--eth-account", HARDHAT_ACCOUNT_0)
    assert result.returncode == EXIT_USAGE, result.stderr
    assert_one_line(result.stderr, "--eth-provider: cannot reach", str(port), "connection refused")
    assert result.stdout == ""


# --- a real deployment -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def node() -> Iterator[hardhat.HardhatNode]:
    if not hardhat.available():
        pytest.skip("Hardhat is not installed (npm ci in contracts/)")
    with hardhat.HardhatNode() as n:
        yield n


def has_code(node: hardhat.HardhatNode, address: str) -> bool:
    return hardhat.rpc(node.url, "eth_getCode", [address, "latest"]) not in ("0x", "0x0")


@pytest.mark.hardhat
def test_deploy_with_an_unlocked_account_prints_and_writes_the_deployment(
    node: hardhat.HardhatNode, tmp_path: Path
) -> None:
    output = tmp_path / "deployment.json"
    result = run_cli("deploy", "--eth-provider", node.url, "--eth-account", node.accounts[0], "--output", str(output))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert json.loads(result.stdout) == json.loads(output.read_text())
    deployed = Deployment.load(output)
    assert deployed.chain_id == hardhat.HARDHAT_CHAIN_ID
    assert deployed.block_number > 256  # the young chain was mined past block 256 first
    assert has_code(node, deployed.marketplace)
    assert has_code(node, deployed.token)
    token_call = {"to": deployed.marketplace, "data": "0xfc0c546a"}  # token()
    assert hardhat.rpc(node.url, "eth_call", [token_call, "latest"])[-40:] == deployed.token[2:].lower()


@pytest.mark.hardhat
def test_deploy_with_a_private_key_signs_locally(node: hardhat.HardhatNode, key_file: Path) -> None:
    nonce_before = int(hardhat.rpc(node.url, "eth_getTransactionCount", [HARDHAT_ACCOUNT_0, "latest"]), 16)
    result = run_cli("deploy", "--eth-provider", node.url, "--eth-private-key", str(key_file))
    assert result.returncode == 0, result.stderr
    deployed = Deployment.from_json(result.stdout)
    assert has_code(node, deployed.marketplace)
    assert int(hardhat.rpc(node.url, "eth_getTransactionCount", [HARDHAT_ACCOUNT_0, "latest"]), 16) == nonce_before + 2


# --- --fund: a local marketplace needs no other tool --------------------------------------------------------------


def test_a_bad_fund_address_exits_2_naming_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--eth-provider", "http://127.0.0.1:8545", "--eth-account", HARDHAT_ACCOUNT_0, "--fund", "0x12"]
    assert main(["deploy", *args], env={}) == EXIT_USAGE
    assert_one_line(capsys.readouterr().err, "--fund", "not an Ethereum address")


def token_balance(node: hardhat.HardhatNode, token: str, account: str) -> int:
    call = {"to": token, "data": "0x70a08231" + account[2:].lower().rjust(64, "0")}  # balanceOf(account)
    return int(hardhat.rpc(node.url, "eth_call", [call, "latest"]), 16)


def ether(node: hardhat.HardhatNode, account: str) -> int:
    return int(hardhat.rpc(node.url, "eth_getBalance", [account, "latest"]), 16)


@pytest.mark.hardhat
def test_fund_mints_tokens_to_each_account_and_sends_ether_only_to_those_without(
    node: hardhat.HardhatNode, key_file: Path
) -> None:
    from codex_node.market.deployment import FUND_ETHER, FUND_TOKENS

    dev_account = node.accounts[3]  # a Hardhat dev account: 10,000 ether already
    stranger = "0x" + os.urandom(20).hex()  # nobody's account: no ether at all
    dev_ether_before = ether(node, dev_account)
    result = run_cli(
        "deploy", "--eth-provider", node.url, "--eth-private-key", str(key_file),
        "--fund", dev_account, "--fund", stranger, "--fund", dev_account,  # a repeated account is funded once
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    deployed = Deployment.from_json(result.stdout)
    assert token_balance(node, deployed.token, dev_account) == FUND_TOKENS
    assert token_balance(node, deployed.token, stranger) == FUND_TOKENS
    assert ether(node, stranger) == FUND_ETHER
    assert ether(node, dev_account) == dev_ether_before  # not sent any: it pays its own gas already
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, result.stderr
    assert "funded" in lines[0]
    assert "ether" not in lines[0]
    assert "funded" in lines[1]
    assert "10 ether" in lines[1]
