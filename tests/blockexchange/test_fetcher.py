"""BlockFetcher against real HTTP peers on 127.0.0.1: verified blocks only, hostile peers abandoned, retries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from codex_node.api.routes import blocks as blocks_route
from codex_node.blockexchange.fetcher import BlockFetcher, FetchOptions
from codex_node.blockexchange.metrics import FetchMetrics
from codex_node.data.cid import Cid
from codex_node.errors import BlocksUnavailableError, CorruptBlockError
from codex_node.stores.repostore import RepoStore
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.staticpeers import StaticProviders
from tests.blockexchange.conftest import Serve
from tests.harness.blockpeers import HostilePeer, honest_app, upload
from tests.harness.repo import corrupt_on_disk

OPTIONS = FetchOptions(batch_blocks=2, parallel=2, stall_seconds=10, rounds=2)


def bad_peers(registry: CollectorRegistry, reason: str) -> float:
    value = registry.get_sample_value("codex_blockexchange_peer_failures_total", {"reason": reason})
    return value or 0.0


async def test_get_blocks_returns_every_block_verified_from_an_honest_peer(
    make_repo: Callable[..., RepoStore], serve: Serve, clock: FakeClock
) -> None:
    source = make_repo("source")
    cid, manifest = await upload(source, 7)
    peer = await serve(honest_app(source), "honest")
    providers = StaticProviders([peer])
    fetcher = BlockFetcher(make_repo("here"), providers, clock, options=OPTIONS)
    try:
        cids = list(manifest.block_cids())
        blocks = await fetcher.get_blocks(cids, hint=cid)
    finally:
        await fetcher.close()
    assert [await source.get_block(c) for c in cids] == blocks
    assert providers.served_bytes == {"honest": sum(len(b) for b in blocks)}


async def test_a_corrupting_peer_gets_no_byte_handed_on_and_the_fetch_completes_from_the_honest_one(
    make_repo: Callable[..., RepoStore], serve: Serve, clock: FakeClock
) -> None:
    source = make_repo("source")
    cid, manifest = await upload(source, 8)
    liar = HostilePeer(source, corrupt=True)
    peers = [await serve(liar, "liar"), await serve(honest_app(source), "honest")]
    providers = StaticProviders(peers)
    registry = CollectorRegistry()
    fetcher = BlockFetcher(make_repo("here"), providers, clock, options=OPTIONS, metrics=FetchMetrics(registry))
    handed: list[tuple[Cid, bytes]] = []

    async def keep(blocks: list[tuple[Cid, bytes]]) -> None:
        handed.extend(blocks)

    cids = list(manifest.block_cids())
    try:
        with capture_logs() as logs:
            await fetcher.fetch(cids, hint=cid, on_verified=keep)
    finally:
        await fetcher.close()
    assert liar.requests == 1  # asked once, then avoided
    assert sorted(c.text for c, _ in handed) == sorted(c.text for c in cids)
    for c, data in handed:
        assert data == await source.get_block(c)
    assert providers.avoided["liar"].startswith("corrupt")
    assert bad_peers(registry, "corrupt") == 1
    assert any(e["event"] == "peer abandoned" and e["peer"] == "liar" for e in logs)
    assert any(e["event"] == "blocks fetched" and e["blocks"] == 8 for e in logs)


async def test_a_stalled_peer_is_abandoned_after_the_stall_time_and_its_blocks_go_to_another(
    make_repo: Callable[..., RepoStore], serve: Serve, clock: FakeClock
) -> None:
    source = make_repo("source")
    cid, manifest = await upload(source, 4)
    staller = HostilePeer(source, stall=True)
    honest = HostilePeer(source)  # honest, but counts its requests
    peers = [await serve(staller, "staller"), await serve(honest, "honest")]
    providers = StaticProviders(peers)
    registry = CollectorRegistry()
    options = FetchOptions(batch_blocks=4, parallel=1, stall_seconds=10, rounds=2)
    fetcher = BlockFetcher(make_repo("here"), providers, clock, options=options, metrics=FetchMetrics(registry))
    cids = list(manifest.block_cids())
    try:
        task = asyncio.ensure_future(fetcher.get_blocks(cids, hint=cid))
        await asyncio.wait_for(staller.arrived.wait(), 30)
        clock.advance(9)
        for _ in range(20):  # let the loop run (no wall-clock wait): nine seconds are not a stall yet
            await asyncio.sleep(0)
        assert "staller" not in providers.avoided
        clock.advance(1)
        blocks = await asyncio.wait_for(task, 30)
    finally:
        await fetcher.close()
    assert blocks == [await source.get_block(c) for c in cids]
    assert providers.avoided["staller"].startswith("stalled")
    assert bad_peers(registry, "stalled") == 1


async def test_blocks_no_peer_has_raise_unavailable_after_the_rounds_with_back_off(
    make_repo: Callable[..., RepoStore], serve: Serve, clock: FakeClock
) -> None:
    source = make_repo("source")
    cid, manifest = await upload(source, 3)
    empty = HostilePeer(make_repo("empty"))  # answers "not here" for everything
    providers = StaticProviders([await serve(empty, "empty")])
    fetcher = BlockFetcher(make_repo("here"), providers, clock, options=OPTIONS)
    try:
        task = asyncio.ensure_future(fetcher.get_blocks(list(manifest.block_cids()), hint=cid))
        await asyncio.wait_for(empty.wait_requests(2), 30)  # one per batch in the first round
        for _ in range(20):
            await asyncio.sleep(0)
        assert not task.done()  # backing off on the injected clock
        clock.advance(OPTIONS.backoff_seconds)
        with pytest.raises(BlocksUnavailableError, match="3 of 3 blocks"):
            await asyncio.wait_for(task, 30)
    finally:
        await fetcher.close()
    assert empty.requests == 4  # two rounds, two batches each
    assert "empty" not in providers.avoided  # not having a block is no misbehaviour


async def test_a_peer_announcing_an_oversized_block_is_cut_off_and_avoided(
    make_repo: Callable[..., RepoStore], serve: Serve, clock: FakeClock
) -> None:
    source = make_repo("source")
    cid, manifest = await upload(source, 2)
    peer = await serve(honest_app(source), "honest")
    # Accept at most 1 KiB per block: every honest 64 KiB frame is now "oversized".
    options = FetchOptions(batch_blocks=2, parallel=1, rounds=1, max_block_bytes=1024)
    providers = StaticProviders([peer])
    fetcher = BlockFetcher(make_repo("here"), providers, clock, options=options)
    try:
        with pytest.raises(BlocksUnavailableError):
            await fetcher.get_blocks(list(manifest.block_cids()), hint=cid)
    finally:
        await fetcher.close()
    # Refused from what it announced (the answer's length, or a frame's), before the bytes were read.
    reason = providers.avoided["honest"]
    assert "the peer announced" in reason
    assert "accepted" in reason


async def test_a_manifest_is_verified_against_its_cid(
    make_repo: Callable[..., RepoStore], serve: Serve, clock: FakeClock
) -> None:
    source = make_repo("source")
    cid, _ = await upload(source, 2)
    liar = HostilePeer(source, corrupt=True)
    providers = StaticProviders([await serve(liar, "liar"), await serve(honest_app(source), "honest")])
    fetcher = BlockFetcher(make_repo("here"), providers, clock, options=OPTIONS)
    try:
        raw = await fetcher.get_manifest_block(cid)
    finally:
        await fetcher.close()
    assert raw == await source.get_block(cid)
    assert providers.avoided["liar"].startswith("corrupt")


async def _one_honest_peer(
    make_repo: Callable[..., RepoStore], serve: Serve, clock: FakeClock, blocks: int
) -> tuple[BlockFetcher, Cid, list[Cid]]:
    """A fetcher whose one peer holds a dataset of ``blocks`` blocks; the dataset's CID and its block CIDs."""
    source = make_repo("source")
    cid, manifest = await upload(source, blocks)
    peer = await serve(honest_app(source), "honest")
    fetcher = BlockFetcher(make_repo("here"), StaticProviders([peer]), clock, options=OPTIONS)
    return fetcher, cid, list(manifest.block_cids())


