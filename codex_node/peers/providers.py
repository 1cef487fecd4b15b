"""Who holds which content: the :class:`~codex_node.peers.port.Providers` the block exchange and repair use.

``find`` answers with the peers remembered to hold a CID (they served it, or said "have"), then asks the known
peers "have" with a bounded fan-out: at most ``fanout`` questions in flight, ``max_asked`` in all, each with its
own timeout, stopping as soon as ``limit`` holders are found. Answers are remembered in a bounded LRU. Never
returns this node itself or a peer that is avoided. ``served`` and ``misbehaved`` update the peer table; a
misbehaving peer is logged once when it becomes avoided, and counted every time.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

import structlog

from codex_node.clock import Clock
from codex_node.data.cid import Cid
from codex_node.errors import PeerAnswerError, PeerError
from codex_node.peers.metrics import PeerMetrics, reason_label
from codex_node.peers.port import PeerInfo
from codex_node.peers.table import PeerEntry, PeerTable
from codex_node.peers.wire import PeerWire

log = structlog.get_logger(__name__)

MAX_REMEMBERED_CIDS = 4096
MAX_HOLDERS_PER_CID = 16


class Holders:
    """A bounded LRU of CID → the peers known to hold it, most recent first."""

    def __init__(self, max_cids: int = MAX_REMEMBERED_CIDS, per_cid: int = MAX_HOLDERS_PER_CID) -> None:
        self._max_cids = max_cids
        self._per_cid = per_cid
        self._by_cid: OrderedDict[str, OrderedDict[str, None]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_cid)

    def remember(self, cid: str, peer_id: str) -> None:
        peers = self._by_cid.pop(cid, None) or OrderedDict()
        peers.pop(peer_id, None)
        peers[peer_id] = None
        peers.move_to_end(peer_id, last=False)
        while len(peers) > self._per_cid:
            peers.popitem(last=True)
        self._by_cid[cid] = peers
        while len(self._by_cid) > self._max_cids:
            self._by_cid.popitem(last=False)

    def of(self, cid: str) -> list[str]:
        peers = self._by_cid.get(cid)
        if peers is None:
            return []
        self._by_cid.move_to_end(cid)
        return list(peers)


def info(entry: PeerEntry) -> PeerInfo:
    return PeerInfo(peer_id=entry.peer_id, urls=entry.record.urls)


class PeerProviders:
    """The network's :class:`~codex_node.peers.port.Providers` over a :class:`PeerTable` and a :class:`PeerWire`."""

    def __init__(
        self,
        table: PeerTable,
        wire: PeerWire,
        clock: Clock,
        metrics: PeerMetrics,
        *,
        fanout: int = 8,
        max_asked: int = 32,
        timeout: float = 5.0,
    ) -> None:
        self.table = table
        self.wire = wire
        self.clock = clock
        self.metrics = metrics
        self.fanout = fanout
        self.max_asked = max_asked
        self.timeout = timeout
        self.holders = Holders()

    async def find(self, cid: Cid, *, limit: int) -> list[PeerInfo]:
        if limit <= 0:
            return []
        now = self.clock.now()
        found: list[PeerInfo] = []
        for peer_id in self.holders.of(cid.text):
            entry = self.table.get(peer_id)
            if entry is not None and entry.usable(now):
                found.append(info(entry))
        if len(found) >= limit:
            return found[:limit]
        chosen = {p.peer_id for p in found}
        # Only peers this node reached itself: a heard-of record's URL may belong to someone else.
        candidates = [e for e in self.table.usable(now) if e.verified and e.peer_id not in chosen][: self.max_asked]
        found.extend(await self._ask_all(candidates, cid, limit - len(found)))
        return found[:limit]

    async def _ask_all(self, candidates: list[PeerEntry], cid: Cid, wanted: int) -> list[PeerInfo]:
        if not candidates or wanted <= 0:
            return []
        gate = asyncio.Semaphore(self.fanout)
        tasks = [asyncio.ensure_future(self._ask(entry, cid, gate)) for entry in candidates]
        holders: list[PeerInfo] = []
        try:
            for next_done in asyncio.as_completed(tasks):
                peer = await next_done
                if peer is not None:
                    holders.append(peer)
                    if len(holders) >= wanted:
                        break
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return holders

    async def _ask(self, entry: PeerEntry, cid: Cid, gate: asyncio.Semaphore) -> PeerInfo | None:
        async with gate:
            try:
                async with asyncio.timeout(self.timeout):
                    held = await self.wire.have(entry.record.urls[0], [cid])
            except PeerAnswerError as e:
                self.metrics.have_queries.labels(outcome="bad_answer").inc()
                self.misbehaved(info(entry), "bad answer")
                log.debug("peer answered 'have' badly", peer_id=entry.peer_id, error=str(e))
                return None
            except (PeerError, TimeoutError) as e:
                self.metrics.have_queries.labels(outcome="failed").inc()
                self.table.failed(entry.peer_id, now=self.clock.now())
                log.debug("peer not reached for 'have'", peer_id=entry.peer_id, error=str(e) or type(e).__name__)
                return None
        self.table.succeeded(entry.peer_id, now=self.clock.now())
        if cid.text not in held:
            self.metrics.have_queries.labels(outcome="none").inc()
            return None
        self.metrics.have_queries.labels(outcome="have").inc()
        self.holders.remember(cid.text, entry.peer_id)
        return info(entry)

    def served(self, peer: PeerInfo, cid: Cid, nbytes: int) -> None:
        if peer.peer_id == self.table.self_id:
            return
        self.holders.remember(cid.text, peer.peer_id)
        self.table.credit(peer.peer_id, nbytes, now=self.clock.now())

    def misbehaved(self, peer: PeerInfo, reason: str) -> None:
        now = self.clock.now()
        self.metrics.misbehaviour.labels(reason=reason_label(reason)).inc()
        if self.table.misbehaved(peer.peer_id, reason, now=now):
            entry = self.table.get(peer.peer_id)
            log.warning(
                "peer avoided",
                peer_id=peer.peer_id,
                reason=reason,
                until=None if entry is None else entry.avoid_until,
            )
        self.metrics.avoided.set(self.table.avoided_count(now))
