"""LevelChainDB: py-evm's atomic database on LevelDB."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth.db.schema import SchemaV1
from eth_utils import ValidationError

from codex_node.errors import KVError
from codex_node.market.chaindb import LevelChainDB


@pytest.fixture
def db(tmp_path: Path) -> LevelChainDB:
    return LevelChainDB(tmp_path / "db", sync=False)


def test_values_are_set_read_and_deleted(db: LevelChainDB) -> None:
    db[b"k"] = b"v"
    assert db[b"k"] == b"v"
    assert b"k" in db
    del db[b"k"]
    assert b"k" not in db
    with pytest.raises(KeyError):
        db[b"k"]
    with pytest.raises(KeyError):
        del db[b"k"]
    db.delete(b"k")  # BaseDB.delete ignores a missing key


def test_a_batch_sees_its_own_writes_and_lands_whole(db: LevelChainDB) -> None:
    db[b"old"] = b"1"
    with db.atomic_batch() as batch:
        batch[b"a"] = b"A"
        del batch[b"old"]
        assert batch[b"a"] == b"A"
        assert b"old" not in batch
        assert b"a" not in db  # nothing reaches the database before the end
        assert db[b"old"] == b"1"
    assert db[b"a"] == b"A"
    assert b"old" not in db


def test_a_batch_that_raises_writes_nothing(db: LevelChainDB) -> None:
    db[b"keep"] = b"1"

    def fail_midway() -> None:
        with db.atomic_batch() as batch:
            batch[b"a"] = b"A"
            del batch[b"keep"]
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        fail_midway()
    assert b"a" not in db
    assert db[b"keep"] == b"1"


def test_a_batch_cannot_be_used_after_its_block(db: LevelChainDB) -> None:
    with db.atomic_batch() as batch:
        batch[b"a"] = b"A"
    with pytest.raises(ValidationError):
        batch[b"b"] = b"B"


def test_writes_survive_a_reopen(tmp_path: Path) -> None:
    db = LevelChainDB(tmp_path / "db", sync=True)
    with db.atomic_batch() as batch:
        batch[SchemaV1.make_canonical_head_hash_lookup_key()] = b"head"  # the synced kind of batch
        batch[b"state"] = b"node"
    db.close()
    assert db.closed
    again = LevelChainDB(tmp_path / "db")
    assert again[b"state"] == b"node"
    assert again[SchemaV1.make_canonical_head_hash_lookup_key()] == b"head"
    again.close()


def test_a_database_held_by_another_opener_is_refused_with_kv_error(tmp_path: Path) -> None:
    first = LevelChainDB(tmp_path / "db")
    try:
        with pytest.raises(KVError, match="embedded chain's database"):
            LevelChainDB(tmp_path / "db")
    finally:
        first.close()
