"""Which slots the validator watches: the filled slots of its group, kept in step with the marketplace's events.

A slot is in group ``int(slot_id) % groups`` (the slot id read as a big-endian uint256, as the contract reads a
``SlotId``); ``groups=None`` means one group, every slot. ``SlotFilled`` starts watching a slot of the group,
``SlotFreed`` stops it (a repairing host's fill starts it again), ``RequestFailed``/``RequestCancelled`` stop every
slot of the request. A request that simply runs out emits nothing: the validator drops its slots when the chain
says they are no longer Filled (:meth:`WatchList.drop`).

Applying an event only sets a slot's watched-or-not, so applying a run of events in chain order onto a list that
already saw some of them gives the same list as applying them once (the restore after a restart relies on it).
This module does no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from codex_node.market.types import (
    MarketEvent,
    RequestCancelled,
    RequestFailed,
    RequestId,
    SlotFilled,
    SlotFreed,
    SlotId,
    slot_id,
)

FOLLOWED: tuple[type[MarketEvent], ...] = (SlotFilled, SlotFreed, RequestFailed, RequestCancelled)
"""The events that change what the validator watches."""


def group_of(sid: SlotId, groups: int | None) -> int:
    """The validation group of a slot: its id as an unsigned big-endian integer, modulo ``groups``."""
    return 0 if groups is None else int.from_bytes(sid, "big") % groups


@dataclass(frozen=True, slots=True)
class WatchedSlot:
    slot_id: SlotId
    request_id: RequestId
    slot_index: int


class WatchList:
    """The slots of one group that the validator watches. See the module docstring."""

    def __init__(self, groups: int | None = None, group_index: int = 0) -> None:
        if groups is not None and groups < 1:
            raise ValueError("groups must be at least 1")
        if not 0 <= group_index < (groups or 1):
            raise ValueError("group_index must be below groups")
        self.groups = groups
        self.group_index = group_index
        self._slots: dict[SlotId, WatchedSlot] = {}
        self._by_request: dict[RequestId, set[SlotId]] = {}

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, sid: object) -> bool:
        return sid in self._slots

    def __iter__(self) -> Iterator[WatchedSlot]:
        return iter(list(self._slots.values()))

    def in_group(self, sid: SlotId) -> bool:
        return group_of(sid, self.groups) == self.group_index

    def apply(self, event: MarketEvent) -> list[WatchedSlot]:
        """Apply one event; the slots it started watching (``SlotFilled``) or stopped watching (the others)."""
        if isinstance(event, SlotFilled):
            added = self._add(event.request_id, event.slot_index)
            return [] if added is None else [added]
        if isinstance(event, SlotFreed):
            dropped = self.drop(slot_id(event.request_id, event.slot_index))
            return [] if dropped is None else [dropped]
        if isinstance(event, RequestFailed | RequestCancelled):
            return self.drop_request(event.request_id)
        return []

    def apply_all(self, events: Iterable[MarketEvent]) -> None:
        for event in events:
            self.apply(event)

    def restore(self, slots: Iterable[tuple[RequestId, int]]) -> None:
        """Watch these slots (a saved list: ``checkpoint.py``); those not of this list's group are skipped."""
        for request_id, slot_index in slots:
            self._add(request_id, slot_index)

    def drop(self, sid: SlotId) -> WatchedSlot | None:
        """Stop watching ``sid``; the slot, or ``None`` if it was not watched."""
        slot = self._slots.pop(sid, None)
        if slot is not None:
            siblings = self._by_request.get(slot.request_id)
            if siblings is not None:
                siblings.discard(sid)
                if not siblings:
                    del self._by_request[slot.request_id]
        return slot

    def drop_request(self, request_id: RequestId) -> list[WatchedSlot]:
        dropped = [self._slots[s] for s in sorted(self._by_request.get(request_id, ()))]
        for slot in dropped:
            self.drop(slot.slot_id)
        return dropped

    def _add(self, request_id: RequestId, slot_index: int) -> WatchedSlot | None:
        sid = slot_id(request_id, slot_index)
        if not self.in_group(sid) or sid in self._slots:
            return None
        slot = WatchedSlot(sid, request_id, slot_index)
        self._slots[sid] = slot
        self._by_request.setdefault(request_id, set()).add(sid)
        return slot
