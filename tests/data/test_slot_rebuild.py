"""Rebuilding a lost slot from K other slots (data/repair.py): every slot, any K sources, checked all the way."""

from __future__ import annotations

import hashlib
import itertools
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codex_node.data import cellhash
from codex_node.data.cid import Cid, manifest_cid
from codex_node.data.erasure import ErasureParams, dataset_root
from codex_node.data.manifest import Manifest
from codex_node.data.protected import ProtectedManifest, Protector
from codex_node.data.repair import RebuiltRows, SlotRebuilder, batch_rows, source_order
from codex_node.data.slots import BLOCK_SIZE
from codex_node.errors import RepairError, SlotRootMismatchError
from codex_node.proofs.trees import SlotTree, cell_leaves

B = BLOCK_SIZE


@dataclass(frozen=True)
class Coded:
    protected: ProtectedManifest
    slots: list[list[bytes]]
    manifests: list[Manifest]

    def digests(self, j: int, first: int, count: int) -> bytes:
        return self.manifests[j].block_digests[first * 32 : (first + count) * 32]


def slot_manifest(blocks: Sequence[bytes]) -> Manifest:
    return Manifest.build(b"".join(hashlib.sha256(b).digest() for b in blocks), dataset_size=len(blocks) * B)


def coded(size: int, k: int, m: int, seed: int = 0) -> Coded:
    data = random.Random(seed).randbytes(size)
    protector = Protector(ErasureParams(k, m), manifest_cid(b"original"), size)
    slots: list[list[bytes]] = [[] for _ in range(k + m)]
    for row in protector.rows([data[i : i + B] for i in range(0, size, B)]):
        for s, block in enumerate(row.blocks):
            slots[s].append(block)
    manifests = [slot_manifest(blocks) for blocks in slots]
    return Coded(protector.manifest([mf.cid() for mf in manifests]), slots, manifests)


def rebuild(
    c: Coded, s: int, sources: Sequence[int], *, known: bool, per_batch: int = 2, slots: list[list[bytes]] | None = None
) -> tuple[list[bytes], Manifest]:
    given_slots = c.slots if slots is None else slots
    rebuilder = SlotRebuilder(c.protected, s, slot_manifest=c.manifests[s] if known else None)
    out: list[bytes] = []
    while rebuilder.next_row < rebuilder.rows:
        first = rebuilder.next_row
        count = min(per_batch, rebuilder.rows - first)
        rows = rebuilder.rebuild(
            {j: given_slots[j][first : first + count] for j in sources},
            {j: c.digests(j, first, count) for j in sources},
        )
        assert rows.corrupt_sources == ()
        assert rows.first_row == first
        listed = Manifest.build(rows.digests, dataset_size=rows.nbytes)
        assert rows.cids() == [listed.block_cid(i) for i in range(count)]
        out.extend(rows.blocks)
    return out, rebuilder.finish()


SHAPES = [(2, 1), (3, 2)]
SIZES = [1, B - 1, 5 * B + 7, 9 * B]


@pytest.mark.parametrize("known", [True, False], ids=["own-manifest-known", "own-manifest-lost"])
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(("k", "m"), SHAPES)
def test_every_slot_is_rebuilt_byte_identical_from_any_k_others(k: int, m: int, size: int, known: bool) -> None:
    c = coded(size, k, m, seed=size)
    for s in range(k + m):
        others = [j for j in range(k + m) if j != s]
        for sources in itertools.combinations(others, k):
            blocks, manifest = rebuild(c, s, sources, known=known)
            assert blocks == c.slots[s], (s, sources)
            assert manifest == c.manifests[s]
            assert manifest.cid() == c.protected.slot_manifests[s]


@pytest.mark.parametrize("per_batch", [1, 3, 100])
def test_the_batch_size_does_not_change_the_rebuilt_slot(per_batch: int) -> None:
    c = coded(11 * B + 3, 3, 2)
    for s in (1, 4):
        blocks, _ = rebuild(c, s, [j for j in range(5) if j != s][:3], known=False, per_batch=per_batch)
        assert blocks == c.slots[s]


