"""The protected manifest: what an erasure-coded dataset is, stored as a block of its own (pure: no I/O).

A protected manifest records how a dataset was erasure-coded (``data/erasure.py``) and what a storage request
commits to: K, M, the original dataset manifest's CID, the original dataset size, the blocks per slot (the
slot size in 64 KiB blocks), every slot root and the dataset root (the roots of the storage proofs,
docs/storage-proofs.md), and the CID of every slot's **slot manifest** (docs/storage-requests.md): a dataset
manifest (``data/manifest.py``) over the slot's ``blocksPerSlot`` 64 KiB blocks, parity blocks included, so a
host finds slot ``s``'s blocks by CID in one hop and the protected manifest stays bounded by K + M ≤ 256, not by
the dataset. Its CID (codec ``codex-manifest``, see ``data/cid.py``) is the request's
``Content.cid``; the dataset root is ``Content.merkleRoot``.

Encoding: canonical DAG-JSON (keys sorted, no spaces, hashes as DAG-JSON bytes objects, the original manifest
as a link), like the dataset manifest::

    {"blockSize":65536,"blocksPerSlot":R,"datasetRoot":{"/":{"bytes":"…"}},"ecK":K,"ecM":M,
     "originalDatasetSize":N,"originalManifest":{"/":"bafy…"},"slotManifests":[{"/":"bagu…"},…],
     "slotRoots":[{"/":{"bytes":"…"}},…],"version":1}

A protected manifest arrives from the network (a host reads ``Content.cid`` from the chain and fetches it), so
:meth:`ProtectedManifest.parse` trusts nothing: the size is capped before parsing (:data:`MAX_ENCODED_SIZE`, far
above the largest valid manifest since K + M ≤ 256) and so is the number of JSON arrays and objects (so nesting
cannot recurse deeply), every field must have its exact type and range, no field
may be missing or extra, the blocks per slot must be what K and the size make, the dataset root must be the root
over the slot roots, and the bytes must be the canonical encoding of what they say (one encoding per manifest,
so one CID). Anything else is an :class:`InvalidProtectedManifestError`, never another exception.

It carries no list of block CIDs itself: slot ``s``'s blocks are listed by slot manifest ``s`` (and checked
against slot root ``s`` by whoever proves them). It never does I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from codex_node.data.cid import Cid, parse_cid, protected_manifest_cid
from codex_node.data.erasure import (
    MAX_SLOTS,
    BlockSource,
    EncodedRow,
    ErasureEncoder,
    ErasureLayout,
    ErasureParams,
    dataset_root,
    decode_dataset,
)
from codex_node.data.merkle import HASH_SIZE, Buffer
from codex_node.data.slots import BLOCK_SIZE
from codex_node.errors import ErasureParamsError, InvalidCidError, InvalidProtectedManifestError

PROTECTED_MANIFEST_VERSION = 1
MAX_DATASET_SIZE = (1 << 63) - 1
"""The largest original size accepted (the contract's sizes are uint64; this keeps every product in range)."""
MAX_ENCODED_SIZE = 64 * 1024
"""Bytes a protected manifest may have: 256 slot roots take about 15 KiB, 256 slot manifest links about 20 KiB,
everything else under 200 bytes."""
_MAX_CID_TEXT = 256
_MAX_OPENS = 3 * MAX_SLOTS + 8
"""Arrays and objects a protected manifest can hold: two per slot root, one per slot manifest link, six more, and
a margin."""
_HASH_B64 = len(base64.b64encode(bytes(HASH_SIZE)).rstrip(b"="))
_KEYS = frozenset(
    {
        "blockSize",
        "blocksPerSlot",
        "datasetRoot",
        "ecK",
        "ecM",
        "originalDatasetSize",
        "originalManifest",
        "slotManifests",
        "slotRoots",
        "version",
    }
)


@dataclass(frozen=True, slots=True)
class ProtectedManifest:
    """An erasure-coded dataset (see the module docstring). Construction checks that the fields add up."""

    params: ErasureParams
    original_manifest: Cid
    original_size: int
    slot_roots: tuple[bytes, ...]
    dataset_root: bytes
    slot_manifests: tuple[Cid, ...]
    """Slot manifest CIDs in slot order: dataset manifests over each slot's blocks."""

    def __post_init__(self) -> None:
        if not self.original_manifest.is_manifest:
            raise InvalidProtectedManifestError(f"{self.original_manifest} is not a dataset manifest CID")
        if not 1 <= self.original_size <= MAX_DATASET_SIZE:
            raise InvalidProtectedManifestError(f"original dataset size {self.original_size} out of range")
        if len(self.slot_roots) != self.params.slots:
            raise InvalidProtectedManifestError(
                f"{len(self.slot_roots)} slot roots for K + M = {self.params.slots} slots"
            )
        if any(len(root) != HASH_SIZE for root in self.slot_roots) or len(self.dataset_root) != HASH_SIZE:
            raise InvalidProtectedManifestError(f"roots are {HASH_SIZE}-byte hashes")
        if dataset_root(self.slot_roots) != self.dataset_root:
            raise InvalidProtectedManifestError("the dataset root is not the root of the slot roots")
        if len(self.slot_manifests) != self.params.slots:
            raise InvalidProtectedManifestError(
                f"{len(self.slot_manifests)} slot manifests for K + M = {self.params.slots} slots"
            )
        if not all(cid.is_manifest for cid in self.slot_manifests):
            raise InvalidProtectedManifestError("every slot manifest must be a dataset manifest CID")

    @classmethod
    def from_encoder(
        cls, encoder: ErasureEncoder, original_manifest: Cid, slot_manifests: Sequence[Cid]
    ) -> ProtectedManifest:
        """The manifest of a finished encoding of the dataset whose manifest is ``original_manifest``, its slots
        stored under ``slot_manifests``."""
        roots = encoder.slot_roots()
        return cls(
            encoder.layout.params,
            original_manifest,
            encoder.layout.dataset_size,
            roots,
            dataset_root(roots),
            tuple(slot_manifests),
        )

    @property
    def layout(self) -> ErasureLayout:
        return ErasureLayout(self.params, self.original_size)

    @property
    def blocks_per_slot(self) -> int:
        return self.layout.rows

    @property
    def slot_size(self) -> int:
        """``Ask.slotSize`` of a request for this dataset."""
        return self.layout.slot_size

    def encode(self) -> bytes:
        d = {
            "blockSize": BLOCK_SIZE,
            "blocksPerSlot": self.blocks_per_slot,
            "datasetRoot": _bytes_object(self.dataset_root),
            "ecK": self.params.k,
            "ecM": self.params.m,
            "originalDatasetSize": self.original_size,
            "originalManifest": {"/": self.original_manifest.text},
            "slotManifests": [{"/": cid.text} for cid in self.slot_manifests],
            "slotRoots": [_bytes_object(root) for root in self.slot_roots],
            "version": PROTECTED_MANIFEST_VERSION,
        }
        return json.dumps(d, sort_keys=True, separators=(",", ":")).encode()

    def cid(self) -> Cid:
        return protected_manifest_cid(self.encode())

    @classmethod
    def parse(cls, raw: Buffer) -> ProtectedManifest:
        """The protected manifest ``raw`` encodes; :class:`InvalidProtectedManifestError` if it is not one."""
        size = memoryview(raw).nbytes
        if size > MAX_ENCODED_SIZE:
            raise InvalidProtectedManifestError(f"{size} bytes: a protected manifest has at most {MAX_ENCODED_SIZE}")
        data = bytes(raw)
        # json's C parser recurses once per nesting level, as deep as the process-wide recursion limit allows
        # (the Ethereum stack raises it to 100,000: utils/recursionlimit.py), so nesting is bounded before
        # parsing. Counting every bracket, in strings too, over-counts and can never be fooled.
        opens = data.count(b"[") + data.count(b"{")
        if opens > _MAX_OPENS:
            raise InvalidProtectedManifestError(f"{opens} JSON arrays and objects: far more than a protected manifest")
        try:
            d = json.loads(data)
        except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
            raise InvalidProtectedManifestError(f"not JSON: {type(e).__name__}") from e
        manifest = _from_json(d)
        if manifest.encode() != data:
            raise InvalidProtectedManifestError("not in canonical form (sorted keys, no spaces, unpadded base64)")
        return manifest

    @classmethod
    def from_block(cls, cid: Cid, raw: Buffer) -> ProtectedManifest:
        """The protected manifest stored as block ``cid`` (checked against the CID first)."""
        if not cid.is_protected_manifest:
            raise InvalidProtectedManifestError(f"{cid} is not a protected manifest CID")
        if memoryview(raw).nbytes > MAX_ENCODED_SIZE or not cid.matches(raw):
            raise InvalidProtectedManifestError(f"the block does not hash to {cid}")
        return cls.parse(raw)

    # --- the dataset it describes ---------------------------------------------------------------------------

    def encoder(self) -> ErasureEncoder:
        """A fresh encoder with this manifest's parameters (re-encoding, e.g. to rebuild a lost slot)."""
        return ErasureEncoder(self.params, self.original_size)

    def restore(self, slots: Mapping[int, Iterable[Buffer]], *, verify: bool = True) -> Iterator[bytes]:
        """The original bytes from any K slots (see :func:`~codex_node.data.erasure.decode_dataset`); with
        ``verify``, each slot read is checked against its slot root (the error comes after the last piece)."""
        return decode_dataset(self.layout, slots, slot_roots=self.slot_roots if verify else None)


class Protector:
    """Erasure-codes the dataset ``original_manifest`` and builds its protected manifest on the way.

    ::

        protector = Protector(ErasureParams.from_request(nodes, tolerance), manifest_cid, dataset_size)
        for row in protector.rows(blocks):   # blocks: the dataset's blocks, or a function of the block index
            store(row)                       # row.blocks[s] is the next block of slot s
        protected = protector.manifest(slot_manifests)  # once every row has been pulled and the slots stored
    """

    def __init__(self, params: ErasureParams, original_manifest: Cid, dataset_size: int) -> None:
        if not original_manifest.is_manifest:
            raise InvalidProtectedManifestError(f"{original_manifest} is not a dataset manifest CID")
        self.original_manifest = original_manifest
        self.encoder = ErasureEncoder(params, dataset_size)

    @property
    def layout(self) -> ErasureLayout:
        return self.encoder.layout

    def rows(self, source: BlockSource) -> Iterator[EncodedRow]:
        return self.encoder.rows(source)

    def manifest(self, slot_manifests: Sequence[Cid]) -> ProtectedManifest:
        return ProtectedManifest.from_encoder(self.encoder, self.original_manifest, slot_manifests)


def _bytes_object(value: bytes) -> dict[str, dict[str, str]]:
    return {"/": {"bytes": base64.b64encode(value).decode("ascii").rstrip("=")}}


def _int(d: dict[str, Any], key: str, low: int, high: int) -> int:
    value = d[key]
    if type(value) is not int:  # bool is an int subclass; floats and strings are refused too
        raise InvalidProtectedManifestError(f"{key} must be an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise InvalidProtectedManifestError(f"{key} = {value} out of range {low}..{high}")
    return value


def _hash(value: Any, what: str) -> bytes:
    if not (isinstance(value, dict) and len(value) == 1 and isinstance(value.get("/"), dict)):
        raise InvalidProtectedManifestError(f"{what} must be a DAG-JSON bytes object")
    inner = value["/"]
    text = inner.get("bytes")
    if len(inner) != 1 or not isinstance(text, str) or len(text) != _HASH_B64:
        raise InvalidProtectedManifestError(f"{what} must be a {HASH_SIZE}-byte hash as unpadded base64")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as e:
        raise InvalidProtectedManifestError(f"{what} is not base64") from e


def _link(value: Any, what: str) -> Cid:
    if not (isinstance(value, dict) and len(value) == 1 and isinstance(value.get("/"), str)):
        raise InvalidProtectedManifestError(f"{what} must be a DAG-JSON link")
    text = value["/"]
    if len(text) > _MAX_CID_TEXT:
        raise InvalidProtectedManifestError(f"{what} is too long to be a CID")
    try:
        return parse_cid(text)
    except InvalidCidError as e:
        raise InvalidProtectedManifestError(f"{what}: {e}") from e


def _from_json(d: Any) -> ProtectedManifest:
    if not isinstance(d, dict):
        raise InvalidProtectedManifestError(f"a protected manifest is a JSON object, not {type(d).__name__}")
    keys = set(d)
    if keys != _KEYS:
        missing, extra = sorted(_KEYS - keys), sorted(keys - _KEYS)
        raise InvalidProtectedManifestError(f"fields missing: {missing}, unknown: {extra[:5]}")
    version = _int(d, "version", 0, 1 << 32)
    if version != PROTECTED_MANIFEST_VERSION:
        raise InvalidProtectedManifestError(f"unsupported protected manifest version {version}")
    block_size = _int(d, "blockSize", 1, 1 << 32)
    if block_size != BLOCK_SIZE:
        raise InvalidProtectedManifestError(f"block size {block_size}, this node uses {BLOCK_SIZE}")
    try:
        params = ErasureParams(_int(d, "ecK", 0, MAX_SLOTS), _int(d, "ecM", 0, MAX_SLOTS))
    except ErasureParamsError as e:
        raise InvalidProtectedManifestError(f"erasure parameters: {e}") from e
    size = _int(d, "originalDatasetSize", 1, MAX_DATASET_SIZE)
    rows = _int(d, "blocksPerSlot", 1, MAX_DATASET_SIZE)
    expected_rows = ErasureLayout(params, size).rows
    if rows != expected_rows:
        raise InvalidProtectedManifestError(
            f"blocksPerSlot {rows}: K = {params.k} and {size} bytes make {expected_rows}"
        )
    roots = d["slotRoots"]
    if not isinstance(roots, list) or len(roots) != params.slots:
        raise InvalidProtectedManifestError(f"slotRoots must list K + M = {params.slots} hashes")
    slot_roots = tuple(_hash(root, f"slotRoots[{i}]") for i, root in enumerate(roots))
    links = d["slotManifests"]
    if not isinstance(links, list) or len(links) != params.slots:
        raise InvalidProtectedManifestError(f"slotManifests must list K + M = {params.slots} CIDs")
    slot_manifests = tuple(_link(link, f"slotManifests[{i}]") for i, link in enumerate(links))
    return ProtectedManifest(
        params=params,
        original_manifest=_link(d["originalManifest"], "originalManifest"),
        original_size=size,
        slot_roots=slot_roots,
        dataset_root=_hash(d["datasetRoot"], "datasetRoot"),
        slot_manifests=slot_manifests,
    )
