"""The network slot data source: a sale's slot fetched from peers, then held like a local one.

:class:`NetworkSlotDataSource` implements sales' :class:`~codex_node.sales.datasource.SlotDataSource`. For a
protected dataset (``request.content.cid`` a protected manifest CID) it secures, in order:

1. the protected manifest (from the repo, else from a peer; checked against its CID and parsed with
   :meth:`ProtectedManifest.parse`; its slot count and slot size must be the request's);
2. the slot manifest of the sale's slot (checked against its CID; it must list the slot's blocks);
3. the slot's blocks the repo does not hold, fetched through :class:`~codex_node.blockexchange.fetcher.BlockFetcher`
   (every block verified against its CID before it is stored) and stored batch by batch. Before each batch is
   written, ``on_blocks`` moves its bytes out of the reservation, so the quota never needs room for them twice
   (the reservation's reserved bytes go down as the blocks land); blocks already held are reported first.

Then it hands over to :class:`~codex_node.sales.datasource.LocalSlotDataSource` (with an ``on_blocks`` that reports
nothing: the bytes were reported already), which checks that every block is there, records the sale's hold and
raises the expiries; raising, lowering and ``held_until`` are the local source's too. A plain dataset (a manifest
CID) is fetched the same way: the manifest, then the data blocks of the slot's positions.

With ``is_repairing`` the slot is rebuilt from the other slots instead: the protected manifest is secured and the
:class:`~codex_node.blockexchange.port.SlotRepairer` rebuilds and stores the slot (a node built without one raises
:class:`~codex_node.errors.RepairError`).
"""

from __future__ import annotations

from collections import Counter

import structlog

from codex_node.blockexchange.fetcher import BlockFetcher, Payload
from codex_node.blockexchange.port import SlotRepairer
from codex_node.data.cid import Cid
from codex_node.data.manifest import Manifest
from codex_node.data.protected import ProtectedManifest
from codex_node.data.slots import BLOCK_SIZE
from codex_node.errors import (
    CodexError,
    CorruptBlockError,
    InvalidProtectedManifestError,
    RepairError,
    SlotDataError,
)
from codex_node.market.types import Request
from codex_node.sales.context import OnBlocks
from codex_node.sales.datasource import LocalSlotDataSource, content_cid, slot_positions
from codex_node.stores.repostore import RepoStore

log = structlog.get_logger(__name__)


async def _nothing(_nbytes: int) -> None:
    return None


