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
through multiformats, which accepts every base and CIDv0, except for the canonical text of the CIDs this node
makes, which is decoded here. Both directions use RFC 4648 base32 — the very alphabet multibase ``base32`` is
defined by — done in a few C-level steps: multiformats' encoder spends about 0.5 ms per CID (run-time type
validation), more than hashing the 64 KiB block the CID names, and the standard library's ``base64`` base32 is
pure Python. The tests check ours against both.

This module must never touch storage: it only names things.
"""

from __future__ import annotations

import hashlib
import re
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
# back from LevelDB during maintenance, every request path parameter, and the CIDs of every peer's batch request).
_FAST = {_prefix(codec, SHA2_256, DIGEST_SIZE): codec for codec in (RAW, DAG_JSON, CODEX_MANIFEST, CODEX_ROOT)}
_B32_TEXT = re.compile("[a-z2-7]+")
_AS_BASE32_DIGITS = str.maketrans("abcdefghijklmnopqrstuvwxyz234567", "0123456789abcdefghijklmnopqrstuv")
"""The RFC 4648 alphabet spelled as the digits ``int(…, 32)`` reads: decoding is then one C call."""


def _b32_decode(body: str) -> bytes | None:
    """The bytes whose canonical unpadded lower-case base32 is ``body`` (already checked to be of that alphabet);
    ``None`` when no byte string encodes to it (a length base32 never has, or stray padding bits)."""
    nbytes = len(body) * 5 // 8
    if -(-nbytes * 8 // 5) != len(body):
        return None
    if not body:
        return b""
    pad = len(body) * 5 - nbytes * 8
    n = int(body.translate(_AS_BASE32_DIGITS), 32)
    if n & ((1 << pad) - 1):
        return None
    return (n >> pad).to_bytes(nbytes, "big")


def _fast_parse(text: str) -> Cid | None:
    if len(text) < 2 or text[0] != "b" or _B32_TEXT.fullmatch(text, 1) is None:
        return None
    raw = _b32_decode(text[1:])
    if raw is None:  # non-canonical spellings are judged by multiformats
        return None
    for prefix, codec in _FAST.items():
        if raw.startswith(prefix) and len(raw) == len(prefix) + DIGEST_SIZE:
            # Canonical: the only text these bytes encode to is ``text`` itself.
            return Cid(codec, SHA2_256, raw[len(prefix) :], text)
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
