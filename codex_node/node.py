"""The composition root: builds every part of a node from its :class:`NodeConfig`, starts them, stops them.

Parts start in dependency order and stop in reverse (:class:`PartStack`); the REST API starts last, so no
request arrives before every part it may touch is ready, and stops first, so none arrives while parts go away.
A part is anything with ``async start()`` and ``async stop()`` (:class:`Part`); a resource that only needs
closing is wrapped in :class:`Closing`. If a part fails to start, the ones already started are stopped.

Data dir layout::

    <data-dir>/codex-node.pid              the pid of the node using the data dir, locked while it runs
    <data-dir>/peer.key                    the node key (Ed25519, mode 600): its peer id and signed record
    <data-dir>/meta/                       LevelDB: block index, pack records, quota, maintenance cursor, node id, and
                                           availabilities, reservations, event cursor, sale history
    <data-dir>/repo/packs/<id>.pack        blocks appended to pack files, one open pack per expiry day
                                           (``stores/blockfiles.py``, ``docs/packs.md``)
    <data-dir>/chain/                      the embedded chain (its own LevelDB, node key, deployment.json)

The peers part (node key, peer record, peer table, discovery: ``peers/part.py``) starts after the metadata store;
``node.peers`` is the ``Providers`` the network's fetchers use. Its discovery rounds start once the API serves.
The block exchange (``node.fetcher``, and ``node.network`` behind the ``/data/{cid}/network…`` routes) starts after
the repo, with or without a marketplace; sales fetch their slots through the same fetcher.
The marketplace (the chain, embedded by default or remote; the Market on it; Sales) starts after the repo and
before the API (``marketplace.py``), Purchasing with it; with ``--validator`` the Validator
(``validation/``) starts after it, on the node's account and the market's event stream and chain clock. A node given a
:class:`~codex_node.market.sharedchain.SharedChain` (tests running several nodes in one process) uses that chain
and account instead of ``<data-dir>/chain``, and leaves starting and stopping the chain to its owner.

This module never parses flags or configures logging (the CLI does); it never reads the wall clock except
through the :class:`~codex_node.clock.Clock` it is given.
"""

from __future__ import annotations

import asyncio
import gc
import os
import secrets
import signal
import sys
from types import TracebackType
from urllib.parse import urlsplit

import structlog
from prometheus_client.registry import REGISTRY, CollectorRegistry

from codex_node import metrics
from codex_node.api.app import API_PREFIX, create_app
from codex_node.api.guards import guard_metrics
from codex_node.api.server import HttpServer
from codex_node.api.services import DevChain, Services, provide
from codex_node.blockexchange.datasets import NetworkDatasets
from codex_node.blockexchange.fetcher import BlockFetcher
from codex_node.blockexchange.metrics import FetchMetrics
from codex_node.clock import Clock, SystemClock
from codex_node.config import NodeConfig, open_api_warning
from codex_node.data.merkle import batch_implementation
from codex_node.market import provider
from codex_node.market.sharedchain import SharedChain
from codex_node.market.types import ChainInfo
from codex_node.marketplace import MarketplaceParts, start_marketplace
from codex_node.monitor.chain import MarketProbe
from codex_node.monitor.part import Monitor, start_monitor
from codex_node.peers.addresses import announce_urls
from codex_node.peers.part import Peers, build_peers, check_network_config
from codex_node.stores.blockfiles import BlockFiles
from codex_node.stores.datadir import DataDirLock
from codex_node.stores.kv import KVStore, LevelDBStore
from codex_node.stores.maintenance import BlockMaintainer
from codex_node.stores.repostore import RepoStore
from codex_node.utils import eventloop
from codex_node.utils.parts import Closing, PartStack
from codex_node.utils.recursionlimit import bound_recursion_limit
from codex_node.validation.checkpoint import CheckpointStore
from codex_node.validation.metrics import ValidatorMetrics
from codex_node.validation.validator import Validator

log = structlog.get_logger(__name__)

NODE_ID_KEY = "meta/node/id"


