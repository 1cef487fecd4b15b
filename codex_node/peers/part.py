"""The peers part the node builds: its key and record, the peer table, discovery, and the Providers.

:class:`Peers` is what the rest of the node sees of the network: a :class:`~codex_node.peers.port.Providers`
(``find``/``served``/``misbehaved``, handed to the block exchange), plus what the API's peer routes serve
(``peer_id``, ``record``, ``share``, ``connect``, ``learn``). It is started after the metadata store and before the
marketplace and the API; stopping it cancels discovery and closes the HTTP client.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import structlog
from prometheus_client import CollectorRegistry

from codex_node.clock import Clock
from codex_node.config import NodeConfig
from codex_node.data.cid import Cid
from codex_node.errors import ConfigError, PeerError, PeerRecordError
from codex_node.peers import store
from codex_node.peers.addresses import announce_urls, api_base_url
from codex_node.peers.discovery import Bootstrap, Discovery
from codex_node.peers.identity import NodeKey, load_or_create_key, parse_peer_id
from codex_node.peers.metrics import PeerMetrics
from codex_node.peers.port import PeerInfo
from codex_node.peers.providers import PeerProviders
from codex_node.peers.record import MAX_URLS, PeerRecord, check_url, decode_record, make_record
from codex_node.peers.table import PeerEntry, PeerTable
from codex_node.peers.wire import EXCHANGE_LIMIT, HttpPeerWire, PeerWire
from codex_node.stores.kv import KVStore
from codex_node.utils.trackedtasks import TrackedTasks

log = structlog.get_logger(__name__)


def parse_bootstrap(entries: Sequence[str]) -> list[Bootstrap]:
    """``--bootstrap-node`` values → entries; a record that does not verify is a :class:`ConfigError`."""
    out: list[Bootstrap] = []
    for text in entries:
        if text.startswith("spr:"):
            try:
                out.append(Bootstrap(record=decode_record(text)))
            except PeerRecordError as e:
                raise ConfigError("--bootstrap-node", f"{text[:24]}…: {e}") from None
        else:
            out.append(Bootstrap(url=api_base_url(text)))
    return out


class Peers:
    """The network's peers (see the module docstring)."""

    def __init__(
        self,
        key: NodeKey,
        kv: KVStore,
        clock: Clock,
        registry: CollectorRegistry,
        *,
        bootstrap: Sequence[Bootstrap] = (),
        max_peers: int = 160,
        wire: PeerWire | None = None,
        interval: int = 60,
    ) -> None:
        self.key = key
        self.kv = kv
        self.clock = clock
        self.metrics = PeerMetrics(registry)
        self.table = PeerTable(key.peer_id, max_peers)
        self._http: HttpPeerWire | None = None
        if wire is None:
            wire = self._http = HttpPeerWire()
        self.wire: PeerWire = wire
        self.providers = PeerProviders(self.table, self.wire, clock, self.metrics)
        self.record: PeerRecord | None = None
        self.discovery = Discovery(
            self.table,
            self.wire,
            self.providers,
            clock,
            self.metrics,
            bootstrap=bootstrap,
            own_record=lambda: self.record,
            save=self.save,
            interval=interval,
        )
        self._tasks = TrackedTasks("peers")

    @property
    def peer_id(self) -> str:
        return self.key.peer_id

    def announce(self, urls: tuple[str, ...]) -> None:
        """Sign this node's record for ``urls`` (once the API's port is known); no URL: no record."""
        self.record = make_record(self.key, urls, store.next_seq(self.kv, self.clock.now())) if urls else None
        if self.record is not None:
            log.info("peer record signed", peer_id=self.peer_id, urls=list(urls), seq=self.record.seq)

    async def start(self) -> None:
        now = self.clock.now()
        for record in store.load_known(self.kv, self.table.max_peers):
            self.table.add(record, now=now, verified=True)  # only peers reached before are kept
        self.metrics.known.set(len(self.table))
        self._tasks.reopen()

    def start_discovery(self) -> None:
        """Start the background rounds (after :meth:`announce`, so peers learn this node's record)."""
        self._tasks.spawn(self.discovery.run(), name="peer discovery")

    async def stop(self) -> None:
        await self._tasks.cancel_all()
        if self._http is not None:
            await self._http.close()

    async def refresh(self) -> None:
        """One discovery round now (tests, and ``/connect``)."""
        await self.discovery.round()

    def save(self) -> None:
        """Keep the peers this node reached (heard-of ones are learned again from the network)."""
        store.save_known(self.kv, [e.record for e in self.table.entries() if e.verified])

    # --- the Providers port -------------------------------------------------------------------------------------

    async def find(self, cid: Cid, *, limit: int) -> list[PeerInfo]:
        return await self.providers.find(cid, limit=limit)

    def served(self, peer: PeerInfo, cid: Cid, nbytes: int) -> None:
        self.providers.served(peer, cid, nbytes)

    def misbehaved(self, peer: PeerInfo, reason: str) -> None:
        self.providers.misbehaved(peer, reason)

    # --- what the peer routes serve -----------------------------------------------------------------------------

    def share(self, limit: int = EXCHANGE_LIMIT) -> list[PeerRecord]:
        """Records of peers this node reached itself and does not avoid (peer exchange)."""
        return self.table.shareable(limit, self.clock.now())

    def learn(self, text: str) -> PeerRecord:
        """A record a peer introduced itself with: verified, kept unverified until this node reaches it."""
        record = decode_record(text)
        entry = self.table.get(record.peer_id)
        if self.table.add(record, now=self.clock.now()) and (entry is None or not entry.verified):
            self.discovery.heard()  # reached within seconds, then shared with the peers that ask
        return record

    def entries(self) -> list[PeerEntry]:
        return self.table.entries()

    async def connect(self, peer_id: str, addrs: Sequence[str]) -> PeerRecord:
        """Reach ``peer_id`` at ``addrs`` (API URLs) or at its known record's URLs; its ``/spr`` must be its own.

        Raises :class:`PeerRecordError` for a malformed peer id or address, :class:`PeerError` when no address
        answers with that peer's record (the message says what each address answered).
        """
        parse_peer_id(peer_id)
        if peer_id == self.peer_id:
            raise PeerRecordError(f"{peer_id} is this node's own peer id")
        if len(addrs) > MAX_URLS:
            raise PeerRecordError(f"give at most {MAX_URLS} addrs")
        urls = [check_url(api_base_url(a.strip())) for a in addrs]
        if not urls:
            entry = self.table.get(peer_id)
            if entry is None:
                raise PeerError(f"peer {peer_id} is not known here: give its API URL with ?addrs=http://host:port")
            urls = list(entry.record.urls)
        problems: list[str] = []
        for url in urls:
            try:
                record = await self.wire.record(url)
            except PeerError as e:
                problems.append(str(e))
                continue
            if record.peer_id != peer_id:
                problems.append(f"{url} is peer {record.peer_id}, not {peer_id}")
                continue
            self.table.add(record, now=self.clock.now(), verified=True)
            self.save()
            self.metrics.known.set(len(self.table))
            log.info("peer connected", peer_id=peer_id, url=url)
            return record
        raise PeerError(f"could not connect to peer {peer_id}: " + "; ".join(problems))


def check_network_config(config: NodeConfig) -> list[Bootstrap]:
    """The bootstrap entries; :class:`ConfigError` for a record that does not verify, or for peers to talk to
    while this node has no URL to announce (its API on the any-address without ``--api-announce-url``)."""
    bootstrap = parse_bootstrap(config.bootstrap_nodes)
    announce_urls(config.api_announce_urls, config.api_bindaddr, 1)  # checks the announced URLs
    if bootstrap and not config.api_announce_urls and not announce_urls((), config.api_bindaddr, 1):
        raise ConfigError(
            "--api-announce-url",
            f"the API listens on {config.api_bindaddr}, which peers cannot reach: give the URL peers reach this "
            "node at (--api-announce-url http://HOST:PORT), or a concrete --api-bindaddr",
        )
    return bootstrap


def build_peers(config: NodeConfig, kv: KVStore, clock: Clock, registry: CollectorRegistry) -> Peers:
    """The node's peers part from its configuration (reads or makes ``<data-dir>/peer.key``)."""
    bootstrap = check_network_config(config)
    key = load_or_create_key(Path(config.data_dir))
    return Peers(key, kv, clock, registry, bootstrap=bootstrap, max_peers=config.max_peers)
