"""The peer table: bounded, backs off unreachable peers, avoids misbehaving ones, shares only what it reached."""

from __future__ import annotations

from codex_node.peers.table import AVOID_BASE, RETRY_BASE, PeerTable
from tests.peers.netfakes import key, record

NOW = 1_000


def test_the_node_itself_is_never_in_its_table() -> None:
    table = PeerTable(key(1).peer_id, max_peers=10)
    assert not table.add(record(1), now=NOW)
    assert len(table) == 0


def test_a_newer_record_replaces_an_older_one_and_an_older_one_is_ignored() -> None:
    table = PeerTable(key(1).peer_id, max_peers=10)
    table.add(record(2, seq=5), now=NOW)
    table.add(record(2, seq=3), now=NOW)
    assert table.get(key(2).peer_id).record.seq == 5  # type: ignore[union-attr]
    table.add(record(2, seq=9), now=NOW)
    assert table.get(key(2).peer_id).record.seq == 9  # type: ignore[union-attr]


def test_a_full_table_keeps_good_peers_and_makes_room_only_by_dropping_a_bad_one() -> None:
    table = PeerTable(key(1).peer_id, max_peers=2)
    assert table.add(record(2), now=NOW, verified=True)
    assert table.add(record(3), now=NOW, verified=True)
    assert not table.add(record(4), now=NOW)
    assert len(table) == 2
    table.failed(key(3).peer_id, now=NOW)
    assert table.add(record(4), now=NOW)
    assert key(3).peer_id not in table
    assert len(table) == 2


def test_failures_back_off_exponentially_and_a_success_forgets_them() -> None:
    table = PeerTable(key(1).peer_id, max_peers=10)
    table.add(record(2), now=NOW)
    pid = key(2).peer_id
    table.failed(pid, now=NOW)
    assert table.usable(NOW) == []
    assert [e.peer_id for e in table.usable(NOW + RETRY_BASE)] == [pid]
    table.failed(pid, now=NOW)
    assert table.usable(NOW + RETRY_BASE) == []
    assert table.usable(NOW + 2 * RETRY_BASE) != []
    table.succeeded(pid, now=NOW)
    assert table.usable(NOW) != []


def test_misbehaviour_avoids_a_peer_longer_with_each_strike_and_says_when_it_is_fresh() -> None:
    table = PeerTable(key(1).peer_id, max_peers=10)
    table.add(record(2), now=NOW, verified=True)
    pid = key(2).peer_id
    assert table.misbehaved(pid, "wrong bytes", now=NOW)
    assert not table.misbehaved(pid, "wrong bytes", now=NOW + 1)  # already avoided: not fresh
    assert table.is_avoided(pid, NOW + 2 * AVOID_BASE)  # the second strike doubled the time
    assert not table.is_avoided(pid, NOW + 1 + 2 * AVOID_BASE)
    assert table.avoided_count(NOW) == 1
    assert table.shareable(10, NOW) == []


def test_only_peers_reached_by_this_node_are_shared_freshest_first() -> None:
    table = PeerTable(key(1).peer_id, max_peers=10)
    table.add(record(2), now=NOW)
    table.add(record(3), now=NOW, verified=True)
    table.add(record(4), now=NOW + 5, verified=True)
    assert [r.peer_id for r in table.shareable(10, NOW + 5)] == [key(4).peer_id, key(3).peer_id]
    assert [r.peer_id for r in table.shareable(1, NOW + 5)] == [key(4).peer_id]
    assert [e.peer_id for e in table.unverified(NOW)] == [key(2).peer_id]


def test_peers_that_served_most_rank_first() -> None:
    table = PeerTable(key(1).peer_id, max_peers=10)
    for n in (2, 3, 4):
        table.add(record(n), now=NOW, verified=True)
    table.credit(key(3).peer_id, 100, now=NOW)
    assert table.usable(NOW)[0].peer_id == key(3).peer_id


def test_heard_of_peers_fill_half_the_table_at_most() -> None:
    table = PeerTable(key(1).peer_id, max_peers=6)
    assert [table.add(record(n), now=NOW) for n in range(2, 6)] == [True, True, True, False]
    assert table.add(record(7), now=NOW, verified=True)  # a reached peer still finds room