class Node:
    """One codex-node: its parts, its REST app, and the URLs it serves once started."""

    def __init__(self, config: NodeConfig, *, clock: Clock | None = None, chain: SharedChain | None = None) -> None:
        """``chain``: an embedded chain started by someone else, shared with other nodes of the process."""
        if chain is not None and config.chain_mode != "embedded":
            raise ValueError(f"a shared chain is an embedded chain; this node's config wants {config.chain_mode}")
        self.config = config
        self._shared_chain = chain
        self.clock: Clock = clock or SystemClock()
        self.app = create_app(config, node=self)
        self.node_id = ""
        self.api_url: str | None = None
        self.metrics_url: str | None = None
        self.chain: ChainInfo | None = None  # set by the chain part once it knows its chain
        self.kv: KVStore | None = None
        self.repo: RepoStore | None = None
        self.maintainer: BlockMaintainer | None = None
        self.marketplace: MarketplaceParts | None = None
        self.monitor: Monitor | None = None
        self.peers: Peers | None = None
        """The network's peers: a ``Providers`` for the block exchange, and what the peer routes serve."""
        self.validator: Validator | None = None
        self.fetcher: BlockFetcher | None = None
        """The block exchange's fetcher (verified blocks from ``peers``), with or without a marketplace."""
        self.network: NetworkDatasets | None = None
        """Datasets fetched from peers (the ``/data/{cid}/network…`` routes), with or without a marketplace."""
        # The node's own metrics registry, passed to every part and hung on the process-wide one while the node
        # runs: a second node in the same process (tests) never collides with the first's series.
        self.registry = CollectorRegistry(auto_describe=True)
        self._parts = PartStack()

    @property
    def parts(self) -> list[str]:
        """Names of the started parts, in start order."""
        return self._parts.names

    async def start(self) -> None:
        try:
            await self._start_parts()
        except BaseException:
            await self._parts.stop_all()
            raise
        log.info(
            "node started",
            api=f"{self.api_url}{API_PREFIX}",
            data_dir=str(self.config.data_dir),
            metrics=self.metrics_url,
            marketplace=self.config.chain_mode,
            node_id=self.node_id,
            event_loop=eventloop.loop_name(asyncio.get_running_loop()),
            http_parser=eventloop.http_parser(),
            keccak=batch_implementation(),
            block_writes="direct" if self.repo is not None and self.repo.files.direct else "buffered",
        )
        if (warning := open_api_warning(self.config)) is not None:
            log.warning("API open without a token", bindaddr=self.config.api_bindaddr, hint=warning)

    async def stop(self) -> None:
        await self._parts.stop_all()

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _start_parts(self) -> None:
        c = self.config
        check_network_config(c)  # a bad --bootstrap-node record or no announce URL fails before anything is made
        # Ports are taken first, so a taken one fails before anything slow starts; they serve only at the end.
        api = HttpServer(self.app, c.api_bindaddr, c.api_port, flag="--api-port", name="api")
        api.bind()
        await self._parts.start("api address", Closing(api.release))
        endpoint: HttpServer | None = None
        if c.metrics:
            endpoint = HttpServer(
                guard_metrics(metrics.metrics_app(), c),
                c.metrics_address,
                c.metrics_port,
                flag="--metrics-port",
                name="metrics",
            )
            endpoint.bind()
            await self._parts.start("metrics address", Closing(endpoint.release))

        if c.chain_mode == "remote" and c.eth_provider is not None:
            # Before the data dir exists: an unreachable --eth-provider is one line (exit 2) and leaves nothing.
            await provider.check_reachable(c.eth_provider)
        c.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock = DataDirLock(c.data_dir)
        lock.acquire()  # a second node on the same data dir stops here, told the first one's pid
        await self._parts.start("data dir lock", Closing(lock.release))

        kv = LevelDBStore(c.data_dir / "meta")
        await self._parts.start("metadata store", Closing(kv.close))
        self.kv = kv
        self.node_id = _node_id(kv)

        await self._parts.start("metrics registry", _Registered(self.registry))
        # The network's peers (key, record, table) before the marketplace that will fetch through them.
        peers = build_peers(c, kv, self.clock, self.registry)
        await self._parts.start("peers", peers)
        self.peers = peers
        peers.announce(announce_urls(c.api_announce_urls, c.api_bindaddr, urlsplit(api.url).port or c.api_port))
        # Construction runs the repo's crash recovery: a thread keeps signals and the loop responsive meanwhile.
        repo = await asyncio.to_thread(_open_repo, kv, c, self.clock, self.registry)
        await self._parts.start("repo store", Closing(repo.close))
        self.repo = repo

        maintainer = BlockMaintainer(
            repo, self.clock, interval=c.block_mi, batch_size=c.block_mn, registry=self.registry
        )
        await self._parts.start("block maintainer metrics", Closing(maintainer.close))
        await self._parts.start("block maintainer", maintainer)
        self.maintainer = maintainer

        # The block exchange: verified blocks from peers, for the /data/{cid}/network routes (with or without a
        # marketplace) and for sales fetching their slots.
        fetcher = BlockFetcher(repo, peers, self.clock, metrics=FetchMetrics(self.registry))
        await self._parts.start("block fetcher", fetcher)
        self.fetcher = fetcher
        network = NetworkDatasets(repo, fetcher)
        await self._parts.start("network downloads", network)
        self.network = network

        if c.chain_mode != "none":
            mp = await start_marketplace(
                c,
                kv=kv,
                repo=repo,
                clock=self.clock,
                start_part=self._parts.start,
                registry=self.registry,
                providers=self.peers,
                shared_chain=self._shared_chain,
                fetcher=fetcher,
                network=network,
            )
            self.marketplace = mp
            self.chain = mp.info
            if c.validator:
                # After the Market (it reads the chain's history and follows the running event stream), before
                # the API. It acts with the node's account: marking a missing proof needs gas only.
                validator = Validator(
                    mp.market,
                    mp.market.clock,
                    groups=c.validator_groups,
                    group_index=c.validator_group_index,
                    metrics=ValidatorMetrics(self.registry),
                    checkpoints=CheckpointStore(kv, mp.info.marketplace_address),
                )
                await self._parts.start("validator", validator)
                self.validator = validator
        # The monitor watches what started.
        parts = self.marketplace
        self.monitor = await start_monitor(
            c,
            repo=repo,
            kv=kv,
            clock=self.clock,
            chain=None if parts is None else MarketProbe(parts.w3, parts.market, parts.sales, parts.reservations),
            margins=None if parts is None else parts.proof_margins,
            node_id=self.node_id,
            start_part=self._parts.start,
            registry=self.registry,
        )
        provide(self.app, self._services())

        if endpoint is not None:
            metrics.record_node_info()
            await self._parts.start("metrics endpoint", endpoint)
            self.metrics_url = f"{endpoint.url}/metrics"
        await self._parts.start("api", api)
        self.api_url = api.url
        peers.start_discovery()  # once the API serves: peers that call back find it answering

    def _services(self) -> Services:
        """What the API's routes reach, once every part they may touch has started."""
        mp = self.marketplace
        if mp is None:
            return Services(
                config=self.config,
                node=self,
                repo=self.repo,
                monitor=self.monitor,
                peers=self.peers,
                network=self.network,
            )
        dev = None
        if mp.chain is not None:
            dev = DevChain(chain=mp.chain, market=mp.market, client=mp.market.for_account(mp.chain.client_account))
        return Services(
            config=self.config,
            node=self,
            repo=self.repo,
            market=mp.market,
            sales=mp.sales,
            reservations=mp.reservations,
            purchasing=mp.purchasing,
            dataset_holds=mp.data_source,  # DELETE /data refuses datasets sales still hold
            dev_chain=dev,
            monitor=self.monitor,
            ledger=mp.ledger,
            account_metrics=mp.account_metrics,
            peers=self.peers,
            network=self.network,
            validator=self.validator,
        )


