"""Finding peers: the bootstrap nodes, then peer exchange, every ``interval`` seconds of the injected clock.

One round: (1) each bootstrap entry is resolved (an API URL: its ``/spr`` is fetched; a record: it is learned as
is); (2) up to ``exchange_peers`` usable peers are asked for the records they know (and told ours); every record
they send is verified, and a peer that sends one that does not verify is counted as misbehaving; (3) up to
``verify_peers`` peers heard of but never reached are reached at their URL (their ``/spr`` must carry the same
peer id), so that this node only ever passes on records of peers it reached itself; (4) the table is saved.
Peers that cannot be reached are backed off by the table. Rounds never overlap.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from codex_node.clock import Clock
from codex_node.errors import CodexError, PeerAnswerError, PeerError, PeerRecordError
from codex_node.peers.metrics import PeerMetrics
from codex_node.peers.port import PeerInfo
from codex_node.peers.providers import PeerProviders
from codex_node.peers.record import PeerRecord, decode_record
from codex_node.peers.table import PeerEntry, PeerTable
from codex_node.peers.wire import PeerWire

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Bootstrap:
    """A ``--bootstrap-node`` entry: an API base URL, or a record given as is."""

    url: str | None = None
    record: PeerRecord | None = None


EARLY_CHECK_GAP = 5
"""Seconds between two checks of introduced peers outside the discovery rounds (a bound on outgoing calls)."""


class Discovery:
    def __init__(
        self,
        table: PeerTable,
        wire: PeerWire,
        providers: PeerProviders,
        clock: Clock,
        metrics: PeerMetrics,
        *,
        bootstrap: Sequence[Bootstrap],
        own_record: Callable[[], PeerRecord | None],
        save: Callable[[], None],
        interval: int = 60,
        exchange_peers: int = 8,
        verify_peers: int = 16,
        concurrency: int = 8,
    ) -> None:
        self.table = table
        self.wire = wire
        self.providers = providers
        self.clock = clock
        self.metrics = metrics
        self.bootstrap = tuple(bootstrap)
        self.own_record = own_record
        self.save = save
        self.interval = interval
        self.exchange_peers = exchange_peers
        self.verify_peers = verify_peers
        self._gate = asyncio.Semaphore(concurrency)
        self._round = asyncio.Lock()
        self._heard = asyncio.Event()
        self._bootstrap_retry: dict[str, int] = {}
        self.rounds = 0

    async def run(self) -> None:
        """Rounds forever, ``interval`` seconds apart (an owned task; cancelled when the node stops). A peer that
        introduced itself (:meth:`heard`) is reached sooner: a check of the heard-of peers runs at most every
        :data:`EARLY_CHECK_GAP` seconds between rounds, so a new node is shared with others in seconds, not a
        minute, and a flood of introductions cannot make this node call out more often than that."""
        while True:
            try:
                await self.round()
            except CodexError as e:  # e.g. the metadata store failed: the next round tries again
                log.warning("peer discovery round failed", error=str(e))
            next_round = self.clock.now() + self.interval
            while await self._heard_before(next_round):
                try:
                    await self.check_heard_of()
                except CodexError as e:
                    log.warning("checking introduced peers failed", error=str(e))
                await self.clock.wait_until(min(next_round, self.clock.now() + EARLY_CHECK_GAP))

    def heard(self) -> None:
        """A peer introduced itself (its record is in the table, not yet reached): check it before the next round."""
        self._heard.set()

    async def _heard_before(self, deadline: int) -> bool:
        """Wait until ``deadline`` or an introduction, whichever comes first; whether it was an introduction."""
        if self.clock.now() >= deadline:
            return False
        timer = asyncio.ensure_future(self.clock.wait_until(deadline))
        heard = asyncio.ensure_future(self._heard.wait())
        try:
            await asyncio.wait({timer, heard}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            heard.cancel()
        if not heard.done() or heard.cancelled():
            return False
        self._heard.clear()
        return self.clock.now() < deadline

    async def check_heard_of(self) -> None:
        """Reach the peers only heard of (``verify_peers`` at most), outside a full round."""
        async with self._round:
            await self._verify()
            self.save()
            self.metrics.known.set(len(self.table))

    async def round(self) -> None:
        async with self._round:
            await self._bootstrap()
            await self._exchange()
            await self._verify()
            self.save()
            now = self.clock.now()
            self.metrics.known.set(len(self.table))
            self.metrics.avoided.set(self.table.avoided_count(now))
            self.rounds += 1
            log.debug("peer discovery round", known=len(self.table), round=self.rounds)

    async def _bootstrap(self) -> None:
        now = self.clock.now()
        for entry in self.bootstrap:
            if entry.record is not None:
                self.table.add(entry.record, now=now)
                continue
            url = entry.url or ""
            if self._bootstrap_retry.get(url, 0) > now:
                continue
            try:
                async with self._gate:
                    record = await self.wire.record(url)
            except PeerError as e:
                self._bootstrap_retry[url] = now + self.interval
                log.info("bootstrap node not reached", url=url, error=str(e))
                continue
            self.table.add(record, now=self.clock.now(), verified=True)

    async def _exchange(self) -> None:
        own = self.own_record()
        peers = [e for e in self.table.usable(self.clock.now()) if e.verified][: self.exchange_peers]
        await asyncio.gather(*(self._exchange_with(e, None if own is None else own.text) for e in peers))

    async def _exchange_with(self, entry: PeerEntry, own: str | None) -> None:
        try:
            async with self._gate:
                texts = await self.wire.exchange(entry.record.urls[0], own)
        except PeerAnswerError as e:
            self.metrics.exchanges.labels(outcome="failed").inc()
            self.providers.misbehaved(PeerInfo(entry.peer_id, entry.record.urls), "bad answer")
            log.debug("peer exchange refused an answer", peer_id=entry.peer_id, error=str(e))
            return
        except PeerError as e:
            self.metrics.exchanges.labels(outcome="failed").inc()
            self.table.failed(entry.peer_id, now=self.clock.now())
            log.debug("peer exchange failed", peer_id=entry.peer_id, error=str(e))
            return
        self.metrics.exchanges.labels(outcome="ok").inc()
        now = self.clock.now()
        self.table.succeeded(entry.peer_id, now=now)
        for text in texts:
            try:
                record = decode_record(text)
            except PeerRecordError:
                self.providers.misbehaved(PeerInfo(entry.peer_id, entry.record.urls), "bad record")
                return
            self.table.add(record, now=now)

    async def _verify(self) -> None:
        pending = self.table.unverified(self.clock.now())[: self.verify_peers]
        await asyncio.gather(*(self._verify_one(e) for e in pending))

    async def _verify_one(self, entry: PeerEntry) -> None:
        try:
            async with self._gate:
                record = await self.wire.record(entry.record.urls[0])
        except PeerError:
            self.table.failed(entry.peer_id, now=self.clock.now())
            return
        if record.peer_id != entry.peer_id:
            self.table.failed(entry.peer_id, now=self.clock.now())
            log.debug("peer URL answers for another peer", peer_id=entry.peer_id, answered=record.peer_id)
            return
        self.table.add(record, now=self.clock.now(), verified=True)