@settings(max_examples=25, deadline=None)
@given(
    shape=st.sampled_from([(2, 1), (2, 2), (3, 1), (3, 2), (4, 3)]),
    size=st.integers(1, 12 * B),
    data=st.data(),
)
def test_any_slot_from_any_k_others_at_any_size(shape: tuple[int, int], size: int, data: st.DataObject) -> None:
    k, m = shape
    c = coded(size, k, m, seed=size)
    s = data.draw(st.integers(0, k + m - 1))
    sources = data.draw(st.permutations([j for j in range(k + m) if j != s]))[:k]
    known = data.draw(st.booleans())
    blocks, _ = rebuild(c, s, sources, known=known, per_batch=data.draw(st.integers(1, 5)))
    assert blocks == c.slots[s]


@pytest.mark.parametrize("known", [True, False], ids=["own-manifest-known", "own-manifest-lost"])
@pytest.mark.parametrize("damage", ["flipped-byte", "short-block", "long-block"])
def test_a_wrong_source_block_is_reported_and_nothing_is_rebuilt_from_it(known: bool, damage: str) -> None:
    c = coded(6 * B, 3, 2)
    s, sources = 0, (1, 3, 4)
    rebuilder = SlotRebuilder(c.protected, s, slot_manifest=c.manifests[s] if known else None)
    bad = list(c.slots[3][:2])
    if damage == "flipped-byte":
        bad[1] = bad[1][:100] + bytes([bad[1][100] ^ 1]) + bad[1][101:]
    elif damage == "short-block":
        bad[1] = bad[1][:-1]
    else:
        bad[1] = bad[1] + b"\0"
    given_blocks = {1: c.slots[1][:2], 3: bad, 4: c.slots[4][:2]}
    rows = rebuilder.rebuild(given_blocks, {j: c.digests(j, 0, 2) for j in sources})
    assert rows.corrupt_sources == (3,)
    assert rows.blocks == ()
    assert rebuilder.next_row == 0
    # The same rows from another slot instead go through.
    rows = rebuilder.rebuild({j: c.slots[j][:2] for j in (1, 2, 4)}, {j: c.digests(j, 0, 2) for j in (1, 2, 4)})
    assert list(rows.blocks) == c.slots[s][:2]
    assert rebuilder.next_row == 2


def test_with_its_manifest_known_sources_are_hashed_only_when_a_rebuilt_block_is_wrong() -> None:
    c = coded(4 * B, 2, 1)
    rebuilder = SlotRebuilder(c.protected, 2, slot_manifest=c.manifests[2])
    # Digests that do not match the (right) source blocks are never looked at: the rebuilt blocks match.
    rows = rebuilder.rebuild({0: c.slots[0], 1: c.slots[1]}, {0: bytes(64), 1: bytes(64)})
    assert list(rows.blocks) == c.slots[2]


def test_a_rebuilt_block_that_does_not_match_although_every_source_does_is_an_inconsistent_dataset() -> None:
    c = coded(4 * B, 2, 1)
    forged = slot_manifest([bytes([7]) * B, bytes([8]) * B])
    manifests = (c.protected.slot_manifests[0], c.protected.slot_manifests[1], forged.cid())
    protected = replace(c.protected, slot_manifests=manifests)
    rebuilder = SlotRebuilder(protected, 2, slot_manifest=forged)
    with pytest.raises(RepairError, match="not one erasure coding"):
        rebuilder.rebuild({0: c.slots[0], 1: c.slots[1]}, {j: c.digests(j, 0, 2) for j in (0, 1)})


def test_a_slot_that_does_not_hash_to_its_slot_root_is_refused() -> None:
    c = coded(5 * B, 3, 2)
    roots = list(c.protected.slot_roots)
    roots[4] = bytes(32)
    protected = replace(c.protected, slot_roots=tuple(roots), dataset_root=dataset_root(roots))
    rebuilder = SlotRebuilder(protected, 4, slot_manifest=c.manifests[4])
    rebuilder.rebuild({j: c.slots[j] for j in (0, 1, 2)}, {j: c.digests(j, 0, 2) for j in (0, 1, 2)})
    with pytest.raises(SlotRootMismatchError):
        rebuilder.finish()


