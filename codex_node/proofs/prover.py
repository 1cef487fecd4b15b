"""The node's storage prover: builds the proof a hosted slot owes for a challenge (``sales.context.SlotProver``).

For a slot it needs the slot tree (hashing the whole slot) and the dataset tree (hashing every slot of the
dataset, which the node holds whole in the single-node case). Both are built once and cached in memory:

- slot trees by (content CID, slot count, slot index), least recently used first out, bounded by
  ``cache_bytes`` (a tree holds 1/32 of its slot's size: 2 MiB for a 64 MiB slot). The sibling trees a dataset
  tree build produces are kept too, as the first to be evicted;
- dataset trees by (content CID, slot count), at most ``MAX_DATASET_TREES`` (a few bytes per slot each).

A slot just rebuilt by a repair was hashed cell by cell on the way (its slot root is checked before the repair
succeeds): :meth:`Prover.offer_slot_leaves` takes those cell leaves, and the slot's first tree build (InitialProving,
right after) builds the tree from them instead of reading and hashing the slot again, once they give the slot root
the protected manifest commits to and the slot's cell count (otherwise the slot is read and hashed as usual). Offered
leaves wait until then, at most ``cache_bytes / 4`` of them (the oldest dropped first).

A proof then reads only the blocks its sampled cells fall in. Tree building runs in worker threads, one build at
a time (a second slot's build waits; proofs of cached slots never do). Before a slot tree is cached, the dataset
root it yields is compared with the request's ``Content.merkleRoot`` and the slot size with ``Ask.slotSize``: data
that cannot produce a proof the contract accepts is a :class:`ProofDataError` at once, not a revert later.

Metrics (read at scrape time, like the stores'; ``registry=None`` registers none): ``codex_proofs_built_total``,
``codex_proof_build_seconds`` (whole ``prove`` calls, tree builds included), ``codex_proof_tree_builds_total``,
``codex_proof_tree_build_seconds``, ``codex_proof_tree_cache_bytes``, ``codex_proof_trees_from_offered_leaves_total``
(slot trees built from a repair's leaves, the slot not hashed again).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, replace

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import CollectorRegistry

from codex_node import metrics
from codex_node.data.proof import CELLS_PER_BLOCK, StorageProof
from codex_node.data.slots import cid_from_bytes
from codex_node.errors import InvalidCidError, ProofDataError
from codex_node.market.types import Request, Slot
from codex_node.proofs.build import build_proof
from codex_node.proofs.sampling import sample_indices
from codex_node.proofs.slotdata import BlockReader, SlottedDataset, dataset_tree, open_dataset, read_cells, slot_tree
from codex_node.proofs.trees import DatasetTree, SlotTree

log = structlog.get_logger(__name__)

DEFAULT_CACHE_BYTES = 256 * 1024 * 1024
"""Slot trees of 8 GiB of hosted slots."""
MAX_DATASET_TREES = 1024

_DatasetKey = tuple[bytes, int]
_SlotKey = tuple[bytes, int, int]


_METRIC_NAMES = (
    "codex_proofs_built",
    "codex_proof_build_seconds",
    "codex_proof_tree_builds",
    "codex_proof_tree_build_seconds",
    "codex_proof_tree_cache_bytes",
    "codex_proof_trees_from_offered_leaves",
)


@dataclass(slots=True)
class ProverStats:
    """Counts kept by the prover and read by its collector at scrape time."""

    proofs_built: int = 0
    proof_seconds: float = 0.0
    tree_builds: int = 0
    tree_seconds: float = 0.0
    trees_from_offered_leaves: int = 0


@dataclass(frozen=True, slots=True)
class _SlotEntry:
    dataset: SlottedDataset
    tree: SlotTree
    dataset_tree: DatasetTree


class Prover:
    """Storage proofs for the slots of datasets stored in ``repo``; ``samples`` is the marketplace's
    ``proofSamples`` (``MarketplaceConfig.proofs.proof_samples``, fixed when the contract is deployed)."""

    def __init__(
        self,
        repo: BlockReader,
        *,
        samples: int,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if not 1 <= samples <= 255:
            raise ValueError(f"proof samples must be 1..255 (a uint8 the contract refuses as 0), got {samples}")
        self.repo = repo
        self.samples = samples
        self.cache_bytes = cache_bytes
        self.stats = ProverStats()
        self._slots: OrderedDict[_SlotKey, _SlotEntry] = OrderedDict()
        self._datasets: OrderedDict[_DatasetKey, DatasetTree] = OrderedDict()
        self._cached_bytes = 0
        self._offered: OrderedDict[_SlotKey, bytes] = OrderedDict()
        self._offered_bytes = 0
        self._build_lock = asyncio.Lock()
        self._unregister = metrics.register(metrics.LiveCollector(self._metrics, _METRIC_NAMES), registry)

    # --- SlotProver --------------------------------------------------------------------------------------------

    async def prove(self, slot: Slot, challenge: bytes) -> StorageProof:
        """The proof of ``slot`` for ``challenge``. Raises :class:`ProofDataError` if the slot's data (or, the
        first time, a sibling slot's) is not here or does not match the request."""
        started = time.perf_counter()
        entry = await self._entry(slot)
        indices = sample_indices(challenge, slot.id, entry.tree.cells, self.samples)
        cells = await read_cells(self.repo, entry.dataset, slot.slot_index, indices)
        proof = build_proof(entry.tree, entry.dataset_tree, slot.slot_index, indices, cells)
        elapsed = time.perf_counter() - started
        self.stats.proofs_built += 1
        self.stats.proof_seconds += elapsed
        log.debug("proof built", slot_id=slot.id.hex(), slot_index=slot.slot_index, ms=round(elapsed * 1000, 1))
        return proof

    def offer_slot_leaves(self, request: Request, slot_index: int, leaves: bytes) -> None:
        """The cell leaves of slot ``slot_index`` of ``request``'s dataset, hashed by whoever just stored that slot
        (a repair, after checking them against the slot root): the slot's next tree build starts from them (module
        docstring). Checked when used, not here."""
        key = (request.content.cid, request.ask.slots, slot_index)
        self._drop_offer(key)
        self._offered[key] = leaves
        self._offered_bytes += len(leaves)
        while self._offered_bytes > self.cache_bytes // 4 and self._offered:
            self._drop_offer(next(iter(self._offered)))

    def has_offered_leaves(self, slot: Slot) -> bool:
        """Whether leaves offered for ``slot`` wait for its next tree build."""
        return _slot_key(slot) in self._offered

    def _drop_offer(self, key: _SlotKey) -> bytes | None:
        leaves = self._offered.pop(key, None)
        if leaves is not None:
            self._offered_bytes -= len(leaves)
        return leaves

    async def _slot_tree(self, dataset: SlottedDataset, slot: Slot) -> tuple[SlotTree, bool]:
        """Slot ``slot``'s tree and whether it came from offered leaves (if they are the slot's), else read and
        hashed from the repo."""
        leaves = self._drop_offer(_slot_key(slot))
        if leaves is not None and dataset.protected:
            tree = await asyncio.to_thread(SlotTree, leaves)
            cells = dataset.layout.blocks_per_slot * CELLS_PER_BLOCK
            if tree.root == dataset.slot_roots[slot.slot_index] and tree.cells == cells:
                return tree, True
            log.warning("offered slot leaves are not the slot's: hashing the slot", slot_index=slot.slot_index)
        return await slot_tree(self.repo, dataset, slot.slot_index), False

    def corrupt(self, proof: StorageProof) -> StorageProof:
        """``proof`` with its slot root changed: well-formed, and refused (``InvalidCellProof``)."""
        return replace(proof, slot_root=bytes([proof.slot_root[0] ^ 1]) + proof.slot_root[1:])

    async def forget(self, slot: Slot) -> None:
        self._drop_offer(_slot_key(slot))
        entry = self._slots.pop(_slot_key(slot), None)
        if entry is not None:
            self._cached_bytes -= entry.tree.nbytes

    def close(self) -> None:
        """Unregister the metrics (idempotent). The caches go with the object."""
        self._unregister()

    def _metrics(self) -> Iterator[Metric]:
        stats = self.stats
        yield SummaryMetricFamily(
            "codex_proof_build_seconds",
            "Time to build storage proofs, tree builds included",
            count_value=stats.proofs_built,
            sum_value=stats.proof_seconds,
        )
        yield CounterMetricFamily("codex_proofs_built", "Storage proofs built", value=stats.proofs_built)
        yield SummaryMetricFamily(
            "codex_proof_tree_build_seconds",
            "Time to read and hash a slot (and its dataset when not cached) into trees",
            count_value=stats.tree_builds,
            sum_value=stats.tree_seconds,
        )
        yield CounterMetricFamily("codex_proof_tree_builds", "Slot tree builds", value=stats.tree_builds)
        yield CounterMetricFamily(
            "codex_proof_trees_from_offered_leaves",
            "Slot tree builds that took the cell leaves a repair handed over instead of hashing the slot",
            value=stats.trees_from_offered_leaves,
        )
        yield GaugeMetricFamily(
            "codex_proof_tree_cache_bytes", "Bytes held by cached slot trees", value=self._cached_bytes
        )

    # --- cache -------------------------------------------------------------------------------------------------

    @property
    def cached_bytes(self) -> int:
        return self._cached_bytes

    def is_cached(self, slot: Slot) -> bool:
        return _slot_key(slot) in self._slots

    async def _entry(self, slot: Slot) -> _SlotEntry:
        key = _slot_key(slot)
        entry = self._cached(key)
        if entry is not None:
            return entry
        async with self._build_lock:
            entry = self._cached(key)
            if entry is None:
                entry = await self._build(slot)
        return entry

    def _cached(self, key: _SlotKey) -> _SlotEntry | None:
        entry = self._slots.get(key)
        if entry is not None:
            self._slots.move_to_end(key)
        return entry

    def _store(self, key: _SlotKey, entry: _SlotEntry, *, recent: bool) -> None:
        """Cache ``entry`` as the most recently used, or (``recent=False``) as the first to be evicted."""
        old = self._slots.pop(key, None)
        if old is not None:
            self._cached_bytes -= old.tree.nbytes
        self._slots[key] = entry
        if not recent:
            self._slots.move_to_end(key, last=False)
        self._cached_bytes += entry.tree.nbytes
        while self._cached_bytes > self.cache_bytes and len(self._slots) > 1:
            _, evicted = self._slots.popitem(last=False)
            self._cached_bytes -= evicted.tree.nbytes

    async def _build(self, slot: Slot) -> _SlotEntry:
        request = slot.request
        try:
            cid = cid_from_bytes(request.content.cid)
        except (InvalidCidError, ValueError) as e:
            raise ProofDataError(f"request content CID 0x{request.content.cid.hex()} is not a CID: {e}") from e
        started = time.perf_counter()
        dataset = await open_dataset(self.repo, cid, request.ask.slots, only_slot=slot.slot_index)
        if dataset.layout.slot_size != request.ask.slot_size:
            raise ProofDataError(
                f"dataset {cid} cut into {request.ask.slots} slots makes {dataset.layout.slot_size}-byte slots, "
                f"the request asks for {request.ask.slot_size}"
            )
        dataset_key = (request.content.cid, request.ask.slots)
        dtree = self._datasets.get(dataset_key)
        siblings: list[SlotTree] = []
        offered = False
        if dtree is None and dataset.protected:
            # The manifest commits to every slot root: this host needs only its own slot (the others are elsewhere).
            dtree = DatasetTree(dataset.slot_roots)
            tree, offered = await self._slot_tree(dataset, slot)
        elif dtree is None:
            dtree, siblings = await dataset_tree(self.repo, dataset, first=slot.slot_index)
            tree = siblings[slot.slot_index]
        else:
            tree, offered = await self._slot_tree(dataset, slot)
        if dtree.root != request.content.merkle_root:
            raise ProofDataError(
                f"dataset {cid} hashes to root 0x{dtree.root.hex()}, the request commits to "
                f"0x{request.content.merkle_root.hex()}"
            )
        if dtree.slot_root(slot.slot_index) != tree.root:
            raise ProofDataError(f"slot {slot.slot_index} of dataset {cid} changed since its dataset tree was built")
        self._datasets[dataset_key] = dtree
        self._datasets.move_to_end(dataset_key)
        while len(self._datasets) > MAX_DATASET_TREES:
            self._datasets.popitem(last=False)
        # Sibling trees were built anyway: keep them as the first to go. A node hosting several slots of one
        # dataset (the single-node case: all of them) then hashes the dataset once, not once more per slot.
        for index, sibling in enumerate(siblings):
            if index != slot.slot_index:
                sibling_key = (request.content.cid, request.ask.slots, index)
                if sibling_key not in self._slots:
                    self._store(sibling_key, _SlotEntry(dataset, sibling, dtree), recent=False)
        entry = _SlotEntry(dataset, tree, dtree)
        self._store(_slot_key(slot), entry, recent=True)
        elapsed = time.perf_counter() - started
        self.stats.tree_builds += 1
        self.stats.tree_seconds += elapsed
        self.stats.trees_from_offered_leaves += offered
        log.info(
            "slot tree built",
            cid=cid.text,
            slot_index=slot.slot_index,
            slot_size=request.ask.slot_size,
            dataset_hashed=bool(siblings),
            from_offered_leaves=offered,
            seconds=round(elapsed, 3),
        )
        return entry


def _slot_key(slot: Slot) -> _SlotKey:
    return (slot.request.content.cid, slot.request.ask.slots, slot.slot_index)
