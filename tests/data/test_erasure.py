from __future__ import annotations

import itertools
import random
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codex_node.data import proof as proof_format
from codex_node.data.erasure import (
    BLOCK_LEVEL,
    CELL_SIZE,
    ErasureEncoder,
    ErasureLayout,
    ErasureParams,
    block_root,
    dataset_root,
    decode_dataset,
    encode_rows,
    slot_root,
)
from codex_node.data.slots import BLOCK_SIZE, ZERO_BLOCK
from codex_node.errors import (
    ErasureDataError,
    ErasureError,
    ErasureParamsError,
    InsufficientBlocksError,
    SlotRootMismatchError,
    ValidationError,
)
from codex_node.proofs.trees import DatasetTree, SlotTree

B = BLOCK_SIZE


def dataset(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def blocks_of(data: bytes) -> list[bytes]:
    return [data[i : i + B] for i in range(0, len(data), B)]


def encode(k: int, m: int, data: bytes) -> tuple[ErasureEncoder, list[list[bytes]]]:
    """The encoder (finished) and every slot's blocks."""
    encoder = ErasureEncoder(ErasureParams(k, m), len(data))
    slots: list[list[bytes]] = [[] for _ in range(k + m)]
    for row in encoder.rows(blocks_of(data)):
        for s, block in enumerate(row.blocks):
            slots[s].append(block)
    return encoder, slots


def decode(layout: ErasureLayout, slots: list[list[bytes]], missing: tuple[int, ...], **kw: object) -> bytes:
    given_slots = {s: slots[s] for s in range(len(slots)) if s not in missing}
    return b"".join(decode_dataset(layout, given_slots, **kw))  # type: ignore[arg-type]


# --- parameters (anchor §6) -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nodes", "tolerance", "k", "m"), [(3, 1, 2, 1), (4, 2, 2, 2), (5, 2, 3, 2), (256, 128, 128, 128)]
)
def test_k_is_nodes_minus_tolerance_and_m_is_tolerance(nodes: int, tolerance: int, k: int, m: int) -> None:
    params = ErasureParams.from_request(nodes, tolerance)
    assert (params.k, params.m, params.slots) == (k, m, nodes)


@pytest.mark.parametrize(
    ("nodes", "tolerance", "message"),
    [
        (3, 0, "tolerance must be at least 1"),
        (3, -1, "tolerance must be at least 1"),
        (3, 4, "cannot exceed nodes"),
        (2, 1, "1 < K >= M"),  # K = 1
        (3, 2, "1 < K >= M"),  # K = 1 < M
        (5, 3, "1 < K >= M"),  # K = 2 < M = 3
        (4, 4, "1 < K >= M"),  # K = 0
        (257, 1, "exceeds"),  # zfec's limit
    ],
)
def test_parameters_breaking_the_anchor_rules_are_refused(nodes: int, tolerance: int, message: str) -> None:
    with pytest.raises(ErasureParamsError, match=message) as e:
        ErasureParams.from_request(nodes, tolerance)
    assert isinstance(e.value, ValidationError)  # the REST route answers 422


def test_an_empty_dataset_cannot_be_laid_out() -> None:
    with pytest.raises(InsufficientBlocksError) as e:
        ErasureLayout(ErasureParams(2, 1), 0)
    assert isinstance(e.value, ValidationError)


def test_layout_deals_dataset_blocks_row_by_row() -> None:
    layout = ErasureLayout(ErasureParams(3, 2), 7 * B + 1)  # 8 blocks: rows [0 1 2] [3 4 5] [6 7 pad]
    assert (layout.block_count, layout.rows, layout.slot_size) == (8, 3, 3 * B)
    assert [layout.dataset_block(0, p) for p in range(3)] == [0, 3, 6]
    assert [layout.dataset_block(2, p) for p in range(3)] == [2, 5, None]
    assert layout.block_length(7) == 1
    with pytest.raises(IndexError):
        layout.dataset_block(3, 0)  # a parity slot holds no dataset block


def test_cell_size_and_block_level_match_the_proof_format() -> None:
    assert proof_format.CELL_SIZE == CELL_SIZE
    assert 2**BLOCK_LEVEL == proof_format.CELLS_PER_BLOCK


# --- encoding --------------------------------------------------------------------------------------------------


