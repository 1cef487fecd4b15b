"""codex_node.proofs agrees with the contract's StorageProofs.verify: same verdict, same error, on random forgeries.

Every case sends the proof to ``fillSlot`` as a call in the pending block (no state change) after a reservation,
and compares the revert's name with the error :func:`codex_node.proofs.check_proof` raises for the same target
(``None`` for both when the proof is valid). Hypothesis draws one to three edits per proof, so proofs with
several faults also check that both sides run their checks in the same order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
from eth_tester.exceptions import TransactionFailed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marketplace_harness import PROOF_SAMPLES, Chain, PostedRequest
from storage_proofs_adapter import build_storage_proof
from web3.exceptions import ContractLogicError

from codex_node.errors import InvalidProofError
from codex_node.proofs import StorageProof, check_proof
from codex_node.testing.mockledger import ProofTarget

Edit = Callable[[StorageProof], StorageProof]


def contract_verdict(chain: Chain, posted: PostedRequest, index: int, proof: StorageProof) -> str | None:
    fn = chain.marketplace.functions.fillSlot(posted.id, index, proof.to_abi())
    try:
        fn.call({"from": chain.accounts.hosts[0]})
    except (TransactionFailed, ContractLogicError) as exc:
        return chain.error_name(exc)
    return None


def python_verdict(proof: StorageProof, target: ProofTarget) -> str | None:
    try:
        check_proof(proof, target)
    except InvalidProofError as e:
        return e.contract_error
    return None


def target_of(chain: Chain, posted: PostedRequest, index: int) -> ProofTarget:
    sid = posted.slot_id(index)
    return ProofTarget(
        challenge=bytes(chain.marketplace.functions.getChallenge(sid).call()),
        slot_id=sid,
        slot_index=index,
        slots=posted.ask.slots,
        slot_size=posted.ask.slot_size,
        dataset_root=posted.request.content.merkle_root,
        samples=PROOF_SAMPLES,
    )


def _flip(data: bytes, at: int) -> bytes:
    if not data:  # an earlier edit of the same draw emptied it (e.g. "resize cell" to 0): changing it means adding
        return b"\x01"
    at %= len(data)
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def _set(items: tuple[object, ...], i: int, value: object) -> tuple[object, ...]:
    return (*items[:i], value, *items[i + 1 :])


KINDS = [
    "flip cell byte",
    "resize cell",
    "drop cell",
    "drop cell path",
    "extra sample",
    "swap samples",
    "flip cell path hash",
    "shorten cell path",
    "lengthen cell path",
    "flip slot root",
    "flip slot path hash",
    "shorten slot path",
    "lengthen slot path",
    "borrow other slot root",
    "borrow other slot path",
    "borrow other cell",
]


def apply_edit(p: StorageProof, kind: str, other: StorageProof, i: int = 0, at: int = 0, size: int = 0) -> StorageProof:
    """One change of ``kind`` to a proof; ``other`` is a valid proof of another slot to borrow parts from."""
    n = len(p.cells)
    paths = p.cell_paths
    if kind == "flip cell byte" and n:
        return replace(p, cells=_set(p.cells, i % n, _flip(p.cells[i % n], at)))  # type: ignore[arg-type]
    if kind == "resize cell" and n:
        cell = (p.cells[i % n] * 3)[:size]
        return replace(p, cells=_set(p.cells, i % n, cell))  # type: ignore[arg-type]
    if kind == "drop cell" and n:
        return replace(p, cells=p.cells[:-1])
    if kind == "drop cell path" and paths:
        return replace(p, cell_paths=paths[:-1])
    if kind == "extra sample" and n and paths:
        return replace(p, cells=(*p.cells, p.cells[0]), cell_paths=(*paths, paths[0]))
    if kind == "swap samples" and n >= 2 and len(paths) >= 2:
        a, b = i % n, (i + 1) % n
        cells, new_paths = list(p.cells), list(paths)
        cells[a], cells[b] = cells[b], cells[a]
        if at % 2:  # the paths too (an earlier edit may have left fewer paths than cells)
            pa, pb = i % len(paths), (i + 1) % len(paths)
            new_paths[pa], new_paths[pb] = new_paths[pb], new_paths[pa]
        return replace(p, cells=tuple(cells), cell_paths=tuple(new_paths))
    if kind == "flip cell path hash" and paths and paths[i % len(paths)]:
        path = paths[i % len(paths)]
        changed = _set(path, at % len(path), _flip(path[at % len(path)], at))
        return replace(p, cell_paths=_set(paths, i % len(paths), changed))  # type: ignore[arg-type]
    if kind == "shorten cell path" and paths and paths[i % len(paths)]:
        return replace(p, cell_paths=_set(paths, i % len(paths), paths[i % len(paths)][:-1]))  # type: ignore[arg-type]
    if kind == "lengthen cell path" and paths:
        longer = (*paths[i % len(paths)], bytes(32))
        return replace(p, cell_paths=_set(paths, i % len(paths), longer))  # type: ignore[arg-type]
    if kind == "flip slot root":
        return replace(p, slot_root=_flip(p.slot_root, at % 32))
    if kind == "flip slot path hash" and p.slot_path:
        j = at % len(p.slot_path)
        return replace(p, slot_path=_set(p.slot_path, j, _flip(p.slot_path[j], at)))  # type: ignore[arg-type]
    if kind == "shorten slot path" and p.slot_path:
        return replace(p, slot_path=p.slot_path[:-1])
    if kind == "lengthen slot path":
        return replace(p, slot_path=(*p.slot_path, bytes(32)))
    if kind == "borrow other slot root":
        return replace(p, slot_root=other.slot_root)
    if kind == "borrow other slot path":
        return replace(p, slot_path=other.slot_path)
    if kind == "borrow other cell" and n and other.cells:
        return replace(p, cells=_set(p.cells, i % n, other.cells[i % len(other.cells)]))  # type: ignore[arg-type]
    return p


@st.composite
def edits(draw: st.DrawFn, other: StorageProof) -> Edit:
    """One random change to a proof (see :func:`apply_edit`)."""
    kind = draw(st.sampled_from(KINDS))
    i = draw(st.integers(0, 15))
    at = draw(st.integers(0, 4095))
    size = draw(st.sampled_from([0, 1, 2047, 2049, 4096]))
    return lambda p: apply_edit(p, kind, other, i, at, size)


GEOMETRIES = [(1, 1), (3, 2), (5, 3)]


@pytest.mark.parametrize(("slots", "blocks_per_slot"), GEOMETRIES, ids=[f"{s}x{b}" for s, b in GEOMETRIES])
def test_python_and_contract_give_the_same_verdict_on_random_forgeries(
    chain: Chain, slots: int, blocks_per_slot: int
) -> None:
    posted = chain.post_request(slots=slots, blocks_per_slot=blocks_per_slot, max_slot_loss=0)
    index = slots - 1
    chain.reserve(posted, index, chain.accounts.hosts[0])
    target = target_of(chain, posted, index)
    valid = build_storage_proof(posted.dataset, index, target.challenge, target.slot_id, PROOF_SAMPLES)
    other = build_storage_proof(posted.dataset, 0, target.challenge, target.slot_id, PROOF_SAMPLES)
    seen: dict[str | None, int] = {}

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
    @given(changes=st.lists(edits(other), min_size=0, max_size=3))
    def check(changes: list[Edit]) -> None:
        proof = valid
        for change in changes:
            proof = change(proof)
        expected = contract_verdict(chain, posted, index, proof)
        assert python_verdict(proof, target) == expected
        seen[expected] = seen.get(expected, 0) + 1

    check()
    # The draw made forgeries at all (a failure here means the strategy, not the verifier, is broken). Which
    # outcomes 60 random draws reach varies from run to run; that every outcome is reachable is the fixed
    # test below.
    assert len(seen) >= 2


# One edit per outcome, so the random test above cannot pass by never reaching one.
FIXED_EDITS = [
    (None, None),
    ("resize cell", "InvalidProofShape"),
    ("drop cell path", "InvalidProofShape"),
    ("flip cell byte", "InvalidCellProof"),
    ("flip cell path hash", "InvalidCellProof"),
    ("flip slot root", "InvalidCellProof"),
    ("flip slot path hash", "InvalidSlotProof"),
    ("borrow other slot path", "InvalidSlotProof"),
]


@pytest.mark.parametrize(("kind", "outcome"), FIXED_EDITS, ids=[str(k) for k, _ in FIXED_EDITS])
def test_python_and_contract_reach_each_outcome_on_the_same_forgery(
    chain: Chain, kind: str | None, outcome: str | None
) -> None:
    posted = chain.post_request(slots=3, blocks_per_slot=2, max_slot_loss=0)
    index = 2
    chain.reserve(posted, index, chain.accounts.hosts[0])
    target = target_of(chain, posted, index)
    valid = build_storage_proof(posted.dataset, index, target.challenge, target.slot_id, PROOF_SAMPLES)
    other = build_storage_proof(posted.dataset, 0, target.challenge, target.slot_id, PROOF_SAMPLES)
    proof = valid if kind is None else apply_edit(valid, kind, other, size=1)
    assert contract_verdict(chain, posted, index, proof) == outcome
    assert python_verdict(proof, target) == outcome


def test_each_slot_of_a_request_verifies_in_python_and_fills_on_chain(chain: Chain) -> None:
    posted = chain.post_request(slots=3, blocks_per_slot=1, max_slot_loss=0)
    for index in range(3):
        chain.reserve(posted, index, chain.accounts.hosts[index])
        target = target_of(chain, posted, index)
        proof = build_storage_proof(posted.dataset, index, target.challenge, target.slot_id, PROOF_SAMPLES)
        assert python_verdict(proof, target) is None
        chain.send(chain.marketplace.functions.fillSlot(posted.id, index, proof.to_abi()), chain.accounts.hosts[index])
