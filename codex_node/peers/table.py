"""The peer table: the peers this node knows (their verified records), how each behaved, and who to avoid.

Bounded by ``--max-peers``: a newcomer takes the place of a peer that failed or misbehaved, or is not kept; at
most half of the table holds peers only heard of (never reached by this node). A peer that cannot be reached is
backed off (exponentially, capped); a peer that misbehaved (wrong bytes, a bad answer) is avoided for longer, with
its strikes doubling the time. Pure: every method takes ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass

from codex_node.peers.record import PeerRecord

RETRY_BASE = 10  # seconds of back-off after a first failure, doubling up to RETRY_MAX
RETRY_MAX = 3600
AVOID_BASE = 300  # seconds a misbehaving peer is avoided at its first strike, doubling up to AVOID_MAX
AVOID_MAX = 86_400


@dataclass
class PeerEntry:
    """One known peer. ``verified``: this node reached it at one of its URLs itself (not only heard of it)."""

    record: PeerRecord
    verified: bool = False
    failures: int = 0
    retry_at: int = 0
    strikes: int = 0
    avoid_until: int = 0
    avoid_reason: str = ""
    served_bytes: int = 0
    last_seen: int = 0

    @property
    def peer_id(self) -> str:
        return self.record.peer_id

    def avoided(self, now: int) -> bool:
        return now < self.avoid_until

    def backing_off(self, now: int) -> bool:
        return now < self.retry_at

    def usable(self, now: int) -> bool:
        return not self.avoided(now) and not self.backing_off(now)


def _rank(e: PeerEntry) -> tuple[bool, int, int, int]:
    """Sort key, best first: verified, most bytes served, fewest failures, most recently seen."""
    return (not e.verified, -e.served_bytes, e.failures, -e.last_seen)


class PeerTable:
    """The known peers of the node whose peer id is ``self_id`` (never in its own table)."""

    def __init__(self, self_id: str, max_peers: int) -> None:
        self.self_id = self_id
        self.max_peers = max_peers
        # Records heard of (a peer's list, a caller introducing itself) may fill half the table at most: a flood of
        # freshly made keys cannot crowd out the peers this node reached.
        self.max_unverified = max(1, max_peers // 2)
        self._peers: dict[str, PeerEntry] = {}

    def __len__(self) -> int:
        return len(self._peers)

    def __contains__(self, peer_id: object) -> bool:
        return peer_id in self._peers

    def get(self, peer_id: str) -> PeerEntry | None:
        return self._peers.get(peer_id)

    def entries(self) -> list[PeerEntry]:
        return sorted(self._peers.values(), key=_rank)

    def add(self, record: PeerRecord, *, now: int, verified: bool = False) -> bool:
        """Learn ``record`` (a newer one replaces an older one of the same peer); whether the table now holds it."""
        if record.peer_id == self.self_id:
            return False
        entry = self._peers.get(record.peer_id)
        if entry is not None:
            if record.seq > entry.record.seq:
                entry.record = record
            if verified:
                self.succeeded(record.peer_id, now=now)
            return True
        if not verified and sum(1 for e in self._peers.values() if not e.verified) >= self.max_unverified:
            return False
        if len(self._peers) >= self.max_peers and not self._evict_one(now):
            return False
        self._peers[record.peer_id] = PeerEntry(record=record, verified=verified, last_seen=now if verified else 0)
        return True

    def _evict_one(self, now: int) -> bool:
        """Make room by dropping the worst peer, if one failed or misbehaved; whether room was made."""
        bad = [e for e in self._peers.values() if e.avoided(now) or e.failures > 0]
        if not bad:
            return False
        worst = max(bad, key=lambda e: (e.avoided(now), e.failures, -e.last_seen))
        del self._peers[worst.peer_id]
        return True

    def succeeded(self, peer_id: str, *, now: int) -> None:
        """The peer answered at one of its URLs: verified, its failures forgotten."""
        entry = self._peers.get(peer_id)
        if entry is not None:
            entry.verified = True
            entry.failures = 0
            entry.retry_at = 0
            entry.last_seen = now

    def failed(self, peer_id: str, *, now: int) -> None:
        """The peer could not be reached: back off, longer with each failure in a row."""
        entry = self._peers.get(peer_id)
        if entry is not None:
            entry.failures += 1
            entry.retry_at = now + min(RETRY_BASE * 2 ** min(entry.failures - 1, 20), RETRY_MAX)

    def misbehaved(self, peer_id: str, reason: str, *, now: int) -> bool:
        """The peer served wrong bytes or a bad answer: avoid it. Whether it was not avoided before this."""
        entry = self._peers.get(peer_id)
        if entry is None:
            return False
        fresh = not entry.avoided(now)
        entry.strikes += 1
        entry.avoid_until = now + min(AVOID_BASE * 2 ** min(entry.strikes - 1, 20), AVOID_MAX)
        entry.avoid_reason = reason
        return fresh

    def credit(self, peer_id: str, nbytes: int, *, now: int) -> None:
        """The peer served ``nbytes`` of verified bytes."""
        entry = self._peers.get(peer_id)
        if entry is not None:
            entry.served_bytes += max(nbytes, 0)
            self.succeeded(peer_id, now=now)

    def is_avoided(self, peer_id: str, now: int) -> bool:
        entry = self._peers.get(peer_id)
        return entry is not None and entry.avoided(now)

    def usable(self, now: int) -> list[PeerEntry]:
        """Peers worth asking now (neither avoided nor backing off), best first."""
        return [e for e in self.entries() if e.usable(now)]

    def avoided_count(self, now: int) -> int:
        return sum(1 for e in self._peers.values() if e.avoided(now))

    def shareable(self, limit: int, now: int) -> list[PeerRecord]:
        """Records to hand to other peers: only peers this node reached itself and does not avoid, freshest first."""
        good = [e for e in self._peers.values() if e.verified and not e.avoided(now)]
        good.sort(key=lambda e: -e.last_seen)
        return [e.record for e in good[:limit]]

    def unverified(self, now: int) -> list[PeerEntry]:
        """Peers heard of but never reached, that may be tried now."""
        return [e for e in self._peers.values() if not e.verified and e.usable(now)]
