"""The on-chain storage proof check (docs/storage-proofs.md): valid proofs pass, every kind of forgery reverts
with its named error."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, TypeVar

import pytest
from marketplace_harness import PROOF_SAMPLES, Chain, PostedRequest
from storage_proofs_adapter import build_proof

from codex_node.market.types import RequestState

T = TypeVar("T")


class Proof(NamedTuple):
    slot_root: bytes
    slot_path: list[bytes]
    cells: list[bytes]
    cell_paths: list[list[bytes]]


def flip(data: bytes, at: int = 0) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


def with_item(items: list[T], index: int, value: T) -> list[T]:
    changed = list(items)
    changed[index] = value
    return changed


def rotate(items: list[T]) -> list[T]:
    return items[1:] + items[:1]


def try_fill(chain: Chain, posted: PostedRequest, index: int, mutate: Callable[[Proof], Proof]) -> None:
    proof = mutate(Proof(*chain.proof_for(posted, index)))
    chain.send(chain.marketplace.functions.fillSlot(posted.id, index, tuple(proof)), chain.accounts.hosts[0])


@pytest.fixture
def reserved(chain: Chain) -> PostedRequest:
    posted = chain.post_request(slots=3, blocks_per_slot=2)
    chain.reserve(posted, 0, chain.accounts.hosts[0])
    return posted


def _sibling_flipped(paths: list[list[bytes]], sample: int) -> list[list[bytes]]:
    return with_item(paths, sample, with_item(paths[sample], 0, flip(paths[sample][0])))


MUTATIONS: list[tuple[str, Callable[[Proof], Proof], str]] = [
    ("one fewer cell", lambda p: p._replace(cells=p.cells[:-1]), "InvalidProofShape"),
    ("one fewer cell path", lambda p: p._replace(cell_paths=p.cell_paths[:-1]), "InvalidProofShape"),
    (
        "one sample too many",
        lambda p: p._replace(cells=[*p.cells, p.cells[0]], cell_paths=[*p.cell_paths, p.cell_paths[0]]),
        "InvalidProofShape",
    ),
    ("short cell", lambda p: p._replace(cells=with_item(p.cells, 0, p.cells[0][:-1])), "InvalidProofShape"),
    ("long cell", lambda p: p._replace(cells=with_item(p.cells, -1, p.cells[-1] + b"\0")), "InvalidProofShape"),
    (
        "wrong cell content",
        lambda p: p._replace(cells=with_item(p.cells, 2, flip(p.cells[2], 100))),
        "InvalidCellProof",
    ),
    (
        "cells out of order",
        lambda p: p._replace(cells=rotate(p.cells), cell_paths=rotate(p.cell_paths)),
        "InvalidCellProof",
    ),
    ("wrong cell path sibling", lambda p: p._replace(cell_paths=_sibling_flipped(p.cell_paths, 3)), "InvalidCellProof"),
    (
        "cell path too short",
        lambda p: p._replace(cell_paths=with_item(p.cell_paths, 0, p.cell_paths[0][:-1])),
        "InvalidCellProof",
    ),
    (
        "cell path too long",
        lambda p: p._replace(cell_paths=with_item(p.cell_paths, 4, [*p.cell_paths[4], bytes(32)])),
        "InvalidCellProof",
    ),
    ("wrong slot root", lambda p: p._replace(slot_root=flip(p.slot_root)), "InvalidCellProof"),
    (
        "wrong slot path sibling",
        lambda p: p._replace(slot_path=with_item(p.slot_path, 0, flip(p.slot_path[0]))),
        "InvalidSlotProof",
    ),
    ("slot path too short", lambda p: p._replace(slot_path=p.slot_path[:-1]), "InvalidSlotProof"),
    ("slot path too long", lambda p: p._replace(slot_path=[*p.slot_path, bytes(32)]), "InvalidSlotProof"),
]


@pytest.mark.parametrize(("mutate", "error"), [(m, e) for _, m, e in MUTATIONS], ids=[n for n, _, _ in MUTATIONS])
def test_forged_proof_is_refused(
    chain: Chain, reserved: PostedRequest, mutate: Callable[[Proof], Proof], error: str
) -> None:
    with chain.expect_revert(error):
        try_fill(chain, reserved, 0, mutate)


def test_unmodified_proof_fills_the_slot(chain: Chain, reserved: PostedRequest) -> None:
    try_fill(chain, reserved, 0, lambda p: p)
    assert chain.marketplace.functions.getHost(reserved.slot_id(0)).call() == chain.accounts.hosts[0]


def test_proof_of_another_slots_data_is_refused(chain: Chain, reserved: PostedRequest) -> None:
    # Cells of slot 1 at the cells sampled for slot 0 reach slot 1's root consistently; only the dataset path
    # (verified at index 0) exposes them.
    sid0 = reserved.slot_id(0)
    challenge = bytes(chain.marketplace.functions.getChallenge(sid0).call())
    proof = build_proof(reserved.dataset, 1, challenge, sid0, PROOF_SAMPLES)
    with chain.expect_revert("InvalidSlotProof"):
        chain.send(chain.marketplace.functions.fillSlot(reserved.id, 0, proof), chain.accounts.hosts[0])


def test_proof_for_another_challenge_is_refused(chain: Chain, reserved: PostedRequest) -> None:
    stale = chain.proof_for(reserved, 0, challenge=b"\x42" * 32)
    with chain.expect_revert("InvalidCellProof"):
        chain.send(chain.marketplace.functions.fillSlot(reserved.id, 0, stale), chain.accounts.hosts[0])


def test_request_with_a_wrong_dataset_root_cannot_be_filled(chain: Chain) -> None:
    posted = chain.post_request(merkle_root=b"\x01" * 32)
    chain.reserve(posted, 0, chain.accounts.hosts[0])
    with chain.expect_revert("InvalidSlotProof"):
        try_fill(chain, posted, 0, lambda p: p)


def test_odd_geometry_pads_both_trees(chain: Chain) -> None:
    # 5 slots (dataset tree padded to 8 leaves) of 3 blocks (96 cells, slot tree padded to 128 leaves).
    posted = chain.post_request(slots=5, blocks_per_slot=3, max_slot_loss=2)
    chain.fill_all(posted)
    assert chain.marketplace.functions.requestState(posted.id).call() == RequestState.STARTED


def test_single_slot_single_leaf_dataset_has_empty_slot_path(chain: Chain) -> None:
    posted = chain.post_request(slots=1, max_slot_loss=0)
    chain.reserve(posted, 0, chain.accounts.hosts[0])
    proof = chain.proof_for(posted, 0)
    assert proof[1] == []
    assert proof[0] == posted.request.content.merkle_root
    chain.send(chain.marketplace.functions.fillSlot(posted.id, 0, proof), chain.accounts.hosts[0])