def test_slots_hold_block_s_of_every_row_data_first_then_parity() -> None:
    data = dataset(5 * B + 10)
    _, slots = encode(3, 2, data)
    blocks = blocks_of(data)
    last = blocks[5] + bytes(B - 10)
    assert slots[0] == [blocks[0], blocks[3]]
    assert slots[1] == [blocks[1], blocks[4]]
    assert slots[2] == [blocks[2], last]
    assert all(len(slot) == 2 and all(len(b) == B for b in slot) for slot in slots)
    assert slots[3] != slots[4]


def test_a_dataset_smaller_than_a_row_fills_the_row_with_zero_blocks() -> None:
    _, slots = encode(4, 2, b"tiny")
    assert slots[0] == [b"tiny" + bytes(B - 4)]
    assert slots[1] == slots[2] == slots[3] == [ZERO_BLOCK]


def test_slot_roots_are_the_storage_proof_roots() -> None:
    data = dataset(9 * B + 3)
    encoder, slots = encode(3, 2, data)
    roots = encoder.slot_roots()
    assert list(roots) == [SlotTree.from_blocks(slot).root for slot in slots]
    assert dataset_root(roots) == DatasetTree(list(roots)).root
    assert roots == tuple(slot_root(slot) for slot in slots)
    assert block_root(slots[0][0]) == SlotTree.from_blocks([slots[0][0]]).root


def test_encoding_pulls_the_source_one_row_at_a_time() -> None:
    pulled = []

    def source() -> Iterator[bytes]:
        for i in range(6):
            pulled.append(i)
            yield bytes([i]) * B

    rows = encode_rows(ErasureLayout(ErasureParams(2, 1), 6 * B), source())
    first = next(rows)
    assert first.index == 0
    assert pulled == [0, 1]
    assert [r.index for r in rows] == [1, 2]


def test_a_block_reading_function_works_as_a_source() -> None:
    data = dataset(4 * B + 7)
    blocks = blocks_of(data)
    layout = ErasureLayout(ErasureParams(2, 1), len(data))
    from_function = [row.blocks for row in encode_rows(layout, lambda i: blocks[i])]
    from_iterable = [row.blocks for row in encode_rows(layout, blocks)]
    assert from_function == from_iterable


def test_mutable_source_buffers_are_copied_out() -> None:
    buf = bytearray(b"a" * B)
    rows = encode_rows(ErasureLayout(ErasureParams(2, 1), 2 * B), [buf, buf])
    row = next(rows)
    buf[:] = b"b" * B
    assert row.blocks[0] == b"a" * B
    assert all(type(b) is bytes for b in row.blocks)


@pytest.mark.parametrize(
    ("blocks", "message"),
    [
        ([b"a" * B], "ended after 1 blocks"),
        ([b"a" * B, b"b" * 10, b"c"], "more than the 2 blocks"),
        ([b"a" * (B - 1), b"b" * 10], "block 0 has 65535 bytes, expected 65536"),
        ([b"a" * B, b"b" * 11], "block 1 has 11 bytes, expected 10"),
    ],
)
def test_a_source_that_is_not_the_dataset_is_refused(blocks: list[bytes], message: str) -> None:
    with pytest.raises(ErasureDataError, match=message):
        list(encode_rows(ErasureLayout(ErasureParams(2, 1), B + 10), blocks))


def test_slot_roots_are_not_given_before_every_row_is_encoded() -> None:
    encoder = ErasureEncoder(ErasureParams(2, 1), 3 * B)
    rows = encoder.rows([b"x" * B] * 3)
    next(rows)
    with pytest.raises(ErasureError, match="every row"):
        encoder.slot_roots()
    list(rows)
    assert len(encoder.slot_roots()) == 3
    with pytest.raises(ErasureError, match="once"):
        encoder.rows([])


# --- decoding --------------------------------------------------------------------------------------------------

SHAPES = [(2, 1), (2, 2), (3, 1), (3, 2), (4, 3), (4, 4)]


def _sizes(k: int) -> list[int]:
    row = k * B
    return [
        1,  # far smaller than one row
        row - 1,  # one row but one byte
        row,  # exactly one row
        2 * row,  # an exact multiple of rows
        2 * row + B + 1,  # two rows, a block and a byte
    ]


@pytest.mark.parametrize(("k", "m"), SHAPES)
def test_every_set_of_m_missing_slots_decodes_byte_identical(k: int, m: int) -> None:
    for size in _sizes(k):
        data = dataset(size, seed=size)
        encoder, slots = encode(k, m, data)
        layout = encoder.layout
        roots = encoder.slot_roots()
        for missing in itertools.combinations(range(k + m), m):
            assert decode(layout, slots, missing, slot_roots=roots) == data, (k, m, size, missing)


