"""A local marketplace of separate processes: a Hardhat chain and ``codex-node run`` nodes, for the scenarios.

::

    net = LocalNet(tmp_path)
    net.start()                                  # hardhat node, codex-node deploy --fund …
    client = net.add_node("client")
    host = net.add_node("host", bootstrap=[client])
    cid = client.api.upload(data)                # every node is driven through codex_node.client
    net.advance(seconds)                         # evm_increaseTime + evm_mine
    net.wait_for(probe, what="…")
    net.stop()                                   # every process ends, whatever happened

What it does, reusing the test harnesses of ``tests/harness/``:

- **the chain**: ``hardhat node`` on 127.0.0.1 from ``contracts/`` (:class:`tests.harness.hardhat.HardhatNode`),
  mining a block a second besides the transactions' own (``evm_setIntervalMining``), as a live chain does, so
  the nodes' on-chain clocks move; :meth:`LocalNet.advance` moves time forward at once;
- **the deployment**: ``codex-node deploy --eth-private-key <account 0> --fund <accounts 1..N>`` (the command an
  operator runs), written to ``<root>/deployment.json``;
- **nodes**: :meth:`LocalNet.add_node` starts ``codex-node run`` (:func:`tests.harness.nodeprocess.start_node`)
  with its own data dir, an API port the OS picks, its own Hardhat account (the key in a mode-600 file),
  ``--bootstrap-node`` for each node given, and a JSON log kept in ``<root>/logs/``; it returns once ``/health``
  says ready;
- **the report**: :meth:`LocalNet.report` is each node's last log lines (and every warning and error before
  them); the conftest adds it to a failed test's report;
- **no process left behind**: every process is registered with the reaper (``reaper.py``), which ends them when
  the test process ends, even by SIGKILL; :meth:`LocalNet.stop` ends them itself first.

Loopback only; every wait has a condition and a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar, cast

import httpx
from eth_account import Account
from prometheus_client.parser import text_string_to_metric_families
from web3 import HTTPProvider, Web3
from web3.types import TxData

from codex_node.client import CodexClient
from codex_node.client.errors import ServiceUnavailableError, TransportError
from codex_node.market.deployment import DEV_CONFIG, Deployment, artifact
from codex_node.market.types import RequestId, RequestState, SlotId, SlotState
from integration.reaper import Reaper
from tests.harness import hardhat
from tests.harness.bgloop import BackgroundLoop
from tests.harness.blockgate import BlockGate
from tests.harness.nodeprocess import SCRIPT, STOP_TIMEOUT, NodeProcess, start_node
from tests.harness.rpcproxy import Mode, RpcProxy

T = TypeVar("T")

MNEMONIC: Final = "test test test test test test test test test test test junk"
"""Hardhat's default dev mnemonic (public: a local dev chain's accounts only)."""
FUNDED_ACCOUNTS: Final = 8
"""Hardhat accounts 1..8 are funded with test tokens by the deployment (account 0 deploys)."""
STEP_TIMEOUT: Final = 60.0
"""Seconds one step may take (a node start, a sale's fill): generous, the machine is shared."""
POLL: Final = 0.2
PERIOD: Final = DEV_CONFIG.proofs.period
"""Seconds of a proof period of the deployed marketplace (``codex-node deploy`` uses the dev configuration)."""
JUMP_SLACK: Final = 15
"""Seconds after one of the test's time jumps in which a proof built before it may still be mined (and refused)."""
REPORT_LINES: Final = 40
CHAIN_REPORT_LINES: Final = 80
"""Last lines of Hardhat's output (one per JSON-RPC call, and each mined transaction) in a failure report."""
"""Last log lines per node in a failure report (warnings and errors before them are added)."""


def dev_key(index: int) -> str:
    """The private key of Hardhat's dev account ``index`` (derived from :data:`MNEMONIC`)."""
    Account.enable_unaudited_hdwallet_features()
    return str(Account.from_mnemonic(MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}").key.to_0x_hex())


def write_key(path: Path, key: str) -> Path:
    """``key`` in a file only its owner may read (the node refuses any other)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return path


def format_line(line: str) -> str:
    """One JSON log line as ``time level event key=value…`` (a line that is not JSON as it is)."""
    try:
        doc = json.loads(line)
    except json.JSONDecodeError:
        return line
    if not isinstance(doc, dict):
        return line
    head = f"{doc.pop('timestamp', '')} {doc.pop('level', '?'):7} {doc.pop('event', '')}"
    return " ".join([head, *(f"{k}={v}" for k, v in doc.items())])


class NodeExitedError(AssertionError):
    """A node exited while the test waited for something (its log is in the failure report)."""


@dataclass
class LocalNode:
    """One ``codex-node run`` process and the test's hands on it."""

    name: str
    index: int
    """Its Hardhat account's index."""
    address: str
    data_dir: Path
    flags: tuple[str, ...]
    process: NodeProcess
    api: CodexClient
    rpc: RpcProxy | None = None
    """The proxy between the node and Hardhat, when started with ``rpc_proxy=True`` (:meth:`LocalNet.rpc_fail`)."""

    @property
    def url(self) -> str:
        """The API base URL (``http://127.0.0.1:<port>/api/codex/v1``): what its peers are given."""
        return self.process.api

    def metric(self, name: str) -> float:
        """The value of the Prometheus sample ``name`` (without labels) on the node's ``/metrics`` (started with
        ``--metrics --metrics-port 0``); 0 when the node has not counted it yet."""
        started = self.process.find(lambda e: e.get("event") == "node started")
        url = started[-1].get("metrics") if started else None
        assert url, f"{self.name} serves no metrics: start it with --metrics --metrics-port 0"
        text = httpx.get(str(url), timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and not sample.labels:
                    return float(sample.value)
        return 0.0

    def report(self, lines: int = REPORT_LINES) -> str:
        text = self.process.log.read_text(errors="replace").splitlines()
        tail = text[-lines:]
        earlier = [x for x in text[:-lines] if '"level": "warning"' in x or '"level": "error"' in x]
        state = "running" if self.process.running else f"exited {self.process.proc.returncode}"
        out = [f"== {self.name} ({self.address}, {self.url}, {state}, log {self.process.log})"]
        if earlier:
            out.append(f"   warnings and errors before the last {lines} lines:")
            out.extend(f"   ! {format_line(x)}" for x in earlier[-20:])
        out.extend(f"   | {format_line(x)}" for x in tail)
        return "\n".join(out)


class ChainView:
    """What the tests read of the chain, straight from Hardhat (not through a node): balances, slots, events."""

    def __init__(self, url: str, deployment: Deployment) -> None:
        self.w3 = Web3(HTTPProvider(url, request_kwargs={"timeout": 10}))
        self.market = self.w3.eth.contract(address=deployment.marketplace, abi=artifact("Marketplace")["abi"])  # type: ignore[call-overload]
        self.token = self.w3.eth.contract(address=deployment.token, abi=artifact("TestToken")["abi"])  # type: ignore[call-overload]

    def balance(self, account: str) -> int:
        return int(self.token.functions.balanceOf(Web3.to_checksum_address(account)).call())

    def slot_state(self, sid: SlotId) -> SlotState:
        return SlotState(self.market.functions.slotState(sid).call())

    def request_state(self, rid: RequestId) -> RequestState:
        return RequestState(self.market.functions.requestState(rid).call())

    def request_end(self, rid: RequestId) -> int:
        return int(self.market.functions.requestEnd(rid).call())

    def host(self, sid: SlotId) -> str:
        return str(self.market.functions.getHost(sid).call())

    def fill_times(self, rid: RequestId) -> dict[int, int]:
        """Slot index → the timestamp of the block that filled it (the last fill)."""
        out: dict[int, int] = {}
        for log in self.market.events.SlotFilled.get_logs(from_block=0):
            if bytes(log["args"]["requestId"]) == rid:
                out[int(log["args"]["slotIndex"])] = int(self.w3.eth.get_block(log["blockNumber"])["timestamp"])
        return out

    def transactions_from(self, account: str) -> list[tuple[str, int]]:
        """Every transaction ``account`` sent, in order, as (the marketplace or token function called, its receipt
        status: 1 succeeded, 0 reverted)."""
        return [(function, status) for function, status, _ in self._sent(account)]

    def reverted_from(self, account: str) -> list[tuple[str, int]]:
        """The transactions of ``account`` that reverted, as (the function called, the block that mined it)."""
        return [(function, block) for function, status, block in self._sent(account) if status != 1]

    def _sent(self, account: str) -> list[tuple[str, int, int]]:
        """Every transaction ``account`` sent, in order: (function called, receipt status, block number)."""
        sender = Web3.to_checksum_address(account)
        out: list[tuple[str, int, int]] = []
        for number in range(self.w3.eth.block_number + 1):
            # full_transactions: every entry is a transaction, not its hash
            for tx in cast(list[TxData], self.w3.eth.get_block(number, full_transactions=True)["transactions"]):
                if tx["from"] != sender:
                    continue
                contract = self.market if tx["to"] == self.market.address else self.token
                function, _ = contract.decode_function_input(tx["input"])
                status = int(self.w3.eth.get_transaction_receipt(tx["hash"])["status"])
                out.append((str(function.fn_name), status, number))
        return out

    def nonce(self, account: str) -> int:
        """Transactions ``account`` has sent that the chain took (its next nonce)."""
        return int(self.w3.eth.get_transaction_count(Web3.to_checksum_address(account)))

    def proofs_submitted(self, sid: SlotId) -> int:
        return sum(
            1 for log in self.market.events.ProofSubmitted.get_logs(from_block=0) if bytes(log["args"]["id"]) == sid
        )

    def proof_periods(self, sid: SlotId) -> list[int]:
        """The proof periods of the blocks holding a ``ProofSubmitted`` of ``sid`` (a fill's proof included)."""
        return [
            int(self.w3.eth.get_block(log["blockNumber"])["timestamp"]) // PERIOD
            for log in self.market.events.ProofSubmitted.get_logs(from_block=0)
            if bytes(log["args"]["id"]) == sid
        ]

    def pointer(self, sid: SlotId) -> int:
        """Where the slot's challenge pointer stands in the latest block (``getPointer``; it wraps after 255)."""
        return int(self.market.functions.getPointer(sid).call())

    def missing_proofs(self, sid: SlotId) -> int:
        """Proofs marked missing since the slot was last filled (reset when it is freed)."""
        return int(self.market.functions.missingProofs(sid).call())

    def current_collateral(self, sid: SlotId) -> int:
        """The collateral the slot's host still has in the contract (0 once the slot is freed)."""
        return int(self.market.functions.currentCollateral(sid).call())

    def freed_slots(self, rid: RequestId) -> list[int]:
        """The slot indices of every ``SlotFreed`` of ``rid``, in chain order."""
        return [
            int(log["args"]["slotIndex"])
            for log in self.market.events.SlotFreed.get_logs(from_block=0)
            if bytes(log["args"]["requestId"]) == rid
        ]

    def request_failed(self, rid: RequestId) -> bool:
        """Whether a ``RequestFailed`` of ``rid`` was emitted."""
        return any(
            bytes(log["args"]["requestId"]) == rid for log in self.market.events.RequestFailed.get_logs(from_block=0)
        )


@dataclass
class LocalNet:
    """Hardhat, the deployment and the nodes; see the module docstring."""

    root: Path
    chain: hardhat.HardhatNode = field(default_factory=hardhat.HardhatNode)
    nodes: dict[str, LocalNode] = field(default_factory=dict)
    stopped: set[str] = field(default_factory=set)
    """Nodes stopped on purpose (:meth:`stop_node`): a wait does not take their exit for a crash."""
    deployment_file: Path | None = None
    chainless: bool = False
    """Started with ``start(chain=False)``: no Hardhat, no deployment; nodes run storage only (``--no-marketplace``)."""
    jumps: list[int] = field(default_factory=list)
    """The blocks :meth:`advance` mined, in order: where the test moved the chain's time (a transaction built
    before such a jump and mined after it met a later period than the one it was built for)."""
    _reaper: Reaper | None = None
    _view: ChainView | None = None
    _loop: BackgroundLoop | None = None
    _gates: list[BlockGate] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.chain.url

    @property
    def view(self) -> ChainView:
        assert self._view is not None, "the local net is not started"
        return self._view

    @property
    def reaper_pid(self) -> int:
        assert self._reaper is not None
        return self._reaper.pid

    def pids(self) -> list[int]:
        """Every process this net started (the reaper, Hardhat, the nodes)."""
        found = [] if self._reaper is None else [self._reaper.pid]
        if self.chain.pid is not None:
            found.append(self.chain.pid)
        return found + [n.process.proc.pid for n in self.nodes.values()]

    def start(self, *, chain: bool = True) -> None:
        """Start the reaper and Hardhat, then deploy and fund accounts 1..:data:`FUNDED_ACCOUNTS` with the CLI.
        ``chain=False``: the reaper only, for scenarios of storage alone (see :attr:`chainless`)."""
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        self._reaper = Reaper()
        if not chain:
            self.chainless = True
            return
        self.chain.start()
        assert self.chain.pid is not None
        self._reaper.register(self.chain.pid)
        hardhat.rpc(self.url, "evm_setIntervalMining", [1000])
        deployer = write_key(self.root / "account-0.key", dev_key(0))
        output = self.root / "deployment.json"
        funds = [a for i in range(1, FUNDED_ACCOUNTS + 1) for a in ("--fund", self.address(i))]
        argv = ["deploy", "--eth-provider", self.url, "--eth-private-key", str(deployer), "--output", str(output)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CODEX_")}
        done = subprocess.run(
            [str(SCRIPT), *argv, *funds], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, f"codex-node deploy failed: {done.stderr}"
        self.deployment_file = output
        self._view = ChainView(self.url, Deployment.load(output))

    @staticmethod
    def address(index: int) -> str:
        """The address of Hardhat's dev account ``index``."""
        return str(Account.from_key(dev_key(index)).address)

    def next_address(self) -> str:
        """The account the next :meth:`add_node` gets (to read its balance before the node can act)."""
        return self.address(len(self.nodes) + 1)

    def add_node(
        self, name: str, *flags: str, bootstrap: Iterable[LocalNode] = (), rpc_proxy: bool = False
    ) -> LocalNode:
        """Start ``codex-node run`` as ``name`` with the next funded Hardhat account; return once it is ready.

        With ``rpc_proxy`` the node reaches Hardhat through a :class:`~tests.harness.rpcproxy.RpcProxy` (in a
        thread of the test process) that :meth:`rpc_fail` switches to failing; it stays the node's through restarts.
        """
        assert name not in self.nodes, f"a node called {name!r} is already in the net"
        assert self.deployment_file is not None or self.chainless, "start the net first"
        index = len(self.nodes) + 1
        assert index <= FUNDED_ACCOUNTS, f"at most {FUNDED_ACCOUNTS} nodes"
        chain_flags: tuple[str, ...] = ("--no-marketplace",)
        proxy = None
        if not self.chainless:
            key = write_key(self.root / f"account-{index}.key", dev_key(index))
            proxy = self.in_loop_run(RpcProxy(self.url).__aenter__()) if rpc_proxy else None
            chain_flags = (
                "--eth-provider",
                self.url if proxy is None else proxy.url,
                "--eth-private-key",
                str(key),
                "--deployment",
                str(self.deployment_file),
            )
        boot = tuple(a for peer in bootstrap for a in ("--bootstrap-node", peer.url))
        all_flags = (*chain_flags, *boot, *flags)
        data_dir = self.root / name
        process = start_node(data_dir, *all_flags, log_dir=self.root / "logs", timeout=STEP_TIMEOUT)
        assert self._reaper is not None
        self._reaper.register(process.proc.pid)
        api = CodexClient(process.api)
        node = LocalNode(name, index, self.address(index), data_dir, all_flags, process, api, proxy)
        self.nodes[name] = node
        self.wait_for(lambda: _ready(node), what=f"{name} ready (/health)")
        return node

    def stop_node(self, name: str) -> None:
        """Stop ``name`` (SIGTERM) and leave it stopped (:meth:`restart_node` starts it again)."""
        node = self.nodes[name]
        node.api.close()
        self.stopped.add(name)
        if node.process.running:
            node.process.stop()

    def stop_nodes(self, *names: str) -> None:
        """Like :meth:`stop_node` for several nodes at once: SIGTERM to all, then wait for each (SIGKILL after
        ``STOP_TIMEOUT``), so they take one stop time, not one each."""
        nodes = [self.nodes[name] for name in names]
        for node in nodes:
            node.api.close()
            self.stopped.add(node.name)
            if node.process.running:
                node.process.proc.send_signal(signal.SIGTERM)
        for node in nodes:
            try:
                node.process.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                node.process.kill()

    def restart_node(self, name: str, *, kill: bool = False) -> LocalNode:
        """Stop ``name`` if it runs (SIGTERM; SIGKILL with ``kill``: no clean-up runs, as in a crash) and start it
        again on its data dir, account and flags."""
        old = self.nodes[name]
        self.stopped.discard(name)
        old.api.close()
        if old.process.running:
            if kill:
                assert old.process.kill() == -signal.SIGKILL
            else:
                old.process.stop()
        process = start_node(old.data_dir, *old.flags, log_dir=self.root / "logs", timeout=STEP_TIMEOUT)
        assert self._reaper is not None
        self._reaper.register(process.proc.pid)
        old.process, old.api = process, CodexClient(process.api)
        self.wait_for(lambda: _ready(old), what=f"{name} ready again (/health)")
        return old

    # --- proxies (run in a thread of the test process) ------------------------------------------------------------

    def in_loop_run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` in the background loop of this net's proxies (started on first use)."""
        if self._loop is None:
            self._loop = BackgroundLoop()
        return self._loop.run(coro)

    def in_loop(self, fn: Callable[..., T], *args: Any) -> T:
        """Call ``fn(*args)`` in the proxies' loop: what touches a proxy's asyncio state (``gate.open``)."""
        if self._loop is None:
            self._loop = BackgroundLoop()
        return self._loop.call(fn, *args)

    def rpc_fail(self, node: LocalNode, mode: Mode, *, after: str | None = None) -> None:
        """Make ``node``'s RPC proxy answer errors (``error``) or nothing (``hang``), now or after ``after``."""
        assert node.rpc is not None, f"{node.name} was not started with rpc_proxy=True"
        self.in_loop(lambda: node.rpc.fail(mode, after=after))  # type: ignore[union-attr]

    def rpc_recover(self, node: LocalNode) -> None:
        assert node.rpc is not None, f"{node.name} was not started with rpc_proxy=True"
        self.in_loop(node.rpc.recover)

    def block_gate(self) -> BlockGate:
        """A started :class:`~tests.harness.blockgate.BlockGate` (open; closed with the net)."""
        gate = BlockGate()
        self._gates.append(gate)
        return self.in_loop_run(gate.__aenter__())

    # --- chain time ------------------------------------------------------------------------------------------------

    def now(self) -> int:
        """The timestamp of the chain's latest block."""
        return int(hardhat.rpc(self.url, "eth_getBlockByNumber", ["latest", False])["timestamp"], 16)

    def advance(self, seconds: int) -> int:
        """Move the chain's time ``seconds`` forward (``evm_increaseTime`` + ``evm_mine``); the new time."""
        hardhat.rpc(self.url, "evm_increaseTime", [seconds])
        hardhat.rpc(self.url, "evm_mine")
        self.jumps.append(int(hardhat.rpc(self.url, "eth_blockNumber"), 16))
        return self.now()

    def refused_unexplained(self, account: str) -> list[tuple[str, int]]:
        """The transactions of ``account`` that reverted (function, block), but for the proofs the test's own jumps
        explain: a proof on its way when :meth:`advance` moved the chain into a later period meets another
        challenge (or a finished request) and is refused, if mined up to :data:`JUMP_SLACK` seconds after the jump.
        Anything this returns is the node's doing."""
        w3 = self.view.w3
        jumped = [int(w3.eth.get_block(j)["timestamp"]) for j in self.jumps]

        def explained(block: int) -> bool:
            at = int(w3.eth.get_block(block)["timestamp"])
            return any(j <= block and at - t <= JUMP_SLACK for j, t in zip(self.jumps, jumped, strict=True))

        reverted = self.view.reverted_from(account)
        return [(name, block) for name, block in reverted if name != "submitProof" or not explained(block)]

    def mine(self) -> int:
        """Mine one block, time moving only as the wall clock does (``evm_mine``); the new time."""
        hardhat.rpc(self.url, "evm_mine")
        return self.now()

    def advance_periods(self, periods: int = 1) -> int:
        """Move the chain one second into the ``periods``-th proof period after the current one; the new time."""
        return self.advance_to((self.now() // PERIOD + periods) * PERIOD + 1)

    def advance_to(self, timestamp: int) -> int:
        """Mine a block at ``timestamp`` or later (no move if the chain is there already)."""
        now = self.now()
        return self.advance(timestamp - now) if timestamp > now else now

    # --- waiting ---------------------------------------------------------------------------------------------------

    def wait_for(self, probe: Callable[[], T | None], *, what: str, within: float = STEP_TIMEOUT) -> T:
        """The first value of ``probe()`` other than ``None``/``False``; :class:`AssertionError` after ``within``."""
        deadline = time.monotonic() + within
        while True:
            found = probe()
            if found is not None and found is not False:
                return found
            dead = [n.name for n in self.nodes.values() if not n.process.running and n.name not in self.stopped]
            if dead:
                raise NodeExitedError(f"waiting for {what}: node(s) {dead} exited")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {within}s waiting for {what}")
            time.sleep(POLL)

    def until(self, probe: Callable[[], T | None], *, what: str, periods: int = 6, within: float = 10.0) -> T:
        """Like :meth:`wait_for`, moving the chain into the next proof period whenever ``probe`` does not hold
        within ``within`` seconds (a fill waits for a period's end; no test waits a wall minute for one);
        :class:`AssertionError` once ``periods`` periods passed without it holding."""
        for _ in range(periods):
            try:
                return self.wait_for(probe, what=what, within=within)
            except NodeExitedError:
                raise
            except AssertionError:
                self.advance_periods(1)
        return self.wait_for(probe, what=f"{what} (after {periods} periods)", within=within)

    # --- the end ---------------------------------------------------------------------------------------------------

    def report(self) -> str:
        out = []
        try:
            out.append("no chain (storage only)" if self.chainless else f"chain {self.url} at {self.now()}")
        except Exception as e:
            out.append(f"chain not readable: {type(e).__name__}: {e}")
        out.extend(node.report() for node in self.nodes.values())
        if self.chain._log is not None:  # Hardhat logs each JSON-RPC call: what the chain was asked last
            tail = self.chain._log_text().strip().splitlines()[-CHAIN_REPORT_LINES:]
            out.append(f"== hardhat (last {len(tail)} lines)")
            out.extend(f"   | {line}" for line in tail)
        return "\n".join(out)

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL after 15 s), then Hardhat, then the reaper. Idempotent."""
        for node in reversed(list(self.nodes.values())):
            node.api.close()
            if node.process.running:
                try:
                    node.process.stop()
                except subprocess.TimeoutExpired:
                    node.process.kill()
        if self._loop is not None:
            for proxy in [n.rpc for n in self.nodes.values() if n.rpc is not None] + self._gates:
                try:
                    self.in_loop_run(proxy.__aexit__(None, None, None))
                except Exception as e:  # a proxy that fails to close must not keep Hardhat running
                    print(f"closing a proxy failed: {e!r}")
            self._loop.close()
        self.chain.stop()
        if self._reaper is not None:
            self._reaper.close()


def _ready(node: LocalNode) -> bool:
    try:
        node.api.health()
    except (ServiceUnavailableError, TransportError):
        return False
    return True
