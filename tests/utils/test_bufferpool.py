from __future__ import annotations

import ctypes
import mmap

import pytest

from codex_node.utils.bufferpool import PROBES, BufferPool, page_aligned


def test_the_pool_hands_out_a_buffer_again_only_when_nothing_refers_to_it() -> None:
    pool = BufferPool(8, 4, bytearray)
    buffer = bytearray(8)
    view = memoryview(buffer)[2:5]
    pool.give(buffer)
    given = id(buffer)
    del buffer
    assert id(pool.take()) != given  # a view of it is alive: another buffer
    del view
    assert id(pool.take()) == given


def test_a_take_looks_at_the_oldest_few_buffers_only_and_sends_those_still_referred_to_to_the_back() -> None:
    pool = BufferPool(8, 16, bytearray)
    buffers = [bytearray(8) for _ in range(PROBES + 2)]
    held = [memoryview(b) for b in buffers[:-1]]  # all but the newest are still referred to, like blocks in flight
    for buffer in buffers:
        pool.give(buffer)
    free = id(buffers[-1])
    del buffers, buffer
    assert id(pool.take()) != free  # a take costs PROBES looks at most: the free buffer was not reached, a new one
    assert id(pool.take()) == free  # those looked at went to the back: the free one came up next
    assert all(len(view) == 8 for view in held)


def test_a_full_pool_drops_its_oldest_and_a_buffer_of_another_size_is_refused() -> None:
    pool = BufferPool(8, 2, bytearray)
    first, second, third = bytearray(8), bytearray(8), bytearray(8)
    for buffer in (first, second, third):
        pool.give(buffer)
    ids = {id(second), id(third)}
    del first, second, third, buffer
    assert {id(pool.take()), id(pool.take())} == ids
    assert len(pool.take()) == 8  # the pool is empty now: a new one
    with pytest.raises(ValueError, match="9-byte buffer"):
        pool.give(bytearray(9))


def test_a_pool_of_page_aligned_buffers_reuses_one_only_once_no_view_of_it_is_left() -> None:
    pool = BufferPool(1 << 16, 2, page_aligned)
    buffer = pool.take()
    assert len(buffer) == 1 << 16
    assert ctypes.addressof(ctypes.c_char.from_buffer(buffer)) % mmap.PAGESIZE == 0
    pool.give(buffer)
    given = id(buffer)
    view = memoryview(buffer)[:4]
    del buffer
    assert id(pool.take()) != given
    del view
    assert id(pool.take()) == given
