"""BlockFetcher against real HTTP peers on 127.0.0.1: verified blocks only, hostile peers abandoned, retries."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from codex_node.blockexchange.fetcher import BlockFetcher, FetchOptions
from codex_node.blockexchange.metrics import FetchMetrics
from codex_node.data.cid import Cid
from codex_node.errors import BlocksUnavailableError
from codex_node.stores.repostore import RepoStore
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.staticpeers import StaticProviders
from tests.blockexchange.conftest import Serve
from tests.harness.blockpeers import HostilePeer, honest_app, upload

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
