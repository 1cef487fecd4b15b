"""The money of whole sales on MockMarket: what the ledger records adds up to the wallet's token balance change,
and the sale book tells each sale's story (outcome, reason, proofs, money)."""

from __future__ import annotations

import structlog
from prometheus_client import CollectorRegistry
from salesworld import BLOCK, WORLD_ASK, World

from codex_node.market.types import RequestState, slot_id
from codex_node.sales.account import LedgerCollector
from codex_node.sales.ledger import EntryKind


def kinds(world: World) -> dict[str, int]:
    assert world.earnings is not None
    totals = world.earnings.totals()
    return {k.value: totals.of(k) for k in EntryKind if totals.of(k)}


async def test_a_whole_sale_records_posting_payout_and_return_that_add_up_to_the_balance_change(world: World) -> None:
    await world.start()
    await world.create_availability()
    before = await world.host.token_balance(world.host.signer)
    request = await world.post_request()
    await world.until_states(["Proving"] * 3, limit=7200)
    await world.advance(WORLD_ASK.duration + 120)
    assert world.states() == []
    assert world.earnings is not None
    change = await world.host.token_balance(world.host.signer) - before
    assert world.earnings.totals().net_flow == change
    assert kinds(world)["collateralPosted"] == 3 * WORLD_ASK.collateral_per_slot
    assert kinds(world)["collateralReturned"] == 3 * WORLD_ASK.collateral_per_slot
    assert kinds(world)["payout"] == change > 0
    assert "slashed" not in kinds(world)
    assert world.sales is not None
    assert world.sales.book is not None
    sales = world.sales.book.page(outcome="finished")
    assert sorted(s.slot_index for s in sales) == [0, 1, 2]
    for sale in sales:
        assert sale.request_id == request.id
        assert [t.to_state for t in sale.transitions][-2:] == ["SalePayout", "SaleFinished"]
        assert sale.proofs
        assert all(p.result == "submitted" and p.margin >= 0 for p in sale.proofs)
        money = world.earnings.of_sale(sale.id)
        assert {e.kind for e in money} == {EntryKind.COLLATERAL_POSTED, EntryKind.PAYOUT, EntryKind.COLLATERAL_RETURNED}
    await world.stop()


async def test_collateral_kept_by_a_failed_request_is_recorded_as_lost(world: World) -> None:
    await world.start()
    await world.create_availability()
    before = await world.host.token_balance(world.host.signer)
    request = await world.post_request()
    await world.until_states(["Proving"] * 3, limit=7200)
    # Two slots lost (one allowed): the request fails and the contract keeps every host's collateral.
    await world.host.free_slot(slot_id(request.id, 0))
    await world.host.free_slot(slot_id(request.id, 1))
    await world.settle()
    await world.advance(120)
    assert await world.host.request_state(request.id) == RequestState.FAILED
    assert world.states() == []
    assert world.earnings is not None
    change = await world.host.token_balance(world.host.signer) - before
    assert change == -3 * WORLD_ASK.collateral_per_slot
    assert world.earnings.totals().net_flow == change
    assert world.earnings.totals().lost == 3 * WORLD_ASK.collateral_per_slot
    assert world.earnings.totals().earned == 0
    await world.stop()


async def test_a_restart_records_no_money_twice(world: World) -> None:
    await world.start()
    await world.create_availability()
    before = await world.host.token_balance(world.host.signer)
    await world.post_request()
    await world.until_states(["Proving"] * 3, limit=7200)
    await world.stop()
    await world.start()  # resumed through Unknown: the same sales, no second posting recorded
    await world.advance(WORLD_ASK.duration + 120)
    assert world.states() == []
    assert world.earnings is not None
    assert world.earnings.totals().net_flow == await world.host.token_balance(world.host.signer) - before
    assert world.sales is not None
    assert world.sales.book is not None
    assert len(world.sales.book.page()) == 3
    await world.stop()


async def test_an_ignored_sale_names_the_rule_that_failed(world: World) -> None:
    await world.start()
    await world.create_availability(size=BLOCK)  # a slot is two blocks: too small
    await world.post_request()
    await world.advance(30)
    assert world.sales is not None
    assert world.sales.book is not None
    ignored = world.sales.book.page(outcome="ignored")
    assert ignored
    assert ignored[0].reason is not None
    assert "failed size (slot size 131072 vs free size 65536)" in ignored[0].reason
    await world.stop()


async def test_every_state_change_is_logged_with_the_slot_id(world: World) -> None:
    await world.start()
    await world.create_availability()
    with structlog.testing.capture_logs() as logs:
        request = await world.post_request()
        await world.until_states(["Proving"] * 3, limit=7200)
    changes = [e for e in logs if e["event"] == "sale state"]
    assert len(changes) >= 3 * 6  # Preparing … Proving, for each of the three slots
    slots = {slot_id(request.id, i).hex() for i in range(3)}
    assert {e["slot_id"] for e in changes} == slots
    assert all("sale_id" in e for e in changes)
    await world.stop()


async def test_the_ledger_totals_are_exported_as_metrics(world: World) -> None:
    await world.start()
    await world.create_availability()
    await world.post_request()
    await world.until_states(["Proving"] * 3, limit=7200)
    assert world.earnings is not None
    registry = CollectorRegistry()
    registry.register(LedgerCollector(world.earnings))
    posted = registry.get_sample_value("codex_ledger_total", {"kind": "collateralPosted"})
    assert posted == 3 * WORLD_ASK.collateral_per_slot
    assert registry.get_sample_value("codex_ledger_total", {"kind": "payout"}) == 0
    await world.stop()


async def test_a_restart_ends_the_records_of_sales_that_do_not_resume(world: World) -> None:
    await world.start()
    await world.create_availability()
    await world.post_request()
    await world.until_states(["Proving"] * 3, limit=7200)
    assert world.sales is not None
    book = world.sales.book
    assert book is not None
    stray = book.begin(slot_id(b"\x09" * 32, 0), b"\x09" * 32, 0)  # type: ignore[arg-type]  # a sale never resumed
    await world.stop()
    await world.start()
    assert world.sales is not None
    assert world.sales.book is not None
    record = world.sales.book.get(stray)
    assert record is not None
    assert record.outcome == "errored"
    assert [r.outcome for r in world.sales.book.page(outcome="active")] == ["active"] * 3
    await world.stop()


async def test_a_fill_whose_record_was_lost_in_a_crash_is_recorded_when_its_sale_resumes(world: World) -> None:
    await world.start()
    await world.create_availability()
    await world.post_request()
    await world.until_states(["Proving"] * 3, limit=7200)
    await world.stop()
    for key, _ in list(world.kv.iterate("meta/ledger/")):  # as if the node died before each fill's record
        world.kv.delete(key)
    await world.start()
    assert world.earnings is not None
    assert world.earnings.totals().of(EntryKind.COLLATERAL_POSTED) == 3 * WORLD_ASK.collateral_per_slot
    await world.stop()
    await world.start()  # and only once
    assert world.earnings is not None
    assert world.earnings.totals().of(EntryKind.COLLATERAL_POSTED) == 3 * WORLD_ASK.collateral_per_slot
    await world.stop()
