"""The node key file and the peer id derived from it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from codex_node.errors import ConfigError, PeerRecordError
from codex_node.peers.identity import (
    KEY_FILE,
    NodeKey,
    load_or_create_key,
    parse_peer_id,
    peer_id_bytes,
    peer_id_text,
    public_key_of,
    verify,
)


def test_the_key_is_made_once_with_mode_600_and_read_back_the_same(tmp_path: Path) -> None:
    first = load_or_create_key(tmp_path)
    path = tmp_path / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = load_or_create_key(tmp_path)
    assert second.peer_id == first.peer_id
    assert second.public_key == first.public_key


def test_a_key_file_others_can_read_is_refused_naming_the_data_dir(tmp_path: Path) -> None:
    load_or_create_key(tmp_path)
    os.chmod(tmp_path / KEY_FILE, 0o644)
    with pytest.raises(ConfigError) as e:
        load_or_create_key(tmp_path)
    assert e.value.flag == "--data-dir"
    assert "chmod 600" in str(e.value)


@pytest.mark.parametrize("content", ["", "zz" * 32, "00" * 31, "00" * 33])
def test_a_key_file_without_a_key_is_refused_without_showing_its_content(tmp_path: Path, content: str) -> None:
    path = tmp_path / KEY_FILE
    path.write_text(content)
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError) as e:
        load_or_create_key(tmp_path)
    assert "does not hold a node key" in str(e.value)
    assert (content not in str(e.value)) or not content


def test_the_peer_id_is_libp2ps_ed25519_form_and_carries_the_public_key() -> None:
    key = NodeKey.generate()
    assert key.peer_id.startswith("12D3KooW")
    assert len(key.peer_id) == 52
    raw = parse_peer_id(key.peer_id)
    assert raw == peer_id_bytes(key.public_key)
    assert public_key_of(raw) == key.public_key
    assert peer_id_text(raw) == key.peer_id


def test_a_known_libp2p_vector() -> None:
    # The all-zero Ed25519 public key under libp2p's rules (identity multihash of the protobuf key).
    assert peer_id_text(peer_id_bytes(bytes(32))) == "12D3KooW9pNAk8aiBuGVQtWRdbkLmo5qVL3e2h5UxbN2Nz9ttwiw"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not-base58-0OIl",
        "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",  # a sha2-256 (RSA-style) peer id: no key inside
        "1" + "12D3KooW9pNAk8aiBuGVQtWRdbkLmo5qVL3e2h5UxbN2Nz9ttwiw",  # a leading zero byte: not canonical
        "12D3KooW" + "x" * 200,
    ],
)
def test_what_is_not_an_ed25519_peer_id_is_refused(text: str) -> None:
    with pytest.raises(PeerRecordError):
        parse_peer_id(text)


def test_a_signature_verifies_only_for_its_key_and_message() -> None:
    key, other = NodeKey.generate(), NodeKey.generate()
    sig = key.sign(b"hello")
    assert verify(key.public_key, sig, b"hello")
    assert not verify(key.public_key, sig, b"hellp")
    assert not verify(other.public_key, sig, b"hello")
    assert not verify(key.public_key, sig[:-1], b"hello")


def test_the_key_never_shows_in_its_repr(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path)
    seed = (tmp_path / KEY_FILE).read_text().strip()
    assert seed not in repr(key)
    assert key.peer_id in repr(key)
