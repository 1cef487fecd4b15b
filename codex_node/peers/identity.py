"""The node key and the peer id derived from it.

The node key is an Ed25519 key kept in ``<data-dir>/peer.key`` (the 32-byte seed, hex, mode 600), made at the
first start. The peer id is libp2p's: the identity multihash of the protobuf-encoded Ed25519 public key,
base58btc (``12D3KooW…``), so the public key can be read back from the peer id itself and a record signed by
the key is bound to the id without a lookup.

This module reads and writes only the key file; it never logs key material.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from bases import base58btc
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from codex_node.errors import ConfigError, PeerRecordError

KEY_FILE = "peer.key"
KEY_SIZE = 32
SIGNATURE_SIZE = 64
# identity multihash (0x00), length 36, then the libp2p PublicKey protobuf: field 1 KeyType = 1 (Ed25519),
# field 2 Data = 32 bytes.
_PEER_ID_PREFIX = bytes([0x00, 0x24, 0x08, 0x01, 0x12, 0x20])
PEER_ID_BYTES = len(_PEER_ID_PREFIX) + KEY_SIZE
PEER_ID_MAX_TEXT = 64  # 38 bytes are 52 base58 characters; anything much longer is not a peer id


def peer_id_bytes(public_key: bytes) -> bytes:
    """The binary peer id (multihash) of a raw 32-byte Ed25519 public key."""
    if len(public_key) != KEY_SIZE:
        raise PeerRecordError(f"an Ed25519 public key has {KEY_SIZE} bytes, not {len(public_key)}")
    return _PEER_ID_PREFIX + public_key


def peer_id_text(raw: bytes) -> str:
    return str(base58btc.encode(raw))


def public_key_of(raw: bytes) -> bytes:
    """The Ed25519 public key inside a binary peer id; :class:`PeerRecordError` for any other shape."""
    if len(raw) != PEER_ID_BYTES or not raw.startswith(_PEER_ID_PREFIX):
        raise PeerRecordError("not an Ed25519 peer id (identity multihash of a protobuf Ed25519 public key)")
    return raw[len(_PEER_ID_PREFIX) :]


def parse_peer_id(text: str) -> bytes:
    """The binary form of a peer id's text; :class:`PeerRecordError` saying what is wrong otherwise."""
    if not text or len(text) > PEER_ID_MAX_TEXT:
        raise PeerRecordError(f"'{text[:PEER_ID_MAX_TEXT]}' is not a peer id (expected 12D3KooW…, 52 characters)")
    try:
        raw = bytes(base58btc.decode(text))
    except Exception:  # noqa: BLE001 - the base58 decoder raises several types; all mean "not base58"
        raise PeerRecordError(f"'{text}' is not a peer id: not base58btc") from None
    public_key_of(raw)
    if peer_id_text(raw) != text:  # leading zeros or another spelling: one text per peer id
        raise PeerRecordError(f"'{text}' is not a peer id in canonical form")
    return raw


def verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` is ``public_key``'s Ed25519 signature of ``message``."""
    if len(public_key) != KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class NodeKey:
    """The node's Ed25519 key pair and its peer id. ``repr`` never shows the private key."""

    _private: Ed25519PrivateKey
    public_key: bytes
    peer_id: str

    @classmethod
    def from_seed(cls, seed: bytes) -> NodeKey:
        private = Ed25519PrivateKey.from_private_bytes(seed)
        public = private.public_key().public_bytes_raw()
        return cls(private, public, peer_id_text(peer_id_bytes(public)))

    @classmethod
    def generate(cls) -> NodeKey:
        return cls.from_seed(Ed25519PrivateKey.generate().private_bytes_raw())

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    def __repr__(self) -> str:
        return f"NodeKey(peer_id={self.peer_id})"


def load_or_create_key(data_dir: Path) -> NodeKey:
    """The node key of ``data_dir``, made (mode 600) if the file does not exist yet.

    A key file that group or others may read, or that does not hold a key, is refused with a
    :class:`ConfigError` naming ``--data-dir`` (the message never contains key material).
    """
    path = data_dir / KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_key(path)
    key = NodeKey.generate()
    seed = key._private.private_bytes_raw()
    try:
        os.write(fd, seed.hex().encode("ascii") + b"\n")
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)  # a half-written key would be refused at the next start
        raise
    os.close(fd)
    return key


def _read_key(path: Path) -> NodeKey:
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError("--data-dir", f"{path} is not a regular file")
        if os.name == "posix" and st.st_mode & 0o077:
            raise ConfigError(
                "--data-dir",
                f"{path} (the node key) is accessible by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
                "run chmod 600 on it",
            )
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except OSError as e:
        raise ConfigError("--data-dir", f"cannot read the node key {path}: {e.strerror or e}") from None
    try:
        seed = bytes.fromhex(text)
    except ValueError:
        seed = b""
    if len(seed) != KEY_SIZE:
        raise ConfigError("--data-dir", f"{path} does not hold a node key (64 hex digits)")
    return NodeKey.from_seed(seed)
