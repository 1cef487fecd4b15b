"""Anchor §8.2 "block expiration" over separate processes (storage only: no chain, no sales).

Two nodes run block maintenance every second (``--block-mi 1s``): one keeps blocks an hour (``--block-ttl 1h``),
the other one second (``--block-ttl 1s``, the smallest the flag takes). The same file is uploaded to both. The
short-lived node's maintenance deletes it: its download answers 404 and its quota and block count are back where
they were; the long-lived node, whose maintenance ran as often meanwhile, still serves it byte for byte.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator

import pytest

from codex_node.client.errors import NotFoundApiError
from integration.localnet import LocalNet, LocalNode

BLOCK = 65_536
MAINTENANCE = ("--block-mi", "1s", "--metrics", "--metrics-port", "0")


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNet]:
    """A net without a chain (overrides the conftest's, so a failure still reports the nodes' logs)."""
    local = LocalNet(tmp_path_factory.mktemp("storagenet"))
    try:
        local.start(chain=False)
        yield local
    finally:
        local.stop()


def download(node: LocalNode, cid: str) -> bytes:
    out = io.BytesIO()
    node.api.download(cid, out)
    return out.getvalue()


def gone(node: LocalNode, cid: str) -> bool:
    try:
        download(node, cid)
    except NotFoundApiError:
        return True
    return False


def test_a_short_block_ttl_deletes_an_upload_and_returns_its_quota_a_long_one_keeps_it(net: LocalNet) -> None:
    keeper = net.add_node("keeper", "--block-ttl", "1h", *MAINTENANCE)
    forgetter = net.add_node("forgetter", "--block-ttl", "1s", *MAINTENANCE)
    data = os.urandom(3 * BLOCK + 500)
    empty = {n.name: n.api.space() for n in (keeper, forgetter)}
    assert all(s.quota_used_bytes == 0 and s.total_blocks == 0 for s in empty.values())

    kept = keeper.api.upload(data)
    keeper_space = keeper.api.space()
    assert keeper_space.quota_used_bytes >= len(data)
    passes_at_upload = keeper.metric("codex_maintenance_passes_total")
    forgotten = forgetter.api.upload(data)

    net.wait_for(lambda: gone(forgetter, forgotten), what="the 1 s TTL node's download answers 404")
    net.wait_for(
        lambda: forgetter.api.space() == empty["forgetter"] or None, what="the 1 s TTL node's quota back to empty"
    )
    assert forgetter.api.list_data() == []
    assert forgetter.metric("codex_maintenance_deleted_blocks_total") >= 1

    # The keeper's maintenance ran at least twice since the upload, as often as the forgetter's needed.
    net.wait_for(
        lambda: keeper.metric("codex_maintenance_passes_total") >= passes_at_upload + 2, what="two keeper passes"
    )
    assert download(keeper, kept) == data
    assert keeper.api.space() == keeper_space
    assert [d.cid for d in keeper.api.list_data()] == [kept]
    assert keeper.metric("codex_maintenance_deleted_blocks_total") == 0
