"""Sample selection agrees with the contract's formula keccak256(abi.encodePacked(challenge, slotId, i)) % cells."""

from __future__ import annotations

import pytest
from eth_abi.packed import encode_packed
from eth_hash.auto import keccak
from hypothesis import given
from hypothesis import strategies as st

from codex_node.proofs import sample_index, sample_indices

hashes = st.binary(min_size=32, max_size=32)


@given(challenge=hashes, slot_id=hashes, sample=st.integers(0, 2**256 - 1), cells=st.integers(1, 2**40))
def test_sample_index_is_the_contracts_formula(challenge: bytes, slot_id: bytes, sample: int, cells: int) -> None:
    packed = encode_packed(["bytes32", "bytes32", "uint256"], [challenge, slot_id, sample])
    assert sample_index(challenge, slot_id, sample, cells) == int.from_bytes(keccak(packed), "big") % cells


@given(challenge=hashes, slot_id=hashes, cells=st.integers(1, 5000), samples=st.integers(0, 20))
def test_sample_indices_are_in_range_and_in_sample_order(
    challenge: bytes, slot_id: bytes, cells: int, samples: int
) -> None:
    picked = sample_indices(challenge, slot_id, cells, samples)
    assert len(picked) == samples
    assert all(0 <= i < cells for i in picked)
    assert list(picked) == [sample_index(challenge, slot_id, i, cells) for i in range(samples)]


def test_another_challenge_picks_other_cells() -> None:
    a = sample_indices(b"\x01" * 32, b"\x02" * 32, 2**20, 5)
    b = sample_indices(b"\x03" * 32, b"\x02" * 32, 2**20, 5)
    assert a != b


@pytest.mark.parametrize(
    ("challenge", "slot_id", "cells", "message"),
    [
        (b"x" * 31, b"y" * 32, 4, "32 bytes"),
        (b"x" * 32, b"y" * 33, 4, "32 bytes"),
        (b"x" * 32, b"y" * 32, 0, "0 cells"),
    ],
)
def test_bad_inputs_are_refused(challenge: bytes, slot_id: bytes, cells: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sample_index(challenge, slot_id, 0, cells)
