"""The validator against the mock market and a fake clock: rounds, timing, groups, restore, failures, stopping."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, cast

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from codex_node.errors import ChainError, ContractRevertError
from codex_node.market.deployment import DEV_CONFIG
from codex_node.market.types import (
    Ask,
    Content,
    HistoryMark,
    Periodicity,
    Request,
    SlotFreed,
    SlotId,
    SlotState,
    slot_id,
)
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.memorykv import MemoryKV
from codex_node.testing.mockmarket import MockMarket, account
from codex_node.validation.checkpoint import CheckpointStore
from codex_node.validation.metrics import ValidatorMetrics
from codex_node.validation.validator import Validator
from codex_node.validation.watchlist import group_of

if TYPE_CHECKING:
    from codex_node.proofs import StorageProof

PERIODS = Periodicity(DEV_CONFIG.proofs.period)
TIMEOUT = DEV_CONFIG.proofs.timeout
START = PERIODS.period_start(28_333_334)  # a period boundary
P0 = PERIODS.period_of(START)  # the period of the fills: no proof is due in it
ASK = Ask(
    proof_probability=1,
    price_per_byte_per_second=1,
    collateral_per_byte=1,
    slots=4,
    slot_size=65_536,
    duration=3600,
    max_slot_loss=4,
)
PROOF = cast("StorageProof", object())
SLASH = ASK.collateral_per_slot * DEV_CONFIG.collateral.slash_percentage // 100
REWARD = SLASH * DEV_CONFIG.collateral.validator_reward_percentage // 100


class World:
    def __init__(self) -> None:
        self.clock = FakeClock(START)
        self.client = MockMarket(self.clock, signer=account(1))
        self.client.mint(self.client.signer, 10**15)
        self.host = self.client.as_account(account(2))
        self.host.mint(self.host.signer, 10**15)
        self.market = self.client.as_account(account(3))  # the validator's account: no tokens, gas only
        self.registry = CollectorRegistry()
        self.validators: list[Validator] = []
        self.registry_used = False

    async def request(self, nonce: int = 1) -> Request:
        content = Content(cid=b"cid", merkle_root=b"\x07" * 32)
        request = Request(self.client.signer, ASK, content, expiry=600, nonce=nonce.to_bytes(32, "big"))
        await self.client.request_storage(request)
        return request

    async def fill(self, request: Request, index: int, *, proves: bool = False) -> SlotId:
        await self.host.reserve_slot(request.id, index)
        await self.host.fill_slot(request.id, index, PROOF, ASK.collateral_per_slot)
        sid = slot_id(request.id, index)
        self.client.set_proof_required(sid, True)
        return sid

    async def validator(
        self, groups: int | None = None, group_index: int = 0, *, checkpoints: CheckpointStore | None = None
    ) -> Validator:
        registry, self.registry_used = (CollectorRegistry(), True) if self.registry_used else (self.registry, True)
        metrics = ValidatorMetrics(registry)
        validator = Validator(
            self.market, self.clock, groups=groups, group_index=group_index, metrics=metrics, checkpoints=checkpoints
        )
        await validator.start()
        self.validators.append(validator)
        return validator

    def metric(self, name: str) -> float:
        value = self.registry.get_sample_value(name)
        assert value is not None, name
        return value

    async def end_of(self, period: int, validator: Validator, *, after: int = 1) -> None:
        """Move to ``after`` seconds past ``period``'s end and wait for the validator's round of it."""
        self.clock.set(PERIODS.period_end(period) + after)
        async with asyncio.timeout(5):
            await validator.wait_checked(period)


@pytest.fixture
async def world() -> AsyncIterator[World]:
    w = World()
    yield w
    for validator in w.validators:
        await validator.stop()


def marked(market: MockMarket) -> list[tuple[object, ...]]:
    return market.calls("mark_proof_as_missing")


async def test_marks_each_missing_proof_until_the_slot_is_freed_and_stops_watching_it(world: World) -> None:
    request = await world.request()
    sid = await world.fill(request, 0)
    validator = await world.validator()
    assert sid in validator.watched
    before = await world.market.token_balance(world.market.signer)

    await world.end_of(P0 + 1, validator)
    assert marked(world.market) == [(sid, P0 + 1)]
    assert await world.client.current_collateral(sid) == ASK.collateral_per_slot - SLASH
    assert await world.client.missing_proofs(sid) == 1

    await world.end_of(P0 + 2, validator)
    assert marked(world.market) == [(sid, P0 + 1), (sid, P0 + 2)]
    assert await world.client.slot_state(sid) == SlotState.REPAIR  # max_number_of_slashes = 2: freed
    assert SlotFreed(request.id, 0) in world.client.emitted
    assert sid not in validator.watched
    assert await world.market.token_balance(world.market.signer) - before == 2 * REWARD
    assert world.metric("codex_validator_proofs_marked_missing_total") == 2
    assert world.metric("codex_validator_slots_watched") == 0

    await world.end_of(P0 + 3, validator)
    assert len(marked(world.market)) == 2


async def test_no_proof_is_marked_in_the_period_of_the_fill_nor_before_its_end(world: World) -> None:
    request = await world.request()
    await world.fill(request, 0)
    validator = await world.validator()
    await world.end_of(P0, validator)  # the fill carried the proof of its period
    world.clock.set(PERIODS.period_end(P0 + 1))  # the very second the period ends: PeriodNotEnded
    for _ in range(20):
        await asyncio.sleep(0)
    assert validator.rounds == 1
    assert marked(world.market) == []
    assert world.market.calls("can_mark_proof_as_missing") == [(slot_id(request.id, 0), P0)]


async def test_a_proof_the_host_submitted_is_not_marked(world: World) -> None:
    request = await world.request()
    sid = await world.fill(request, 0)
    validator = await world.validator()
    world.clock.set(PERIODS.period_start(P0 + 1) + 5)
    await world.host.submit_proof(sid, PROOF)
    await world.end_of(P0 + 1, validator)
    assert marked(world.market) == []
    assert (sid, P0 + 1) in world.market.calls("can_mark_proof_as_missing")


async def test_a_period_checked_just_before_its_timeout_is_marked_and_one_after_has_lapsed(world: World) -> None:
    request = await world.request()
    sid = await world.fill(request, 0)
    validator = await world.validator()
    await world.end_of(P0 + 1, validator, after=TIMEOUT - 1)
    assert marked(world.market) == [(sid, P0 + 1)]
    await world.end_of(P0 + 3, validator, after=1)  # P0+2's window closed unchecked
    assert marked(world.market) == [(sid, P0 + 1), (sid, P0 + 3)]
    assert validator.lapsed_periods == 1
    assert world.metric("codex_validator_lapsed_periods_total") == 1


async def test_a_validator_of_a_group_marks_only_the_slots_of_its_group(world: World) -> None:
    request = await world.request()
    sids = [await world.fill(request, i) for i in range(4)]
    groups = [group_of(s, 2) for s in sids]
    assert set(groups) == {0, 1}, "the request's slots fall in both groups"
    even, odd = await world.validator(2, 0), await world.validator(2, 1)
    await world.end_of(P0 + 1, even)
    await odd.wait_checked(P0 + 1)
    assert {s.slot_id for s in even.watched} == {s for s, g in zip(sids, groups, strict=True) if g == 0}
    assert {s.slot_id for s in odd.watched} == {s for s, g in zip(sids, groups, strict=True) if g == 1}
    calls = {args[0] for args in world.market.calls("can_mark_proof_as_missing")}
    assert calls == set(sids)  # both validators share the account's call log; together they cover every slot
    assert even.proofs_marked == groups.count(0)
    assert odd.proofs_marked == groups.count(1)


async def test_a_restarted_validator_watches_slots_filled_before_and_while_it_was_down(world: World) -> None:
    request = await world.request()
    first = await world.fill(request, 0)
    validator = await world.validator()
    await validator.stop()
    world.validators.remove(validator)
    second = await world.fill(request, 1)  # while no validator ran
    await world.fill(request, 2)
    await world.host.free_slot(slot_id(request.id, 2))  # filled and freed while down: not watched
    restarted = await world.validator()
    assert {s.slot_id for s in restarted.watched} == {first, second}
    await world.end_of(P0 + 1, restarted)
    assert {args[0] for args in marked(world.market)} == {first, second}


async def test_a_restarted_validator_restores_its_checkpoint_and_reads_only_the_history_after_it(world: World) -> None:
    checkpoints = CheckpointStore(MemoryKV(), "0xMarket")
    request = await world.request()
    first = await world.fill(request, 0)
    second = await world.fill(request, 1)
    validator = await world.validator(checkpoints=checkpoints)
    assert world.market.calls("past_events") == [(None,)]  # no checkpoint yet: the whole history
    await world.end_of(P0 + 1, validator)  # a round saves the checkpoint
    saved = checkpoints.load()
    assert saved is not None
    assert set(saved.slots) == {(request.id, 0), (request.id, 1)}
    await validator.stop()
    world.validators.remove(validator)
    stopped = checkpoints.load()
    assert stopped is not None
    mark = stopped.since
    assert mark == HistoryMark(len(world.client.emitted))  # every event so far delivered

    third = await world.fill(request, 2)  # while no validator ran
    await world.host.free_slot(first)
    restarted = await world.validator(checkpoints=checkpoints)
    assert world.market.calls("past_events")[-1] == (mark,)  # only what happened since the checkpoint
    assert {s.slot_id for s in restarted.watched} == {second, third}


async def test_a_checkpoint_of_other_groups_or_an_unreadable_one_is_not_used(world: World) -> None:
    kv = MemoryKV()
    checkpoints = CheckpointStore(kv, "0xMarket")
    request = await world.request()
    sids = [await world.fill(request, i) for i in range(4)]
    validator = await world.validator(checkpoints=checkpoints)
    await validator.stop()
    world.validators.remove(validator)
    assert checkpoints.load() is not None

    grouped = await world.validator(2, 1, checkpoints=checkpoints)  # another group watches other slots
    assert world.market.calls("past_events")[-1] == (None,)
    assert {s.slot_id for s in grouped.watched} == {s for s in sids if group_of(s, 2) == 1}
    await grouped.stop()
    world.validators.remove(grouped)

    kv.put(checkpoints.key, b'{"version": 1, "since": -4}')
    with capture_logs() as logs:
        again = await world.validator(2, 1, checkpoints=checkpoints)
    assert world.market.calls("past_events")[-1] == (None,)
    assert {s.slot_id for s in again.watched} == {s for s in sids if group_of(s, 2) == 1}
    assert any(e["event"].startswith("validator checkpoint ignored") for e in logs)


async def test_a_validator_that_did_not_start_saves_no_checkpoint(world: World) -> None:
    checkpoints = CheckpointStore(MemoryKV(), "0xMarket")
    request = await world.request()
    await world.fill(request, 0)
    never = Validator(world.market, world.clock, checkpoints=checkpoints)
    await never.stop()
    world.market.fail_next("past_events", ChainError("node unreachable"))
    failed = Validator(world.market, world.clock, checkpoints=checkpoints)
    with pytest.raises(ChainError):
        await failed.start()
    await failed.stop()
    # An empty list saved with a mark would hide the slot filled before it from every later start.
    assert checkpoints.load() is None


async def test_a_checkpoint_that_cannot_be_saved_keeps_the_one_before_and_the_rounds_go_on(world: World) -> None:
    checkpoints = CheckpointStore(MemoryKV(), "0xMarket")
    request = await world.request()
    sid = await world.fill(request, 0)
    validator = await world.validator(checkpoints=checkpoints)
    await world.end_of(P0 + 1, validator)
    before = checkpoints.load()
    assert before is not None
    await world.fill(request, 1)
    world.market.fail_next("history_mark", ChainError("node unreachable"))
    with capture_logs() as logs:
        await world.end_of(P0 + 2, validator)
    assert checkpoints.load() == before
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["validator checkpoint not saved"]
    assert [args for args in marked(world.market) if args[0] == sid] == [(sid, P0 + 1), (sid, P0 + 2)]
    await world.end_of(P0 + 3, validator)  # the next round saves again
    after = checkpoints.load()
    assert after is not None
    assert after.slots == ((request.id, 1),)  # slot 0 was slashed out at P0 + 2 (two missed proofs)
    assert after.since.point > before.since.point


async def test_an_event_delivered_during_the_history_read_is_not_lost(world: World) -> None:
    request = await world.request()
    await world.fill(request, 0)

    async def fill_meanwhile() -> None:
        world.market.on_call("past_events", None)
        await world.fill(request, 1)  # its SlotFilled reaches the subscription before the history is applied

    world.market.on_call("past_events", fill_meanwhile)
    validator = await world.validator()
    assert {s.slot_index for s in validator.watched} == {0, 1}


async def test_a_failed_marking_is_counted_and_the_round_goes_on(world: World) -> None:
    request = await world.request()
    sids = [await world.fill(request, i) for i in range(3)]
    validator = await world.validator()
    world.market.fail_next("mark_proof_as_missing", ContractRevertError("ValidationTimedOut"))
    with capture_logs() as logs:
        await world.end_of(P0 + 1, validator)
    assert len(marked(world.market)) == 3  # every slot was tried
    assert validator.proofs_marked == 2
    assert validator.mark_failures == {"ValidationTimedOut": 1}
    assert world.registry.get_sample_value("codex_validator_mark_failures_total", {"reason": "ValidationTimedOut"}) == 1
    assert any(e["event"] == "marking a missing proof failed" for e in logs)
    await world.end_of(P0 + 2, validator)  # the validator keeps going
    assert validator.proofs_marked == 2 + 3
    assert {args[0] for args in marked(world.market)} == set(sids)


async def test_a_slot_whose_check_cannot_read_the_chain_is_checked_again_next_period(world: World) -> None:
    request = await world.request()
    sid = await world.fill(request, 0)
    validator = await world.validator()
    world.market.fail_next("slot_state", ChainError("node unreachable"))
    await world.end_of(P0 + 1, validator)
    assert marked(world.market) == []
    assert sid in validator.watched
    assert world.metric("codex_validator_check_failures_total") == 1
    await world.end_of(P0 + 2, validator)
    assert marked(world.market) == [(sid, P0 + 2)]


async def test_slots_of_an_ended_request_are_dropped(world: World) -> None:
    request = await world.request()
    sid = await world.fill(request, 0)
    for i in range(1, 4):
        await world.fill(request, i)
    validator = await world.validator()
    ends = await world.client.request_end(request.id)
    period = PERIODS.period_of(ends)
    world.clock.set(ends + 1)
    await world.end_of(period, validator)
    assert len(validator.watched) == 0
    assert await world.client.slot_state(sid) == SlotState.FINISHED


async def test_a_failed_request_drops_its_slots_at_once(world: World) -> None:
    request = await world.request()
    await world.fill(request, 0)
    validator = await world.validator()
    from codex_node.market.types import RequestFailed

    await world.client.emit(RequestFailed(request.id))
    assert len(validator.watched) == 0


async def test_stop_cancels_a_round_in_flight_and_the_cancellation_is_not_swallowed(world: World) -> None:
    request = await world.request()
    await world.fill(request, 0)
    validator = await world.validator()
    entered = asyncio.Event()

    async def stall() -> None:
        entered.set()
        await asyncio.Event().wait()

    world.market.on_call("mark_proof_as_missing", stall)
    world.clock.set(PERIODS.period_end(P0 + 1) + 1)
    async with asyncio.timeout(5):
        await entered.wait()
        await validator.stop()
    world.validators.remove(validator)
    assert validator.proofs_marked == 0
    assert not validator.mark_failures


async def test_a_marking_refused_because_the_slot_ended_meanwhile_is_no_failure(world: World) -> None:
    request = await world.request()
    sid = await world.fill(request, 0)
    validator = await world.validator()

    async def host_leaves() -> None:  # between the check and the marking, the slot stops being Filled
        world.market.on_call("mark_proof_as_missing", None)
        await world.host.free_slot(sid)

    world.market.on_call("mark_proof_as_missing", host_leaves)
    await world.end_of(P0 + 1, validator)
    assert marked(world.market) == [(sid, P0 + 1)]  # tried, and refused: SlotNotAcceptingProofs
    assert validator.proofs_marked == 0
    assert not validator.mark_failures
    assert sid not in validator.watched
