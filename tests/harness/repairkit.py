"""What slot-repair tests need: a protected dataset stored in a repo, a request for it, copies of some of its slots
in another repo, and a ``BlockGetter`` over repos that can lose or corrupt chosen blocks (a hostile network)."""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field

from codex_node.data.cid import Cid
from codex_node.data.erasure import ErasureParams
from codex_node.data.protected import ProtectedManifest
from codex_node.data.slots import cid_bytes
from codex_node.errors import BlocksUnavailableError
from codex_node.market.types import Ask, Content, Request
from codex_node.purchasing.protect import protect_dataset
from codex_node.stores.datasets import store_dataset
from codex_node.stores.repostore import RepoStore
from codex_node.testing.mockmarket import account


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


@dataclass(frozen=True)
class Protected:
    cid: Cid
    manifest: ProtectedManifest
    data: bytes


async def protect(repo: RepoStore, size: int, k: int, m: int, *, seed: int = 0) -> Protected:
    """Upload ``size`` random bytes to ``repo`` and erasure-code them into K + M slots there (as a client does)."""
    data = random.Random(seed).randbytes(size)
    original = await store_dataset(repo, _chunks(data))
    dataset = await protect_dataset(repo, original, await repo.get_manifest(original), ErasureParams(k, m))
    return Protected(dataset.cid, dataset.manifest, data)


def ask_for(protected: ProtectedManifest, **terms: int) -> Ask:
    return Ask(
        proof_probability=terms.get("proof_probability", 1),
        price_per_byte_per_second=terms.get("price_per_byte_per_second", 1),
        collateral_per_byte=terms.get("collateral_per_byte", 1),
        slots=protected.params.slots,
        slot_size=protected.slot_size,
        duration=terms.get("duration", 3600),
        max_slot_loss=protected.params.m,
    )


def request_for(p: Protected, cid: Cid | None = None) -> Request:
    return Request(
        client=account(1),
        ask=ask_for(p.manifest),
        content=Content(cid=cid_bytes(p.cid if cid is None else cid), merkle_root=p.manifest.dataset_root),
        expiry=600,
        nonce=os.urandom(32),
    )


async def slot_blocks(repo: RepoStore, protected: ProtectedManifest, j: int) -> list[bytes]:
    manifest = await repo.get_manifest(protected.slot_manifests[j])
    return [await repo.get_block(cid) for cid in manifest.block_cids()]


async def copy_slots(src: RepoStore, dst: RepoStore, protected: ProtectedManifest, slots: Iterable[int]) -> None:
    """Put slots ``slots`` (manifests and blocks) of ``src`` into ``dst``, as if ``dst`` hosted them."""
    for j in slots:
        cid = protected.slot_manifests[j]
        manifest = await src.get_manifest(cid)
        await dst.put_blocks([(c, await src.get_block(c)) for c in manifest.block_cids()])
        await dst.put_block(cid, await src.get_block(cid))


@dataclass
class RepoGetter:
    """A ``BlockGetter`` over ``repos`` (asked in order). ``lost`` blocks are had from nobody; ``corrupt`` ones come
    with one byte flipped (this getter, unlike the real one, checks nothing: it is the hostile network)."""

    repos: Sequence[RepoStore]
    lost: set[Cid] = field(default_factory=set)
    corrupt: set[Cid] = field(default_factory=set)
    asked: list[Cid] = field(default_factory=list)
    hints: set[Cid | None] = field(default_factory=set)
    checks_local: set[bool] = field(default_factory=set)

    async def get_blocks(
        self, cids: Sequence[Cid], *, hint: Cid | None = None, check_local: bool = True
    ) -> list[bytes]:
        self.hints.add(hint)
        self.checks_local.add(check_local)
        out = []
        missing = 0
        for cid in cids:
            self.asked.append(cid)
            data = await self._get(cid)
            if data is None:
                missing += 1
                continue
            out.append(data[:-1] + bytes([data[-1] ^ 1]) if cid in self.corrupt else data)
        if missing:
            raise BlocksUnavailableError(f"{missing} of {len(cids)} blocks could not be had")
        return out

    async def _get(self, cid: Cid) -> bytes | None:
        if cid in self.lost:
            return None
        for repo in self.repos:
            if repo.has_block(cid):
                return await repo.get_block(cid)
        return None

    async def slot_cids(self, repo: RepoStore, protected: ProtectedManifest, j: int) -> list[Cid]:
        """Slot ``j``'s block CIDs as ``repo`` lists them."""
        return list((await repo.get_manifest(protected.slot_manifests[j])).block_cids())

    async def lose_slot(self, repo: RepoStore, protected: ProtectedManifest, j: int, *, manifest: bool = True) -> None:
        """Nobody has slot ``j``'s blocks (nor, with ``manifest``, its slot manifest) any more."""
        self.lost.update(await self.slot_cids(repo, protected, j))
        if manifest:
            self.lost.add(protected.slot_manifests[j])
