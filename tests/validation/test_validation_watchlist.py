"""The watch list: the slots of one group, kept in step with SlotFilled/SlotFreed and the request endings."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from codex_node.market.types import (
    MarketEvent,
    RequestCancelled,
    RequestFailed,
    RequestFulfilled,
    RequestId,
    SlotFilled,
    SlotFreed,
    slot_id,
)
from codex_node.validation.watchlist import WatchList, group_of

R1 = RequestId(b"\x01" * 32)
R2 = RequestId(b"\x02" * 32)


def test_a_slot_s_group_is_its_id_as_a_big_endian_integer_modulo_the_groups() -> None:
    sid = slot_id(R1, 0)
    assert group_of(sid, 7) == int(sid.hex(), 16) % 7
    assert group_of(sid, None) == 0


def test_without_groups_every_filled_slot_is_watched() -> None:
    watched = WatchList()
    for i in range(5):
        watched.apply(SlotFilled(R1, i))
    assert len(watched) == 5


def test_with_groups_only_the_slots_of_its_group_are_watched() -> None:
    lists = [WatchList(3, g) for g in range(3)]
    for i in range(30):
        for watched in lists:
            watched.apply(SlotFilled(R1, i))
    for g, watched in enumerate(lists):
        assert {s.slot_index for s in watched} == {i for i in range(30) if int(slot_id(R1, i).hex(), 16) % 3 == g}
    assert sum(len(w) for w in lists) == 30
    assert all(len(w) > 0 for w in lists)


def test_a_freed_slot_is_dropped_and_watched_again_when_refilled() -> None:
    watched = WatchList()
    watched.apply(SlotFilled(R1, 0))
    assert [s.slot_index for s in watched.apply(SlotFreed(R1, 0))] == [0]
    assert slot_id(R1, 0) not in watched
    watched.apply(SlotFilled(R1, 0))
    assert slot_id(R1, 0) in watched


def test_a_failed_or_cancelled_request_drops_all_its_slots_and_only_them() -> None:
    watched = WatchList()
    for i in range(3):
        watched.apply(SlotFilled(R1, i))
        watched.apply(SlotFilled(R2, i))
    assert len(watched.apply(RequestFailed(R1))) == 3
    assert {s.request_id for s in watched} == {R2}
    watched.apply(RequestCancelled(R2))
    assert len(watched) == 0


def test_other_events_change_nothing() -> None:
    watched = WatchList()
    watched.apply(SlotFilled(R1, 0))
    assert watched.apply(RequestFulfilled(R1)) == []
    assert len(watched) == 1


def test_a_group_index_outside_the_groups_is_refused() -> None:
    import pytest

    with pytest.raises(ValueError, match="below groups"):
        WatchList(2, 2)


EVENT = st.one_of(
    st.builds(SlotFilled, st.sampled_from([R1, R2]), st.integers(0, 3)),
    st.builds(SlotFreed, st.sampled_from([R1, R2]), st.integers(0, 3)),
    st.builds(RequestFailed, st.sampled_from([R1, R2])),
)


@given(events=st.lists(EVENT, max_size=30), seen=st.integers(0, 30), overlap=st.integers(0, 30))
def test_replaying_a_suffix_onto_a_list_that_saw_more_gives_the_same_list(
    events: list[MarketEvent], seen: int, overlap: int
) -> None:
    """The restore: history up to some block, then the events held since a subscription that began earlier."""
    once = WatchList()
    once.apply_all(events)
    restored = WatchList()
    restored.apply_all(events[:seen])
    restored.apply_all(events[max(0, min(seen, len(events)) - overlap) :])
    assert {s.slot_id for s in restored} == {s.slot_id for s in once}
