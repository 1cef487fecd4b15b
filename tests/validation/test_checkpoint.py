"""The validator's checkpoint: its stored form, and what is refused."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from codex_node.market.types import HistoryMark, RequestId
from codex_node.testing.memorykv import MemoryKV
from codex_node.validation.checkpoint import KEY_PREFIX, Checkpoint, CheckpointStore, decode, encode

R1 = RequestId(bytes(range(32)))
R2 = RequestId(b"\xff" * 32)


def test_a_checkpoint_reads_back_as_it_was_saved_under_the_marketplace_address() -> None:
    kv = MemoryKV()
    store = CheckpointStore(kv, "0xAbCd")
    assert store.load() is None
    saved = Checkpoint(since=HistoryMark(1234, b"\x0a" * 32), groups=3, group_index=2, slots=((R1, 0), (R2, 7)))
    store.save(saved)
    assert store.key == KEY_PREFIX + "0xabcd"
    assert kv.get(store.key) == encode(saved)
    assert store.load() == saved
    assert CheckpointStore(kv, "0xABCD").load() == saved  # the address's case does not matter
    assert CheckpointStore(kv, "0xother").load() is None  # another marketplace's is not this one's
    unanchored = Checkpoint(HistoryMark(0), None, 0, ())
    assert decode(encode(unanchored)) == unanchored


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe", "not JSON"),
        (b"[]", "not a version 1"),
        (b'{"version": 2}', "not a version 1"),
        (b'{"version": 1, "since": -1, "groupIndex": 0, "slots": []}', "since is not"),
        (b'{"version": 1, "since": true, "groupIndex": 0, "slots": []}', "since is not"),
        (b'{"version": 1, "since": 5, "groupIndex": 0, "groups": 0, "slots": []}', "groups is 0"),
        (b'{"version": 1, "since": 5, "groupIndex": "1", "slots": []}', "groupIndex is not"),
        (b'{"version": 1, "since": 5, "groupIndex": 0, "slots": {}}', "slots is not a list"),
        (b'{"version": 1, "since": 5, "groupIndex": 0, "slots": [["0x12", 0]]}', "malformed request id"),
        (b'{"version": 1, "since": 5, "groupIndex": 0, "slots": [["' + b"zz" * 32 + b'", 0]]}', "malformed request"),
        (b'{"version": 1, "since": 5, "groupIndex": 0, "slots": [[1, 0]]}', "malformed slot entry"),
        (b'{"version": 1, "since": 5, "groupIndex": 0, "slots": [["0x' + b"00" * 32 + b'", -1]]}', "slot index"),
        (b'{"version": 1, "since": 5, "anchor": "0xzz", "groupIndex": 0, "slots": []}', "anchor is not"),
        (b'{"version": 1, "since": 5, "anchor": 7, "groupIndex": 0, "slots": []}', "anchor is not"),
    ],
)
def test_a_malformed_checkpoint_is_refused_naming_what_is_wrong(raw: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        decode(raw)


def test_a_stored_checkpoint_that_cannot_be_read_is_reported_and_not_used() -> None:
    kv = MemoryKV()
    store = CheckpointStore(kv, "0xabcd")
    kv.put(store.key, b"garbage")
    with capture_logs() as logs:
        assert store.load() is None
    assert [e["log_level"] for e in logs] == ["warning"]
