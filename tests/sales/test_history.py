"""The bounded, persisted per-slot transition history."""

from __future__ import annotations

from codex_node.market.types import RequestId, SlotId
from codex_node.sales.history import EndedSale, HistoryEntry, Progress, SaleHistory
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.memorykv import MemoryKV

SLOT = SlotId(b"\x01" * 32)
OTHER = SlotId(b"\x02" * 32)
REQUEST = RequestId(b"\x0a" * 32)


def test_records_transitions_in_order_with_their_time() -> None:
    clock = FakeClock(1000)
    history = SaleHistory(MemoryKV(), clock)
    history.record(SLOT, None, "SalePreparing", "start")
    clock.advance(5)
    history.record(SLOT, "SalePreparing", "SaleSlotReserving", "run")
    assert history.entries(SLOT) == [
        HistoryEntry(1000, None, "SalePreparing", "start"),
        HistoryEntry(1005, "SalePreparing", "SaleSlotReserving", "run"),
    ]
    assert history.entries(OTHER) == []


def test_keeps_only_the_last_entries_of_a_slot() -> None:
    history = SaleHistory(MemoryKV(), FakeClock(), max_entries=3)
    for n in range(5):
        history.record(SLOT, None, f"S{n}", "run")
    assert [e.to_state for e in history.entries(SLOT)] == ["S2", "S3", "S4"]


def test_survives_a_restart_and_appends_after_what_was_there() -> None:
    kv = MemoryKV()
    first = SaleHistory(kv, FakeClock(), max_entries=3)
    for n in range(3):
        first.record(SLOT, None, f"S{n}", "run")
    second = SaleHistory(kv, FakeClock(), max_entries=3)
    second.record(SLOT, "S2", "S3", "run")
    assert [e.to_state for e in second.entries(SLOT)] == ["S1", "S2", "S3"]


def test_histories_of_old_ended_sales_are_deleted_beyond_the_bound() -> None:
    kv = MemoryKV()
    history = SaleHistory(kv, FakeClock(), max_ended=2)
    slots = [SlotId(bytes([n]) * 32) for n in range(3)]
    for n, slot in enumerate(slots):
        history.record(slot, None, "SalePreparing", "start")
        history.ended(slot, REQUEST, n)
    assert history.entries(slots[0]) == []
    assert [len(history.entries(s)) for s in slots[1:]] == [1, 1]
    assert not history.has(slots[0])
    # And a restarted history keeps counting ended sales from what is persisted.
    again = SaleHistory(kv, FakeClock(), max_ended=2)
    again.ended(SlotId(b"\x09" * 32), REQUEST, 9)
    assert history.entries(slots[1]) == []
    assert again.ended_sale(slots[2]) == EndedSale(slots[2], REQUEST, 2)
    assert again.ended_sale(slots[1]) is None


def test_download_progress_updates_the_downloading_entry_in_place_at_most_once_a_second() -> None:
    clock = FakeClock(1000)
    kv = MemoryKV()
    history = SaleHistory(kv, clock)
    history.record(SLOT, None, "SalePreparing", "start")
    history.record(SLOT, "SalePreparing", "SaleDownloading", "run")
    assert history.progress(SLOT, 10, 100)
    assert not history.progress(SLOT, 20, 100)  # same second: no write
    clock.advance(1)
    assert history.progress(SLOT, 30, 100)
    entries = history.entries(SLOT)
    assert len(entries) == 2  # progress adds no entry
    assert entries[-1].progress == Progress(1001, 30, 100)
    assert history.progress(SLOT, 100, 100)  # the end is always written, whatever the second
    assert SaleHistory(kv, clock).entries(SLOT)[-1].progress == Progress(1001, 100, 100)  # persisted


def test_download_progress_is_ignored_unless_the_latest_entry_is_the_downloading_one() -> None:
    clock = FakeClock(1000)
    history = SaleHistory(MemoryKV(), clock)
    assert not history.progress(SLOT, 10, 100)  # no history yet
    history.record(SLOT, None, "SaleDownloading", "start")
    history.record(SLOT, "SaleDownloading", "SaleInitialProving", "run")
    assert not history.progress(SLOT, 10, 100)
    assert [e.progress for e in history.entries(SLOT)] == [None, None]
