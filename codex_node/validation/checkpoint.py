"""The validator's checkpoint: the slots it watched and the point of the marketplace's history they account for.

Without one, a validator that starts reads every marketplace event since the deployment to rebuild its watch list
(``validator.py``): one ``eth_getLogs`` scan over the whole chain, longer every day. With one, it restores the
slots it saved and reads only the events from the saved point on. The point (``since``) is one the market port
vouches for (``ValidatorMarket.history_mark``): every event before it had been delivered to the validator, and will
not be delivered again, when the slots were taken; with it is the hash its block had, so a chain that changed
since (a reorganisation deeper than that, or another chain at the same address) is noticed and the whole history
read instead (the saved slots are then only a first guess, which each round's check of the chain corrects).
Events from ``since`` on that the saved slots already reflect are applied once more, which changes nothing
(``watchlist.py``: applying a run of events in chain order onto a list that already saw some of them gives the
same list).

A checkpoint is only used by a validator of the same groups (``--validator-groups``, ``--validator-group-index``):
another group watches other slots. One that cannot be decoded is reported and ignored (the full history is read).

Stored under one key of the node's metadata store (:data:`KEY_PREFIX` + the marketplace's address), as JSON::

    {"version": 1, "since": 1234, "anchor": "0x<block hash>", "groups": null, "groupIndex": 0,
     "slots": [["0x<request id>", 0], ...]}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

import structlog

from codex_node.market.types import HistoryMark, RequestId
from codex_node.stores.kv import KVStore

log = structlog.get_logger(__name__)

KEY_PREFIX: Final = "meta/validator/checkpoint/"
VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class Checkpoint:
    since: HistoryMark
    """Replay the history from this mark (a block number and its hash on a chain)."""
    groups: int | None
    group_index: int
    slots: tuple[tuple[RequestId, int], ...]
    """The watched slots: (request id, slot index)."""


def encode(checkpoint: Checkpoint) -> bytes:
    return json.dumps(
        {
            "version": VERSION,
            "since": checkpoint.since.point,
            "anchor": None if checkpoint.since.anchor is None else "0x" + checkpoint.since.anchor.hex(),
            "groups": checkpoint.groups,
            "groupIndex": checkpoint.group_index,
            "slots": [["0x" + request_id.hex(), index] for request_id, index in checkpoint.slots],
        },
        separators=(",", ":"),
    ).encode()


def decode(raw: bytes) -> Checkpoint:
    """A stored checkpoint; ``ValueError`` naming what is wrong with one that is not."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"not JSON: {e}") from e
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise ValueError(f"not a version {VERSION} checkpoint")
    since, group_index = _count(data, "since"), _count(data, "groupIndex")
    anchor = _anchor(data.get("anchor"))
    groups = None if data.get("groups") is None else _count(data, "groups")
    if groups == 0:
        raise ValueError("groups is 0")
    slots = data.get("slots")
    if not isinstance(slots, list):
        raise ValueError("slots is not a list")  # noqa: TRY004 - malformed stored data, as every other case here
    out: list[tuple[RequestId, int]] = []
    for entry in slots:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
            raise ValueError(f"malformed slot entry {str(entry)[:80]}")
        text = entry[0].removeprefix("0x")
        try:
            request_id = RequestId(bytes.fromhex(text))
        except ValueError:
            request_id = RequestId(b"")
        if len(request_id) != 32:
            raise ValueError(f"malformed request id {entry[0][:80]!r}")
        out.append((request_id, _count({"slot index": entry[1]}, "slot index")))
    return Checkpoint(HistoryMark(since, anchor), groups, group_index, tuple(out))


def _anchor(value: object) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 2 + 2 * 64:
        raise ValueError("anchor is not a hex string")
    try:
        return bytes.fromhex(value.removeprefix("0x"))
    except ValueError as e:
        raise ValueError("anchor is not a hex string") from e


def _count(data: dict[str, object], name: str) -> int:
    value = data.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} is not a whole number >= 0: {str(value)[:40]}")
    return value


class CheckpointStore:
    """The checkpoint of one marketplace's validator in the node's metadata store."""

    def __init__(self, kv: KVStore, marketplace: str) -> None:
        self._kv = kv
        self.key = KEY_PREFIX + marketplace.lower()

    def load(self) -> Checkpoint | None:
        """The saved checkpoint, ``None`` if there is none or it cannot be decoded (reported)."""
        raw = self._kv.get(self.key)
        if raw is None:
            return None
        try:
            return decode(raw)
        except ValueError as e:
            log.warning("validator checkpoint ignored: the full history is read", key=self.key, error=str(e))
            return None

    def save(self, checkpoint: Checkpoint) -> None:
        self._kv.put(self.key, encode(checkpoint))
