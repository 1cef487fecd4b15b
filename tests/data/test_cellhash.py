"""Slot-tree hashing of many blocks on a few threads (data/cellhash.py): the same hashes as one block at a time."""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Sequence

import pytest

from codex_node.data import cellhash
from codex_node.data.cellhash import block_hashes, hash_blocks, map_runs
from codex_node.data.erasure import SlotRootBuilder, block_root, slot_root
from codex_node.data.merkle import Buffer
from codex_node.data.slots import BLOCK_SIZE
from codex_node.proofs.trees import SlotTree, cell_leaves

B = BLOCK_SIZE


def blocks(count: int, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(B) for _ in range(count)]


@pytest.mark.parametrize("threads", [1, 2, 3, 5])
@pytest.mark.parametrize("count", [0, 1, 7, 8, 9, 33])
def test_blocks_hashed_on_threads_give_the_leaves_and_roots_of_one_at_a_time(count: int, threads: int) -> None:
    given = blocks(count, seed=count)
    leaves, roots = hash_blocks(given, threads=threads)
    assert leaves == b"".join(cell_leaves(b) for b in given)
    assert roots == [block_root(b) for b in given]


def test_memoryviews_and_bytearrays_hash_like_bytes() -> None:
    given = blocks(9)
    views: list[Buffer] = [memoryview(b) if i % 2 else bytearray(b) for i, b in enumerate(given)]
    assert hash_blocks(views) == hash_blocks(given)


def test_the_work_is_shared_with_a_helper_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, int]] = []
    real = cellhash.block_hashes

    def recording(run: list[bytes], roots: bool = True) -> tuple[bytes, list[bytes]]:
        seen.append((threading.current_thread().name, len(run)))
        return real(run, roots)

    monkeypatch.setattr(cellhash, "block_hashes", recording)
    given = blocks(16)
    assert hash_blocks(given, threads=2) == block_hashes(given)
    caller = threading.current_thread().name
    assert sorted(n for _, n in seen) == [8, 8]
    assert {name == caller for name, _ in seen} == {True, False}  # one run here, the other on a helper


@pytest.mark.parametrize("bad", [0, 15])
def test_a_block_that_is_not_64_kib_is_refused_on_whichever_thread_hashes_it(bad: int) -> None:
    given = blocks(16)
    given[bad] = given[bad][:-1]
    with pytest.raises(ValueError, match="slot block"):
        hash_blocks(given, threads=2)


@pytest.mark.parametrize("keep", [True, False])
def test_a_slot_root_built_in_batches_is_the_slot_trees_root(keep: bool) -> None:
    given = blocks(21, seed=3)
    builder = SlotRootBuilder(keep_leaves=keep)
    for start in range(0, len(given), 8):
        builder.add_many(given[start : start + 8])
    tree = SlotTree.from_bytes(b"".join(given))
    assert builder.root() == slot_root(given) == tree.root
    assert builder.blocks == 21
    assert builder.leaves() == (tree_leaves(tree) if keep else None)


def tree_leaves(tree: SlotTree) -> bytes:
    return b"".join(tree.leaf(i) for i in range(tree.cells))


def test_one_byte_changed_anywhere_changes_the_slot_root() -> None:
    given = blocks(16, seed=4)
    root = slot_root(given)
    for index, offset in [(0, 0), (7, B - 1), (8, 2048), (15, B // 2)]:
        changed = list(given)
        block = bytearray(changed[index])
        block[offset] ^= 1
        changed[index] = bytes(block)
        builder = SlotRootBuilder()
        builder.add_many(changed)
        assert builder.root() != root, (index, offset)


def test_leaves_alone_are_the_same_leaves_without_the_roots() -> None:
    given = blocks(12, seed=5)
    leaves, roots = hash_blocks(given, roots=False)
    assert (leaves, roots) == (hash_blocks(given)[0], [])


def test_runs_come_back_in_order_and_an_error_on_a_helper_is_raised_once_every_run_ended() -> None:
    assert map_runs(list, range(10), threads=2) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert map_runs(list, range(7), threads=2) == [list(range(7))]  # under 4 items per run: no hand-off
    finished: list[int] = []

    def work(run: Sequence[int]) -> int:
        if run[0] == 0:
            raise ValueError("the first run failed")
        finished.append(run[0])
        return len(run)

    with pytest.raises(ValueError, match="the first run failed"):
        map_runs(work, range(8), threads=2)
    assert finished == [4]  # the caller's own run ended before the helper's error was raised


def test_runs_are_as_many_as_hash_threads_says_when_the_caller_names_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cellhash, "HASH_THREADS", 3)
    assert map_runs(list, range(12)) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    monkeypatch.setattr(cellhash, "HASH_THREADS", 1)
    assert map_runs(list, range(12)) == [list(range(12))]


def test_one_hash_thread_per_core_this_process_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 2, 5}, raising=False)
    assert cellhash._cores() == 3  # a container or taskset limit, not the machine's count
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert cellhash._cores() == 6
