"""The pure-Python verifier: valid proofs pass, each forgery is refused by the check the contract would fail."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from proofkit import MUTATIONS, MemDataset, Mutation, flip

from codex_node.errors import (
    InvalidCellProofError,
    InvalidProofError,
    InvalidProofShapeError,
    InvalidSlotProofError,
    ProofDataError,
    ProofInvalidError,
)
from codex_node.market.types import Ask, Content, Request, slot_id
from codex_node.proofs import StorageProof, build_proof, check_proof, sample_indices, verify_proof
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.mockledger import ProofVerifier
from codex_node.testing.mockmarket import MockMarket, account

ERRORS: dict[str, type[InvalidProofError]] = {
    "InvalidProofShape": InvalidProofShapeError,
    "InvalidCellProof": InvalidCellProofError,
    "InvalidSlotProof": InvalidSlotProofError,
}
CHALLENGE = b"\x11" * 32
SLOT_ID = b"\x22" * 32


@pytest.fixture(scope="module")
def dataset() -> MemDataset:
    return MemDataset.random(slots=3, blocks_per_slot=2, seed=7)


@settings(max_examples=40, deadline=None)
@given(
    slots=st.integers(1, 6),
    blocks=st.integers(1, 3),
    samples=st.integers(0, 8),
    challenge=st.binary(min_size=32, max_size=32),
    slot_id=st.binary(min_size=32, max_size=32),
    data=st.data(),
)
def test_built_proofs_verify_for_any_geometry(
    slots: int, blocks: int, samples: int, challenge: bytes, slot_id: bytes, data: st.DataObject
) -> None:
    dataset = MemDataset.random(slots, blocks, seed=slots * 10 + blocks)
    index = data.draw(st.integers(0, slots - 1))
    proof = dataset.proof(index, challenge, slot_id, samples)
    target = dataset.target(index, challenge, slot_id, samples)
    check_proof(proof, target)
    assert verify_proof(proof, target)
    assert len(proof.cells) == samples
    assert all(len(p) == dataset.trees[index].depth for p in proof.cell_paths)
    assert len(proof.slot_path) == dataset.tree.depth


@pytest.mark.parametrize(("mutate", "error"), [(m, e) for _, m, e in MUTATIONS], ids=[n for n, _, _ in MUTATIONS])
def test_forgery_is_refused_with_the_contracts_error(dataset: MemDataset, mutate: Mutation, error: str) -> None:
    target = dataset.target(0, CHALLENGE, SLOT_ID)
    forged = mutate(dataset.proof(0, CHALLENGE, SLOT_ID))
    with pytest.raises(ERRORS[error]) as caught:
        check_proof(forged, target)
    assert caught.value.contract_error == error
    assert not verify_proof(forged, target)


def test_proof_of_another_slot_at_this_slots_samples_fails_only_the_slot_path(dataset: MemDataset) -> None:
    tree = dataset.trees[1]
    indices = sample_indices(CHALLENGE, SLOT_ID, tree.cells, 5)
    cells = [dataset.slots[1][i * 2048 : (i + 1) * 2048] for i in indices]
    proof = build_proof(tree, dataset.tree, 1, indices, cells)
    with pytest.raises(InvalidSlotProofError):
        check_proof(proof, dataset.target(0, CHALLENGE, SLOT_ID))


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("challenge", b"\x42" * 32, InvalidCellProofError),
        ("slot_id", b"\x42" * 32, InvalidCellProofError),
        ("slot_size", 48 * 2048, InvalidCellProofError),  # another sampling modulus, same tree depth
        ("slot_size", 3 * 65536, InvalidCellProofError),  # a deeper slot tree
        ("samples", 4, InvalidProofShapeError),
        ("slots", 5, InvalidSlotProofError),
        ("slot_index", 2, InvalidSlotProofError),
        ("dataset_root", b"\x01" * 32, InvalidSlotProofError),
    ],
)
def test_proof_for_another_target_is_refused(
    dataset: MemDataset, field: str, value: Any, error: type[InvalidProofError]
) -> None:
    proof = dataset.proof(0, CHALLENGE, SLOT_ID)
    with pytest.raises(error):
        check_proof(proof, replace(dataset.target(0, CHALLENGE, SLOT_ID), **{field: value}))


def test_shape_is_checked_whole_before_any_cell() -> None:
    # A wrong cell first and a short cell last: the contract reports the shape, not the cell.
    dataset = MemDataset.random(2, 1)
    proof = dataset.proof(0, CHALLENGE, SLOT_ID)
    cells = (flip(proof.cells[0]), *proof.cells[1:-1], proof.cells[-1][:100])
    with pytest.raises(InvalidProofShapeError):
        check_proof(replace(proof, cells=cells), dataset.target(0, CHALLENGE, SLOT_ID))


def test_cells_are_checked_before_the_slot_path() -> None:
    dataset = MemDataset.random(2, 1)
    proof = dataset.proof(0, CHALLENGE, SLOT_ID)
    broken = replace(proof, cells=(flip(proof.cells[0]), *proof.cells[1:]), slot_path=())
    with pytest.raises(InvalidCellProofError):
        check_proof(broken, dataset.target(0, CHALLENGE, SLOT_ID))


def test_slot_smaller_than_a_cell_is_a_shape_error_not_a_crash() -> None:
    # The contract would panic (division by zero); requestStorage never lets such a slot exist.
    dataset = MemDataset.random(1, 1)
    proof = StorageProof(slot_root=bytes(32), slot_path=(), cells=(bytes(2048),), cell_paths=((),))
    target = replace(dataset.target(0, CHALLENGE, SLOT_ID, samples=1), slot_size=100)
    with pytest.raises(InvalidProofShapeError):
        check_proof(proof, target)


def test_build_refuses_cells_that_are_not_the_trees() -> None:
    dataset = MemDataset.random(2, 1)
    tree = dataset.trees[0]
    with pytest.raises(ProofDataError, match="cell 3"):
        build_proof(tree, dataset.tree, 0, [3], [os.urandom(2048)])
    with pytest.raises(ProofDataError, match="slot 1"):
        build_proof(tree, dataset.tree, 1, [], [])


def test_verify_proof_fits_the_mock_ledgers_verifier_type() -> None:
    verifier: ProofVerifier = verify_proof
    assert verifier is verify_proof


async def test_mock_market_with_the_real_verifier_accepts_real_proofs_only() -> None:
    dataset = MemDataset.random(slots=2, blocks_per_slot=1, seed=3)
    clock = FakeClock(1_700_000_040)
    client = MockMarket(clock, signer=account(1), verifier=verify_proof)
    host = client.as_account(account(2))
    for market in (client, host):
        market.mint(market.signer, 10**15)
    ask = Ask(
        proof_probability=1,
        price_per_byte_per_second=1,
        collateral_per_byte=1,
        slots=2,
        slot_size=65536,
        duration=3600,
        max_slot_loss=0,
    )
    request = Request(client.signer, ask, Content(b"\x01\x55cid", dataset.tree.root), 600, b"\x05" * 32)
    await client.request_storage(request)
    collateral = ask.collateral_per_slot
    for index in (0, 1):
        await host.reserve_slot(request.id, index)
    sid0 = slot_id(request.id, 0)
    good = dataset.proof(0, await host.get_challenge(sid0), sid0)

    with pytest.raises(ProofInvalidError):
        await host.fill_slot(request.id, 0, replace(good, cells=(flip(good.cells[0]), *good.cells[1:])), collateral)
    with pytest.raises(ProofInvalidError):  # slot 0's proof offered for slot 1
        await host.fill_slot(request.id, 1, good, collateral)
    await host.fill_slot(request.id, 0, good, collateral)
    assert await host.get_host(sid0) == host.signer
