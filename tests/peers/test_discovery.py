"""Discovery: bootstrap, peer exchange, verification of heard-of peers, persistence across a restart."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from codex_node.peers.discovery import EARLY_CHECK_GAP, Bootstrap
from codex_node.peers.part import Peers
from codex_node.peers.store import KNOWN_PREFIX, next_seq
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.fakepeerwire import FakePeerWire
from codex_node.testing.memorykv import MemoryKV
from tests.peers.netfakes import key, peer, record, settle

URL = "http://127.0.0.{}:8080/api/codex/v1"


def node(wire: FakePeerWire, kv: MemoryKV, clock: FakeClock, *boot: Bootstrap, max_peers: int = 160) -> Peers:
    peers = Peers(key(1), kv, clock, CollectorRegistry(), bootstrap=boot, max_peers=max_peers, wire=wire)
    peers.announce((URL.format(1),))
    return peers


async def test_a_node_learns_its_bootstrap_nodes_peers_and_reaches_them() -> None:
    wire, kv, clock = FakePeerWire(), MemoryKV(), FakeClock()
    peer(wire, 3)
    peer(wire, 2, shares=[record(3).text])
    peers = node(wire, kv, clock, Bootstrap(url=URL.format(2)))
    await peers.start()
    await peers.refresh()
    assert {e.peer_id for e in peers.entries()} == {key(2).peer_id, key(3).peer_id}
    assert all(e.verified for e in peers.entries())  # 3 was reached by this node itself
    assert wire.peers[URL.format(2)].introduced == [peers.record.text]  # type: ignore[union-attr]
    assert peers.metrics.known._value.get() == 2
    await peers.stop()


async def test_a_bootstrap_record_is_learned_without_asking_for_it() -> None:
    wire, kv, clock = FakePeerWire(), MemoryKV(), FakeClock()
    peer(wire, 2)
    peers = node(wire, kv, clock, Bootstrap(record=record(2)))
    await peers.start()
    await peers.refresh()
    assert [e.peer_id for e in peers.entries()] == [key(2).peer_id]
    await peers.stop()


async def test_a_peer_that_shares_a_forged_record_is_avoided() -> None:
    wire, kv, clock = FakePeerWire(), MemoryKV(), FakeClock()
    forged = record(3).text[:-4] + "AAAA"
    peer(wire, 2, shares=[forged])
    peers = node(wire, kv, clock, Bootstrap(url=URL.format(2)))
    await peers.start()
    await peers.refresh()
    assert peers.table.is_avoided(key(2).peer_id, clock.now())
    assert key(3).peer_id not in peers.table
    await peers.stop()


async def test_a_heard_of_peer_whose_url_answers_for_another_peer_is_not_verified() -> None:
    wire, kv, clock = FakePeerWire(), MemoryKV(), FakeClock()
    peer(wire, 4)
    liar = record(3)  # its URL is served by peer 4
    wire.peers[liar.urls[0]] = wire.peers[URL.format(4)]
    peer(wire, 2, shares=[liar.text])
    peers = node(wire, kv, clock, Bootstrap(url=URL.format(2)))
    await peers.start()
    await peers.refresh()
    entry = peers.table.get(key(3).peer_id)
    assert entry is not None
    assert not entry.verified
    assert entry.failures == 1
    assert liar not in peers.share()
    await peers.stop()


async def test_an_unreachable_bootstrap_node_is_retried_at_the_next_interval_only() -> None:
    wire, kv, clock = FakePeerWire(), MemoryKV(), FakeClock()
    peers = node(wire, kv, clock, Bootstrap(url=URL.format(2)))
    await peers.start()
    await peers.refresh()
    await peers.refresh()
    assert wire.count("record") == 1
    clock.advance(peers.discovery.interval)
    peer(wire, 2)
    await peers.refresh()
    assert key(2).peer_id in peers.table
    await peers.stop()


async def test_known_peers_survive_a_restart_and_unreadable_ones_are_dropped() -> None:
    wire, kv, clock = FakePeerWire(), MemoryKV(), FakeClock()
    peer(wire, 2, shares=[record(3).text])
    peer(wire, 3)
    first = node(wire, kv, clock, Bootstrap(url=URL.format(2)))
    await first.start()
    await first.refresh()
    await first.stop()
    kv.put(KNOWN_PREFIX + "junk", b"spr:broken")
    second = node(FakePeerWire(), kv, clock)
    await second.start()
    assert {e.peer_id for e in second.entries()} == {key(2).peer_id, key(3).peer_id}
    assert kv.get(KNOWN_PREFIX + "junk") is None
    await second.stop()


async def test_the_table_is_bounded_by_max_peers() -> None:
    wire, kv, clock = FakePeerWire(), MemoryKV(), FakeClock()
    for n in range(3, 13):
        peer(wire, n)
    peer(wire, 2, shares=[record(n).text for n in range(3, 13)])
    peers = node(wire, kv, clock, Bootstrap(url=URL.format(2)), max_peers=4)
    await peers.start()
    await peers.refresh()
    assert len(peers.table) == 3  # at most half of the table is heard-of peers at any moment (2, then reached)
    await peers.refresh()
    assert len(peers.table) == 4
    await peers.stop()


async def test_the_record_sequence_grows_across_restarts_even_within_one_second() -> None:
    kv = MemoryKV()
    assert next_seq(kv, 100) == 100
    assert next_seq(kv, 100) == 101
    assert next_seq(kv, 50) == 102  # a clock gone backwards still signs a newer record
    assert next_seq(kv, 500) == 500


async def test_discovery_runs_every_interval_of_the_injected_clock() -> None:
    wire, kv, clock = FakePeerWire(), MemoryKV(), FakeClock()
    peer(wire, 2)
    peers = node(wire, kv, clock, Bootstrap(record=record(2)))
    await peers.start()
    peers.start_discovery()
    await settle(lambda: peers.discovery.rounds == 1 and clock.waiters == 1)
    clock.advance(peers.discovery.interval)
    await settle(lambda: peers.discovery.rounds == 2 and clock.waiters == 1)
    assert peers.discovery.rounds == 2
    await peers.stop()
    assert clock.waiters == 0


async def test_a_peer_that_introduces_itself_is_reached_within_seconds_not_at_the_next_round() -> None:
    """A new node pushes its record with its first exchange; this node reaches it at once (so it can share it with
    the next peer that asks), and a flood of introductions is checked at most every EARLY_CHECK_GAP seconds."""
    wire, kv, clock = FakePeerWire(), MemoryKV(), FakeClock()
    peer(wire, 3)
    peer(wire, 4)
    peers = node(wire, kv, clock)
    await peers.start()
    peers.start_discovery()
    await settle(lambda: peers.discovery.rounds == 1 and clock.waiters == 1)
    peers.learn(record(3).text)  # as GET /peers?spr=… does
    await settle(lambda: (e := peers.table.get(key(3).peer_id)) is not None and e.verified)
    assert peers.discovery.rounds == 1  # no full round: only the check of the introduced peer
    assert [r.peer_id for r in peers.share(10)] == [key(3).peer_id]
    peers.learn(record(4).text)  # within the gap: waits for it, on the injected clock
    for _ in range(100):
        await asyncio.sleep(0)
    assert not peers.table.get(key(4).peer_id).verified  # type: ignore[union-attr]
    clock.advance(EARLY_CHECK_GAP)
    await settle(lambda: (e := peers.table.get(key(4).peer_id)) is not None and e.verified)
    assert peers.discovery.rounds == 1
    await peers.stop()
    assert clock.waiters == 0
