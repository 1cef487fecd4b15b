"""The signed peer record ("spr"): who a node is (its peer id), where its API is reached, and how fresh that is.

Binary layout (version 1; integers big-endian), then ``spr:`` + base64url without padding as text::

    magic    4 bytes   b"cxpr"
    version  1 byte    1
    peer id  38 bytes  identity multihash of the protobuf Ed25519 public key (``identity.py``)
    seq      8 bytes   grows with every record the node makes (across restarts too)
    count    1 byte    number of URLs, 1..8
    urls     count ×   (2-byte length 1..256, then the URL in ASCII): http(s)://host[:port]/path, no credentials,
                       query or fragment, no duplicates
    sig      64 bytes  Ed25519 signature, by the key inside the peer id, of DOMAIN + every byte before it

The decoder trusts nothing: the text is capped before it is decoded, every length is checked against what is
left, trailing bytes are refused, and the signature must verify against the key the peer id carries (so the peer
id and key always match). ``docs/network.md`` describes the format for other implementations.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass
from urllib.parse import urlsplit

from codex_node.errors import PeerRecordError
from codex_node.peers.identity import (
    PEER_ID_BYTES,
    SIGNATURE_SIZE,
    NodeKey,
    parse_peer_id,
    peer_id_text,
    public_key_of,
    verify,
)

PREFIX = "spr:"
MAGIC = b"cxpr"
VERSION = 1
DOMAIN = b"codex-node/peer-record/v1\n"
MAX_URLS = 8
MAX_URL_LENGTH = 256
MAX_SEQ = 2**63 - 1
MAX_BINARY = len(MAGIC) + 1 + PEER_ID_BYTES + 8 + 1 + MAX_URLS * (2 + MAX_URL_LENGTH) + SIGNATURE_SIZE
MAX_TEXT = len(PREFIX) + (MAX_BINARY * 4 + 2) // 3
_HEAD = struct.Struct(">4sB38sQB")


@dataclass(frozen=True, slots=True)
class PeerRecord:
    """A verified record. ``text`` is its ``spr:`` form, exactly as signed (pass it on unchanged)."""

    peer_id: str
    urls: tuple[str, ...]
    seq: int
    text: str


def check_url(url: str) -> str:
    """``url`` if it may stand in a record, else :class:`PeerRecordError` saying why."""
    if not 0 < len(url) <= MAX_URL_LENGTH or not url.isascii() or not url.isprintable() or " " in url:
        raise PeerRecordError(f"a peer URL has 1 to {MAX_URL_LENGTH} printable ASCII characters without spaces")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PeerRecordError(f"'{url}' is not an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise PeerRecordError(f"'{url}' must have no credentials, query or fragment")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError:
        raise PeerRecordError(f"'{url}' has an invalid port") from None
    if url.endswith("/"):
        raise PeerRecordError(f"'{url}' must not end with '/'")
    return url


def make_record(key: NodeKey, urls: tuple[str, ...], seq: int) -> PeerRecord:
    """The record of ``key``'s node, reachable at ``urls``, signed."""
    if not 0 < len(urls) <= MAX_URLS:
        raise PeerRecordError(f"a record holds 1 to {MAX_URLS} URLs, not {len(urls)}")
    if len(set(urls)) != len(urls):
        raise PeerRecordError("a record's URLs must differ")
    if not 0 <= seq <= MAX_SEQ:
        raise PeerRecordError(f"sequence number {seq} is out of range")
    body = bytearray(_HEAD.pack(MAGIC, VERSION, parse_peer_id(key.peer_id), seq, len(urls)))
    for url in urls:
        raw = check_url(url).encode("ascii")
        body += struct.pack(">H", len(raw)) + raw
    signed = bytes(body) + key.sign(DOMAIN + bytes(body))
    text = PREFIX + base64.urlsafe_b64encode(signed).decode("ascii").rstrip("=")
    return PeerRecord(peer_id=key.peer_id, urls=urls, seq=seq, text=text)


def decode_record(text: str) -> PeerRecord:
    """The verified record of an ``spr:`` text from anywhere; :class:`PeerRecordError` for anything else."""
    if not isinstance(text, str):
        raise PeerRecordError("a peer record is a string")
    if len(text) > MAX_TEXT:
        raise PeerRecordError(f"a peer record has at most {MAX_TEXT} characters")
    if not text.startswith(PREFIX):
        raise PeerRecordError(f"a peer record starts with '{PREFIX}'")
    encoded = text[len(PREFIX) :]
    if not encoded.isascii() or "=" in encoded:
        raise PeerRecordError("a peer record is unpadded base64url after 'spr:'")
    try:
        raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise PeerRecordError("a peer record is unpadded base64url after 'spr:'") from None
    record = _parse(raw)
    if record.text != text:  # one text per record: no other base64 spelling of the same bytes
        raise PeerRecordError("a peer record is not in canonical form")
    return record


def _parse(raw: bytes) -> PeerRecord:
    if len(raw) < _HEAD.size + SIGNATURE_SIZE:
        raise PeerRecordError("a peer record is too short")
    magic, version, pid, seq, count = _HEAD.unpack_from(raw)
    if magic != MAGIC:
        raise PeerRecordError("not a peer record (wrong magic)")
    if version != VERSION:
        raise PeerRecordError(f"peer record version {version} is not supported (this node reads {VERSION})")
    public_key = public_key_of(pid)
    if seq > MAX_SEQ:
        raise PeerRecordError("a peer record's sequence number is out of range")
    if not 0 < count <= MAX_URLS:
        raise PeerRecordError(f"a peer record holds 1 to {MAX_URLS} URLs")
    body_end = len(raw) - SIGNATURE_SIZE
    offset = _HEAD.size
    urls: list[str] = []
    for _ in range(count):
        if offset + 2 > body_end:
            raise PeerRecordError("a peer record's URL list is cut short")
        (length,) = struct.unpack_from(">H", raw, offset)
        offset += 2
        if not 0 < length <= MAX_URL_LENGTH or offset + length > body_end:
            raise PeerRecordError("a peer record's URL has a bad length")
        try:
            url = raw[offset : offset + length].decode("ascii")
        except UnicodeDecodeError:
            raise PeerRecordError("a peer record's URL is not ASCII") from None
        urls.append(check_url(url))
        offset += length
    if offset != body_end:
        raise PeerRecordError("a peer record has bytes after its URLs")
    if len(set(urls)) != len(urls):
        raise PeerRecordError("a peer record repeats a URL")
    if not verify(public_key, raw[body_end:], DOMAIN + raw[:body_end]):
        raise PeerRecordError("a peer record's signature does not verify")
    text = PREFIX + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")
    return PeerRecord(peer_id=peer_id_text(pid), urls=tuple(urls), seq=seq, text=text)
