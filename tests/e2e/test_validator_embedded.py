"""The validator on the embedded chain: one node hosts every slot of a request with ``simulate_proof_failures=1``
(every periodic proof it sends is wrong) and validates with ``--validator``; its validator marks the missing proofs
period after period until the contract slashes the host out of a slot and frees it. A second test runs the
validator on one of two groups and checks that it marks only the slots of its group.

The node hosts and validates with one account: the contract allows it, and it makes the validator's reward visible
as the only token movement of that account once the slots are filled.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import httpx
import pytest
from e2ekit import (
    API,
    EXPIRY,
    PERIODS,
    SLOTS,
    ask,
    availability_body,
    dataset,
    eventually,
    sales_in,
    slot_ids,
)

from codex_node.config import NodeConfig
from codex_node.data.cid import parse_cid
from codex_node.market.deployment import DEV_CONFIG
from codex_node.market.types import Request, RequestState, SlotId, SlotState
from codex_node.node import Node
from codex_node.proofs.slotdata import dataset_commitment
from codex_node.validation.validator import Validator
from codex_node.validation.watchlist import group_of

pytestmark = pytest.mark.slow

PROVING = ("SaleProving", "SaleProvingSimulated")
SLASH_PERCENT = DEV_CONFIG.collateral.slash_percentage
REWARD_PERCENT = DEV_CONFIG.collateral.validator_reward_percentage


class Run:
    """A started node with its validator, the test's REST client and its hands on the chain."""

    def __init__(self, node: Node, api: httpx.AsyncClient) -> None:
        mp = node.marketplace
        assert mp is not None
        assert mp.chain is not None
        self.node, self.api, self.chain, self.market = node, api, mp.chain, mp.market

    @property
    def validator(self) -> Validator:
        assert self.node.validator is not None
        return self.node.validator

    async def travel(self, timestamp: int) -> None:
        await self.chain.travel_to(timestamp)
        self.market.events.wake()

    async def end_period(self) -> int:
        """Move to one second after the current period's end; return that period once the validator checked it."""
        period = PERIODS.period_of(await self.chain.latest_timestamp())
        await self.travel(PERIODS.period_end(period) + 1)
        async with asyncio.timeout(30):
            await self.validator.wait_checked(period)
        return period

    async def request_and_fill(self, *, split_groups: int | None = None) -> Request:
        """Post a request for a dataset uploaded to the node and wait until the node fills every slot; then disable
        its availability, so that a freed slot is not filled again by the same node. ``split_groups``: pick a nonce
        whose slots fall in more than one validation group."""
        node, api = self.node, self.api
        assert node.repo is not None
        assert self.chain is not None
        client = self.market.for_account(self.chain.client_account)
        cid = (await api.post("/data", content=dataset())).text
        commitment = await dataset_commitment(node.repo, parse_cid(cid), SLOTS)
        created = await api.post("/sales/availability", json=availability_body(commitment.slot_size))
        assert created.status_code == 201, created.text
        while True:
            request = Request(
                client=await client.get_signer(),
                ask=ask(commitment.slot_size),
                content=commitment.content,
                expiry=EXPIRY,
                nonce=secrets.token_bytes(32),
            )
            groups = {group_of(s, split_groups) for s in slot_ids(request.id)}
            if split_groups is None or len(groups) > 1:
                break
        await client.request_storage(request)
        sids = slot_ids(request.id)
        await eventually(lambda: sales_in(api, sids, "SaleInitialProving", *PROVING), what="slots in InitialProving")
        for _ in range(8):
            await self.travel(PERIODS.period_end(PERIODS.period_of(await self.chain.latest_timestamp())) + 1)
            try:
                await eventually(lambda: sales_in(api, sids, *PROVING), within=5.0, what="every slot proving")
                break
            except AssertionError:
                continue
        else:
            raise AssertionError("slots not filled after 8 periods")
        disabled = await api.patch(f"/sales/availability/{created.json()['id']}", json={"enabled": False})
        assert disabled.status_code == 204, disabled.text
        return request


async def started(tmp_path: Path, **config: object) -> Node:
    config.setdefault("validator", True)
    node = Node(NodeConfig(data_dir=tmp_path / "data", api_port=0, **config))  # type: ignore[arg-type]
    await node.start()
    return node


