from __future__ import annotations

import base64
import hashlib
import json
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codex_node.data.cid import Cid, block_cid, manifest_cid, protected_manifest_cid
from codex_node.data.erasure import ErasureParams, dataset_root
from codex_node.data.manifest import Manifest
from codex_node.data.protected import MAX_ENCODED_SIZE, ProtectedManifest, Protector
from codex_node.data.slots import BLOCK_SIZE, cid_bytes, cid_from_bytes, content_cid_text
from codex_node.errors import InvalidProtectedManifestError

B = BLOCK_SIZE


def _protect(size: int = 5 * B + 7, k: int = 3, m: int = 2) -> tuple[bytes, ProtectedManifest, list[list[bytes]]]:
    data = random.Random(size).randbytes(size)
    blocks = [data[i : i + B] for i in range(0, size, B)]
    original = Manifest.build(b"".join(hashlib.sha256(b).digest() for b in blocks), dataset_size=size)
    protector = Protector(ErasureParams(k, m), original.cid(), size)
    slots: list[list[bytes]] = [[] for _ in range(k + m)]
    for row in protector.rows(blocks):
        for s, block in enumerate(row.blocks):
            slots[s].append(block)
    return data, protector.manifest(_slot_manifests(k + m)), slots


def _slot_manifests(n: int) -> tuple[Cid, ...]:
    return tuple(manifest_cid(b"slot %d" % s) for s in range(n))


DATA, PM, SLOTS = _protect()
RAW = PM.encode()


def test_the_manifest_records_the_encoding() -> None:
    assert (PM.params.k, PM.params.m) == (3, 2)
    assert PM.original_size == 5 * B + 7
    assert PM.blocks_per_slot == 2
    assert PM.slot_size == 2 * B
    assert PM.original_manifest.is_manifest
    assert len(PM.slot_roots) == 5
    assert PM.dataset_root == dataset_root(PM.slot_roots)


def test_encoding_round_trips_and_is_canonical_dag_json() -> None:
    assert ProtectedManifest.parse(RAW) == PM
    d = json.loads(RAW)
    assert json.dumps(d, sort_keys=True, separators=(",", ":")).encode() == RAW
    assert d["originalManifest"] == {"/": PM.original_manifest.text}
    assert d["datasetRoot"] == {"/": {"bytes": base64.b64encode(PM.dataset_root).decode().rstrip("=")}}
    assert (d["ecK"], d["ecM"], d["blocksPerSlot"], d["blockSize"], d["version"]) == (3, 2, 2, B, 1)


def test_its_cid_is_a_protected_manifest_cid_of_its_bytes() -> None:
    cid = PM.cid()
    assert cid == protected_manifest_cid(RAW)
    assert cid.is_protected_manifest
    assert ProtectedManifest.from_block(cid, RAW) == PM


def test_its_cid_goes_on_chain_as_content_cid_and_comes_back() -> None:
    cid = PM.cid()
    assert cid_from_bytes(cid_bytes(cid)) == cid
    assert content_cid_text(cid_bytes(cid)) == cid.text


def test_the_largest_manifest_fits_under_the_size_cap() -> None:
    roots = tuple(hashlib.sha256(bytes([i])).digest() for i in range(256))
    params = ErasureParams.from_request(256, 128)
    biggest = ProtectedManifest(
        params, PM.original_manifest, (1 << 63) - 1, roots, dataset_root(roots), _slot_manifests(256)
    )
    raw = biggest.encode()
    assert len(raw) < MAX_ENCODED_SIZE
    assert raw.count(b"[") + raw.count(b"{") == 3 * 256 + 6
    assert ProtectedManifest.parse(raw) == biggest


def test_from_block_refuses_bytes_that_are_not_the_cid() -> None:
    other = RAW.replace(b'"version":1', b'"version":1 ')
    with pytest.raises(InvalidProtectedManifestError, match="does not hash"):
        ProtectedManifest.from_block(PM.cid(), other)
    with pytest.raises(InvalidProtectedManifestError, match="not a protected manifest CID"):
        ProtectedManifest.from_block(manifest_cid(RAW), RAW)