async def test_fetch_parts_asks_for_the_next_part_only_when_the_queue_runs_low_and_fetches_every_part(
    make_repo: Callable[..., RepoStore], serve: Serve, clock: FakeClock
) -> None:
    fetcher, cid, cids = await _one_honest_peer(make_repo, serve, clock, 12)
    handed: list[str] = []
    pulled: list[int] = []  # for each part, the blocks handed on when it was asked for

    async def parts() -> AsyncIterator[list[Cid]]:
        # 12 blocks in parts of 6: 3 batches of 2 each; the second part holds the first's first block again.
        for part in [cids[:6], [cids[0], *cids[6:11]], cids[11:]]:
            pulled.append(len(handed))
            yield part

    async def keep(blocks: list[tuple[Cid, bytes]]) -> None:
        handed.extend(c.text for c, _ in blocks)

    try:
        with capture_logs() as logs:
            await fetcher.fetch_parts(parts(), hint=cid, on_verified=keep)
    finally:
        await fetcher.close()
    assert sorted(handed) == sorted([c.text for c in cids] + [cids[0].text])  # once per part it was in
    # The first part's 3 batches fill the queue (2 workers, at most 2 waiting): the second part is asked for only
    # once a worker took a batch, and the third only after blocks of the first had landed.
    assert pulled[0] == 0
    assert pulled[2] > 0  # an unbounded feeder would have asked for every part before any block landed
    assert [e["blocks"] for e in logs if e["event"] == "blocks fetched"] == [13]  # one run, one final line