class NetworkSlotDataSource:
    """:class:`~codex_node.sales.datasource.SlotDataSource` fetching the slot from peers (module docstring)."""

    def __init__(
        self,
        repo: RepoStore,
        fetcher: BlockFetcher,
        local: LocalSlotDataSource,
        *,
        repairer: SlotRepairer | None = None,
    ) -> None:
        self._repo = repo
        self._fetcher = fetcher
        self._local = local
        self._repairer = repairer

    async def fetch(
        self, request: Request, slot_index: int, expiry: int, on_blocks: OnBlocks, *, is_repairing: bool = False
    ) -> None:
        content = content_cid(request)
        if content.is_protected_manifest:
            protected = await self._protected(request, content, expiry)
            if not 0 <= slot_index < protected.params.slots:
                raise SlotDataError(f"slot {slot_index} out of range 0..{protected.params.slots - 1}")
            if is_repairing:
                if self._repairer is None:
                    raise RepairError(
                        f"slot {slot_index} of {content} must be repaired, but this node was built without a slot "
                        "repairer"
                    )
                await self._repairer.repair(request, slot_index, expiry, on_blocks)
                await self._local.fetch(request, slot_index, expiry, _nothing, is_repairing=True)
                return
            slot_cid = protected.slot_manifests[slot_index]
            manifest = await self._manifest(slot_cid, expiry)
            if manifest.block_count != protected.blocks_per_slot or manifest.info.block_size != BLOCK_SIZE:
                raise SlotDataError(
                    f"slot manifest {slot_cid} does not list the slot's {protected.blocks_per_slot} blocks"
                )
            positions: list[int | None] = list(range(manifest.block_count))
            hint = slot_cid
        elif is_repairing:
            raise RepairError(f"the dataset {content} is not erasure-coded: its slots cannot be repaired")
        else:
            manifest = await self._manifest(content, expiry)
            positions = slot_positions(request, slot_index, manifest)
            hint = content
        await self._blocks(manifest, positions, hint, expiry, on_blocks)
        await self._local.fetch(request, slot_index, expiry, _nothing, is_repairing=is_repairing)

    async def raise_expiry(self, request: Request, slot_index: int, expiry: int) -> None:
        await self._local.raise_expiry(request, slot_index, expiry)

    async def lower_expiry(self, request: Request, slot_index: int, expiry: int) -> None:
        await self._local.lower_expiry(request, slot_index, expiry)

    def held_until(self, cid: Cid) -> int | None:
        return self._local.held_until(cid)

    # --- internals ----------------------------------------------------------------------------------------------

    def _ttl(self, expiry: int) -> int:
        """The TTL of a block fetched for the sale: until ``expiry``, no longer (the local pass then raises it
        exactly). Not ``--block-ttl``: the local source records the manifest's expiry before the sale's first hold
        as the floor a sale's end lowers to, so a fetched slot stored for the full TTL would keep its bytes in the
        quota for that long after a cancelled or finished sale (anchor #1251), beside the bytes its availability
        got back."""
        return max(expiry - self._repo.clock.now(), 1)

    async def _protected(self, request: Request, cid: Cid, expiry: int) -> ProtectedManifest:
        raw = await self._fetcher.get_manifest_block(cid)  # verified against cid before it is parsed
        try:
            protected = ProtectedManifest.parse(raw)
        except (InvalidProtectedManifestError, CorruptBlockError) as e:
            raise SlotDataError(f"the protected manifest {cid} does not parse: {e}") from e
        ask = request.ask
        if protected.params.slots != ask.slots or protected.slot_size != ask.slot_size:
            raise SlotDataError(
                f"the request asks for {ask.slots} slots of {ask.slot_size} bytes; the protected dataset {cid} has "
                f"{protected.params.slots} of {protected.slot_size}"
            )
        if not self._repo.has_block(cid):
            await self._repo.put_block(cid, raw, self._ttl(expiry))
        return protected

    async def _manifest(self, cid: Cid, expiry: int) -> Manifest:
        raw = await self._fetcher.get_manifest_block(cid)
        try:
            manifest = Manifest.decode(raw)
        except CorruptBlockError as e:
            raise SlotDataError(f"the manifest {cid} does not parse: {e}") from e
        if not self._repo.has_block(cid):
            await self._repo.put_block(cid, raw, self._ttl(expiry))
        return manifest

    async def _blocks(
        self, manifest: Manifest, positions: list[int | None], hint: Cid, expiry: int, on_blocks: OnBlocks
    ) -> None:
        # A block may fill several positions (repeated content): bytes are reported per position.
        slot_cids = [manifest.block_cid(i) for i in positions if i is not None]
        uses = Counter(cid.text for cid in slot_cids)
        missing = list({cid.text: cid for cid in slot_cids if not self._repo.has_block(cid)}.values())
        # Padding and blocks already held are part of the slot from the start.
        held = len(positions) - sum(uses[c.text] for c in missing)
        if held:
            await on_blocks(held * BLOCK_SIZE)
        if not missing:
            return
        ttl = self._ttl(expiry)
        stored = 0

        async def store(blocks: list[tuple[Cid, Payload]]) -> None:
            nonlocal stored
            # Out of the reservation first, then into the repo: the quota never holds the bytes twice.
            await on_blocks(sum(uses[cid.text] for cid, _ in blocks) * BLOCK_SIZE)
            await self._repo.put_blocks(blocks, ttl, verified=True)  # the fetcher checked each against its CID
            stored += len(blocks)

        log.info("fetching slot blocks from peers", manifest=hint.text, blocks=len(missing), held_positions=held)
        try:
            await self._fetcher.fetch(missing, hint=hint, on_verified=store)
        except CodexError:
            log.warning("slot fetch incomplete", manifest=hint.text, stored=stored, missing=len(missing) - stored)
            raise