@pytest.mark.parametrize("missing", [(0, 1), (0, 4), (2, 3), (3, 4)])
def test_restore_decodes_the_original_bytes_from_any_k_slots(missing: tuple[int, ...]) -> None:
    given_slots = {s: SLOTS[s] for s in range(5) if s not in missing}
    assert b"".join(PM.restore(given_slots)) == DATA


def test_the_protector_refuses_an_original_that_is_not_a_manifest() -> None:
    with pytest.raises(InvalidProtectedManifestError, match="not a dataset manifest"):
        Protector(ErasureParams(2, 1), block_cid(b"x"), 10)


def test_a_manifest_whose_roots_do_not_add_up_cannot_be_built() -> None:
    with pytest.raises(InvalidProtectedManifestError, match="dataset root"):
        ProtectedManifest(
            PM.params, PM.original_manifest, PM.original_size, PM.slot_roots, bytes(32), PM.slot_manifests
        )


def test_the_manifest_lists_one_slot_manifest_per_slot() -> None:
    assert json.loads(RAW)["slotManifests"] == [{"/": cid.text} for cid in _slot_manifests(5)]
    with pytest.raises(InvalidProtectedManifestError, match="4 slot manifests"):
        ProtectedManifest(
            PM.params, PM.original_manifest, PM.original_size, PM.slot_roots, PM.dataset_root, PM.slot_manifests[:4]
        )


# --- hostile input ---------------------------------------------------------------------------------------------


def _edit(change: Callable[[dict[str, Any]], object]) -> bytes:
    d = json.loads(RAW)
    change(d)
    return json.dumps(d, sort_keys=True, separators=(",", ":")).encode()


def _b64(value: bytes) -> dict[str, dict[str, str]]:
    return {"/": {"bytes": base64.b64encode(value).decode().rstrip("=")}}


