"""Several codex-nodes in this process on one embedded chain: the harness of the network tests (issue #10).

::

    async with network(tmp_path) as net:
        client = await net.add_node("client")
        host = await net.add_node("host", availability=body, simulate_proof_failures=1)
        cid = await client.upload(data)
        ...
        await net.advance_periods(1)
        await net.wait_for(probe, what="every slot filled")

What it gives a test:

- **one chain**, started first and stopped last by the harness (``<root>/chain``), mining a block a second of the
  harness's clock; every node joins it with its own funded account (``SharedChain.join``: derived account ``i``
  for the ``i``-th node), so each node signs its own transactions;
- **nodes**, each with its own data dir (``<root>/<name>``) and its REST API on a free port of 127.0.0.1 (port 0:
  the OS picks it, the node reports it); per-node config is any :class:`NodeConfig` field (``bootstrap_nodes``,
  ``validator``, ``simulate_proof_failures``…), and an availability to offer once it runs;
- **restarts**: :meth:`Network.stop_node` stops one node (the others and the chain go on);
  :meth:`Network.restart_node` starts it again on its data dir, account and API port;
- **chain time**: :meth:`Network.travel_to` and :meth:`Network.advance_periods` move the shared chain and return
  once every node's on-chain clock has seen the move;
- **bounded waits**: :meth:`Network.wait_for` probes after every move of the chain's head (and at least every
  :data:`PROBE_INTERVAL` seconds, for what moves without a block, e.g. a download) and fails after a bound;
  :meth:`Network.until` advances the chain period by period until the probe holds (at most ``periods``);
- **on failure**: every node's purchases, sales (state and transitions) and the tail of its log lines (structlog
  events are tagged with the node's name: every task a node starts inherits the name bound while it starts) are
  printed, so pytest shows them with the failure;
- **always**: every node is stopped, then the chain, whatever happened.

Loopback only; nothing here sleeps without a condition and a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import structlog

from codex_node.config import NodeConfig
from codex_node.market.deployment import DEV_CONFIG
from codex_node.market.embedded import EmbeddedChain
from codex_node.market.sharedchain import SharedChain
from codex_node.market.types import Address, Periodicity
from codex_node.node import Node

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from codex_node.clock import Clock
    from codex_node.market.onchain import OnChainMarket
    from codex_node.marketplace import MarketplaceParts

T = TypeVar("T")

API = "/api/codex/v1"
PERIODS = Periodicity(DEV_CONFIG.proofs.period)
STEP_TIMEOUT = 30.0
"""Seconds any one step may take once the chain is where it must be (generous: 2 cores shared by many tests)."""
PROBE_INTERVAL = 0.2
"""Seconds between two probes of :meth:`Network.wait_for` when the chain's head does not move."""
LOG_TAIL = 400
"""Log lines kept per node for the failure report (the last ones)."""
REPORT_LINES = 60
"""Log lines printed per node in the failure report."""
NETWORK = "(network)"
"""Where log lines of no node (the chain's own, the test's) are kept."""