async def test_the_validator_marks_a_failing_host_until_its_slot_is_freed(tmp_path: Path) -> None:
    node = await started(tmp_path, simulate_proof_failures=1)
    try:
        async with httpx.AsyncClient(base_url=f"{node.api_url}{API}", timeout=30) as api:
            run = Run(node, api)
            request = await run.request_and_fill()
            sids = slot_ids(request.id)
            market = run.market
            assert {s.slot_id for s in run.validator.watched} == set(sids)
            me = await market.get_signer()
            before = await market.token_balance(me)
            freed: list[SlotId] = []
            for _ in range(16):
                await run.end_period()
                freed = [s for s in sids if await market.get_host(s) is None]
                if freed:
                    break
            assert freed, f"no slot freed after 16 periods; marked {run.validator.proofs_marked}"
            collateral = request.ask.collateral_per_slot
            slash = collateral * SLASH_PERCENT // 100
            # Two slots lost exceed maxSlotLoss (1): the request fails, and every slot reads Failed from then on.
            failed = len(freed) > 1
            assert await market.request_state(request.id) == (RequestState.FAILED if failed else RequestState.STARTED)
            for sid in freed:  # slashed twice (maxNumberOfSlashes), then freed for repair: the rest is lost
                assert await market.slot_state(sid) == (SlotState.FAILED if failed else SlotState.REPAIR)
                assert await market.get_host(sid) is None
                assert await market.current_collateral(sid) == 0
            for sid in set(sids) - set(freed):  # slashed at most once so far, still the node's
                missed = await market.missing_proofs(sid)
                assert missed < DEV_CONFIG.collateral.max_number_of_slashes
                assert await market.current_collateral(sid) == collateral - missed * slash
                assert await market.get_host(sid) == me
            marked = run.validator.proofs_marked
            assert marked == 2 * len(freed) + sum([await market.missing_proofs(s) for s in set(sids) - set(freed)])
            # The only tokens that moved to or from the account since: the validator's reward for each marking.
            assert await market.token_balance(me) - before == marked * (slash * REWARD_PERCENT // 100)
            # The only marking refused: when the challenge pointer moved into the downtime between the check and
            # the transaction's block (the contract judges the requirement with the block it runs in).
            assert set(run.validator.mark_failures) <= {"ProofNotRequired"}
            assert node.registry.get_sample_value("codex_validator_proofs_marked_missing_total") == marked
            watched = 0 if failed else SLOTS - len(freed)  # a failed request's slots are dropped too

            # SlotFreed/RequestFailed reach the validator through the event stream, just after the round's marks.
            async def watching() -> bool:
                return len(run.validator.watched) == watched and not set(freed) & {
                    s.slot_id for s in run.validator.watched
                }

            await eventually(watching, what="the watch list updated")
            assert node.registry.get_sample_value("codex_validator_slots_watched") == watched
            state = (await api.get("/validator")).json()
            assert state["enabled"] is True
            assert state["proofsMarked"] == marked
            assert state["slotsWatched"] == watched

            async def sale_over(sid: SlotId) -> bool:
                sale = (await api.get(f"/sales/slots/0x{sid.hex()}")).json()
                return bool(sale["state"] in ("SaleErrored", "SaleFailed"))

            for sid in freed:  # the host's own sale learns it lost the slot
                await run.travel(await run.chain.latest_timestamp() + PERIODS.seconds)
                await eventually(lambda sid=sid: sale_over(sid), what="the freed slot's sale errored")
    finally:
        await node.stop()


async def test_a_validator_of_one_group_marks_only_the_slots_of_its_group(tmp_path: Path) -> None:
    node = await started(tmp_path, simulate_proof_failures=1, validator_groups=2, validator_group_index=1)
    try:
        async with httpx.AsyncClient(base_url=f"{node.api_url}{API}", timeout=30) as api:
            run = Run(node, api)
            request = await run.request_and_fill(split_groups=2)
            sids = slot_ids(request.id)
            mine = {s for s in sids if group_of(s, 2) == 1}
            others = set(sids) - mine
            assert mine
            assert others
            assert {s.slot_id for s in run.validator.watched} == mine
            market = run.market

            async def slashed(sid: SlotId) -> bool:
                return await market.slot_state(sid) != SlotState.FILLED or await market.missing_proofs(sid) > 0

            for _ in range(12):
                await run.end_period()
                if all([await slashed(s) for s in mine]):
                    break
            assert all([await slashed(s) for s in mine]), "every slot of the group was marked at least once"
            for sid in others:  # failing just as much, but another validator's business
                assert await market.slot_state(sid) == SlotState.FILLED
                assert await market.missing_proofs(sid) == 0
                assert await market.current_collateral(sid) == request.ask.collateral_per_slot
            assert (await api.get("/validator")).json()["groups"] == 2
    finally:
        await node.stop()


async def test_a_node_restarted_as_a_validator_watches_the_slots_filled_before(tmp_path: Path) -> None:
    """The watch list comes from the chain's history, not from the node's event cursor, which had already passed
    the fills when the node first ran without ``--validator``; the next start restores the checkpoint saved at
    stop and reads only the history after it."""
    node = await started(tmp_path, validator=False, simulate_proof_failures=1)
    try:
        async with httpx.AsyncClient(base_url=f"{node.api_url}{API}", timeout=30) as api:
            request = await Run(node, api).request_and_fill()
            assert node.validator is None
            assert (await api.get("/validator")).json() == {
                "enabled": False,
                "groups": None,
                "groupIndex": 0,
                "slotsWatched": 0,
                "lastPeriod": None,
                "proofsMarked": 0,
                "markFailures": {},
                "lapsedPeriods": 0,
            }
    finally:
        await node.stop()
    sids = slot_ids(request.id)
    node = await started(tmp_path, simulate_proof_failures=1)
    try:
        async with httpx.AsyncClient(base_url=f"{node.api_url}{API}", timeout=30) as api:
            run = Run(node, api)
            assert {s.slot_id for s in run.validator.watched} == set(sids)
            for _ in range(8):
                await run.end_period()
                if run.validator.proofs_marked:
                    break
            assert run.validator.proofs_marked > 0
            assert sum([await run.market.missing_proofs(s) for s in sids]) > 0
            assert run.validator.history_from is None  # no checkpoint yet: the whole history
            watched = {s.slot_id for s in run.validator.watched}
    finally:
        await node.stop()
    node = await started(tmp_path, simulate_proof_failures=1)  # the checkpoint saved at stop is used
    try:
        validator = node.validator
        assert validator is not None
        assert validator.history_from is not None
        assert validator.history_from.anchor is not None  # a block of this chain, checked before it was used
        assert {s.slot_id for s in validator.watched} == watched
    finally:
        await node.stop()
