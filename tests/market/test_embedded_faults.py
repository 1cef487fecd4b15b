"""The embedded chain on a disk that fills up (a fault-injecting database, and a real tmpfs when run as root).

What must hold: a block the chain showed is on disk (after a failed write the database is reopened before anything
else runs, so nothing mined after the disk is freed is lost at the next start), a full disk is one warning line a
minute (not a traceback per block), and mining resumes by itself when space is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import plyvel
import pytest
from chainenv import TEST_OPTIONS
from chainfixtures import new_request
from conftest import EMBEDDED_T0 as T0
from structlog.testing import capture_logs

from codex_node.errors import ChainError
from codex_node.market.chaindb import LevelChainDB
from codex_node.market.embedded import FAILURE_WARNING_INTERVAL, EmbeddedChain
from codex_node.market.onchain import OnChainMarket
from codex_node.market.types import RequestId, StorageRequested
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.faultychaindb import FaultyChainDB
from codex_node.testing.memorykv import MemoryKV


class Faulty:
    """Opens a :class:`FaultyChainDB` for the chain and keeps it, so the test can fill the disk."""

    db: FaultyChainDB | None = None

    def __call__(self, path: Path, sync: bool) -> LevelChainDB:
        self.db = FaultyChainDB(path, sync=sync)
        return self.db

    @property
    def disk(self) -> FaultyChainDB:
        assert self.db is not None
        return self.db


def faulty_chain(path: Path, clock: FakeClock, faulty: Faulty, block_time: int = 0) -> EmbeddedChain:
    return EmbeddedChain(path, block_time=block_time, clock=clock, sync=False, registry=None, open_db=faulty)


async def settle(chain: EmbeddedChain) -> None:
    """Let woken tasks submit their work, then wait until the worker has done all of it."""
    for _ in range(10):
        await asyncio.sleep(0)
    with contextlib.suppress(ChainError):  # on a full disk every operation fails, after the queued ones ran
        await chain._call(lambda: None)


async def reopened_head(path: Path, clock: FakeClock) -> int:
    again = EmbeddedChain(path, block_time=0, clock=clock, sync=False, registry=None)
    await again.start()
    try:
        return int(await again.w3.eth.block_number)
    finally:
        await again.stop()


async def test_blocks_mined_after_a_full_disk_is_freed_survive_a_restart(chain_dir: Path) -> None:
    clock, faulty = FakeClock(T0 + 1000), Faulty()
    chain = faulty_chain(chain_dir, clock, faulty)
    await chain.start()
    await chain.mine(3)
    faulty.disk.full = True
    with pytest.raises(ChainError, match="No space left"):
        await chain.mine()
    with pytest.raises(ChainError, match="unavailable"):  # still full: the database cannot be reopened
        await chain.w3.eth.block_number
    faulty.disk.full = False
    await chain.mine(5)  # the database is reopened first, then these land on disk
    seen = await chain.w3.eth.block_number
    await chain.stop()
    assert faulty.disk.failed_writes >= 1
    assert faulty.disk.lost_writes == 0  # nothing went to the torn log
    assert await reopened_head(chain_dir, clock) == seen


async def test_a_full_disk_is_one_warning_a_minute_then_one_line_when_mining_resumes(chain_dir: Path) -> None:
    clock, faulty = FakeClock(T0 + 1000), Faulty()
    chain = faulty_chain(chain_dir, clock, faulty, block_time=1)
    await chain.start()
    try:
        await settle(chain)
        head = await chain.w3.eth.block_number
        faulty.disk.full = True
        with capture_logs() as logs:
            for _ in range(150):  # two and a half minutes of ticks on a full disk
                clock.advance(1)
                await settle(chain)
            faulty.disk.full = False
            clock.advance(1)
            await settle(chain)
        warnings = [e for e in logs if e["log_level"] == "warning"]
        assert [w["event"] for w in warnings] == ["embedded chain: mining failed, retrying every block"] * 3
        assert [w["failing_seconds"] for w in warnings] == [0, FAILURE_WARNING_INTERVAL, 2 * FAILURE_WARNING_INTERVAL]
        assert all("exc_info" not in e and e["log_level"] in ("warning", "info") for e in logs)
        assert "No space left" in warnings[0]["error"]
        recovered = [e for e in logs if e["event"] == "embedded chain: mining recovered"]
        assert len(recovered) == 1
        assert recovered[0]["failed_ticks"] == 150
        assert chain.failed_ticks == 150
        assert await chain.w3.eth.block_number == head + 1  # mining goes on by itself
    finally:
        await chain.stop()


async def test_an_event_stream_whose_cursor_is_past_a_chain_that_came_back_shorter_delivers_the_new_blocks(
    chain_dir: Path, tmp_path: Path
) -> None:
    """The issue's case: the chain restarts at an older block than the saved cursor (blocks lost with a disk, a
    copy restored): the stream rewinds to the last block both share instead of skipping the re-mined blocks."""
    clock, kv = FakeClock(T0 + 1000), MemoryKV()
    saved = tmp_path / "saved-chain"
    shutil.copytree(chain_dir, saved)  # the chain as it will come back

    async def run() -> tuple[list[RequestId], RequestId]:
        chain = EmbeddedChain(chain_dir, block_time=0, clock=clock, sync=False, registry=None)
        await chain.start()
        market = OnChainMarket(chain.w3, chain.deployment, chain.client_account, kv, options=TEST_OPTIONS)
        seen: list[RequestId] = []

        async def on_request(event: StorageRequested) -> None:
            seen.append(event.request_id)

        await market.subscribe(StorageRequested, on_request)
        await market.start()
        try:
            request = new_request(await market.get_signer())
            await market.request_storage(request)
            await market.events.wait_delivered(await chain.w3.eth.block_number)
            return seen, request.id
        finally:
            await market.stop()
            await chain.stop()

    delivered, lost = await run()
    assert delivered == [lost]
    shutil.rmtree(chain_dir)
    shutil.copytree(saved, chain_dir)  # the chain comes back shorter than the cursor
    clock.advance(10)
    delivered, replacing = await run()
    assert delivered == [replacing]


# --- a real full disk: a small tmpfs (root only, as in CI) ------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / f"tmpfs-{uuid.uuid4().hex[:8]}"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=False)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount
    finally:  # lazily: a chain a failed test left open must not keep the mount (nor fail pytest's clean-up)
        subprocess.run(["umount", "--lazy", str(mount)], check=False)


async def test_on_a_real_full_disk_no_block_the_chain_showed_is_lost(small_disk: Path, template: Path) -> None:
    clock = FakeClock(T0 + 1000)
    path = small_disk / "chain"
    shutil.copytree(template, path)
    chain = EmbeddedChain(path, block_time=0, clock=clock, sync=True, registry=None)
    await chain.start()
    stat = os.statvfs(small_disk)
    filler = small_disk / "filler"
    with filler.open("wb") as f:  # leave room for a few dozen blocks
        f.write(b"\0" * (stat.f_bavail * stat.f_frsize - 150_000))
    failed = 0
    for _ in range(400):
        clock.advance(1)
        try:
            await chain.mine()
        except (ChainError, plyvel.Error):  # plyvel's: what a version without the reopen let through
            failed += 1
            if failed >= 3:
                break
    assert failed >= 3, "the disk never filled up"
    filler.unlink()
    await chain.mine(5)
    seen = await chain.w3.eth.block_number
    await chain.stop()
    assert await reopened_head(path, clock) == seen
