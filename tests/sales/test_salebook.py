"""The sale book: every sale started, its outcome, reason or error, transitions and proofs; paged and filtered."""

from __future__ import annotations

import time

from codex_node.market.types import RequestId, SlotId
from codex_node.sales.salebook import ProofRecord, SaleBook
from codex_node.stores.kv import LevelDBStore
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.memorykv import MemoryKV

REQ = RequestId(b"\x01" * 32)


def slot(n: int) -> SlotId:
    return SlotId(n.to_bytes(32, "big"))


def test_a_sale_records_its_transitions_and_its_ending() -> None:
    clock = FakeClock(100)
    book = SaleBook(MemoryKV(), clock)
    sale = book.begin(slot(1), REQ, 1)
    book.transition(sale, None, "SalePreparing", "start")
    clock.set(105)
    book.transition(sale, "SalePreparing", "SaleIgnored", "run", reason="no availability matches: size")
    record = book.get(sale)
    assert record is not None
    assert (record.outcome, record.state, record.reason, record.ended_at) == (
        "ignored",
        "SaleIgnored",
        "no availability matches: size",
        105,
    )
    assert [(t.from_state, t.to_state, t.at) for t in record.transitions] == [
        (None, "SalePreparing", 100),
        ("SalePreparing", "SaleIgnored", 105),
    ]
    assert book.active_sale(slot(1)) is None


def test_a_resumed_sale_keeps_its_record_and_a_new_sale_of_the_same_slot_gets_a_new_one() -> None:
    kv = MemoryKV()
    book = SaleBook(kv, FakeClock())
    first = book.begin(slot(1), REQ, 1)
    book.transition(first, None, "SaleProving", "start")
    after_restart = SaleBook(kv, FakeClock())
    assert after_restart.begin(slot(1), REQ, 1) == first
    after_restart.transition(first, "SaleProving", "SaleErrored", "run", error="SaleError('repair')")
    again = after_restart.begin(slot(1), REQ, 1)
    assert again == first + 1
    errored = after_restart.get(first)
    assert errored is not None
    assert (errored.outcome, errored.error) == ("errored", "SaleError('repair')")


def test_proofs_are_kept_with_their_margin() -> None:
    book = SaleBook(MemoryKV(), FakeClock())
    sale = book.begin(slot(1), REQ, 0)
    book.proof(sale, ProofRecord(period=10, started_at=600, landed_at=612, margin=47, result="submitted"))
    record = book.get(sale)
    assert record is not None
    [proof] = record.proofs
    assert (proof.period, proof.time_to_land, proof.margin) == (10, 12, 47)


def test_pages_are_newest_first_filtered_by_outcome_and_since() -> None:
    clock = FakeClock(1000)
    book = SaleBook(MemoryKV(), clock)
    for i in range(10):
        clock.set(1000 + i)
        sale = book.begin(slot(i), REQ, i)
        book.transition(sale, None, "SalePreparing", "start")
        if i % 2:
            book.transition(sale, "SalePreparing", "SaleIgnored", "run", reason="r")
    assert [r.id for r in book.page(limit=4)] == [9, 8, 7, 6]
    assert [r.id for r in book.page(before=6, limit=4)] == [5, 4, 3, 2]
    assert [r.id for r in book.page(outcome="ignored", limit=3)] == [9, 7, 5]
    assert [r.id for r in book.page(outcome="ignored", before=5, limit=3)] == [3, 1]
    assert [r.id for r in book.page(outcome="active")] == [8, 6, 4, 2, 0]
    assert [r.id for r in book.page(since=1007)] == [9, 8, 7]
    assert [r.id for r in book.page(outcome="active", since=1005)] == [8, 6]
    assert book.counts()["ignored"] == 5


def test_the_book_keeps_only_the_last_max_sales() -> None:
    book = SaleBook(MemoryKV(), FakeClock(), max_sales=3)
    for i in range(5):
        book.begin(slot(i), REQ, i)
    assert [r.id for r in book.page()] == [4, 3, 2]
    assert book.get(0) is None
    assert book.counts()["active"] == 3
    assert book.active_sale(slot(0)) is None


def test_a_page_stays_fast_with_ten_thousand_sales(tmp_path: object) -> None:
    from pathlib import Path

    kv = LevelDBStore(Path(str(tmp_path)) / "meta", sync=False)
    try:
        book = SaleBook(kv, FakeClock())
        for i in range(10_000):
            sale = book.begin(slot(i), REQ, i % 4)
            book.transition(sale, None, "SalePreparing", "start")
            book.transition(sale, "SalePreparing", "SaleIgnored" if i % 3 else "SaleProving", "run", reason="r")
        began = time.perf_counter()
        page = book.page(limit=50)
        filtered = book.page(outcome="active", before=5000, limit=50)
        elapsed = time.perf_counter() - began
        assert len(page) == 50
        assert len(filtered) == 50
        assert all(r.outcome == "active" and r.id < 5000 for r in filtered)
        assert elapsed < 0.2, f"two pages took {elapsed:.3f}s"
    finally:
        kv.close()


def test_a_sale_that_did_not_resume_after_a_restart_is_ended_as_errored() -> None:
    kv = MemoryKV()
    book = SaleBook(kv, FakeClock())
    gone = book.begin(slot(1), REQ, 1)
    book.transition(gone, None, "SaleDownloading", "start")
    resumed = book.begin(slot(2), REQ, 2)
    book.transition(resumed, None, "SaleProving", "start")
    after = SaleBook(kv, FakeClock())
    assert after.end_orphans({slot(2)}) == [gone]
    record = after.get(gone)
    assert record is not None
    assert (record.outcome, record.state) == ("errored", "SaleErrored")
    assert record.error is not None
    assert "did not resume" in record.error
    still = after.get(resumed)
    assert still is not None
    assert still.outcome == "active"
    assert after.end_orphans({slot(2)}) == []