class LogTail:
    """A structlog processor keeping the last log lines of each node (by the ``node`` context variable)."""

    def __init__(self, size: int = LOG_TAIL) -> None:
        self._size = size
        self.lines: dict[str, deque[str]] = {}

    def __call__(self, _logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        node = event.get("node") or structlog.contextvars.get_contextvars().get("node") or NETWORK
        rest = " ".join(f"{k}={v}" for k, v in event.items() if k not in ("event", "node", "timestamp", "level"))
        self.lines.setdefault(str(node), deque(maxlen=self._size)).append(f"[{method}] {event.get('event')} {rest}")
        return event

    def tail(self, node: str, lines: int = REPORT_LINES) -> list[str]:
        return list(self.lines.get(node, ()))[-lines:]

    @contextlib.contextmanager
    def installed(self) -> Any:
        """Run this processor first while the block runs; the configuration before it is restored after."""
        before = structlog.get_config()["processors"]
        structlog.configure(processors=[self, *before])
        try:
            yield self
        finally:
            structlog.configure(processors=before)


@dataclasses.dataclass
class NetNode:
    """One node of the network and the test's hands on it (REST through :attr:`api`, in-process parts)."""

    name: str
    node: Node
    account: LocalAccount
    api: httpx.AsyncClient

    @property
    def url(self) -> str:
        """The node's API base URL (``http://127.0.0.1:<port>/api/codex/v1``): what its peers are given."""
        assert self.node.api_url is not None, f"{self.name} is not started"
        return f"{self.node.api_url}{API}"

    @property
    def running(self) -> bool:
        """Whether the node runs (it was started and not stopped since)."""
        return bool(self.node.parts)

    @property
    def parts(self) -> MarketplaceParts:
        assert self.node.marketplace is not None, f"{self.name} runs no marketplace"
        return self.node.marketplace

    @property
    def market(self) -> OnChainMarket:
        return self.parts.market

    @property
    def address(self) -> Address:
        return Address(self.account.address)

    async def balance(self) -> int:
        """The node's token balance on the chain."""
        return await self.market.token_balance(self.address)

    async def upload(self, data: bytes) -> str:
        """``POST /data``: the dataset's manifest CID."""
        r = await self.api.post("/data", content=data)
        assert r.status_code == 200, f"{self.name}: upload answered {r.status_code}: {r.text}"
        return r.text

    async def offer(self, availability: dict[str, Any]) -> dict[str, Any]:
        """``POST /sales/availability``: the availability as created."""
        r = await self.api.post("/sales/availability", json=availability)
        assert r.status_code == 201, f"{self.name}: availability answered {r.status_code}: {r.text}"
        created: dict[str, Any] = r.json()
        return created

    async def request_storage(self, cid: str, body: dict[str, Any]) -> str:
        """``POST /storage/request/{cid}``: the purchase id (the request id, ``0x…``)."""
        r = await self.api.post(f"/storage/request/{cid}", json=body)
        assert r.status_code == 200, f"{self.name}: storage request answered {r.status_code}: {r.text}"
        return r.text

    async def purchase(self, pid: str) -> dict[str, Any]:
        r = await self.api.get(f"/storage/purchases/{pid}")
        r.raise_for_status()
        body: dict[str, Any] = r.json()
        return body

    async def sale(self, slot_id: bytes) -> dict[str, Any] | None:
        """``GET /sales/slots/{slotId}``, or ``None`` while the node has no sale of the slot."""
        r = await self.api.get(f"/sales/slots/0x{slot_id.hex()}")
        if r.status_code == 404:
            return None
        r.raise_for_status()
        body: dict[str, Any] = r.json()
        return body

    async def sales(self, limit: int = 50) -> list[dict[str, Any]]:
        """``GET /sales/history``: the node's sales, newest first."""
        r = await self.api.get("/sales/history", params={"limit": limit})
        r.raise_for_status()
        found: list[dict[str, Any]] = r.json()["sales"]
        return found

    async def report(self) -> str:
        """The node's purchases and sales, one line each, for a failure report."""
        out = [f"== {self.name} ({self.address}, {self.node.api_url}{'' if self.running else ', stopped'})"]
        if not self.running:
            return out[0]
        try:
            for pid in (await self.api.get("/storage/purchases")).json():
                p = await self.purchase(pid)
                states = [t["to"] for t in p.get("history", [])]
                out.append(f"   purchase {pid[:10]}… {p['state']} error={p.get('error')} history={states}")
            for s in await self.sales():
                states = [t["to"] for t in s.get("transitions", [])]
                out.append(
                    f"   sale {s['requestId'][:10]}…/{s['slotIndex']} {s['state']} ({s['outcome']}) "
                    f"error={s.get('error')} reason={s.get('reason')} transitions={states}"
                )
        except Exception as e:  # a node that died still gets its log tail printed
            out.append(f"   (state not readable: {type(e).__name__}: {e})")
        return "\n".join(out)


@dataclasses.dataclass
class Network:
    """Nodes sharing one embedded chain; see the module docstring. Use :func:`network` to get one."""

    root: Path
    clock: Clock | None = None
    block_time: int = 1
    nodes: dict[str, NetNode] = dataclasses.field(default_factory=dict)
    logs: LogTail = dataclasses.field(default_factory=LogTail)
    _chain: EmbeddedChain | None = None
    _moved: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    _remove_listener: Callable[[], None] = lambda: None

    @property
    def chain(self) -> EmbeddedChain:
        assert self._chain is not None, "the network's chain is not started"
        return self._chain

    async def start(self) -> None:
        """Start the shared chain (the nodes are added one by one with :meth:`add_node`)."""
        chain = EmbeddedChain(
            self.root / "chain", block_time=self.block_time, clock=self.clock, sync=False, registry=None
        )
        await chain.start()
        self._chain = chain
        self._remove_listener = chain.add_head_listener(self._moved.set)

    async def add_node(self, name: str, *, availability: dict[str, Any] | None = None, **config: Any) -> NetNode:
        """Start a node called ``name`` (its data dir is ``<root>/<name>``) with its own account on the chain.

        ``config``: :class:`NodeConfig` fields for this node (``bootstrap_nodes=(peer.url,)``, ``validator=True``,
        ``simulate_proof_failures=1``…); ``availability``: a ``POST /sales/availability`` body offered once it runs.
        """
        if name in self.nodes or name == NETWORK:
            raise ValueError(f"a node called {name!r} is already in the network")
        shared = await SharedChain.join(self.chain, index=len(self.nodes))
        settings: dict[str, Any] = {"data_dir": self.root / name, "api_bindaddr": "127.0.0.1", "api_port": 0}
        node = await self._start(name, NodeConfig(**(settings | config)), shared)
        added = NetNode(name, node, shared.account, _client(node))
        self.nodes[name] = added
        if availability is not None:
            await added.offer(availability)
        return added

    async def _start(self, name: str, config: NodeConfig, shared: SharedChain) -> Node:
        node = Node(config, clock=self.clock, chain=shared)
        with structlog.contextvars.bound_contextvars(node=name):  # every task the node starts keeps the name
            await node.start()
        return node

    async def stop_node(self, name: str) -> None:
        """Stop one node (the chain and the other nodes go on); it stays in :attr:`nodes` for the report."""
        await self.nodes[name].node.stop()

    async def restart_node(self, name: str) -> NetNode:
        """Stop the node if it runs and start it again on the same data dir, account and API port (so its peers'
        URLs still reach it); the :class:`NetNode` is updated in place and returned."""
        net_node = self.nodes[name]
        old = net_node.node
        await old.stop()
        assert old.api_url is not None
        port = int(old.api_url.rsplit(":", 1)[1])
        shared = SharedChain(self.chain, net_node.account)
        net_node.node = await self._start(name, dataclasses.replace(old.config, api_port=port), shared)
        await net_node.api.aclose()
        net_node.api = _client(net_node.node)
        return net_node

    @property
    def running(self) -> list[NetNode]:
        """The nodes that run, in the order they were added."""
        return [n for n in self.nodes.values() if n.running]

    async def stop(self) -> None:
        """Stop every node (the last added first), then the chain; every step runs even if one before failed."""
        errors: list[BaseException] = []
        for net_node in reversed(list(self.nodes.values())):
            for step in (net_node.api.aclose, net_node.node.stop):
                try:
                    await step()
                except Exception as e:
                    errors.append(e)
        self._remove_listener()
        if self._chain is not None:
            await self._chain.stop()
        if errors:
            raise errors[0]

    # --- chain time ---------------------------------------------------------------------------------------------

    async def now(self) -> int:
        """The timestamp of the chain's latest block."""
        return await self.chain.latest_timestamp()

    async def travel_to(self, timestamp: int) -> None:
        """Mine a block at ``timestamp``; return once every node's on-chain clock has seen it."""
        await self.chain.travel_to(timestamp)
        await self.clocks_at(timestamp)

    async def advance_periods(self, periods: int = 1) -> int:
        """Travel into the ``periods``-th proof period after the current one (one second into it); return it."""
        if periods < 1:
            raise ValueError(f"advance by at least one period, not {periods}")
        period = PERIODS.period_of(await self.now()) + periods
        await self.travel_to(PERIODS.period_start(period) + 1)
        return period

    async def clocks_at(self, timestamp: int) -> None:
        """Return once the on-chain clock of every running node reads ``timestamp`` or later."""

        async def caught_up() -> bool:
            return all(n.market.clock.now() >= timestamp for n in self.running)

        await self.wait_for(caught_up, what=f"every node's on-chain clock at {timestamp}")

    # --- waiting ------------------------------------------------------------------------------------------------

    async def wait_for(self, probe: Callable[[], Awaitable[T | None]], *, what: str, within: float = STEP_TIMEOUT) -> T:
        """The first value of ``probe()`` other than ``None``/``False``, probed after every move of the chain's head
        and at least every :data:`PROBE_INTERVAL` s; :class:`AssertionError` after ``within`` seconds."""
        deadline = time.monotonic() + within
        while True:
            self._moved.clear()
            found = await probe()
            if found is not None and found is not False:
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {within}s waiting for {what}")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(PROBE_INTERVAL, left)):
                    await self._moved.wait()

    async def until(
        self, probe: Callable[[], Awaitable[T | None]], *, what: str, periods: int = 8, within: float = 5.0
    ) -> T:
        """Like :meth:`wait_for`, advancing the chain one period whenever ``probe`` does not hold within ``within``
        seconds; :class:`AssertionError` once ``periods`` periods passed without it holding."""
        for _ in range(periods):
            with contextlib.suppress(AssertionError):
                return await self.wait_for(probe, what=what, within=within)
            await self.advance_periods(1)
        return await self.wait_for(probe, what=f"{what} (after {periods} periods)", within=within)

    # --- failure report -----------------------------------------------------------------------------------------

    async def report(self) -> str:
        """Every node's purchases, sales and last log lines, and the chain's head."""
        out = []
        with contextlib.suppress(Exception):
            out.append(f"chain head {self.chain.head} at {await self.now()}")
        for net_node in self.nodes.values():
            out.append(await net_node.report())
            out.extend(f"   | {line}" for line in self.logs.tail(net_node.name))
        out.append(f"== {NETWORK}")
        out.extend(f"   | {line}" for line in self.logs.tail(NETWORK, 20))
        return "\n".join(out)


def _client(node: Node) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"{node.api_url}{API}", timeout=STEP_TIMEOUT)


@asynccontextmanager
async def network(root: Path, *, clock: Clock | None = None, block_time: int = 1) -> AsyncIterator[Network]:
    """A started :class:`Network` under ``root``; on an exception its report is printed; every node and the chain
    are stopped at the end."""
    net = Network(root, clock=clock, block_time=block_time)
    with net.logs.installed():
        try:
            await net.start()
            yield net
        except BaseException:
            try:
                print(await net.report())  # pytest shows a failed test's output
            except Exception as e:  # the test's own failure matters more than the report's
                print(f"network report failed: {type(e).__name__}: {e}")
            raise
        finally:
            await net.stop()
