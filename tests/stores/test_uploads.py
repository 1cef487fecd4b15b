"""Upload sessions (stores/uploads.py): blocks held by the upload until its manifest is stored."""

from __future__ import annotations

import os

from conftest import MakeRepo
from repo_invariants import check_invariants

from codex_node.data.manifest import BLOCK_SIZE, Manifest
from codex_node.stores.uploads import UploadSession


async def test_an_aborted_session_drops_only_its_own_blocks(make_repo: MakeRepo) -> None:
    repo = make_repo()
    kept, dropped = UploadSession(repo), UploadSession(repo)
    assert kept.id != dropped.id
    data = os.urandom(4 * BLOCK_SIZE)
    digests = await kept.put_group(0, data, BLOCK_SIZE, None)
    await dropped.put_group(0, os.urandom(2 * BLOCK_SIZE), BLOCK_SIZE, None)
    await dropped.abort()
    assert repo.total_blocks == 4
    cid = await kept.finish(Manifest.build(digests, dataset_size=len(data), block_size=BLOCK_SIZE), None)
    assert repo.total_blocks == 5  # the four blocks and the manifest
    assert await repo.get_manifest(cid)
    check_invariants(repo)


async def test_a_session_that_neither_finishes_nor_aborts_is_cleaned_up_at_the_next_start(make_repo: MakeRepo) -> None:
    repo = make_repo()
    await UploadSession(repo).put_group(0, os.urandom(3 * BLOCK_SIZE), BLOCK_SIZE, None)
    assert repo.total_blocks == 3
    restarted = make_repo()  # same kv and files: a crash and a restart
    assert restarted.total_blocks == 0
    check_invariants(restarted)
