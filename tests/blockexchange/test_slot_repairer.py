"""RepoSlotRepairer: a lost slot rebuilt into the host's repo from K other slots, local, remote or both."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from codex_node.blockexchange.fetcher import BlockFetcher, FetchOptions
from codex_node.blockexchange.port import SlotRepairer
from codex_node.blockexchange.repair import RepoSlotRepairer
from codex_node.data.erasure import dataset_root
from codex_node.data.slots import BLOCK_SIZE
from codex_node.errors import RepairError
from codex_node.market.types import Request
from codex_node.proofs.trees import SlotTree, cell_leaves
from codex_node.stores.repostore import RepoStore
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.staticpeers import StaticProviders
from tests.harness.repairkit import Protected, RepoGetter, copy_slots, protect, request_for, slot_blocks
from tests.harness.repo import corrupt_on_disk, memory_repo

B = BLOCK_SIZE
EXPIRY = 5000


class Reported:
    """Records ``on_blocks`` calls and what the host's repo held at each."""

    def __init__(self, repo: RepoStore | None = None) -> None:
        self.calls: list[int] = []
        self.repo = repo

    async def __call__(self, nbytes: int) -> None:
        self.calls.append(nbytes)
        if self.repo is not None:
            self.repo.release(nbytes)  # what Downloading's reservation release does to the quota


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000)


@pytest.fixture
def client(tmp_path: Path, clock: FakeClock) -> Iterator[RepoStore]:
    with memory_repo(tmp_path / "client", clock=clock) as repo:
        yield repo


@pytest.fixture
def host(tmp_path: Path, clock: FakeClock) -> Iterator[RepoStore]:
    with memory_repo(tmp_path / "host", clock=clock) as repo:
        yield repo


async def hosting(client: RepoStore, host: RepoStore, size: int, k: int, m: int) -> Protected:
    """A protected dataset at the client, its protected manifest at the host (the network source secures it)."""
    p = await protect(client, size, k, m, seed=size)
    await host.put_block(p.cid, await client.get_block(p.cid))
    return p


async def assert_repaired(host: RepoStore, client: RepoStore, p: Protected, s: int) -> None:
    cid = p.manifest.slot_manifests[s]
    assert host.has_block(cid)
    assert await slot_blocks(host, p.manifest, s) == await slot_blocks(client, p.manifest, s)
    manifest = await host.get_manifest(cid)
    for block in [cid, *manifest.block_cids()]:
        meta = host.block_meta(block)
        assert meta is not None
        assert meta.expiry >= EXPIRY


def test_it_implements_the_port(host: RepoStore) -> None:
    repairer: SlotRepairer = RepoSlotRepairer(host, RepoGetter([host]))
    assert repairer is not None