@pytest.mark.parametrize(
    ("failing", "message"),
    [("parts", "the next segment could not be read"), ("hand-on", "the store refused the batch")],
)
async def test_an_error_from_the_parts_or_from_handing_on_stops_the_fetch_and_closes_the_parts(
    make_repo: Callable[..., RepoStore], serve: Serve, clock: FakeClock, failing: str, message: str
) -> None:
    fetcher, cid, cids = await _one_honest_peer(make_repo, serve, clock, 4)
    closed = asyncio.Event()

    async def parts() -> AsyncIterator[list[Cid]]:
        try:
            yield cids[:2]
            if failing == "parts":
                raise BlocksUnavailableError(message)
            yield cids[2:]
            await asyncio.Event().wait()  # never gives a third part: only a close ends it
        finally:
            closed.set()

    async def on_verified(blocks: list[tuple[Cid, bytes]]) -> None:
        if failing == "hand-on":
            raise BlocksUnavailableError(message)

    try:
        with pytest.raises(BlocksUnavailableError, match=message):
            await fetcher.fetch_parts(parts(), hint=cid, on_verified=on_verified)
    finally:
        await fetcher.close()
    assert closed.is_set()


async def test_local_blocks_are_read_in_one_go_and_hashed_unless_the_caller_checks_them_itself(
    make_repo: Callable[..., RepoStore], clock: FakeClock
) -> None:
    here = make_repo("here")
    cid, manifest = await upload(here, 5)
    cids = list(manifest.block_cids())
    rotten = cids[2]
    good = await here.get_block(rotten)
    corrupt_on_disk(here, rotten)
    fetcher = BlockFetcher(here, StaticProviders([]), clock, options=OPTIONS)
    try:
        with pytest.raises(CorruptBlockError, match="does not match its CID"):
            await fetcher.get_blocks(cids, hint=cid)
        blocks = await fetcher.get_blocks([*cids, cids[0]], hint=cid, check_local=False)
    finally:
        await fetcher.close()
    assert len(blocks) == 6
    assert blocks[2] != good  # handed on as read: the caller checks it
    assert len(blocks[2]) == len(good)
    assert blocks[0] == blocks[5] == await here.get_block(cids[0])


