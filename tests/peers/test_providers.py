"""The Providers implementation: remembered holders first, then a bounded fan-out of "have" questions."""

from __future__ import annotations

import asyncio

import structlog

from codex_node.data.cid import block_cid
from codex_node.peers.port import PeerInfo
from codex_node.peers.providers import Holders, PeerProviders
from codex_node.peers.table import PeerTable
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.fakepeerwire import FakePeerWire
from tests.peers.netfakes import key, metrics, peer, settle

CID = block_cid(b"block")
OTHER = block_cid(b"other")


def setup(n_peers: int, holders: set[int], **options: int) -> tuple[PeerProviders, FakePeerWire, FakeClock]:
    wire = FakePeerWire()
    clock = FakeClock()
    table = PeerTable(key(1).peer_id, max_peers=1000)
    for n in range(2, 2 + n_peers):
        p = peer(wire, n, holds={CID.text} if n in holders else set())
        table.add(p.record, now=clock.now(), verified=True)
    return PeerProviders(table, wire, clock, metrics(), **options), wire, clock


async def test_find_asks_known_peers_and_returns_those_that_have_it() -> None:
    providers, wire, _ = setup(5, holders={3, 5})
    found = await providers.find(CID, limit=10)
    assert {p.peer_id for p in found} == {key(3).peer_id, key(5).peer_id}
    assert wire.count("have") == 5
    assert found[0].url.startswith("http://127.0.0.")


async def test_answers_are_remembered_so_the_next_find_asks_nobody() -> None:
    providers, wire, _ = setup(5, holders={3})
    await providers.find(CID, limit=1)
    asked = wire.count("have")
    assert [p.peer_id for p in await providers.find(CID, limit=1)] == [key(3).peer_id]
    assert wire.count("have") == asked


async def test_the_fan_out_is_bounded_in_flight_and_in_total() -> None:
    providers, wire, _ = setup(50, holders=set(), fanout=4, max_asked=12)
    assert await providers.find(CID, limit=3) == []
    assert wire.count("have") == 12
    assert wire.max_in_flight == 4


async def test_find_stops_asking_once_it_has_enough() -> None:
    providers, wire, _ = setup(20, holders=set(range(2, 22)), fanout=2, max_asked=20)
    found = await providers.find(CID, limit=2)
    assert len(found) == 2
    assert wire.count("have") < 20


async def test_avoided_and_unreachable_peers_are_never_returned_and_unreachable_ones_are_backed_off() -> None:
    providers, wire, clock = setup(3, holders={2, 3, 4})
    wire.peers["http://127.0.0.3:8080/api/codex/v1"].down = True
    providers.misbehaved(PeerInfo(key(4).peer_id, ()), "wrong bytes")
    found = await providers.find(CID, limit=10)
    assert [p.peer_id for p in found] == [key(2).peer_id]
    assert providers.table.get(key(3).peer_id).backing_off(clock.now())  # type: ignore[union-attr]
    assert ("have", "http://127.0.0.4:8080/api/codex/v1") not in wire.asked  # avoided: not even asked


async def test_a_remembered_holder_that_misbehaves_is_no_longer_returned() -> None:
    providers, _, _ = setup(2, holders={2})
    found = await providers.find(CID, limit=1)
    providers.misbehaved(found[0], "wrong bytes")
    assert await providers.find(CID, limit=1) == []


async def test_a_peer_answering_badly_is_counted_as_misbehaving() -> None:
    providers, wire, clock = setup(2, holders={2})
    wire.peers["http://127.0.0.3:8080/api/codex/v1"].bad = True
    await providers.find(CID, limit=5)
    assert providers.table.is_avoided(key(3).peer_id, clock.now())
    registry_value = providers.metrics.misbehaviour.labels(reason="bad answer")._value.get()
    assert registry_value == 1


async def test_served_remembers_the_holder_and_ranks_it_first() -> None:
    providers, wire, _ = setup(3, holders=set())
    providers.served(PeerInfo(key(4).peer_id, ("http://127.0.0.4:8080/api/codex/v1",)), OTHER, 65536)
    assert [p.peer_id for p in await providers.find(OTHER, limit=1)] == [key(4).peer_id]
    assert wire.count("have") == 0
    assert providers.table.usable(0)[0].peer_id == key(4).peer_id


async def test_misbehaviour_is_logged_once_while_avoided_and_counted_each_time() -> None:
    providers, _, _ = setup(1, holders=set())
    p = PeerInfo(key(2).peer_id, ())
    with structlog.testing.capture_logs() as logs:
        providers.misbehaved(p, "wrong bytes")
        providers.misbehaved(p, "wrong bytes")
    assert [e["event"] for e in logs] == ["peer avoided"]
    assert providers.metrics.misbehaviour.labels(reason="wrong bytes")._value.get() == 2
    providers.misbehaved(p, "Ünbounded label " * 10)
    assert providers.metrics.misbehaviour.labels(reason="other")._value.get() == 1


async def test_a_cancelled_find_cancels_its_questions() -> None:
    providers, wire, _ = setup(4, holders={2})
    wire.gate = asyncio.Event()
    task = asyncio.ensure_future(providers.find(CID, limit=1))
    await settle(lambda: wire.in_flight == 4)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
    assert wire.in_flight == 0


async def test_zero_wanted_asks_nobody() -> None:
    providers, wire, _ = setup(3, holders={2})
    assert await providers.find(CID, limit=0) == []
    assert wire.asked == []


def test_the_holders_memory_is_bounded() -> None:
    holders = Holders(max_cids=2, per_cid=2)
    for cid in ("a", "b", "c"):
        holders.remember(cid, "p1")
    assert holders.of("a") == []
    for p in ("p1", "p2", "p3"):
        holders.remember("c", p)
    assert holders.of("c") == ["p3", "p2"]


async def test_peers_only_heard_of_are_not_asked() -> None:
    providers, wire, clock = setup(1, holders={2})
    heard = peer(wire, 9, holds={CID.text})
    providers.table.add(heard.record, now=clock.now())  # unverified: its URL may be someone else's
    assert [p.peer_id for p in await providers.find(CID, limit=5)] == [key(2).peer_id]
    assert ("have", heard.record.urls[0]) not in wire.asked