HOSTILE: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "not JSON"),
    "not json": (b"\xff\xfe", "not JSON"),
    "truncated": (RAW[:-1], "not JSON"),
    "truncated half": (RAW[: len(RAW) // 2], "not JSON"),
    "a list": (b"[]", "JSON object"),
    "a number": (b"1", "JSON object"),
    "deep nesting": (b"[" * 40_000 + b"]" * 40_000, "at most"),  # over the size cap: never parsed
    "nesting under the cap": (b"[" * 10_000 + b"]" * 10_000, "far more than"),  # whatever the recursion limit
    "many objects": (b"[" + b"{}," * 900 + b"{}]", "far more than"),
    "huge number": (RAW.replace(b'"ecK":3', b'"ecK":' + b"9" * 5000), "not JSON"),  # int parsing limit
    "too large": (RAW + b" " * MAX_ENCODED_SIZE, "at most"),
    "missing field": (_edit(lambda d: d.pop("slotRoots")), "missing: \\['slotRoots'\\]"),
    "extra field": (_edit(lambda d: d.update(blocks=[])), "unknown: \\['blocks'\\]"),
    "version 2": (_edit(lambda d: d.update(version=2)), "version 2"),
    "k as string": (_edit(lambda d: d.update(ecK="3")), "ecK must be an integer, got str"),
    "k as float": (_edit(lambda d: d.update(ecK=3.0)), "ecK must be an integer, got float"),
    "m as bool": (_edit(lambda d: d.update(ecM=True)), "ecM must be an integer, got bool"),
    "k breaks the rule": (_edit(lambda d: d.update(ecK=1, ecM=1)), "erasure parameters"),
    "k + m over 256": (_edit(lambda d: d.update(ecK=200, ecM=100)), "ecM = 100 out of range|exceeds"),
    "negative size": (_edit(lambda d: d.update(originalDatasetSize=-1)), "out of range"),
    "size zero": (_edit(lambda d: d.update(originalDatasetSize=0)), "out of range"),
    "size over uint63": (_edit(lambda d: d.update(originalDatasetSize=1 << 64)), "out of range"),
    "blocks per slot lies": (_edit(lambda d: d.update(blocksPerSlot=3)), "make 2"),
    "blocks per slot huge": (_edit(lambda d: d.update(blocksPerSlot=1 << 80)), "out of range"),
    "block size": (_edit(lambda d: d.update(blockSize=4096)), "block size 4096"),
    "too few roots": (_edit(lambda d: d["slotRoots"].pop()), "K \\+ M = 5"),
    "roots not a list": (_edit(lambda d: d.update(slotRoots="x")), "K \\+ M = 5"),
    "short root": (_edit(lambda d: d["slotRoots"].__setitem__(0, _b64(bytes(31)))), "32-byte hash"),
    "root not base64": (_edit(lambda d: d["slotRoots"].__setitem__(0, {"/": {"bytes": "!" * 43}})), "base64"),
    "root as string": (_edit(lambda d: d["slotRoots"].__setitem__(0, "ab")), "bytes object"),
    "root with extra key": (
        _edit(lambda d: d["slotRoots"][0]["/"].update(x=1)),
        "32-byte hash",
    ),
    "wrong slot root": (
        _edit(lambda d: d["slotRoots"].__setitem__(0, _b64(bytes(32)))),
        "dataset root is not the root",
    ),
    "wrong dataset root": (_edit(lambda d: d.update(datasetRoot=_b64(bytes(32)))), "dataset root is not the root"),
    "link not a cid": (_edit(lambda d: d.update(originalManifest={"/": "bnotacid"})), "originalManifest"),
    "link too long": (_edit(lambda d: d.update(originalManifest={"/": "b" * 5000})), "too long"),
    "link as string": (_edit(lambda d: d.update(originalManifest=PM.original_manifest.text)), "DAG-JSON link"),
    "too few slot manifests": (_edit(lambda d: d["slotManifests"].pop()), "slotManifests must list"),
    "slot manifest not a link": (_edit(lambda d: d["slotManifests"].__setitem__(0, "x")), "DAG-JSON link"),
    "slot manifest is a block": (
        _edit(lambda d: d["slotManifests"].__setitem__(0, {"/": block_cid(b"x").text})),
        "dataset manifest CID",
    ),
    "link to a block": (
        _edit(lambda d: d.update(originalManifest={"/": block_cid(b"x").text})),
        "not a dataset manifest",
    ),
    "spaces": (json.dumps(json.loads(RAW), sort_keys=True).encode(), "canonical"),
    "unsorted keys": (
        json.dumps(dict(reversed(list(json.loads(RAW).items()))), separators=(",", ":")).encode(),
        "canonical",
    ),
    "padded base64": (RAW.replace(b'"}}', b'="}}', 1), "32-byte hash|canonical"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_protected_manifests_are_refused_with_a_typed_error(name: str) -> None:
    raw, message = HOSTILE[name]
    with pytest.raises(InvalidProtectedManifestError, match=message):
        ProtectedManifest.parse(raw)


@settings(max_examples=300, deadline=None)
@given(at=st.integers(0, len(RAW) - 1), value=st.integers(0, 255))
def test_any_changed_byte_is_refused_or_is_another_valid_manifest(at: int, value: int) -> None:
    raw = bytearray(RAW)
    raw[at] = value
    try:
        parsed = ProtectedManifest.parse(bytes(raw))
    except InvalidProtectedManifestError:
        return
    # A change the parser accepts must be a real, self-consistent manifest whose encoding is exactly these bytes.
    assert parsed.encode() == bytes(raw)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048) | st.text(max_size=512).map(str.encode))
def test_random_bytes_never_raise_anything_but_the_typed_error(raw: bytes) -> None:
    with pytest.raises(InvalidProtectedManifestError):
        ProtectedManifest.parse(raw)


@settings(max_examples=100, deadline=None)
@given(cut=st.integers(0, len(RAW) - 1))
def test_every_truncation_is_refused(cut: int) -> None:
    with pytest.raises(InvalidProtectedManifestError):
        ProtectedManifest.parse(RAW[:cut])
