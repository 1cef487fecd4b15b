"""StorageProof: its ABI form matches the contract's ABI, round-trips, and refuses malformed hashes."""

from __future__ import annotations

import json
import os
from importlib import resources

import pytest
from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode

from codex_node.errors import InvalidProofShapeError
from codex_node.proofs import STORAGE_PROOF_ABI_TYPE, StorageProof


def sample_proof() -> StorageProof:
    return StorageProof(
        slot_root=os.urandom(32),
        slot_path=(os.urandom(32), os.urandom(32)),
        cells=(os.urandom(2048), os.urandom(2048)),
        cell_paths=((os.urandom(32),) * 3, (os.urandom(32),) * 3),
    )


def test_abi_type_is_the_proof_argument_of_fill_slot_and_submit_proof() -> None:
    abi = json.loads(resources.files("codex_node.market").joinpath("artifacts/Marketplace.json").read_text())["abi"]
    for name in ("fillSlot", "submitProof"):
        (function,) = [e for e in abi if e.get("type") == "function" and e["name"] == name]
        (proof_input,) = [i for i in function["inputs"] if i["name"] == "proof"]
        components = ",".join(c["type"] for c in proof_input["components"])
        assert f"({components})" == STORAGE_PROOF_ABI_TYPE
        assert [c["name"] for c in proof_input["components"]] == ["slotRoot", "slotPath", "cells", "cellPaths"]


def test_abi_tuple_round_trips_through_the_abi_codec() -> None:
    proof = sample_proof()
    encoded = abi_encode([STORAGE_PROOF_ABI_TYPE], [proof.to_abi()])
    (decoded,) = abi_decode([STORAGE_PROOF_ABI_TYPE], encoded)
    assert StorageProof.from_abi(decoded) == proof


def test_to_abi_gives_lists_for_arrays() -> None:
    root, slot_path, cells, cell_paths = sample_proof().to_abi()
    assert isinstance(root, bytes)
    assert isinstance(slot_path, list)
    assert isinstance(cells, list)
    assert all(isinstance(p, list) for p in cell_paths)


@pytest.mark.parametrize(
    "change",
    [
        {"slot_root": bytes(31)},
        {"slot_path": (bytes(32), bytes(33))},
        {"cell_paths": ((bytes(32),), (bytes(32), b""))},
    ],
    ids=["short root", "long slot path hash", "empty cell path hash"],
)
def test_hashes_that_are_not_32_bytes_are_refused(change: dict[str, object]) -> None:
    fields = {"slot_root": bytes(32), "slot_path": (), "cells": (), "cell_paths": ()} | change
    with pytest.raises(InvalidProofShapeError):
        StorageProof(**fields)  # type: ignore[arg-type]


def test_cells_of_any_length_can_be_held_for_the_verifier_to_refuse() -> None:
    proof = StorageProof(slot_root=bytes(32), slot_path=(), cells=(b"short",), cell_paths=((),))
    assert proof.cells == (b"short",)


@pytest.mark.parametrize("value", [(), (bytes(32), [], []), (bytes(32), [b"x" * 32], [1], [])])
def test_from_abi_refuses_what_is_not_a_proof_tuple(value: tuple[object, ...]) -> None:
    with pytest.raises(InvalidProofShapeError):
        StorageProof.from_abi(value)
