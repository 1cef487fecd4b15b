"""Rebuilding a lost slot of a protected dataset from any K other slots (pure: no I/O).

Layout (``data/erasure.py``): row ``r`` of the encoding is K data blocks and M parity blocks, and slot ``s`` holds
block ``s`` of every row. Slot ``s`` is rebuilt row by row from block ``r`` of K other slots: zfec decodes them
to the row's K data blocks (no work for those that are among the sources), and a parity slot ``s ≥ K`` is then
encoded again from those. The caller hands over a **batch** of rows at a time (one worker-thread hop, one store
batch, one fetch per source slot) and the memory is that batch (the K sources' blocks and the rebuilt ones),
never the slot.

What is checked, and against what (the protected manifest, ``data/protected.py``, is the root of trust: its CID
is on chain, and it names every slot manifest by CID and every slot root):

- **Rebuilt blocks.** When slot ``s``'s own slot manifest is known (it may have been lost with its host), each
  rebuilt block must hash to the digest it lists. Rows are rebuilt in order, and the slot root is computed on the
  way (a :class:`~codex_node.data.erasure.SlotRootBuilder`, as the encoder does); :meth:`SlotRebuilder.finish`
  compares it with ``slot_roots[s]`` and rebuilds the slot manifest from the rebuilt blocks' digests, whose CID
  must be ``slotManifests[s]``. So a slot that passes is exactly the slot the request committed to, manifest
  included, whether or not its manifest survived.
- **Source blocks.** Each source slot's blocks must hash to the digests its slot manifest lists. They are hashed
  only when it matters: always when slot ``s``'s manifest is unknown (nothing else could tell a wrong source
  block from a right one before the slot root, at the very end), and otherwise only when a rebuilt block does
  not match, to find which source was wrong. Sources that are wrong are reported
  (:attr:`RebuiltRows.corrupt_sources`) and nothing of the batch is given out: the caller takes those rows from
  other slots and tries again. Rebuilt blocks that do not match although every source did mean the protected
  dataset does not add up (its slots are not one encoding): :class:`RepairError`.

Memory beyond a batch: 32 bytes per row (the digests the rebuilt slot manifest lists) and ``O(log rows)`` hashes
for the slot root. Errors: :class:`RepairError`, or :class:`SlotRootMismatchError` from :meth:`finish`; nothing
else.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import zfec

from codex_node.data.cellhash import block_hashes, map_runs
from codex_node.data.cid import DIGEST_SIZE, Cid, block_cid_from_digest
from codex_node.data.erasure import SlotRootBuilder
from codex_node.data.manifest import Manifest
from codex_node.data.merkle import Buffer
from codex_node.data.protected import ProtectedManifest
from codex_node.data.slots import BLOCK_SIZE
from codex_node.errors import RepairError, SlotRootMismatchError

BATCH_BYTES = 16 * 1024 * 1024
"""Source bytes per batch of rows (K blocks per row): what one decode call and one store batch cover."""


def batch_rows(k: int, batch_bytes: int = BATCH_BYTES) -> int:
    """Rows per batch for K source slots so that a batch's source blocks take about ``batch_bytes``."""
    return max(1, batch_bytes // (k * BLOCK_SIZE))


def source_order(protected: ProtectedManifest, slot_index: int, local: Iterable[int] = ()) -> list[int]:
    """The other slots in the order to try them as sources: ``local`` ones first, and within each group data
    slots before parity slots (data slots that are sources need no decoding), then by index."""
    _check_slot(protected, slot_index)
    here = set(local)
    others = (j for j in range(protected.params.slots) if j != slot_index)
    return sorted(others, key=lambda j: (j not in here, j >= protected.params.k, j))


@dataclass(frozen=True, slots=True)
class RebuiltRows:
    """The rebuilt blocks of slot ``s`` at rows ``first_row …``, or, when :attr:`corrupt_sources` is not empty,
    nothing: those source slots gave blocks that are not theirs, and the rows must be rebuilt from others."""

    first_row: int
    blocks: tuple[bytes, ...]
    digests: bytes
    """sha2-256 of each rebuilt block, concatenated (32 bytes each)."""
    corrupt_sources: tuple[int, ...] = ()

    @property
    def nbytes(self) -> int:
        return len(self.blocks) * BLOCK_SIZE

    def cids(self) -> list[Cid]:
        return [
            block_cid_from_digest(self.digests[i : i + DIGEST_SIZE]) for i in range(0, len(self.digests), DIGEST_SIZE)
        ]


class SlotRebuilder:
    """Rebuilds slot ``slot_index`` of ``protected`` batch of rows by batch of rows, in order (module docstring).

    ::

        rebuilder = SlotRebuilder(protected, s, slot_manifest=manifest_or_None)
        while rebuilder.next_row < rebuilder.rows:
            rows = rebuilder.rebuild(sources, source_digests)   # K other slots' blocks at rows next_row …
            if rows.corrupt_sources: ...                       # take those rows from other slots, try again
            else: store(rows.cids(), rows.blocks)
        slot_manifest = rebuilder.finish()                     # slot root and slot manifest CID checked

    Not thread-safe: one caller at a time (it may be a worker thread).
    """

    def __init__(
        self,
        protected: ProtectedManifest,
        slot_index: int,
        *,
        slot_manifest: Manifest | None = None,
        keep_leaves: bool = False,
    ) -> None:
        _check_slot(protected, slot_index)
        self.protected = protected
        self.slot_index = slot_index
        self.rows = protected.blocks_per_slot
        k, n = protected.params.k, protected.params.slots
        self._decoder = zfec.Decoder(k, n)
        self._encoder = zfec.Encoder(k, n) if slot_index >= k else None
        self._expected: bytes | None = None
        if slot_manifest is not None:
            _check_slot_manifest(protected, slot_index, slot_manifest)
            self._expected = slot_manifest.block_digests
        self._root = SlotRootBuilder(keep_leaves=keep_leaves)
        self._digests = bytearray()
        self.next_row = 0

    @property
    def checks_each_block(self) -> bool:
        """Whether slot ``s``'s manifest is known, so each rebuilt block is checked against its digest."""
        return self._expected is not None

    def rebuild(self, sources: Mapping[int, Sequence[Buffer]], source_digests: Mapping[int, bytes]) -> RebuiltRows:
        """Rebuild the rows ``next_row …`` (as many as each source gives blocks) from exactly K other slots.

        ``sources[j]``: slot ``j``'s blocks at those rows, in order; ``source_digests[j]``: the digests slot ``j``'s
        manifest lists for them (32 bytes each, concatenated). A source block of the wrong size or digest makes
        its slot a corrupt source (network input, see :class:`RebuiltRows`); wrong arguments raise
        :class:`RepairError`.
        """
        first, count, chosen = self._check_sources(sources, source_digests)
        corrupt: tuple[int, ...] = ()
        if self._expected is None:
            corrupt = _corrupt_sources(sources, source_digests, chosen)
            if corrupt:
                return RebuiltRows(first, (), b"", corrupt)
        elif any(len(block) != BLOCK_SIZE for j in chosen for block in _views(sources[j])):
            return RebuiltRows(first, (), b"", _corrupt_sources(sources, source_digests, chosen))
        # Decoded, hashed for their CIDs and hashed for the slot tree run by run on two threads (zfec, hashlib
        # and the batch keccak release the GIL): the three steps of a row are one core's work, not one after the
        # other on one core each (data/cellhash.py).
        runs = map_runs(functools.partial(self._rebuild_run, chosen, sources), range(count))
        blocks = [block for run in runs for block in run.blocks]
        digests = b"".join(run.digests for run in runs)
        if self._expected is not None:
            expected = self._expected[first * DIGEST_SIZE : (first + count) * DIGEST_SIZE]
            if digests != expected:
                corrupt = _corrupt_sources(sources, source_digests, chosen)
                if corrupt:
                    return RebuiltRows(first, (), b"", corrupt)
                row = first + _first_difference(digests, expected)
                raise RepairError(
                    f"block {row} of slot {self.slot_index}, rebuilt from slots {list(chosen)} whose blocks all "
                    "match their slot manifests, does not match slot manifest "
                    f"{self.protected.slot_manifests[self.slot_index]}: the protected dataset's slots are not one "
                    "erasure coding"
                )
        for run in runs:
            self._root.add_hashed(run.leaves, run.roots)
        self._digests += digests
        self.next_row = first + count
        return RebuiltRows(first, tuple(blocks), digests)

    def leaves(self) -> bytes | None:
        """The rebuilt slot's cell leaves (its slot tree's bottom level, 1/64 of its bytes) when built with
        ``keep_leaves``, else ``None``. Vouched for only once :meth:`finish` has returned: a prover can then take
        them instead of reading and hashing the slot again."""
        return self._root.leaves()

    def finish(self) -> Manifest:
        """Check the rebuilt slot against its slot root and return its slot manifest (whose CID is checked against
        the protected manifest's). Only once every row has been rebuilt."""
        s = self.slot_index
        if self.next_row != self.rows:
            raise RepairError(f"slot {s} has {self.next_row} of its {self.rows} rows rebuilt")
        if self._root.root() != self.protected.slot_roots[s]:
            raise SlotRootMismatchError(f"rebuilt slot {s} does not hash to its slot root")
        manifest = Manifest.build(bytes(self._digests), dataset_size=self.rows * BLOCK_SIZE)
        expected = self.protected.slot_manifests[s]
        if manifest.cid() != expected:
            raise RepairError(
                f"rebuilt slot {s}'s manifest is {manifest.cid()}, the protected manifest lists {expected}"
            )
        return manifest

    # --- internals ----------------------------------------------------------------------------------------------

    def _check_sources(
        self, sources: Mapping[int, Sequence[Buffer]], source_digests: Mapping[int, bytes]
    ) -> tuple[int, int, tuple[int, ...]]:
        params = self.protected.params
        chosen = tuple(sorted(sources))
        if len(chosen) != params.k:
            raise RepairError(f"rebuilding a slot takes exactly K = {params.k} other slots, got {list(chosen)}")
        if self.slot_index in sources or not all(0 <= j < params.slots for j in chosen):
            raise RepairError(
                f"source slots {list(chosen)} must be other slots than {self.slot_index}, in 0..{params.slots - 1}"
            )
        if set(source_digests) != set(chosen):
            raise RepairError(f"digests given for slots {sorted(source_digests)}, blocks for {list(chosen)}")
        counts = {len(sources[j]) for j in chosen}
        if len(counts) != 1:
            raise RepairError(f"the source slots give different numbers of rows: {sorted(counts)}")
        count = counts.pop()
        first = self.next_row
        if count < 1 or first + count > self.rows:
            raise RepairError(f"{count} rows from row {first}: slot {self.slot_index} has {self.rows}")
        if any(len(source_digests[j]) != count * DIGEST_SIZE for j in chosen):
            raise RepairError(f"each source slot needs {count} digests for {count} rows")
        return first, count, chosen

    def _rebuild_run(
        self, chosen: tuple[int, ...], sources: Mapping[int, Sequence[Buffer]], rows: Sequence[int]
    ) -> _Run:
        """Rows ``rows`` (of this batch) decoded, with their blocks' sha2-256 digests and slot-tree hashes."""
        blocks = self._decode(chosen, sources, rows)
        leaves, roots = block_hashes(blocks)
        return _Run(blocks, b"".join(hashlib.sha256(block).digest() for block in blocks), leaves, roots)

    def _decode(
        self, chosen: tuple[int, ...], sources: Mapping[int, Sequence[Buffer]], rows: Sequence[int]
    ) -> list[bytes]:
        k = self.protected.params.k
        s = self.slot_index
        systematic = chosen == tuple(range(k))  # every data block is a source: nothing to decode
        decoder, encoder = self._decoder, self._encoder  # zfec's codes are read only: threads may share them
        columns = [sources[j] for j in chosen]
        out = []
        # One zfec call per row: zfec's cost is per byte, and 64 KiB rows stay in the CPU cache where runs of many
        # rows laid end to end (one call per batch) do not and must first be copied together (measured slower).
        for i in rows:
            blocks = tuple(column[i] for column in columns)
            primary = blocks if systematic else decoder.decode(blocks, chosen)
            if encoder is None:
                out.append(_as_bytes(primary[s]))
            else:
                [parity] = encoder.encode(tuple(primary), (s,))
                out.append(_as_bytes(parity))
        return out


@dataclass(frozen=True, slots=True)
class _Run:
    """A run of rebuilt rows: the blocks, their digests (concatenated), cell leaves and subtree roots."""

    blocks: list[bytes]
    digests: bytes
    leaves: bytes
    roots: list[bytes]


def _check_slot(protected: ProtectedManifest, slot_index: int) -> None:
    if not 0 <= slot_index < protected.params.slots:
        raise RepairError(f"slot {slot_index} out of range 0..{protected.params.slots - 1}")


def _check_slot_manifest(protected: ProtectedManifest, slot_index: int, manifest: Manifest) -> None:
    expected = protected.slot_manifests[slot_index]
    if manifest.cid() != expected:
        raise RepairError(f"the slot manifest given for slot {slot_index} is {manifest.cid()}, not {expected}")
    if manifest.block_count != protected.blocks_per_slot or manifest.info.block_size != BLOCK_SIZE:
        raise RepairError(
            f"slot manifest {expected} lists {manifest.block_count} blocks of {manifest.info.block_size} bytes; "
            f"the slot has {protected.blocks_per_slot} of {BLOCK_SIZE}"
        )


def _as_bytes(block: Buffer) -> bytes:
    return block if isinstance(block, bytes) else bytes(block)


def _views(blocks: Sequence[Buffer]) -> list[memoryview]:
    return [memoryview(block).cast("B") for block in blocks]


def _corrupt_sources(
    sources: Mapping[int, Sequence[Buffer]], source_digests: Mapping[int, bytes], chosen: tuple[int, ...]
) -> tuple[int, ...]:
    """The source slots with a block of the wrong size or digest."""
    bad = []
    for j in chosen:
        digests = source_digests[j]
        for i, block in enumerate(_views(sources[j])):
            if (
                len(block) != BLOCK_SIZE
                or hashlib.sha256(block).digest() != digests[i * DIGEST_SIZE : (i + 1) * DIGEST_SIZE]
            ):
                bad.append(j)
                break
    return tuple(bad)


def _first_difference(digests: bytes, expected: bytes) -> int:
    for i in range(0, len(digests), DIGEST_SIZE):
        if digests[i : i + DIGEST_SIZE] != expected[i : i + DIGEST_SIZE]:
            return i // DIGEST_SIZE
    return 0
