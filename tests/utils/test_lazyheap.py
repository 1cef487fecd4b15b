"""The lazy-deletion heap (utils/lazyheap.py): behaves like a dict of entries from which the smallest is taken."""

from __future__ import annotations

import operator

from hypothesis import given
from hypothesis import strategies as st

from codex_node.utils.lazyheap import LazyHeap

Entry = tuple[int, int, str]  # (priority, seq, name): keyed by name


def heap(entries: tuple[Entry, ...] = ()) -> LazyHeap[str, Entry]:
    return LazyHeap(operator.itemgetter(2), entries)


def test_pop_gives_the_smallest_live_entry_and_skips_removed_ones() -> None:
    h = heap(((3, 0, "c"), (1, 1, "a"), (2, 2, "b")))
    assert h.remove("a") == (1, 1, "a")
    assert h.peek() == (2, 2, "b")
    assert [h.pop(), h.pop(), h.pop()] == [(2, 2, "b"), (3, 0, "c"), None]
    assert len(h) == 0
    assert not h


def test_a_push_under_a_known_ident_replaces_the_entry() -> None:
    h = heap(((1, 0, "a"), (5, 1, "b")))
    h.push((9, 2, "a"))
    assert h.get("a") == (9, 2, "a")
    assert len(h) == 2
    assert [h.pop(), h.pop(), h.pop()] == [(5, 1, "b"), (9, 2, "a"), None]


def test_equal_entries_are_told_apart_by_identity() -> None:
    h: LazyHeap[str, tuple[int, str]] = LazyHeap(operator.itemgetter(1))
    h.push((1, "a"))
    h.push((1, "a"))  # an equal but new tuple replaces the first: one live entry, not two
    assert len(h) == 1
    assert h.pop() == (1, "a")
    assert h.pop() is None


def test_dead_entries_do_not_pile_up() -> None:
    h = heap()
    for i in range(10_000):
        h.push((i, i, "same"))  # 9,999 replacements
        h.push((i, i, f"n{i}"))
        h.remove(f"n{i}")
    assert len(h) == 1
    assert len(h._heap) <= 2 * len(h) + 32 + 1


ops = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.integers(0, 20), st.sampled_from("abcdefgh")),
        st.tuples(st.just("remove"), st.just(0), st.sampled_from("abcdefgh")),
        st.tuples(st.just("pop"), st.just(0), st.just("")),
    ),
    max_size=200,
)


@given(ops)
def test_it_matches_a_dict_from_which_the_minimum_is_taken(script: list[tuple[str, int, str]]) -> None:
    h = heap()
    model: dict[str, Entry] = {}
    for seq, (op, priority, name) in enumerate(script):
        if op == "push":
            h.push((priority, seq, name))
            model[name] = (priority, seq, name)
        elif op == "remove":
            assert h.remove(name) == model.pop(name, None)
        else:
            expected = min(model.values(), default=None)
            if expected is not None:
                del model[expected[2]]
            assert h.pop() == expected
        assert len(h) == len(model)
        assert sorted(h.entries()) == sorted(model.values())
        assert h.peek() == min(model.values(), default=None)