async def test_an_answer_cut_short_by_a_block_changed_while_served_logs_one_warning_and_no_asgi_traceback(
    make_repo: Callable[..., RepoStore],
    serve: Serve,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The holder announced the answer's length, then a block changed under it: it ends the answer early (its own
    warning says why) and the asker takes the rest from another peer. uvicorn must not also log the deliberate
    cut as "Exception in ASGI application" with a traceback: operators would read it as a crash."""
    source = make_repo("source")
    cid, manifest = await upload(source, 40)  # three groups of 16 blocks in the cut peer's answer
    real = blocks_route._read_group
    groups = 0

    def cut_second_group(repo: RepoStore, cids: list[Cid], sizes: list[int | None]) -> memoryview:
        nonlocal groups
        groups += 1
        if groups == 2:
            raise blocks_route._Changed(f"block {cids[0]} was deleted or changed while it was served")
        return real(repo, cids, sizes)

    monkeypatch.setattr(blocks_route, "_read_group", cut_second_group)
    # Two peers over the same repo: the first asked gets its answer cut, the other serves what is left.
    peers = [await serve(honest_app(source), "cut"), await serve(honest_app(source), "honest")]
    options = FetchOptions(batch_blocks=40, parallel=1)
    fetcher = BlockFetcher(make_repo("here"), StaticProviders(peers), clock, options=options)
    handed: list[str] = []

    async def keep(blocks: list[tuple[Cid, bytes]]) -> None:
        handed.extend(c.text for c, _ in blocks)

    with capture_logs() as logs:
        await fetcher.fetch(list(manifest.block_cids()), hint=cid, on_verified=keep)
    await fetcher.close()
    assert sorted(handed) == sorted(c.text for c in manifest.block_cids())
    assert [e["event"] for e in logs if e["event"] == "blocks not served"] == ["blocks not served"]
    assert not [r for r in caplog.records if "Exception in ASGI application" in r.getMessage()]


async def test_an_answer_is_handed_on_group_by_group_as_it_arrives(
    make_repo: Callable[..., RepoStore], serve: Serve, clock: FakeClock
) -> None:
    source = make_repo("source")
    cid, manifest = await upload(source, 6)
    peer = HostilePeer(source, pause_after=3)  # honest, but holds back the last three frames until resumed
    options = FetchOptions(batch_blocks=6, group_blocks=2, parallel=1)
    fetcher = BlockFetcher(make_repo("here"), StaticProviders([await serve(peer, "slow")]), clock, options=options)
    groups: list[list[str]] = []
    first_group = asyncio.Event()

    async def keep(blocks: list[tuple[Cid, bytes]]) -> None:
        groups.append([c.text for c, _ in blocks])
        first_group.set()

    cids = list(manifest.block_cids())
    try:
        task = asyncio.ensure_future(fetcher.fetch(cids, hint=cid, on_verified=keep))
        await asyncio.wait_for(peer.paused.wait(), 30)
        await asyncio.wait_for(first_group.wait(), 30)  # while the answer is still coming
        assert groups == [[c.text for c in cids[:2]]]
        peer.resume.set()
        await asyncio.wait_for(task, 30)
    finally:
        await fetcher.close()
    assert groups == [[c.text for c in cids[i : i + 2]] for i in (0, 2, 4)]
    assert peer.requests == 1


async def test_a_block_corrupted_mid_answer_keeps_what_matched_before_it_and_the_rest_comes_from_another_peer(
    make_repo: Callable[..., RepoStore], serve: Serve, clock: FakeClock
) -> None:
    source = make_repo("source")
    cid, manifest = await upload(source, 6)
    liar = HostilePeer(source, corrupt_at=2)  # the third block of its answer is wrong, the others right
    honest = HostilePeer(source)
    providers = StaticProviders([await serve(liar, "liar"), await serve(honest, "honest")])
    options = FetchOptions(batch_blocks=6, group_blocks=2, parallel=1, rounds=1)
    fetcher = BlockFetcher(make_repo("here"), providers, clock, options=options)
    handed: list[tuple[Cid, bytes]] = []

    async def keep(blocks: list[tuple[Cid, bytes]]) -> None:
        handed.extend(blocks)

    cids = list(manifest.block_cids())
    try:
        await fetcher.fetch(cids, hint=cid, on_verified=keep)
    finally:
        await fetcher.close()
    assert providers.avoided["liar"].startswith("corrupt")
    assert (liar.requests, honest.requests) == (1, 1)
    for c, data in handed:
        assert data == await source.get_block(c)
    # From the liar: the first group, and the block of the second group that matched; the rest from the other.
    assert [c.text for c, _ in handed] == [c.text for c in [cids[0], cids[1], cids[3], cids[2], cids[4], cids[5]]]


async def test_waiting_for_its_own_store_is_no_stall_of_the_peer(
    make_repo: Callable[..., RepoStore], serve: Serve, clock: FakeClock
) -> None:
    source = make_repo("source")
    cid, manifest = await upload(source, 6)
    peer = HostilePeer(source)
    providers = StaticProviders([await serve(peer, "honest")])
    options = FetchOptions(batch_blocks=6, group_blocks=2, parallel=1, stall_seconds=10, rounds=1)
    fetcher = BlockFetcher(make_repo("here"), providers, clock, options=options)
    stored = asyncio.Event()
    storing = asyncio.Event()
    handed: list[str] = []

    async def slow_store(blocks: list[tuple[Cid, bytes]]) -> None:
        storing.set()
        await stored.wait()  # the disk is slow: the next group waits for this one to be stored
        handed.extend(c.text for c, _ in blocks)

    cids = list(manifest.block_cids())
    try:
        task = asyncio.ensure_future(fetcher.fetch(cids, hint=cid, on_verified=slow_store))
        await asyncio.wait_for(storing.wait(), 30)
        for _ in range(3):  # well past the stall time, in steps the stall timer wakes up for
            clock.advance(10)
            for _ in range(50):
                await asyncio.sleep(0)
        assert providers.avoided == {}
        stored.set()
        await asyncio.wait_for(task, 30)
    finally:
        await fetcher.close()
    assert handed == [c.text for c in cids]
    assert providers.avoided == {}


def test_fetch_options_refuse_a_group_of_no_blocks() -> None:
    with pytest.raises(ValueError, match="group_blocks must be at least 1"):
        FetchOptions(group_blocks=0)