class _Registered:
    """Hangs a node's registry on the process-wide one while the node runs."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    async def start(self) -> None:
        REGISTRY.register(self._registry)

    async def stop(self) -> None:
        REGISTRY.unregister(self._registry)


def _open_repo(kv: KVStore, c: NodeConfig, clock: Clock, registry: CollectorRegistry) -> RepoStore:
    return RepoStore(
        kv,
        BlockFiles(c.data_dir / "repo", direct=not c.buffered_writes),
        clock=clock,
        quota_max=c.storage_quota,
        block_ttl=c.block_ttl,
        registry=registry,
        verify_reads=c.verify_reads,
    )


def _node_id(kv: KVStore) -> str:
    """This data dir's node id, made once and kept in the metadata store so it survives restarts."""
    raw = kv.get(NODE_ID_KEY)
    if raw is None:
        raw = secrets.token_hex(16).encode()
        kv.put(NODE_ID_KEY, raw)
    return raw.decode()


async def run_node(config: NodeConfig, *, clock: Clock | None = None) -> int:
    """Run a node until SIGINT or SIGTERM, then stop it cleanly; returns the exit code (0).

    A second signal while stopping exits at once: every store is crash-safe, so an impatient operator loses
    nothing but the wait.
    """
    bound_recursion_limit()  # after the eth imports raised it (utils/recursionlimit.py)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig)
        if len(received) == 1:
            log.info("stopping", signal=sig.name)
            stop.set()
            return
        log.warning("second signal: exiting without a clean stop", signal=sig.name)
        sys.stderr.flush()
        os._exit(1)

    handled = (signal.SIGINT, signal.SIGTERM)
    for sig in handled:
        loop.add_signal_handler(sig, on_signal, sig)
    node = Node(config, clock=clock)
    try:
        await node.start()
        # What exists now (imported modules, the app, the chain libraries: a few hundred thousand objects) lives as
        # long as the process: frozen out of the collector, so its full collections stop walking it again and
        # again. A download makes objects for every block, which triggers many of them: 10-17 % of a network
        # download's time went to that walk (benchmarks/network_download.py).
        gc.collect()
        gc.freeze()
        await stop.wait()
    finally:
        await node.stop()
        for sig in handled:
            loop.remove_signal_handler(sig)
    log.info("node stopped")
    return 0
