"""The dataset manifest: what a dataset is made of, stored as a block of its own (pure: no I/O).

A manifest lists the sha2-256 digests of the dataset's data blocks in order (so anyone holding it can fetch and
verify every block by CID), the root of a Merkle tree over those digests, the dataset size, the block size, and
the optional filename and mimetype the uploader gave. Every block is ``block_size`` bytes except the last, which
holds the rest of the dataset unpadded, so the blocks concatenated are exactly the original bytes.

Encoding: canonical DAG-JSON (keys sorted, no spaces; the digest list as a DAG-JSON bytes object, the tree root
as a link), which is why manifests use the ``dag-json`` codec (see ``data/cid.py``). The digest list costs
32 bytes per 64 KiB block (0.05 %).

Tree: binary, sha2-256 over the concatenated children, leaves are the block digests, a node without a sibling
moves up unchanged; the empty dataset's root is sha2-256 of nothing. It is only a commitment shown as
``treeCid``; storage proofs use the slot trees of ``data/merkle.py``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from codex_node.data.cid import (
    CODEX_ROOT,
    DIGEST_SIZE,
    SHA2_256,
    Cid,
    block_cid_from_digest,
    make_cid,
    manifest_cid,
    parse_cid,
)
from codex_node.errors import CorruptBlockError, InvalidCidError
from codex_node.utils.jsondepth import nesting_exceeds

BLOCK_SIZE = 64 * 1024
MANIFEST_VERSION = 1


def tree_root(digests: bytes) -> bytes:
    """Root of the binary sha2-256 tree over the concatenated 32-byte ``digests``."""
    level = [digests[i : i + DIGEST_SIZE] for i in range(0, len(digests), DIGEST_SIZE)]
    if not level:
        return hashlib.sha256(b"").digest()
    while len(level) > 1:
        nxt = [hashlib.sha256(level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def tree_cid(digests: bytes) -> Cid:
    return make_cid(CODEX_ROOT, SHA2_256, tree_root(digests))


@dataclass(frozen=True, slots=True)
class ManifestInfo:
    """A manifest without its block list: what ``GET /data`` shows, kept in LevelDB for listing."""

    tree_cid: Cid
    dataset_size: int
    block_size: int
    filename: str | None = None
    mimetype: str | None = None
    protected: bool = False

    @property
    def block_count(self) -> int:
        return -(-self.dataset_size // self.block_size)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "treeCid": self.tree_cid.text,
            "datasetSize": self.dataset_size,
            "blockSize": self.block_size,
            "protected": self.protected,
        }
        if self.filename is not None:
            d["filename"] = self.filename
        if self.mimetype is not None:
            d["mimetype"] = self.mimetype
        return d

    def encode(self) -> bytes:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> ManifestInfo:
        try:
            return _info_from(json.loads(raw), tree=lambda v: parse_cid(str(v)))
        except (ValueError, KeyError, TypeError, AttributeError, InvalidCidError) as e:
            raise CorruptBlockError(f"corrupt manifest summary: {e}") from e


@dataclass(frozen=True, slots=True)
class Manifest:
    """A dataset: its info plus the digests of its data blocks (concatenated, 32 bytes each, in order)."""

    info: ManifestInfo
    block_digests: bytes

    @classmethod
    def build(
        cls,
        block_digests: bytes,
        *,
        dataset_size: int,
        block_size: int = BLOCK_SIZE,
        filename: str | None = None,
        mimetype: str | None = None,
    ) -> Manifest:
        info = ManifestInfo(tree_cid(block_digests), dataset_size, block_size, filename, mimetype)
        manifest = cls(info, bytes(block_digests))
        manifest.check()
        return manifest

    @property
    def block_count(self) -> int:
        return len(self.block_digests) // DIGEST_SIZE

    def block_cid(self, index: int) -> Cid:
        if not 0 <= index < self.block_count:
            raise IndexError(f"block index {index} out of range 0..{self.block_count - 1}")
        return block_cid_from_digest(self.block_digests[index * DIGEST_SIZE : (index + 1) * DIGEST_SIZE])

    def block_cids(self, start: int = 0) -> Iterator[Cid]:
        for i in range(start, self.block_count):
            yield self.block_cid(i)

    def check(self) -> None:
        """Raise :class:`CorruptBlockError` unless sizes, block count and digest list agree."""
        info = self.info
        if info.block_size <= 0 or info.dataset_size < 0:
            raise CorruptBlockError(f"manifest has block size {info.block_size}, dataset size {info.dataset_size}")
        if len(self.block_digests) % DIGEST_SIZE:
            raise CorruptBlockError("manifest block list is not a whole number of digests")
        if self.block_count != info.block_count:
            raise CorruptBlockError(
                f"manifest lists {self.block_count} blocks but {info.dataset_size} bytes need {info.block_count}"
            )

    def encode(self) -> bytes:
        d = self.info.to_json()
        d["treeCid"] = {"/": self.info.tree_cid.text}
        d["blocks"] = {"/": {"bytes": base64.b64encode(self.block_digests).decode().rstrip("=")}}
        d["version"] = MANIFEST_VERSION
        return json.dumps(d, sort_keys=True, separators=(",", ":")).encode()

    def cid(self) -> Cid:
        return manifest_cid(self.encode())

    @classmethod
    def decode(cls, raw: bytes) -> Manifest:
        """The manifest ``raw`` encodes; :class:`CorruptBlockError` for anything else.

        Manifests arrive from peers (``/data/{cid}/network``, a sale's slot manifest): the CID only proves someone
        made these bytes, not that they are sane. json's C parser recurses once per nesting level, as deep as the
        process-wide recursion limit allows, so nesting is bounded before parsing (a manifest nests 3 deep); the
        fields must be the known ones and the bytes the canonical encoding (one encoding per manifest, so one CID).
        """
        if nesting_exceeds(bytes(raw), _MAX_DEPTH):
            raise CorruptBlockError(f"corrupt manifest: JSON nested deeper than {_MAX_DEPTH} (a manifest nests 3)")
        try:
            d = json.loads(raw)
        except ValueError as e:  # UnicodeDecodeError is a ValueError
            raise CorruptBlockError(f"corrupt manifest: not JSON ({type(e).__name__})") from e
        if not isinstance(d, dict):
            raise CorruptBlockError(f"corrupt manifest: a JSON {type(d).__name__}, not an object")
        if unknown := set(d) - _MANIFEST_FIELDS:
            raise CorruptBlockError(f"corrupt manifest: unknown fields {sorted(unknown)}")
        try:
            version = d.get("version")
            b64 = d["blocks"]["/"]["bytes"]
            digests = base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True)
            info = _info_from(d, tree=lambda v: parse_cid(str(v["/"])))
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error, InvalidCidError) as e:
            raise CorruptBlockError(f"corrupt manifest: {e}") from e
        if version != MANIFEST_VERSION:
            raise CorruptBlockError(f"unsupported manifest version {version!r}")
        manifest = cls(info, digests)
        manifest.check()
        if manifest.encode() != bytes(raw):
            raise CorruptBlockError("corrupt manifest: not in canonical form (sorted keys, no spaces, exact types)")
        return manifest


_MAX_DEPTH = 8
"""Levels of JSON nesting a manifest may have before it is parsed (``{"blocks":{"/":{"bytes":…}}}`` is 3)."""
_MANIFEST_FIELDS = frozenset(
    {"blockSize", "blocks", "datasetSize", "filename", "mimetype", "protected", "treeCid", "version"}
)


def _info_from(d: dict[str, Any], *, tree: Callable[[Any], Cid]) -> ManifestInfo:
    filename = d.get("filename")
    mimetype = d.get("mimetype")
    return ManifestInfo(
        tree_cid=tree(d["treeCid"]),
        dataset_size=int(d["datasetSize"]),
        block_size=int(d["blockSize"]),
        filename=None if filename is None else str(filename),
        mimetype=None if mimetype is None else str(mimetype),
        protected=bool(d.get("protected", False)),
    )
