"""The earnings ledger: entries once per fact, totals in the same batch, newest-first pages, persisted."""

from __future__ import annotations

import pytest

from codex_node.errors import KVError
from codex_node.market.types import RequestId
from codex_node.sales.ledger import EarningsLedger, EntryKind, LedgerTotals
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.memorykv import MemoryKV

REQ = RequestId(b"\x01" * 32)


def test_an_entry_is_recorded_with_time_request_slot_and_sale() -> None:
    clock = FakeClock(1000)
    ledger = EarningsLedger(MemoryKV(), clock)
    entry = ledger.record(EntryKind.PAYOUT, REQ, 50, fact="p/1", slot_index=2, sale_id=7)
    assert entry is not None
    assert (entry.at, entry.kind, entry.amount, entry.slot_index, entry.sale_id) == (1000, EntryKind.PAYOUT, 50, 2, 7)
    assert ledger.page() == [entry]
    assert ledger.of_sale(7) == [entry]


def test_the_same_fact_is_recorded_once_even_by_a_new_ledger_over_the_same_store() -> None:
    kv = MemoryKV()
    assert EarningsLedger(kv, FakeClock()).record(EntryKind.PAYOUT, REQ, 50, fact="payout/s/1") is not None
    again = EarningsLedger(kv, FakeClock())  # a restart replaying the same payout
    assert again.record(EntryKind.PAYOUT, REQ, 50, fact="payout/s/1") is None
    assert again.totals().earned == 50
    assert len(list(again)) == 1


def test_totals_sum_each_kind_and_net_flow_signs_them() -> None:
    ledger = EarningsLedger(MemoryKV(), FakeClock())
    ledger.record(EntryKind.COLLATERAL_POSTED, REQ, 100, fact="a")
    ledger.record(EntryKind.PAYOUT, REQ, 30, fact="b")
    ledger.record(EntryKind.COLLATERAL_RETURNED, REQ, 80, fact="c")
    ledger.record(EntryKind.SLASHED, REQ, 20, fact="d")
    totals = ledger.totals()
    assert (totals.earned, totals.lost) == (30, 20)
    assert totals.net_flow == -100 + 30 + 80  # slashed has no flow: it left with the posting
    assert totals.net_flow == sum(e.flow for e in ledger)


def test_a_zero_amount_records_nothing() -> None:
    ledger = EarningsLedger(MemoryKV(), FakeClock())
    assert ledger.record(EntryKind.SLASHED, REQ, 0, fact="z") is None
    assert ledger.totals() == LedgerTotals({})


def test_a_negative_amount_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        EarningsLedger(MemoryKV(), FakeClock()).record(EntryKind.PAYOUT, REQ, -1, fact="n")


def test_pages_go_newest_first_and_continue_before_the_last_id() -> None:
    kv = MemoryKV()
    ledger = EarningsLedger(kv, FakeClock())
    for i in range(7):
        ledger.record(EntryKind.PAYOUT, REQ, i + 1, fact=f"f{i}")
    first = ledger.page(limit=3)
    assert [e.id for e in first] == [6, 5, 4]
    assert [e.id for e in ledger.page(before=first[-1].id, limit=3)] == [3, 2, 1]
    assert [e.id for e in ledger.page(before=1, limit=3)] == [0]
    reopened = EarningsLedger(kv, FakeClock())  # ids continue after a restart
    entry = reopened.record(EntryKind.PAYOUT, REQ, 1, fact="next")
    assert entry is not None
    assert entry.id == 7


def test_a_failed_write_records_nothing_and_the_fact_can_be_recorded_later() -> None:
    kv = MemoryKV()
    ledger = EarningsLedger(kv, FakeClock())
    kv.fail_next_write()
    with pytest.raises(KVError):
        ledger.record(EntryKind.PAYOUT, REQ, 5, fact="x")
    assert ledger.totals().earned == 0
    assert list(ledger) == []
    assert ledger.record(EntryKind.PAYOUT, REQ, 5, fact="x") is not None
    assert ledger.totals().earned == 5


def test_purchases_are_recorded_once_per_request_and_kind() -> None:
    ledger = EarningsLedger(MemoryKV(), FakeClock())
    assert ledger.record_purchase(EntryKind.PURCHASE_PAYMENT, REQ, 900)
    assert not ledger.record_purchase(EntryKind.PURCHASE_PAYMENT, REQ, 900)
    assert ledger.record_purchase(EntryKind.PURCHASE_REFUND, REQ, 100)
    assert ledger.totals().net_flow == -800
    with pytest.raises(ValueError, match="not a purchase"):
        ledger.record_purchase(EntryKind.PAYOUT, REQ, 1)
