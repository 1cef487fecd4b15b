"""The reservations book over the real repo store and LevelDB: same books, one batch, survives a reopen."""

from __future__ import annotations

from pathlib import Path

import pytest

from codex_node.errors import QuotaNotEnoughError
from codex_node.market.types import RequestId
from codex_node.sales.availability import AvailabilityPatch, AvailabilityTerms
from codex_node.sales.reservations import Reservations
from codex_node.stores.blockfiles import BlockFiles
from codex_node.stores.kv import LevelDBStore
from codex_node.stores.repostore import RepoStore
from codex_node.testing.fakeclock import FakeClock

QUOTA = 1 << 20


def open_repo(path: Path) -> tuple[LevelDBStore, RepoStore]:
    kv = LevelDBStore(path / "meta", sync=False)
    repo = RepoStore(
        kv,
        BlockFiles(path / "repo", sync="none"),
        clock=FakeClock(),
        quota_max=QUOTA,
        block_ttl=3600,
        registry=None,
    )
    return kv, repo


async def test_books_kept_through_the_repo_store_survive_a_reopen(tmp_path: Path) -> None:
    kv, repo = open_repo(tmp_path)
    book = Reservations(repo)
    a = await book.create_availability(
        AvailabilityTerms(total_size=QUOTA // 2, duration=60, min_price_per_byte_per_second=1, total_collateral=1000)
    )
    b = await book.create_availability(
        AvailabilityTerms(total_size=QUOTA // 4, duration=60, min_price_per_byte_per_second=1, total_collateral=1000)
    )
    r = await book.create_reservation(a.id, 4096, RequestId(b"\x01" * 32), 0, 0, 0)
    await book.release(r.id, a.id, 1024)
    with pytest.raises(QuotaNotEnoughError):
        await book.update_availability(
            b.id, AvailabilityPatch(total_size=QUOTA // 2 + 1024 + 1)
        )  # one byte more than fits
    assert repo.quota().reserved == QUOTA // 2 + QUOTA // 4 - 1024
    repo.close()
    kv.close()

    kv, repo = open_repo(tmp_path)
    book = Reservations(repo)
    assert [x.id for x in await book.availabilities()] == sorted([a.id, b.id])
    assert [x.size for x in await book.reservations(a.id)] == [4096 - 1024]
    assert await book.reservations(b.id) == []
    assert repo.quota().reserved == QUOTA // 2 + QUOTA // 4 - 1024
    assert await book.delete_reservation(r.id, a.id, r.collateral)
    assert (await book.get_availability(a.id)).free_size == QUOTA // 2
    assert repo.quota().reserved == QUOTA // 2 + QUOTA // 4
    repo.close()
    kv.close()
