"""The earnings ledger against the chain: a sale's money in the ledger adds up to the token balance change the
chain shows, through a whole (paid) sale and through a slashed one, on a real node with the embedded chain.

The slashed sale: the node runs with ``simulate_proof_failures=1`` (every periodic proof it sends is wrong), and
the test, as the validator (the dev client account), marks each missing proof until the contract frees both
slots and the request fails. What the node posted is lost; the ledger says so and still adds up.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2ekit import (
    API,
    EXPIRY,
    PERIODS,
    PROVING,
    SLOTS,
    ask,
    availability_body,
    dataset,
    eventually,
    sales_in,
    slot_ids,
)

from codex_node.cli import main
from codex_node.config import NodeConfig
from codex_node.data.cid import parse_cid
from codex_node.errors import ContractRevertError
from codex_node.market.types import Request, RequestState
from codex_node.node import Node
from codex_node.proofs.slotdata import dataset_commitment
from codex_node.sales.ledger import TOTALS_KEY, EntryKind, LedgerTotals

pytestmark = pytest.mark.slow


async def ledger_entries(api: httpx.AsyncClient) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    before: int | None = None
    while True:
        params: dict[str, int] = {"limit": 100} if before is None else {"limit": 100, "before": before}
        page = (await api.get("/account/ledger", params=params)).json()
        out.extend(page["entries"])
        if page["next"] is None:
            return out
        before = page["next"]


async def no_active_sales(api: httpx.AsyncClient) -> bool:
    return (await api.get("/sales/history", params={"state": "active"})).json()["sales"] == []


async def test_a_paid_sale_s_ledger_adds_up_to_the_balance_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node = Node(NodeConfig(data_dir=tmp_path / "data", api_port=0))
    await node.start()
    try:
        mp = node.marketplace
        assert mp is not None
        assert mp.chain is not None
        market = mp.market
        async with httpx.AsyncClient(base_url=f"{node.api_url}{API}", timeout=30) as api:
            request, before, travel = await _request_and_fill(node, api)
            # One period of proofs, so that the sales' records hold a proof round each.
            period = PERIODS.period_of(await mp.chain.latest_timestamp()) + 1
            await travel(PERIODS.period_start(period) + 1)

            async def proven() -> bool:
                active = (await api.get("/sales/history", params={"state": "active"})).json()["sales"]
                return len(active) == SLOTS and all(s["proofs"] for s in active)

            await eventually(proven, what="a proof round in each sale's record")
            jump = await market.request_end(request.id) + 1
            await travel(jump)
            await eventually(lambda: no_active_sales(api), what="both sales over")
            change = await market.token_balance(await market.get_signer()) - before

            entries = await ledger_entries(api)
            assert sum(int(e["flow"]) for e in entries) == change
            kinds = sorted(e["kind"] for e in entries)
            assert kinds == sorted(["collateralPosted", "payout", "collateralReturned"] * SLOTS)
            account = (await api.get("/account")).json()
            assert int(account["totals"]["netFlow"]) == change
            assert int(account["totals"]["earned"]) == change > 0
            assert account["totals"]["lost"] == "0"
            assert int(account["tokenBalance"]) == before + change
            assert int(account["gasBalance"]) > 0
            assert account["collateralLocked"] == "0"

            finished = (await api.get("/sales/history", params={"state": "finished"})).json()["sales"]
            assert len(finished) == SLOTS
            assert sum(int(s["netFlow"]) for s in finished) == change
            for sale in finished:
                # A round on its way when the test jumped to the request's end lands after it, refused or
                # too late: the jump cut it. Every round that landed before the jump was submitted.
                before_jump = [p for p in sale["proofs"] if p["landedAt"] < jump]
                assert before_jump, "the periodic proofs are in the sale's record"
                assert [p["result"] for p in before_jump] == ["submitted"] * len(before_jump), sale["proofs"]
                assert all(0 <= p["margin"] <= PERIODS.seconds for p in sale["proofs"])

            # codex-node check finds nothing wrong, reading every block back; then a ledger total out of step.
            capsys.readouterr()
            assert await asyncio.to_thread(main, ["check", "--api-url", node.api_url, "--read-blocks"], {}) == 0
            # The node in this process logs to the same stdout: keep the command's own lines.
            printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("ok ", "PROBLEM"))]
            assert [line.split(":")[0] for line in printed] == [
                "ok      books",
                "ok      repo",
                "ok      slots",
                "ok      ledger",
            ]
            kv = node.kv
            assert kv is not None
            totals = mp.ledger.totals()
            kv.put(TOTALS_KEY, LedgerTotals({**totals.by_kind, EntryKind.PAYOUT: totals.earned + 1}).encode())
            assert await asyncio.to_thread(main, ["check", "--api-url", node.api_url], {}) == 1
            assert "PROBLEM ledger: total payout " in capsys.readouterr().out
    finally:
        await node.stop()


async def test_a_slashed_sale_s_ledger_adds_up_to_the_balance_change(tmp_path: Path) -> None:
    node = Node(NodeConfig(data_dir=tmp_path / "data", api_port=0, simulate_proof_failures=1))
    await node.start()
    try:
        mp = node.marketplace
        assert mp is not None
        assert mp.chain is not None
        chain, market = mp.chain, mp.market
        validator = market.for_account(chain.client_account)
        async with httpx.AsyncClient(base_url=f"{node.api_url}{API}", timeout=30) as api:
            request, before, travel = await _request_and_fill(node, api)
            sids = slot_ids(request.id)
            locked = (await api.get("/account")).json()["collateralLocked"]
            assert int(locked) == SLOTS * request.ask.collateral_per_slot
            # Each period: move past its end and mark the (wrong, so missing) proofs of every slot.
            for _ in range(12):
                if await market.request_state(request.id) == RequestState.FAILED:
                    break
                period = PERIODS.period_of(await chain.latest_timestamp())
                await travel(PERIODS.period_end(period) + 1)
                for s in sids:
                    if await validator.can_mark_proof_as_missing(s, period):
                        try:
                            await validator.mark_proof_as_missing(s, period)
                        except ContractRevertError as e:
                            # The contract asks "was a proof required?" in the block the marking runs in: when the
                            # challenge pointer wraps into the downtime one block after the check, it says no (the
                            # validator counts this too). The next period's marking goes on.
                            if "ProofNotRequired" not in str(e):
                                raise
            assert await market.request_state(request.id) == RequestState.FAILED
            await eventually(lambda: no_active_sales(api), what="both sales over")
            change = await market.token_balance(await market.get_signer()) - before
            assert change < 0

            async def all_recorded() -> list[dict[str, Any]] | None:
                # The ending state is in the history as it is entered; the loss is recorded by its clean-up.
                entries = await ledger_entries(api)
                return entries if len(entries) == 2 * SLOTS else None

            entries = await eventually(all_recorded, what="the lost collateral recorded")
            assert sum(int(e["flow"]) for e in entries) == change
            account = (await api.get("/account")).json()
            assert int(account["totals"]["lost"]) == -change  # all that was posted, nothing came back
            assert account["totals"]["earned"] == "0"
            assert sorted(e["kind"] for e in entries) == sorted(["collateralPosted", "slashed"] * SLOTS)
            history = (await api.get("/sales/history")).json()["sales"]
            ended = [s for s in history if s["slotIndex"] in range(SLOTS) and s["money"]]
            assert {s["outcome"] for s in ended} <= {"errored", "failed"}
            assert any(p["result"] == "failed" for s in ended for p in s["proofs"]), "the wrong proofs are recorded"
    finally:
        await node.stop()


async def _request_and_fill(node: Node, api: httpx.AsyncClient) -> tuple[Request, int, Any]:
    mp = node.marketplace
    assert mp is not None
    assert mp.chain is not None
    assert node.repo is not None
    chain, market = mp.chain, mp.market
    client = market.for_account(chain.client_account)

    async def travel(timestamp: int) -> None:
        await chain.travel_to(timestamp)
        market.events.wake()

    cid = (await api.post("/data", content=dataset())).text
    commitment = await dataset_commitment(node.repo, parse_cid(cid), SLOTS)
    created = await api.post("/sales/availability", json=availability_body(commitment.slot_size))
    assert created.status_code == 201, created.text
    before = await market.token_balance(await market.get_signer())
    request = Request(
        client=await client.get_signer(),
        ask=ask(commitment.slot_size),
        content=commitment.content,
        expiry=EXPIRY,
        nonce=secrets.token_bytes(32),
    )
    await client.request_storage(request)
    sids = slot_ids(request.id)
    proving = (PROVING, "SaleProvingSimulated")
    await eventually(lambda: sales_in(api, sids, "SaleInitialProving", *proving), what="every slot in InitialProving")
    for _ in range(8):  # as e2ekit.fill_every_slot, for either proving state
        await travel(PERIODS.period_end(PERIODS.period_of(await chain.latest_timestamp())) + 1)
        try:
            await eventually(lambda: sales_in(api, sids, *proving), within=5.0, what="every slot proving")
            return request, before, travel
        except AssertionError:
            continue
    raise AssertionError("slots not filled after 8 periods")
