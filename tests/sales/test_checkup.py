"""The operator's check, as pure functions of the facts: hosted slots against the chain, repo, ledger."""

from __future__ import annotations

from codex_node.market.types import RequestId, SlotId, SlotState
from codex_node.sales.checkup import RepoFacts, SlotFact, ledger_problems, repo_problems, slot_problems
from codex_node.sales.ledger import TOTALS_KEY, EarningsLedger, EntryKind, LedgerTotals
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.memorykv import MemoryKV

SID = SlotId(b"\x05" * 32)


def fact(**changes: object) -> SlotFact:
    base: dict[str, object] = {
        "slot_id": SID,
        "in_my_slots": True,
        "chain_state": SlotState.FILLED,
        "hosted_by_us": True,
        "missing_proofs": 0,
        "sale_state": "SaleProving",
    }
    return SlotFact(**{**base, **changes})  # type: ignore[arg-type]


def test_a_hosted_slot_that_its_sale_proves_is_sound() -> None:
    assert slot_problems([fact()]) == []
    assert slot_problems([fact(chain_state=SlotState.FINISHED, sale_state="SalePayout")]) == []


def test_a_hosted_slot_without_a_sale_is_a_problem() -> None:
    [problem] = slot_problems([fact(sale_state=None)])
    assert problem == f"slot 0x{SID.hex()}: the chain says this node hosts it (filled) but no sale runs for it"


def test_a_sale_that_believes_it_hosts_a_slot_the_chain_does_not_list_is_a_problem() -> None:
    [problem] = slot_problems([fact(in_my_slots=False, chain_state=SlotState.REPAIR, hosted_by_us=False)])
    assert "its sale is in SaleProving, but the chain does not list it" in problem
    assert "(the slot is repair)" in problem


def test_another_host_a_wrong_state_and_missed_proofs_are_each_named() -> None:
    problems = slot_problems([fact(hosted_by_us=False, chain_state=SlotState.PAID, missing_proofs=2)])
    assert len(problems) == 3
    assert "names another host" in problems[0]
    assert "the slot is paid" in problems[1]
    assert "2 proof(s) marked missing" in problems[2]


def test_a_sale_before_its_fill_is_no_problem_unless_the_chain_says_we_host() -> None:
    assert slot_problems([fact(in_my_slots=False, chain_state=SlotState.FREE, sale_state="SaleDownloading")]) == []
    assert "its sale is in SaleDownloading" in slot_problems([fact(sale_state="SaleDownloading")])[0]


def test_an_unreadable_chain_is_a_problem() -> None:
    assert slot_problems([fact(chain_state=None)]) == [f"slot 0x{SID.hex()}: the chain could not be read"]


def test_the_quota_and_count_must_match_the_block_records() -> None:
    assert repo_problems(RepoFacts(100, 2, 100, 2)) == []
    problems = repo_problems(RepoFacts(120, 3, 100, 2, ("block zb2…: 5 bytes on disk, 7 on record",)))
    assert problems == [
        "quota used 120 != the 100 bytes of the blocks on record",
        "block count 3 != the 2 blocks on record",
        "block zb2…: 5 bytes on disk, 7 on record",
    ]


def test_ledger_totals_must_be_the_sums_of_the_entries() -> None:
    kv = MemoryKV()
    ledger = EarningsLedger(kv, FakeClock())
    ledger.record(EntryKind.PAYOUT, RequestId(b"\x01" * 32), 10, fact="a")
    assert ledger_problems(ledger) == []
    kv.put(TOTALS_KEY, LedgerTotals({EntryKind.PAYOUT: 11, EntryKind.SLASHED: 1}).encode())
    assert ledger_problems(ledger) == [
        "total payout 11 != the 10 its entries sum to",
        "total slashed 1 != the 0 its entries sum to",
    ]