def test_a_lost_slot_manifest_is_rebuilt_and_must_have_the_cid_the_protected_manifest_lists() -> None:
    c = coded(5 * B, 3, 2)
    listed = list(c.protected.slot_manifests)
    listed[1] = c.manifests[0].cid()  # the protected manifest names another slot manifest for slot 1
    protected = replace(c.protected, slot_manifests=tuple(listed))
    rebuilder = SlotRebuilder(protected, 1)
    rebuilder.rebuild({j: c.slots[j] for j in (0, 2, 3)}, {j: c.digests(j, 0, 2) for j in (0, 2, 3)})
    with pytest.raises(RepairError, match="manifest"):
        rebuilder.finish()


def test_a_slot_manifest_that_is_not_the_slots_own_is_refused() -> None:
    c = coded(5 * B, 3, 2)
    with pytest.raises(RepairError, match="not"):
        SlotRebuilder(c.protected, 1, slot_manifest=c.manifests[2])


@pytest.mark.parametrize("slot", [-1, 5, 99])
def test_a_slot_index_out_of_range_is_refused(slot: int) -> None:
    c = coded(5 * B, 3, 2)
    with pytest.raises(RepairError, match="out of range"):
        SlotRebuilder(c.protected, slot)
    with pytest.raises(RepairError, match="out of range"):
        source_order(c.protected, slot)


def _wrong_inputs(c: Coded) -> dict[str, tuple[dict[int, list[bytes]], dict[int, bytes]]]:
    def ok(sources: Sequence[int], count: int = 2) -> tuple[dict[int, list[bytes]], dict[int, bytes]]:
        return {j: c.slots[j][:count] for j in sources}, {j: c.digests(j, 0, count) for j in sources}

    fewer = ok((1, 2))
    more = ok((1, 2, 3, 4))
    itself = ok((0, 1, 2))
    out_of_range = ({**ok((1, 2))[0], 7: c.slots[3][:2]}, {**ok((1, 2))[1], 7: c.digests(3, 0, 2)})
    uneven = ({1: c.slots[1][:2], 2: c.slots[2][:1], 3: c.slots[3][:2]}, ok((1, 2, 3))[1])
    no_rows = ok((1, 2, 3), count=0)
    missing_digests = (ok((1, 2, 3))[0], {1: c.digests(1, 0, 2), 2: c.digests(2, 0, 2)})
    short_digests = (ok((1, 2, 3))[0], {j: c.digests(j, 0, 1) for j in (1, 2, 3)})
    return {
        "fewer than K": fewer,
        "more than K": more,
        "the slot itself": itself,
        "slot out of range": out_of_range,
        "uneven rows": uneven,
        "no rows": no_rows,
        "missing digests": missing_digests,
        "short digests": short_digests,
    }


@pytest.mark.parametrize(
    "case",
    [
        "fewer than K",
        "more than K",
        "the slot itself",
        "slot out of range",
        "uneven rows",
        "no rows",
        "missing digests",
        "short digests",
    ],
)
def test_wrong_inputs_are_refused_with_a_repair_error(case: str) -> None:
    c = coded(5 * B, 3, 2)
    sources, digests = _wrong_inputs(c)[case]
    rebuilder = SlotRebuilder(c.protected, 0)
    with pytest.raises(RepairError):
        rebuilder.rebuild(sources, digests)
    assert rebuilder.next_row == 0


def test_rows_past_the_end_of_the_slot_are_refused() -> None:
    c = coded(5 * B, 3, 2)  # 2 rows
    rebuilder = SlotRebuilder(c.protected, 0)
    rebuilder.rebuild({j: c.slots[j][:1] for j in (1, 2, 3)}, {j: c.digests(j, 0, 1) for j in (1, 2, 3)})
    with pytest.raises(RepairError, match="rows"):
        rebuilder.rebuild({j: c.slots[j] for j in (1, 2, 3)}, {j: c.digests(j, 0, 2) for j in (1, 2, 3)})


def test_finishing_before_every_row_is_rebuilt_is_refused() -> None:
    c = coded(5 * B, 3, 2)
    rebuilder = SlotRebuilder(c.protected, 0)
    rebuilder.rebuild({j: c.slots[j][:1] for j in (1, 2, 3)}, {j: c.digests(j, 0, 1) for j in (1, 2, 3)})
    with pytest.raises(RepairError, match="1 of its 2 rows"):
        rebuilder.finish()


