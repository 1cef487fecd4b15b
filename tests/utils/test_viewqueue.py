"""pop_views takes exactly n bytes off the front, in order, splitting the last view, and leaves the rest queued."""

from __future__ import annotations

from collections import deque

from hypothesis import given
from hypothesis import strategies as st

from codex_node.utils.viewqueue import pop_views


@given(st.lists(st.binary(min_size=1, max_size=50), min_size=1, max_size=8), st.data())
def test_the_first_n_bytes_come_off_in_order_and_the_rest_stays(pieces: list[bytes], data: st.DataObject) -> None:
    whole = b"".join(pieces)
    n = data.draw(st.integers(0, len(whole)))
    queue = deque(memoryview(p) for p in pieces)
    taken = pop_views(queue, n)
    assert b"".join(taken) == whole[:n]
    assert b"".join(queue) == whole[n:]
    assert all(len(view) for view in queue)
