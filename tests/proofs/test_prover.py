"""The Prover over a real RepoStore: datasets stored with store_dataset, proofs checked by the Python verifier."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from codex_node.data.cid import Cid
from codex_node.data.erasure import ErasureParams
from codex_node.data.manifest import Manifest
from codex_node.data.slots import BLOCK_SIZE, SlotLayout, cid_bytes
from codex_node.errors import BlockNotFoundError, InvalidCellProofError, ProofDataError
from codex_node.market.types import Ask, Content, Request, Slot
from codex_node.proofs import DatasetTree, Prover, SlotTree, check_proof, dataset_commitment, verify_proof
from codex_node.proofs import prover as prover_module
from codex_node.proofs import slotdata as slotdata_module
from codex_node.purchasing.protect import protect_dataset
from codex_node.stores.blockfiles import BlockFiles
from codex_node.stores.datasets import store_dataset
from codex_node.stores.repostore import RepoStore
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.memorykv import MemoryKV
from codex_node.testing.mockledger import ProofTarget
from codex_node.testing.mockmarket import MockMarket, account
from tests.harness.repo import corrupt_on_disk, memory_repo

SAMPLES = 5


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[RepoStore]:
    with memory_repo(tmp_path / "repo") as store:
        yield store


async def _stream(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 100_000):
        yield data[i : i + 100_000]


async def store(repo: RepoStore, data: bytes, block_size: int = BLOCK_SIZE) -> Cid:
    return await store_dataset(repo, _stream(data), block_size=block_size)


@dataclass
class CountingReader:
    """The repo as the prover sees it, counting block reads and hiding chosen blocks."""

    repo: RepoStore
    reads: list[Cid] = field(default_factory=list)
    hidden: set[str] = field(default_factory=set)

    async def get_manifest(self, cid: Cid) -> Manifest:
        return await self.repo.get_manifest(cid)

    async def get_block(self, cid: Cid) -> bytes:
        if cid.text in self.hidden:
            raise BlockNotFoundError(f"block not found: {cid}")
        self.reads.append(cid)
        return await self.repo.get_block(cid)

    def read_blocks(self, cids: Sequence[Cid], *, check: bool = True) -> list[memoryview | None]:
        self.reads.extend(cids)  # from worker threads: list.extend of a list is atomic
        read = self.repo.read_blocks(cids, check=check)
        return [None if cid.text in self.hidden else block for cid, block in zip(cids, read, strict=True)]


def request_for(content: Content, slots: int, slot_size: int) -> Request:
    ask = Ask(
        proof_probability=1,
        price_per_byte_per_second=1,
        collateral_per_byte=1,
        slots=slots,
        slot_size=slot_size,
        duration=3600,
        max_slot_loss=0,
    )
    return Request(client=account(1), ask=ask, content=content, expiry=600, nonce=os.urandom(32))


def target_for(slot: Slot, challenge: bytes) -> ProofTarget:
    return ProofTarget(
        challenge=challenge,
        slot_id=slot.id,
        slot_index=slot.slot_index,
        slots=slot.request.ask.slots,
        slot_size=slot.request.ask.slot_size,
        dataset_root=slot.request.content.merkle_root,
        samples=SAMPLES,
    )


@dataclass
class Stored:
    data: bytes
    cid: Cid
    request: Request

    def slot(self, index: int) -> Slot:
        return Slot(self.request, index)


async def stored_request(repo: RepoStore, blocks: int, tail: int, slots: int) -> Stored:
    data = os.urandom(blocks * BLOCK_SIZE + tail)
    cid = await store(repo, data)
    commitment = await dataset_commitment(repo, cid, slots)
    return Stored(data, cid, request_for(commitment.content, slots, commitment.slot_size))


async def test_commitment_deals_blocks_to_slots_and_pads_with_zero_blocks(repo: RepoStore) -> None:
    # 8 blocks (the last one short) in 3 slots: slot s holds blocks s, s+3, s+6; slot 2 ends with a zero block.
    data = os.urandom(7 * BLOCK_SIZE + 1000)
    cid = await store(repo, data)
    commitment = await dataset_commitment(repo, cid, 3)
    blocks = [data[i : i + BLOCK_SIZE] for i in range(0, len(data), BLOCK_SIZE)]
    layout = SlotLayout(len(blocks), 3)
    trees = [
        SlotTree.from_blocks([blocks[b] if b is not None else None for b in layout.block_indices(s)]) for s in range(3)
    ]
    assert commitment.merkle_root == DatasetTree([t.root for t in trees]).root
    assert commitment.slot_size == 3 * BLOCK_SIZE
    assert commitment.content == Content(cid=cid_bytes(cid), merkle_root=commitment.merkle_root)


@pytest.mark.parametrize(("blocks", "tail", "slots"), [(0, 5, 1), (1, 0, 1), (7, 1000, 3), (4, 0, 4), (9, 3, 2)])
async def test_every_slots_proof_verifies(repo: RepoStore, blocks: int, tail: int, slots: int) -> None:
    stored = await stored_request(repo, blocks, tail, slots)
    prover = Prover(repo, samples=SAMPLES, registry=None)
    for index in range(slots):
        challenge = os.urandom(32)
        proof = await prover.prove(stored.slot(index), challenge)
        check_proof(proof, target_for(stored.slot(index), challenge))


async def test_a_cached_slot_reads_only_the_sampled_blocks(repo: RepoStore) -> None:
    stored = await stored_request(repo, 12, 0, 2)  # 6 blocks per slot
    reader = CountingReader(repo)
    prover = Prover(reader, samples=SAMPLES, registry=None)
    await prover.prove(stored.slot(0), os.urandom(32))
    assert len(reader.reads) == 12 + len(set(reader.reads[12:]))  # the whole dataset once, then the samples' blocks
    reader.reads.clear()
    proof = await prover.prove(stored.slot(0), b"\x07" * 32)
    assert 1 <= len(reader.reads) <= SAMPLES
    check_proof(proof, target_for(stored.slot(0), b"\x07" * 32))


async def test_sibling_trees_built_for_the_dataset_root_are_kept(repo: RepoStore) -> None:
    stored = await stored_request(repo, 12, 0, 2)
    reader = CountingReader(repo)
    prover = Prover(reader, samples=SAMPLES, registry=None)
    await prover.prove(stored.slot(0), os.urandom(32))
    assert prover.is_cached(stored.slot(1))
    reader.reads.clear()
    await prover.prove(stored.slot(1), os.urandom(32))
    assert 1 <= len(reader.reads) <= SAMPLES


async def test_a_sibling_slot_evicted_since_reuses_the_dataset_tree(repo: RepoStore) -> None:
    stored = await stored_request(repo, 12, 0, 2)
    reader = CountingReader(repo)
    prover = Prover(reader, samples=SAMPLES, cache_bytes=1, registry=None)  # room for the most recent tree only
    await prover.prove(stored.slot(0), os.urandom(32))
    assert not prover.is_cached(stored.slot(1))
    reader.reads.clear()
    await prover.prove(stored.slot(1), os.urandom(32))
    assert 6 < len(reader.reads) <= 6 + SAMPLES  # slot 1's own blocks, then the samples' blocks


async def test_forget_drops_the_slot_tree(repo: RepoStore) -> None:
    stored = await stored_request(repo, 2, 0, 1)
    prover = Prover(repo, samples=SAMPLES, registry=None)
    await prover.prove(stored.slot(0), os.urandom(32))
    assert prover.is_cached(stored.slot(0))
    assert prover.cached_bytes > 0
    await prover.forget(stored.slot(0))
    assert not prover.is_cached(stored.slot(0))
    assert prover.cached_bytes == 0


async def test_cache_keeps_the_most_recent_slots_within_its_bytes(repo: RepoStore) -> None:
    stored = await stored_request(repo, 3, 0, 3)
    one_tree = SlotTree.from_bytes(bytes(BLOCK_SIZE)).nbytes
    prover = Prover(repo, samples=SAMPLES, cache_bytes=2 * one_tree, registry=None)
    for index in range(3):
        await prover.prove(stored.slot(index), os.urandom(32))
    assert [prover.is_cached(stored.slot(i)) for i in range(3)] == [False, True, True]
    assert prover.cached_bytes == 2 * one_tree
    await prover.prove(stored.slot(1), os.urandom(32))  # 1 becomes the most recent: 2 goes next
    await prover.prove(stored.slot(0), os.urandom(32))
    assert [prover.is_cached(stored.slot(i)) for i in range(3)] == [True, True, False]


async def test_missing_sibling_block_is_a_proof_data_error_naming_the_slot(repo: RepoStore) -> None:
    stored = await stored_request(repo, 6, 0, 3)
    manifest = await repo.get_manifest(stored.cid)
    reader = CountingReader(repo, hidden={manifest.block_cid(2).text})  # slot 2's first block
    with pytest.raises(ProofDataError, match="of slot 2 of dataset"):
        await Prover(reader, samples=SAMPLES, registry=None).prove(stored.slot(0), os.urandom(32))


async def test_a_corrupt_block_on_disk_is_a_proof_data_error_naming_the_slot_and_the_block(repo: RepoStore) -> None:
    stored = await stored_request(repo, 6, 0, 3)
    manifest = await repo.get_manifest(stored.cid)
    rotten = manifest.block_cid(3)  # slot 0's second block
    corrupt_on_disk(repo, rotten)
    with pytest.raises(ProofDataError, match=f"slot 0 of dataset {stored.cid} is corrupt: block {rotten}"):
        await Prover(repo, samples=SAMPLES, registry=None).prove(stored.slot(0), os.urandom(32))


async def test_missing_own_block_is_reported_before_missing_siblings(repo: RepoStore) -> None:
    stored = await stored_request(repo, 6, 0, 3)
    manifest = await repo.get_manifest(stored.cid)
    reader = CountingReader(repo, hidden={manifest.block_cid(0).text, manifest.block_cid(4).text})
    with pytest.raises(ProofDataError, match="of slot 1 of dataset"):
        await Prover(reader, samples=SAMPLES, registry=None).prove(stored.slot(1), os.urandom(32))


async def test_data_that_does_not_hash_to_the_requests_root_is_refused(repo: RepoStore) -> None:
    stored = await stored_request(repo, 2, 0, 2)
    wrong = Content(stored.request.content.cid, b"\x01" * 32)
    slot = Slot(request_for(wrong, 2, BLOCK_SIZE), 0)
    with pytest.raises(ProofDataError, match="commits to"):
        await Prover(repo, samples=SAMPLES, registry=None).prove(slot, os.urandom(32))


async def test_a_slot_size_the_layout_does_not_give_is_refused(repo: RepoStore) -> None:
    stored = await stored_request(repo, 2, 0, 2)
    slot = Slot(request_for(stored.request.content, 2, 2 * BLOCK_SIZE), 0)
    with pytest.raises(ProofDataError, match="asks for"):
        await Prover(repo, samples=SAMPLES, registry=None).prove(slot, os.urandom(32))


@pytest.mark.parametrize("cid", [b"", b"\xff\x00 not a cid"])
async def test_content_that_is_not_a_cid_is_refused(repo: RepoStore, cid: bytes) -> None:
    slot = Slot(request_for(Content(cid, bytes(32)), 1, BLOCK_SIZE), 0)
    with pytest.raises(ProofDataError, match="not a CID"):
        await Prover(repo, samples=SAMPLES, registry=None).prove(slot, os.urandom(32))


async def test_a_dataset_not_stored_here_is_refused(repo: RepoStore, tmp_path: Path) -> None:
    other = RepoStore(
        MemoryKV(),
        BlockFiles(tmp_path / "other", sync="none"),
        clock=FakeClock(),
        quota_max=1 << 30,
        block_ttl=60,
        registry=None,
    )
    try:
        stored = await stored_request(other, 1, 0, 1)
    finally:
        other.close()
    with pytest.raises(ProofDataError, match="manifest"):
        await Prover(repo, samples=SAMPLES, registry=None).prove(stored.slot(0), os.urandom(32))


async def test_a_dataset_of_small_blocks_is_refused(repo: RepoStore) -> None:
    cid = await store(repo, os.urandom(10_000), block_size=4096)
    slot = Slot(request_for(Content(cid_bytes(cid), bytes(32)), 1, BLOCK_SIZE), 0)
    with pytest.raises(ProofDataError, match="4096-byte blocks"):
        await Prover(repo, samples=SAMPLES, registry=None).prove(slot, os.urandom(32))


async def test_corrupt_proof_is_refused_by_the_verifier(repo: RepoStore) -> None:
    stored = await stored_request(repo, 2, 0, 2)
    prover = Prover(repo, samples=SAMPLES, registry=None)
    challenge = os.urandom(32)
    proof = await prover.prove(stored.slot(1), challenge)
    with pytest.raises(InvalidCellProofError):
        check_proof(prover.corrupt(proof), target_for(stored.slot(1), challenge))


async def test_slot_reading_and_hashing_run_in_worker_threads_a_batch_per_hop(
    repo: RepoStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = await stored_request(repo, 4, 0, 2)
    hops: list[tuple[threading.Thread, int]] = []
    real = slotdata_module._read_and_hash

    def recording(
        reader: slotdata_module.BlockReader,
        dataset: slotdata_module.SlottedDataset,
        slot_index: int,
        cids: list[Cid | None],
    ) -> bytes:
        hops.append((threading.current_thread(), len(cids)))
        return real(reader, dataset, slot_index, cids)

    monkeypatch.setattr(slotdata_module, "_read_and_hash", recording)
    monkeypatch.setattr(slotdata_module, "READ_BATCH", 1)  # a hop per block: 2 blocks per slot here
    challenge = os.urandom(32)
    proof = await Prover(repo, samples=SAMPLES, registry=None).prove(stored.slot(0), challenge)
    check_proof(proof, target_for(stored.slot(0), challenge))  # leaves joined in slot order, hops in flight or not
    assert [n for _, n in hops] == [1, 1, 1, 1]  # both slots (the dataset tree), a block per hop
    assert threading.main_thread() not in {thread for thread, _ in hops}


async def test_concurrent_proofs_build_each_tree_once(repo: RepoStore, monkeypatch: pytest.MonkeyPatch) -> None:
    stored = await stored_request(repo, 4, 0, 2)
    built: list[int] = []
    real = slotdata_module.slot_tree

    async def counting(
        reader: slotdata_module.BlockReader, dataset: slotdata_module.SlottedDataset, index: int
    ) -> SlotTree:
        built.append(index)
        return await real(reader, dataset, index)

    monkeypatch.setattr(slotdata_module, "slot_tree", counting)
    monkeypatch.setattr(prover_module, "slot_tree", counting)
    prover = Prover(repo, samples=SAMPLES, registry=None)
    challenges = [os.urandom(32) for _ in range(6)]
    slots = [stored.slot(i % 2) for i in range(6)]
    proofs = await asyncio.gather(*(prover.prove(s, c) for s, c in zip(slots, challenges, strict=True)))
    for slot, challenge, proof in zip(slots, challenges, proofs, strict=True):
        check_proof(proof, target_for(slot, challenge))
    # Slot 0's first proof builds the dataset tree (both slots, its own first) and keeps both trees.
    assert built == [0, 1]


async def test_a_cancelled_build_caches_nothing_and_a_later_prove_works(repo: RepoStore) -> None:
    stored = await stored_request(repo, 8, 0, 1)
    prover = Prover(repo, samples=SAMPLES, registry=None)
    task = asyncio.ensure_future(prover.prove(stored.slot(0), os.urandom(32)))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not prover.is_cached(stored.slot(0))
    challenge = os.urandom(32)
    check_proof(await prover.prove(stored.slot(0), challenge), target_for(stored.slot(0), challenge))


@pytest.mark.parametrize("samples", [0, 256])
def test_samples_must_fit_the_contracts_uint8(repo: RepoStore, samples: int) -> None:
    with pytest.raises(ValueError, match=r"1\.\.255"):
        Prover(repo, samples=samples, registry=None)


async def test_mock_market_with_the_real_verifier_accepts_the_provers_fill(repo: RepoStore) -> None:
    stored = await stored_request(repo, 5, 17, 2)
    clock = FakeClock(1_700_000_040)
    client = MockMarket(clock, signer=account(1), verifier=verify_proof)
    host = client.as_account(account(2))
    for market in (client, host):
        market.mint(market.signer, 10**15)
    request = Request(client.signer, stored.request.ask, stored.request.content, 600, os.urandom(32))
    await client.request_storage(request)
    prover = Prover(repo, samples=(await host.config()).proofs.proof_samples, registry=None)
    for index in range(2):
        slot = Slot(request, index)
        await host.reserve_slot(request.id, index)
        proof = await prover.prove(slot, await host.get_challenge(slot.id))
        await host.fill_slot(request.id, index, proof, request.ask.collateral_per_slot)
        assert await host.get_host(slot.id) == host.signer


async def test_a_block_missing_in_a_later_batch_stops_the_build_cleanly(repo: RepoStore) -> None:
    # 40 blocks in one slot: the missing block is read while the first batch is still being hashed.
    stored = await stored_request(repo, 40, 0, 1)
    manifest = await repo.get_manifest(stored.cid)
    reader = CountingReader(repo, hidden={manifest.block_cid(20).text})
    prover = Prover(reader, samples=SAMPLES, registry=None)
    with pytest.raises(ProofDataError, match="of slot 0 of dataset"):
        await prover.prove(stored.slot(0), os.urandom(32))
    assert not prover.is_cached(stored.slot(0))
    reader.hidden.clear()
    challenge = os.urandom(32)
    check_proof(await prover.prove(stored.slot(0), challenge), target_for(stored.slot(0), challenge))


async def test_metrics_count_proofs_tree_builds_and_cache_bytes(repo: RepoStore) -> None:
    stored = await stored_request(repo, 4, 0, 2)
    registry = CollectorRegistry()
    prover = Prover(repo, samples=SAMPLES, registry=registry)
    for index in (0, 1, 0):
        await prover.prove(stored.slot(index), os.urandom(32))

    def value(name: str) -> float | None:
        return registry.get_sample_value(name)

    assert value("codex_proofs_built_total") == 3
    assert value("codex_proof_build_seconds_count") == 3
    assert value("codex_proof_tree_builds_total") == 1  # one build hashed the dataset and kept both slot trees
    assert (value("codex_proof_tree_build_seconds_sum") or 0) > 0
    assert value("codex_proof_tree_cache_bytes") == prover.cached_bytes > 0
    assert value("codex_proof_trees_from_offered_leaves_total") == 0
    prover.close()
    assert value("codex_proofs_built_total") is None


async def test_a_host_holding_only_its_own_slot_of_a_protected_dataset_proves_it(repo: RepoStore) -> None:
    """A protected dataset's manifest commits to every slot root: a host proves its slot with only that slot's
    manifest and blocks here (the other slots are on other hosts), never reading a sibling."""
    original = await store(repo, os.urandom(5 * BLOCK_SIZE + 77))
    protected = await protect_dataset(repo, original, await repo.get_manifest(original), ErasureParams(2, 1))
    commitment = await dataset_commitment(repo, protected.cid, 3)
    request = request_for(commitment.content, 3, commitment.slot_size)
    for own in range(3):
        reader = CountingReader(repo)
        for other in (i for i in range(3) if i != own):  # the other slots are not on this host
            sibling = protected.manifest.slot_manifests[other]
            reader.hidden |= {sibling.text, *(c.text for c in (await repo.get_manifest(sibling)).block_cids())}
        prover = Prover(reader, samples=SAMPLES, registry=None)
        challenge = os.urandom(32)
        proof = await prover.prove(Slot(request, own), challenge)
        check_proof(proof, target_for(Slot(request, own), challenge))


async def protected_request(repo: RepoStore) -> tuple[Cid, Request]:
    original = await store(repo, os.urandom(39 * BLOCK_SIZE + 77))  # 20 rows: a slot of 20 blocks
    protected = await protect_dataset(repo, original, await repo.get_manifest(original), ErasureParams(2, 1))
    commitment = await dataset_commitment(repo, protected.cid, 3)
    return protected.cid, request_for(commitment.content, 3, commitment.slot_size)


async def slot_leaves(repo: RepoStore, cid: Cid, slot_index: int) -> bytes:
    dataset = await slotdata_module.open_dataset(repo, cid, 3, only_slot=slot_index)
    tree = await slotdata_module.slot_tree(repo, dataset, slot_index)
    return b"".join(tree.leaf(i) for i in range(tree.cells))


async def test_offered_leaves_of_a_repaired_slot_spare_hashing_it_again(repo: RepoStore) -> None:
    cid, request = await protected_request(repo)
    leaves = await slot_leaves(repo, cid, 1)
    reader = CountingReader(repo)
    registry = CollectorRegistry()
    prover = Prover(reader, samples=SAMPLES, registry=registry)
    prover.offer_slot_leaves(request, 1, leaves)
    challenge = os.urandom(32)
    with capture_logs() as logs:
        proof = await prover.prove(Slot(request, 1), challenge)
    check_proof(proof, target_for(Slot(request, 1), challenge))
    assert [e["from_offered_leaves"] for e in logs if e["event"] == "slot tree built"] == [True]
    assert registry.get_sample_value("codex_proof_trees_from_offered_leaves_total") == 1
    # The protected manifest and the sampled blocks only: the slot's 20 blocks were not read to be hashed.
    assert 2 <= len(reader.reads) <= 1 + SAMPLES
    assert prover.stats.tree_builds == 1


@pytest.mark.parametrize("change", ["one-leaf", "extra-zero-leaf", "other-slot"])
async def test_offered_leaves_that_are_not_the_slots_are_ignored_and_the_slot_is_hashed(
    repo: RepoStore, change: str
) -> None:
    cid, request = await protected_request(repo)
    leaves = await slot_leaves(repo, cid, 1)
    if change == "one-leaf":
        leaves = leaves[:64] + bytes([leaves[64] ^ 1]) + leaves[65:]
    elif change == "extra-zero-leaf":  # the same root (zero padding), one cell too many: sampling would be wrong
        leaves += bytes(32)
    else:
        leaves = await slot_leaves(repo, cid, 0)
    reader = CountingReader(repo)
    prover = Prover(reader, samples=SAMPLES, registry=None)
    prover.offer_slot_leaves(request, 1, leaves)
    challenge = os.urandom(32)
    with capture_logs() as logs:
        proof = await prover.prove(Slot(request, 1), challenge)
    check_proof(proof, target_for(Slot(request, 1), challenge))
    assert [e["from_offered_leaves"] for e in logs if e["event"] == "slot tree built"] == [False]
    assert len(reader.reads) >= request.ask.slot_size // BLOCK_SIZE  # the whole slot was read and hashed


async def test_offered_leaves_are_bounded_and_dropped_when_the_slot_is_forgotten(repo: RepoStore) -> None:
    cid, request = await protected_request(repo)
    leaves = await slot_leaves(repo, cid, 1)
    prover = Prover(repo, samples=SAMPLES, registry=None, cache_bytes=4 * 2 * len(leaves))
    for index in (0, 1, 2):
        prover.offer_slot_leaves(request, index, leaves)
    held = [i for i in (0, 1, 2) if prover.has_offered_leaves(Slot(request, i))]
    assert held == [1, 2]  # a quarter of the cache: the oldest dropped first
    await prover.forget(Slot(request, 2))
    assert not prover.has_offered_leaves(Slot(request, 2))
    assert prover.has_offered_leaves(Slot(request, 1))