def test_sources_are_tried_local_first_then_data_slots_before_parity() -> None:
    c = coded(5 * B, 3, 2)
    assert source_order(c.protected, 1) == [0, 2, 3, 4]
    assert source_order(c.protected, 1, local=[4, 2]) == [2, 4, 0, 3]
    assert source_order(c.protected, 4, local=[3]) == [3, 0, 1, 2]


def test_a_batch_takes_about_the_budget_of_source_bytes() -> None:
    assert batch_rows(2, 16 * B) == 8
    assert batch_rows(3, 16 * B) == 5
    assert batch_rows(200, 16 * B) == 1


def test_rebuilt_rows_name_their_blocks_by_cid() -> None:
    rows = RebuiltRows(0, (b"a" * B,), hashlib.sha256(b"a" * B).digest())
    assert [cid.matches(b"a" * B) for cid in rows.cids()] == [True]
    assert isinstance(rows.cids()[0], Cid)


@pytest.mark.parametrize("keep", [True, False])
def test_the_rebuilt_slots_cell_leaves_are_kept_for_the_prover_only_when_asked(keep: bool) -> None:
    c = coded(16 * 2 * B, 2, 1)
    rebuilder = SlotRebuilder(c.protected, 2, slot_manifest=c.manifests[2], keep_leaves=keep)
    rebuilder.rebuild({j: c.slots[j] for j in (0, 1)}, {j: c.digests(j, 0, 16) for j in (0, 1)})
    rebuilder.finish()
    leaves = rebuilder.leaves()
    if keep:
        assert leaves == cell_leaves(b"".join(c.slots[2]))
        assert SlotTree(leaves).root == c.protected.slot_roots[2]
    else:
        assert leaves is None


@pytest.mark.parametrize("row", [0, 7, 8, 15])
def test_a_rebuilt_slot_one_byte_off_is_refused_by_its_slot_root(row: int) -> None:
    """Sources whose digests vouch for a block one byte off (a forged source slot manifest) and the slot's own
    manifest lost: only the slot root can tell, on whichever hashing thread the bad block's cells land."""
    c = coded(16 * 2 * B, 2, 1)
    slots = [list(blocks) for blocks in c.slots]
    block = bytearray(slots[0][row])
    block[row * 4099 % B] ^= 0x40
    slots[0][row] = bytes(block)
    rebuilder = SlotRebuilder(c.protected, 2, keep_leaves=True)
    digests = {j: b"".join(hashlib.sha256(b).digest() for b in slots[j]) for j in (0, 1)}
    rows = rebuilder.rebuild({j: slots[j] for j in (0, 1)}, digests)
    assert rows.corrupt_sources == ()
    with pytest.raises(SlotRootMismatchError):
        rebuilder.finish()


@pytest.mark.parametrize("known", [True, False], ids=["own-manifest-known", "own-manifest-lost"])
def test_a_batch_is_decoded_and_hashed_in_runs_on_two_threads_and_joined_in_row_order(
    known: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = coded(20 * B, 2, 1)  # 10 rows per slot
    runs: list[tuple[str, list[int]]] = []
    real = SlotRebuilder._rebuild_run

    def recording(self: SlotRebuilder, chosen: tuple[int, ...], sources: object, rows: Sequence[int]) -> object:
        runs.append((threading.current_thread().name, list(rows)))
        return real(self, chosen, sources, rows)  # type: ignore[arg-type]

    monkeypatch.setattr(SlotRebuilder, "_rebuild_run", recording)
    monkeypatch.setattr(cellhash, "HASH_THREADS", 2)  # as on a 2-core machine, whatever this one has
    rebuilder = SlotRebuilder(c.protected, 0, slot_manifest=c.manifests[0] if known else None, keep_leaves=True)
    rows = rebuilder.rebuild({j: c.slots[j] for j in (1, 2)}, {j: c.digests(j, 0, 10) for j in (1, 2)})
    assert sorted(rows for _, rows in runs) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert len({name for name, _ in runs}) == 2  # one run on the calling thread, one on a helper
    assert list(rows.blocks) == c.slots[0]
    assert rows.digests == c.manifests[0].block_digests
    assert rebuilder.finish() == c.manifests[0]  # the slot root, built from both runs in order, matches
    assert rebuilder.leaves() == b"".join(cell_leaves(b) for b in c.slots[0])
