"""No log line and no error shows a provider URL's password or API key, and an unreachable ``--eth-provider`` is one
line naming the flag (exit 2) that leaves no data dir behind.

The secret URL points at a real Hardhat node (which ignores the credentials and the path), so the node logs what it
logs on a real start, web3's own debug lines (the request URL) included.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import structlog
from eth_utils.address import to_checksum_address
from web3 import AsyncHTTPProvider, AsyncWeb3

from codex_node import logutils
from codex_node.config import NodeConfig
from codex_node.errors import ConfigError
from codex_node.market.deployment import DEV_CONFIG, deploy
from codex_node.node import Node
from codex_node.utils import redact
from tests.harness import hardhat

PASSWORD = "pa55word-0f-the-provider"
KEY = "k3y0123456789abcdef0123456789abcd"
QUERY_KEY = "QUERYKEY-5e5e5e5e5e"
SECRETS = (PASSWORD, KEY, QUERY_KEY)


def secret_url(host: str, port: int) -> str:
    return f"http://operator:{PASSWORD}@{host}:{port}/v3/{KEY}?apikey={QUERY_KEY}"


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked:\n{text}"


SCRIPT = Path(sys.executable).parent / "codex-node"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEX_")}
    return subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60, check=False)


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, *fragments: str) -> None:
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("codex-node ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def free_port() -> int:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    """Every log line of the process at debug level (structlog and stdlib), as the CLI configures it."""
    config = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    chatty = {name: logging.getLogger(name).level for name in ("uvicorn", "httpx", "web3", "asyncio")}
    saved_level = logutils._Level.value
    out = io.StringIO()
    logutils.configure_logging("debug", "text", stream=out, cache=False)
    yield out
    structlog.configure(**config)
    root.handlers, root.level = handlers, level
    for name, lvl in chatty.items():
        logging.getLogger(name).setLevel(lvl)
    logutils._Level.value = saved_level
    redact.forget_all()


@pytest.mark.hardhat
async def test_a_node_on_a_provider_url_with_credentials_never_logs_them(
    debug_log: io.StringIO, tmp_path: Path
) -> None:
    if not hardhat.available():
        pytest.skip("Hardhat is not installed (npm ci in contracts/)")
    with hardhat.HardhatNode() as chain:
        chain.accounts = [to_checksum_address(a) for a in chain.accounts]  # Hardhat answers them in lower case
        w3: AsyncWeb3[Any] = AsyncWeb3(AsyncHTTPProvider(chain.url))
        try:
            deployment = await deploy(w3, chain.accounts[0], DEV_CONFIG)
        finally:
            await w3.provider.disconnect()
        deployment.save(tmp_path / "deployment.json")
        url = urlsplit(chain.url)
        assert url.hostname is not None
        assert url.port is not None
        config = NodeConfig(
            data_dir=tmp_path / "data",
            api_port=0,
            eth_provider=secret_url(url.hostname, url.port),
            eth_account=chain.accounts[2],
            deployment=tmp_path / "deployment.json",
        )
        async with Node(config) as node:
            assert node.marketplace is not None
            await node.marketplace.market.get_signer()
    text = debug_log.getvalue()
    assert "marketplace started" in text
    assert f"operator:***@{url.hostname}:{url.port}/v3/***" in text  # the log still says which provider
    assert "Making request HTTP" in text  # web3's own debug lines were captured (and cleaned)
    assert_no_secret(text)


async def test_an_unreachable_provider_is_a_config_error_without_secrets_and_no_data_dir(
    debug_log: io.StringIO, tmp_path: Path
) -> None:
    config = NodeConfig(
        data_dir=tmp_path / "data",
        api_port=0,
        eth_provider=secret_url("127.0.0.1", free_port()),
        eth_account="0x" + "11" * 20,
        marketplace_address="0x" + "22" * 20,
    )
    node = Node(config)
    with pytest.raises(ConfigError) as e:
        await node.start()
    assert e.value.flag == "--eth-provider"
    assert "connection refused" in str(e.value)
    assert_no_secret(str(e.value))
    assert_no_secret(debug_log.getvalue())
    assert not (tmp_path / "data").exists()
    assert node.parts == []


@pytest.mark.parametrize("level", ["info", "debug"])
def test_run_with_an_unreachable_provider_exits_2_with_one_clean_error_line(tmp_path: Path, level: str) -> None:
    url = secret_url("127.0.0.1", free_port())
    result = run_cli(
        "run",
        "--log-level",
        level,
        "--data-dir",
        str(tmp_path / "data"),
        "--api-port",
        "0",
        "--eth-provider",
        url,
        "--eth-account",
        "0x" + "11" * 20,
        "--marketplace-address",
        "0x" + "22" * 20,
    )
    assert_no_secret(result.stderr + result.stdout)  # at debug: web3's request lines included
    assert "Traceback" not in result.stderr
    assert "ssl:default" not in result.stderr
    assert not (tmp_path / "data").exists()
    if level == "debug":
        assert "Making request HTTP. URI: http://operator:***@127.0.0.1" in result.stderr
        result = subprocess.CompletedProcess(result.args, result.returncode, "", result.stderr.splitlines()[-1])
    assert_one_line_error(result, 2, "--eth-provider", "cannot reach", "operator:***@127.0.0.1", "connection refused")


def test_deploy_with_an_unreachable_provider_exits_2_without_secrets() -> None:
    url = secret_url("127.0.0.1", free_port())
    result = run_cli("deploy", "--eth-provider", url, "--eth-account", "0x" + "11" * 20)
    assert_one_line_error(result, 2, "--eth-provider", "cannot reach")
    assert_no_secret(result.stderr + result.stdout)


def test_a_provider_url_that_is_not_a_url_is_refused_without_echoing_its_password() -> None:
    url = f"htp://operator:{PASSWORD}@h/v3/{KEY}"
    result = run_cli("deploy", "--eth-provider", url, "--eth-account", "0x" + "11" * 20)
    assert result.returncode == 2, result.stderr
    assert_no_secret(result.stderr + result.stdout)
