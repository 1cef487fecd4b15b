"""A Hardhat node on loopback for tests: start it on a free port, wait until it answers, stop it.

::

    with HardhatNode() as node:        # or node.start() / node.stop()
        node.url                       # http://127.0.0.1:<port>
        node.accounts                  # its unlocked, funded dev accounts (addresses)

It runs ``contracts/node_modules/.bin/hardhat node --hostname 127.0.0.1 --port <port>`` (the npm packages come
from ``contracts/package-lock.json``; :func:`available` says whether they are installed). Start-up takes about a
second. The port is chosen free just before the start; if another process takes it first, Hardhat exits and the
start is retried on another port, so a node answering on the port is always ours. Its output goes to a log
file whose tail is shown when it fails to start. :meth:`stop` terminates only the process it started.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Final

CONTRACTS_DIR: Final = Path(__file__).resolve().parents[2] / "contracts"
HARDHAT_CHAIN_ID: Final = 31337
DEV_KEY_0: Final = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
"""Private key of Hardhat's first dev account (publicly known; funded with 10,000 ether on every start)."""


_READY_LINE: Final = "Started HTTP and WebSocket JSON-RPC server at"


def hardhat_binary(contracts_dir: Path = CONTRACTS_DIR) -> Path:
    return contracts_dir / "node_modules" / ".bin" / "hardhat"


def available(contracts_dir: Path = CONTRACTS_DIR) -> bool:
    """True when Node.js and the contracts' npm packages (Hardhat) are installed."""
    return shutil.which("node") is not None and hardhat_binary(contracts_dir).exists()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rpc(url: str, method: str, params: list[Any] | None = None, *, timeout: float = 5.0) -> Any:
    """One synchronous JSON-RPC call; returns ``result`` or raises RuntimeError with the node's error."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    request = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        doc = json.loads(response.read())
    if "error" in doc:
        raise RuntimeError(f"{method}: {doc['error']}")
    return doc["result"]


class HardhatNode:
    """One ``hardhat node`` process on 127.0.0.1."""

    def __init__(
        self, *, contracts_dir: Path = CONTRACTS_DIR, startup_timeout: float = 60.0, attempts: int = 3
    ) -> None:
        self.contracts_dir = contracts_dir
        self.startup_timeout = startup_timeout
        self.attempts = attempts
        self.port = 0
        self.accounts: list[str] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def url(self) -> str:
        if self._proc is None:
            raise RuntimeError("hardhat node not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The ``hardhat node`` process's id while it runs (None before start and after stop)."""
        return None if self._proc is None else self._proc.pid

    def start(self) -> None:
        if self._proc is not None:
            raise RuntimeError("hardhat node already started")
        if not available(self.contracts_dir):
            raise RuntimeError(f"hardhat is not installed: run npm ci in {self.contracts_dir}")
        failure = ""
        for _ in range(self.attempts):
            failure = self._try_start()
            if not failure:
                return
        raise RuntimeError(f"hardhat node did not start: {failure}")

    def _try_start(self) -> str:
        """Start on a fresh port; return "" once it answers, or why it failed (the process is then gone)."""
        self.port = _free_port()
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            [str(hardhat_binary(self.contracts_dir)), "node", "--hostname", "127.0.0.1", "--port", str(self.port)],
            cwd=self.contracts_dir,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C meant for pytest does not reach it; stop() ends it
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                failure = f"exited with {self._proc.returncode}: {self._log_tail()}"
                self.stop()
                return failure
            if _READY_LINE not in self._log_text():  # its own announcement: the port is ours, not a squatter's
                time.sleep(0.05)
                continue
            try:
                chain_id = int(rpc(self.url, "eth_chainId", timeout=1.0), 16)
            except (OSError, urllib.error.URLError, RuntimeError, ValueError):
                time.sleep(0.05)
                continue
            if chain_id != HARDHAT_CHAIN_ID:
                self.stop()
                return f"chain id {chain_id} on port {self.port}, expected {HARDHAT_CHAIN_ID}"
            self.accounts = list(rpc(self.url, "eth_accounts"))
            return ""
        failure = f"no answer within {self.startup_timeout} s: {self._log_tail()}"
        self.stop()
        return failure

    def _log_text(self) -> str:
        self._log.seek(0)
        return str(self._log.read().decode(errors="replace"))

    def _log_tail(self) -> str:
        lines = self._log_text().strip().splitlines()
        return " | ".join(lines[-5:]) or "(no output)"

    def stop(self) -> None:
        """Terminate the node (kill it if it does not exit within 5 s). Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> HardhatNode:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
