from __future__ import annotations

import hashlib
import json

import pytest

from codex_node.data.cid import CODEX_ROOT, block_cid
from codex_node.data.manifest import BLOCK_SIZE, Manifest, ManifestInfo, tree_cid, tree_root
from codex_node.errors import CorruptBlockError


def _digests(*blocks: bytes) -> bytes:
    return b"".join(hashlib.sha256(b).digest() for b in blocks)


def test_tree_root_of_nothing_is_sha256_of_nothing() -> None:
    assert tree_root(b"") == hashlib.sha256(b"").digest()


def test_tree_root_of_one_leaf_is_the_leaf() -> None:
    d = _digests(b"a")
    assert tree_root(d) == d


def test_tree_root_hashes_pairs_and_promotes_the_odd_node() -> None:
    a, b, c = (hashlib.sha256(x).digest() for x in (b"a", b"b", b"c"))
    ab = hashlib.sha256(a + b).digest()
    assert tree_root(a + b) == ab
    assert tree_root(a + b + c) == hashlib.sha256(ab + c).digest()


def test_tree_cid_uses_the_codex_root_codec() -> None:
    assert tree_cid(_digests(b"a")).codec == CODEX_ROOT


def test_encode_decode_round_trip() -> None:
    m = Manifest.build(_digests(b"x" * 10, b"y"), dataset_size=11, block_size=10, filename="f.txt", mimetype="a/b")
    assert Manifest.decode(m.encode()) == m
    assert m.cid() == Manifest.decode(m.encode()).cid()


def test_encoding_is_canonical_dag_json() -> None:
    m = Manifest.build(_digests(b"x"), dataset_size=1, block_size=BLOCK_SIZE)
    raw = m.encode()
    d = json.loads(raw)
    assert raw == json.dumps(d, sort_keys=True, separators=(",", ":")).encode()
    assert d["treeCid"] == {"/": m.info.tree_cid.text}
    assert set(d["blocks"]["/"]) == {"bytes"}
    assert "filename" not in d
    assert "mimetype" not in d
    assert d["protected"] is False


def test_block_cids_are_the_raw_cids_of_the_blocks_in_order() -> None:
    blocks = [b"one", b"two", b"three"]
    m = Manifest.build(_digests(*blocks), dataset_size=11, block_size=4)
    assert list(m.block_cids()) == [block_cid(b) for b in blocks]
    assert m.block_cid(2) == block_cid(b"three")
    with pytest.raises(IndexError):
        m.block_cid(3)


def test_block_count_must_match_dataset_size() -> None:
    with pytest.raises(CorruptBlockError, match="need"):
        Manifest.build(_digests(b"a"), dataset_size=BLOCK_SIZE + 1)


def test_empty_dataset_has_no_blocks() -> None:
    m = Manifest.build(b"", dataset_size=0)
    assert m.block_count == 0
    assert Manifest.decode(m.encode()) == m


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"{}", b'{"version": 2}', b'{"version":1,"blocks":{"/":{"bytes":"!!"}}}', b"[]"],
)
def test_garbage_is_reported_as_corrupt(raw: bytes) -> None:
    with pytest.raises(CorruptBlockError):
        Manifest.decode(raw)


def test_info_summary_round_trip() -> None:
    info = Manifest.build(_digests(b"a"), dataset_size=1, filename="n", mimetype="t/p").info
    assert ManifestInfo.decode(info.encode()) == info
    assert info.to_json() == {
        "treeCid": info.tree_cid.text,
        "datasetSize": 1,
        "blockSize": BLOCK_SIZE,
        "protected": False,
        "filename": "n",
        "mimetype": "t/p",
    }


def _valid() -> tuple[Manifest, dict[str, object]]:
    m = Manifest.build(_digests(b"x" * 10, b"y"), dataset_size=11, block_size=10, filename="[{[{a}]}]" * 4)
    return m, json.loads(m.encode())


def test_deep_nesting_is_refused_before_parsing() -> None:
    # 100,000 levels would overflow the C stack inside json.loads (the recursion limit is raised by py-evm)
    with pytest.raises(CorruptBlockError, match="nested deeper"):
        Manifest.decode(b"[" * 100_000 + b"]" * 100_000)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    m, _ = _valid()
    assert Manifest.decode(m.encode()) == m


@pytest.mark.parametrize(
    "change",
    [
        {"extra": 1},  # an unknown field
        {"datasetSize": "11"},  # a number as a string
        {"blockSize": 10.0},  # a number as a float
        {"protected": 1},  # a bool as a number
    ],
)
def test_fields_must_be_known_and_exactly_typed(change: dict[str, object]) -> None:
    _, d = _valid()
    d.update(change)
    with pytest.raises(CorruptBlockError):
        Manifest.decode(json.dumps(d, sort_keys=True, separators=(",", ":")).encode())


def test_a_non_canonical_encoding_is_refused() -> None:
    # same content, another byte string: it would have another CID for the same manifest
    _, d = _valid()
    with pytest.raises(CorruptBlockError, match="canonical"):
        Manifest.decode(json.dumps(d, sort_keys=True).encode())
    with pytest.raises(CorruptBlockError, match="object"):
        Manifest.decode(b"[1]")