@settings(max_examples=40, deadline=None)
@given(
    shape=st.sampled_from([*SHAPES, (5, 5), (10, 4)]),
    size=st.integers(1, 11 * B + 5),
    seed=st.integers(0, 2**32),
    data=st.data(),
)
def test_any_k_slots_decode_any_size(shape: tuple[int, int], size: int, seed: int, data: st.DataObject) -> None:
    k, m = shape
    original = dataset(size, seed)
    encoder, slots = encode(k, m, original)
    kept = data.draw(st.sets(st.integers(0, k + m - 1), min_size=k, max_size=k + m))
    missing = tuple(s for s in range(k + m) if s not in kept)
    assert decode(encoder.layout, slots, missing, slot_roots=encoder.slot_roots()) == original


def test_decoding_yields_pieces_of_at_most_a_block_and_reads_one_row_at_a_time() -> None:
    data = dataset(6 * B + 5)
    encoder, slots = encode(2, 1, data)
    reads: list[tuple[int, int]] = []

    def reader(s: int) -> Iterator[bytes]:
        for p, block in enumerate(slots[s]):
            reads.append((s, p))
            yield block

    pieces = decode_dataset(encoder.layout, {1: reader(1), 2: reader(2)})
    assert len(next(pieces)) == B
    assert reads == [(1, 0), (2, 0)]
    rest = list(pieces)
    assert [len(p) for p in rest] == [B] * 5 + [5]


def test_more_than_k_slots_reads_the_lowest_k() -> None:
    data = dataset(3 * B)
    encoder, slots = encode(2, 2, data)

    def untouchable() -> Iterator[bytes]:
        raise AssertionError("slot 3 was read")
        yield b""

    given_slots = {0: iter(slots[0]), 2: iter(slots[2]), 3: untouchable()}
    assert b"".join(decode_dataset(encoder.layout, given_slots)) == data


def test_slot_blocks_may_be_any_buffer() -> None:
    data = dataset(3 * B + 1)
    encoder, slots = encode(2, 1, data)
    given_slots = {1: [bytearray(b) for b in slots[1]], 2: [memoryview(b) for b in slots[2]]}
    pieces = list(decode_dataset(encoder.layout, given_slots, slot_roots=encoder.slot_roots()))
    assert b"".join(pieces) == data
    assert all(type(p) is bytes for p in pieces)


def test_fewer_than_k_slots_cannot_decode() -> None:
    encoder, slots = encode(3, 2, dataset(B))
    with pytest.raises(ErasureDataError, match=r"needs 3 of the 5 slots, got 2: \[1, 4\]"):
        next(decode_dataset(encoder.layout, {1: slots[1], 4: slots[4]}))


def test_unknown_slot_indices_are_refused() -> None:
    encoder, slots = encode(2, 1, dataset(B))
    with pytest.raises(ErasureDataError, match="out of range"):
        next(decode_dataset(encoder.layout, {0: slots[0], 1: slots[1], 3: slots[2]}))


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda slot: slot[:-1], "slot 1 ended after 2 blocks"),
        (lambda slot: [*slot, ZERO_BLOCK], "slot 1 has more than the 3 blocks"),
        (lambda slot: [slot[0], slot[1][:-1], slot[2]], "block 1 of slot 1 has 65535 bytes"),
    ],
)
def test_slot_data_of_the_wrong_shape_is_refused(mangle: object, message: str) -> None:
    encoder, slots = encode(2, 1, dataset(5 * B))
    slots[1] = mangle(slots[1])  # type: ignore[operator]
    with pytest.raises(ErasureDataError, match=message):
        decode(encoder.layout, slots, (0,))


@pytest.mark.parametrize("missing", [(0,), (2,)])
def test_a_corrupt_slot_block_fails_the_slot_root_check(missing: tuple[int]) -> None:
    data = dataset(4 * B)
    encoder, slots = encode(2, 1, data)
    block = bytearray(slots[1][1])
    block[100] ^= 1
    slots[1][1] = bytes(block)
    with pytest.raises(SlotRootMismatchError, match="slot 1"):
        decode(encoder.layout, slots, missing, slot_roots=encoder.slot_roots())
    # Without the check the corruption goes through unnoticed: that is what the check is for.
    assert decode(encoder.layout, slots, missing) != data
