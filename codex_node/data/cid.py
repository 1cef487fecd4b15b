"""Content identifiers: CIDv1 over sha2-256 for data blocks, manifests, protected manifests and tree roots.

Codecs (all with a sha2-256 or keccak-256 multihash):

* ``raw`` (0x55): a data block; the digest is sha2-256 of the block's bytes.
* ``dag-json`` (0x0129): a manifest. The multiformats table has no Codex manifest codec, and our manifest is
  canonical DAG-JSON (see ``data/manifest.py``), so the generic codec describes it honestly.
* ``codex-manifest`` (0xcd01): a **protected** manifest (``data/protected.py``), the erasure-coded form of a
  dataset that a storage request's ``Content.cid`` names; digest: sha2-256 of its bytes. Its bytes are canonical
  DAG-JSON too, but it needs a codec of its own: a host reads ``Content.cid`` from the chain and must tell a
  protected manifest from a dataset manifest by the CID alone, and the repo treats every ``dag-json`` block as a
  dataset manifest (references, listing, deletion). nim-codex uses this codec for its manifests, protected ones
  included; ours are not its protobuf encoding, so a nim-codex node could not read them (it cannot reach ours
  anyway: the networks differ).
* ``codex-root`` (0xcd03): the root of a dataset's Merkle tree, as nim-codex names it. The digest is the tree
  root, not a hash of any stored bytes, so such a CID never names a block in the repo.

The installed multiformats table predates the Codex codecs, so this module registers ``codex-manifest`` and
``codex-root`` with it (unless already known) so that every spelling of such a CID parses.

The text form is always CIDv1, multibase ``base32`` (lower case, no padding, prefix ``b``). Parsing goes
through multiformats, which accepts every base and CIDv0. Encoding uses the standard library's RFC 4648
base32 — the very alphabet multibase ``base32`` is defined by — because multiformats' encoder spends about
0.5 ms per CID (run-time type validation), more than hashing the 64 KiB block the CID names. The tests check
that both give the same text.

This module must never touch storage: it only names things.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from functools import lru_cache

from multiformats import CID, multicodec, varint

from codex_node.errors import InvalidCidError

RAW = 0x55
DAG_JSON = 0x0129
CODEX_MANIFEST = 0xCD01
CODEX_ROOT = 0xCD03
SHA2_256 = 0x12
KECCAK_256 = 0x1B

for _name, _code, _what in (
    ("codex-manifest", CODEX_MANIFEST, "Codex manifest"),
    ("codex-root", CODEX_ROOT, "Codex dataset tree root"),
):
    if not multicodec.exists(code=_code) and not multicodec.exists(_name):
        multicodec.register(multicodec.Multicodec(_name, "ipld", _code, "draft", _what))

CIDV1 = 1
DIGEST_SIZE = 32
_MAX_SHOWN = 80  # long garbage is cut in error messages so they stay one readable line


@dataclass(frozen=True, slots=True)
class Cid:
    """A CIDv1. ``text`` is its canonical base32 form, used as LevelDB key part and file name."""

    codec: int
    hash_code: int
    digest: bytes
    text: str

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Cid({self.text})"

    @property
    def is_block(self) -> bool:
        """A raw data block stored under the sha2-256 of its bytes."""
        return self.codec == RAW and self.hash_code == SHA2_256

    @property
    def is_manifest(self) -> bool:
        return self.codec == DAG_JSON and self.hash_code == SHA2_256

    @property
    def is_protected_manifest(self) -> bool:
        """An erasure-coded dataset's protected manifest (``data/protected.py``)."""
        return self.codec == CODEX_MANIFEST and self.hash_code == SHA2_256

    @property
    def is_storable(self) -> bool:
        """Whether a block with this CID can exist in the repo (its digest is sha2-256 of stored bytes)."""
        return self.hash_code == SHA2_256 and self.codec in (RAW, DAG_JSON, CODEX_MANIFEST)

    def matches(self, data: bytes | bytearray | memoryview) -> bool:
        """Whether ``data`` hashes to this CID's digest (only for sha2-256 CIDs)."""
        return self.hash_code == SHA2_256 and hashlib.sha256(data).digest() == self.digest