@pytest.mark.parametrize(("k", "m", "s"), [(2, 1, 0), (2, 1, 2), (3, 2, 1), (3, 2, 4)])
async def test_a_slot_is_rebuilt_from_k_slots_in_the_local_repo(
    client: RepoStore, host: RepoStore, k: int, m: int, s: int
) -> None:
    p = await hosting(client, host, 7 * B + 123, k, m)
    others = [j for j in range(k + m) if j != s][:k]
    await copy_slots(client, host, p.manifest, others)
    getter = RepoGetter([host])  # local only: the client is unreachable
    registry = CollectorRegistry()
    reported = Reported()
    await RepoSlotRepairer(host, getter, registry=registry, batch_bytes=2 * k * B).repair(
        request_for(p), s, EXPIRY, reported
    )
    await assert_repaired(host, client, p, s)
    rows = p.manifest.blocks_per_slot
    assert sum(reported.calls) == rows * B
    assert len(reported.calls) == -(-rows // 2)  # one call per batch of two rows
    assert registry.get_sample_value("codex_slot_repairs_total", {"outcome": "succeeded"}) == 1
    assert registry.get_sample_value("codex_slot_repair_rebuilt_bytes_total") == rows * B


@pytest.mark.parametrize("s", [0, 3])
async def test_a_slot_whose_manifest_was_lost_with_its_host_is_rebuilt_from_remote_slots(
    client: RepoStore, host: RepoStore, s: int
) -> None:
    p = await hosting(client, host, 6 * B + 5, 3, 2)
    getter = RepoGetter([client])
    await getter.lose_slot(client, p.manifest, s)
    await RepoSlotRepairer(host, getter).repair(request_for(p), s, EXPIRY, Reported())
    await assert_repaired(host, client, p, s)
    assert getter.hints == {p.cid}
    assert getter.checks_local == {True, False}  # the slot manifests checked, the sources left to the rebuild
    assert not set(getter.asked) & getter.lost - {p.manifest.slot_manifests[s]}


async def test_local_slots_are_used_first_and_a_slot_nobody_serves_is_replaced(
    client: RepoStore, host: RepoStore
) -> None:
    p = await hosting(client, host, 9 * B, 3, 2)
    s = 1
    await copy_slots(client, host, p.manifest, [3])  # a parity slot here; the data slots only at peers
    getter = RepoGetter([host, client])
    await getter.lose_slot(client, p.manifest, s)
    await getter.lose_slot(client, p.manifest, 2, manifest=False)  # slot 2's manifest is had, its blocks are not
    registry = CollectorRegistry()
    with capture_logs() as logs:
        await RepoSlotRepairer(host, getter, registry=registry).repair(request_for(p), s, EXPIRY, Reported())
    await assert_repaired(host, client, p, s)
    assert registry.get_sample_value("codex_slot_repair_source_switches_total") == 1
    [dropped] = [e for e in logs if e["event"] == "repair source slot dropped"]
    assert dropped["source"] == 2
    [done] = [e for e in logs if e["event"] == "slot repaired"]
    assert done["sources"] == [0, 3, 4]
    slot3 = set(await getter.slot_cids(client, p.manifest, 3))
    assert all(host.has_block(c) for c in slot3)


@pytest.mark.parametrize("own_manifest", [True, False], ids=["own-manifest-known", "own-manifest-lost"])
async def test_a_corrupted_block_from_the_getter_is_never_stored_and_the_slot_comes_from_honest_ones(
    client: RepoStore, host: RepoStore, own_manifest: bool
) -> None:
    p = await hosting(client, host, 6 * B, 2, 2)
    s = 0
    getter = RepoGetter([client])
    await getter.lose_slot(client, p.manifest, s, manifest=not own_manifest)
    bad = (await getter.slot_cids(client, p.manifest, 1))[1]
    getter.corrupt.add(bad)
    registry = CollectorRegistry()
    before = host.total_blocks
    await RepoSlotRepairer(host, getter, registry=registry, batch_bytes=2 * B).repair(
        request_for(p), s, EXPIRY, Reported()
    )
    await assert_repaired(host, client, p, s)
    assert registry.get_sample_value("codex_slot_repair_source_switches_total") == 1
    # Exactly the slot's blocks and its manifest were added: nothing rebuilt from the corrupted block.
    assert host.total_blocks == before + p.manifest.blocks_per_slot + 1


@pytest.mark.parametrize("own_manifest", [True, False], ids=["own-manifest-known", "own-manifest-lost"])
async def test_with_fewer_than_k_slots_to_be_had_the_repair_fails_and_nothing_claims_the_slot(
    client: RepoStore, host: RepoStore, own_manifest: bool
) -> None:
    p = await hosting(client, host, 6 * B, 3, 2)
    s = 2
    getter = RepoGetter([client])
    await getter.lose_slot(client, p.manifest, s, manifest=not own_manifest)
    await getter.lose_slot(client, p.manifest, 0)
    getter.corrupt.update(await getter.slot_cids(client, p.manifest, 4))
    registry = CollectorRegistry()
    with pytest.raises(RepairError, match="only"):
        await RepoSlotRepairer(host, getter, registry=registry).repair(request_for(p), s, EXPIRY, Reported())
    assert not host.has_block(p.manifest.slot_manifests[s])
    assert registry.get_sample_value("codex_slot_repairs_total", {"outcome": "failed"}) == 1


@pytest.mark.parametrize("own_manifest", [True, False], ids=["own-manifest-known", "own-manifest-lost"])
async def test_a_slot_that_does_not_match_its_slot_root_fails_and_leaves_no_unchecked_block(
    client: RepoStore, host: RepoStore, own_manifest: bool
) -> None:
    p = await hosting(client, host, 5 * B, 3, 2)
    s = 4
    roots = list(p.manifest.slot_roots)
    roots[s] = bytes(32)
    forged = replace(p.manifest, slot_roots=tuple(roots), dataset_root=dataset_root(roots))
    await host.put_block(forged.cid(), forged.encode())
    getter = RepoGetter([client])
    await getter.lose_slot(client, p.manifest, s, manifest=not own_manifest)
    before = host.total_blocks
    with pytest.raises(RepairError, match="slot root"):
        await RepoSlotRepairer(host, getter).repair(request_for(p, forged.cid()), s, EXPIRY, Reported())
    assert not host.has_block(p.manifest.slot_manifests[s])
    # Blocks checked against the slot's own manifest are its true blocks and stay; unchecked ones are deleted.
    kept = host.total_blocks - before
    assert kept == (p.manifest.blocks_per_slot if own_manifest else 0)


async def test_a_host_whose_quota_is_all_reserved_still_repairs(tmp_path: Path, clock: FakeClock) -> None:
    with memory_repo(tmp_path / "client", clock=clock) as client:
        p = await protect(client, 4 * B, 2, 1)
        slot_size = p.manifest.slot_size
        with memory_repo(tmp_path / "host", clock=clock, quota_max=slot_size + 4096 + 64 * 1024) as host:
            await host.put_block(p.cid, await client.get_block(p.cid))
            host.reserve(host.quota().available - 2048)  # the sale's reservation (and some more) holds it all
            getter = RepoGetter([client])
            await getter.lose_slot(client, p.manifest, 1)
            await RepoSlotRepairer(host, getter, batch_bytes=2 * B).repair(request_for(p), 1, EXPIRY, Reported(host))
            assert host.has_block(p.manifest.slot_manifests[1])


async def test_content_that_is_not_a_protected_dataset_is_refused(client: RepoStore, host: RepoStore) -> None:
    p = await hosting(client, host, 4 * B, 2, 1)
    with pytest.raises(RepairError, match="not a protected"):
        await RepoSlotRepairer(host, RepoGetter([client])).repair(
            request_for(p, p.manifest.original_manifest), 0, EXPIRY, Reported()
        )


async def test_a_protected_manifest_not_in_the_repo_is_refused(client: RepoStore, host: RepoStore) -> None:
    p = await protect(client, 4 * B, 2, 1)
    with pytest.raises(RepairError, match="not readable"):
        await RepoSlotRepairer(host, RepoGetter([client])).repair(request_for(p), 0, EXPIRY, Reported())


@pytest.mark.parametrize("slot", [-1, 3])
async def test_a_slot_index_out_of_range_is_refused(client: RepoStore, host: RepoStore, slot: int) -> None:
    p = await hosting(client, host, 4 * B, 2, 1)
    with pytest.raises(RepairError, match="out of range"):
        await RepoSlotRepairer(host, RepoGetter([client])).repair(request_for(p), slot, EXPIRY, Reported())


async def test_a_request_whose_ask_does_not_fit_the_dataset_is_refused(client: RepoStore, host: RepoStore) -> None:
    p = await hosting(client, host, 4 * B, 2, 1)
    request = request_for(p)
    request = replace(request, ask=replace(request.ask, slot_size=request.ask.slot_size + B))
    reported = Reported()
    with pytest.raises(RepairError, match="asks for"):
        await RepoSlotRepairer(host, RepoGetter([client])).repair(request, 0, EXPIRY, reported)
    assert reported.calls == []


@pytest.mark.parametrize("own_manifest", [True, False], ids=["own-manifest-known", "own-manifest-lost"])
async def test_sources_failing_partway_through_many_batches_are_replaced_without_a_wrong_byte(
    client: RepoStore, host: RepoStore, own_manifest: bool
) -> None:
    p = await hosting(client, host, 36 * B, 3, 3)  # 12 rows, fetched one row ahead of the one being rebuilt
    s = 1
    getter = RepoGetter([client])
    await getter.lose_slot(client, p.manifest, s, manifest=not own_manifest)
    getter.lost.update((await getter.slot_cids(client, p.manifest, 0))[5:])  # slot 0 goes away at row 5
    getter.corrupt.add((await getter.slot_cids(client, p.manifest, 2))[8])  # slot 2 lies at row 8
    registry = CollectorRegistry()
    before = host.total_blocks
    await RepoSlotRepairer(host, getter, registry=registry, batch_bytes=3 * B).repair(
        request_for(p), s, EXPIRY, Reported()
    )
    await assert_repaired(host, client, p, s)
    assert registry.get_sample_value("codex_slot_repair_source_switches_total") == 2
    assert host.total_blocks == before + p.manifest.blocks_per_slot + 1


async def test_progress_is_logged_with_rows_mib_and_rate(client: RepoStore, host: RepoStore) -> None:
    p = await hosting(client, host, 8 * B, 2, 1)  # 4 rows, one per batch
    ticks = iter(range(0, 1000, 10))  # every reading of the clock is 10 s after the one before
    repairer = RepoSlotRepairer(host, RepoGetter([client]), batch_bytes=2 * B, monotonic=lambda: next(ticks))
    with capture_logs() as logs:
        await repairer.repair(request_for(p), 0, EXPIRY, Reported())
    progress = [e for e in logs if e["event"] == "slot repair progress"]
    assert [e["rows_done"] for e in progress] == [1, 2, 3, 4]
    assert progress[-1]["rows"] == 4
    assert progress[-1]["mib"] == 0.2
    assert all("mib_per_s" in e for e in progress)


class Offered:
    """Records the cell leaves a repairer hands to the prover."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, int, bytes]] = []

    def __call__(self, request: Request, slot_index: int, leaves: bytes) -> None:
        self.calls.append((request.id, slot_index, leaves))


@pytest.mark.parametrize("own_manifest", [True, False], ids=["own-manifest-known", "own-manifest-lost"])
async def test_a_repaired_slots_cell_leaves_are_handed_to_the_prover(
    client: RepoStore, host: RepoStore, own_manifest: bool
) -> None:
    p = await hosting(client, host, 20 * B + 9, 2, 1)
    getter = RepoGetter([client])
    await getter.lose_slot(client, p.manifest, 1, manifest=not own_manifest)
    offered = Offered()
    request = request_for(p)
    await RepoSlotRepairer(host, getter, on_slot_leaves=offered, batch_bytes=8 * 2 * B).repair(
        request, 1, EXPIRY, Reported()
    )
    await assert_repaired(host, client, p, 1)
    [(request_id, index, leaves)] = offered.calls
    assert (request_id, index) == (request.id, 1)
    assert leaves == cell_leaves(b"".join(await slot_blocks(client, p.manifest, 1)))
    assert SlotTree(leaves).root == p.manifest.slot_roots[1]


async def test_no_leaves_are_handed_over_for_a_slot_that_fails_its_root_or_whose_leaves_are_too_many(
    client: RepoStore, host: RepoStore
) -> None:
    p = await hosting(client, host, 5 * B, 3, 2)
    roots = list(p.manifest.slot_roots)
    roots[4] = bytes(32)
    forged = replace(p.manifest, slot_roots=tuple(roots), dataset_root=dataset_root(roots))
    await host.put_block(forged.cid(), forged.encode())
    offered = Offered()
    with pytest.raises(RepairError, match="slot root"):
        await RepoSlotRepairer(host, RepoGetter([client]), on_slot_leaves=offered).repair(
            request_for(p, forged.cid()), 4, EXPIRY, Reported()
        )
    leaf_bytes = p.manifest.blocks_per_slot * 32 * 32
    small = RepoSlotRepairer(host, RepoGetter([client]), on_slot_leaves=offered, keep_leaves_max=leaf_bytes - 1)
    await small.repair(request_for(p), 4, EXPIRY, Reported())
    await assert_repaired(host, client, p, 4)
    assert offered.calls == []


@pytest.mark.parametrize("own_manifest", [True, False], ids=["own-manifest-known", "own-manifest-lost"])
async def test_a_local_source_block_rotten_on_disk_is_caught_by_the_rebuild_through_the_real_fetcher(
    client: RepoStore, host: RepoStore, clock: FakeClock, own_manifest: bool
) -> None:
    """The fetcher hands local source blocks on unhashed (``check_local=False``): the rebuild is what catches one
    that rotted on disk, drops its slot, and rebuilds those rows from another; nothing wrong is stored."""
    p = await hosting(client, host, 6 * B, 2, 2)
    s = 0
    await copy_slots(client, host, p.manifest, [1, 2, 3])
    if own_manifest:
        await copy_slots(client, host, p.manifest, [s])
        for c in (await host.get_manifest(p.manifest.slot_manifests[s])).block_cids():
            await host.del_block(c)  # the slot's manifest is here, its blocks are what was lost
    slot1 = await host.get_manifest(p.manifest.slot_manifests[1])
    rotten = slot1.block_cid(1)
    corrupt_on_disk(host, rotten)
    # No peer: every source block is local, and what is not here (a lost slot manifest) is given up at once.
    fetcher = BlockFetcher(host, StaticProviders([]), clock, options=FetchOptions(rounds=1))
    registry = CollectorRegistry()
    try:
        with capture_logs() as logs:
            await RepoSlotRepairer(host, fetcher, registry=registry, batch_bytes=2 * B).repair(
                request_for(p), s, EXPIRY, Reported()
            )
    finally:
        await fetcher.close()
    await assert_repaired(host, client, p, s)
    [dropped] = [e for e in logs if e["event"] == "repair source slot dropped"]
    assert dropped["source"] == 1
    assert "not its own" in dropped["reason"]
    assert registry.get_sample_value("codex_slot_repair_source_switches_total") == 1