@lru_cache(maxsize=16)
def _prefix(codec: int, hash_code: int, size: int) -> bytes:
    encoded: bytes = varint.encode(CIDV1) + varint.encode(codec) + varint.encode(hash_code) + varint.encode(size)
    return encoded


_B32_PAIRS = [a + b for a in "abcdefghijklmnopqrstuvwxyz234567" for b in "abcdefghijklmnopqrstuvwxyz234567"]
"""Two base32 characters per 10-bit group: the index is the group's value."""


def _text(raw: bytes) -> str:
    """Multibase ``b``: lower-case base32 without padding (RFC 4648), 10 bits at a time (``base64.b32encode`` is
    pure Python on 3.11, and a dataset's download makes a CID per block)."""
    bits = len(raw) * 8
    chars = -(-bits // 5)
    groups = -(-chars // 2)
    n = int.from_bytes(raw, "big") << (groups * 10 - bits)
    pairs = _B32_PAIRS
    return "b" + "".join([pairs[(n >> shift) & 1023] for shift in range(groups * 10 - 10, -1, -10)])[:chars]


def make_cid(codec: int, hash_code: int, digest: bytes) -> Cid:
    """The CIDv1 with this codec and multihash."""
    return Cid(codec, hash_code, digest, _text(_prefix(codec, hash_code, len(digest)) + digest))


def block_cid(data: bytes | bytearray | memoryview) -> Cid:
    """The CID of a raw data block."""
    return make_cid(RAW, SHA2_256, hashlib.sha256(data).digest())


def block_cid_from_digest(digest: bytes) -> Cid:
    """The CID of a raw data block whose sha2-256 digest is already known."""
    return make_cid(RAW, SHA2_256, digest)


def manifest_cid(encoded: bytes) -> Cid:
    """The CID of an encoded manifest."""
    return make_cid(DAG_JSON, SHA2_256, hashlib.sha256(encoded).digest())


def protected_manifest_cid(encoded: bytes) -> Cid:
    """The CID of an encoded protected manifest."""
    return make_cid(CODEX_MANIFEST, SHA2_256, hashlib.sha256(encoded).digest())


# Prefixes of the CIDs this node writes; ``parse_cid`` decodes them without multiformats (hot path: keys read
# back from LevelDB during maintenance and every request path parameter).
_FAST = {_prefix(codec, SHA2_256, DIGEST_SIZE): codec for codec in (RAW, DAG_JSON, CODEX_MANIFEST, CODEX_ROOT)}


def _fast_parse(text: str) -> Cid | None:
    if not text.startswith("b") or not text[1:].islower():
        return None
    body = text[1:].upper()
    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8))
    except binascii.Error:
        return None
    for prefix, codec in _FAST.items():
        if raw.startswith(prefix) and len(raw) == len(prefix) + DIGEST_SIZE:
            cid = make_cid(codec, SHA2_256, raw[len(prefix) :])
            # Non-canonical spellings (stray padding bits) fall through to multiformats to be judged there.
            return cid if cid.text == text else None
    return None


def parse_cid(text: str) -> Cid:
    """Parse a CID in any multibase (or CIDv0); raise :class:`InvalidCidError` with a one-line reason."""
    text = text.strip()
    fast = _fast_parse(text)
    if fast is not None:
        return fast
    shown = text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "…"
    if not text:
        raise InvalidCidError("invalid CID '': empty")
    try:
        cid = CID.decode(text)
        codec = int(cid.codec.code)
        hash_code = int(cid.hashfun.code)
        digest = bytes(cid.raw_digest)
    except (ValueError, KeyError, TypeError, IndexError, ImportError) as e:
        # ImportError: multiformats loads some hash functions lazily (keccak needs pycryptodome, not installed):
        # a CID naming one is not one of ours either. KeyError's str() wraps its message in quotes.
        message = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        reason = message.splitlines()[0] if message else type(e).__name__
        raise InvalidCidError(f"invalid CID {shown!r}: {reason}") from e
    return make_cid(codec, hash_code, digest)
