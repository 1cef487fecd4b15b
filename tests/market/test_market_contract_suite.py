"""The marketplace lifecycle, run against every Market implementation (the ``market_env`` fixture's params).

These tests only use the Market port and the env's helpers, never an implementation's internals, so the same
expectations hold for MockMarket and for the real contract. Timestamps are read back after transactions (a chain
moves time by itself); amounts are computed from those timestamps with the contract's arithmetic.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest
from marketenv import DEFAULT_ASK, EventRecorder, MarketEnv

from codex_node.errors import (
    ContractRevertError,
    ProofInvalidError,
    SlotReservationNotAllowedError,
    SlotStateMismatchError,
)
from codex_node.market.market import Market
from codex_node.market.types import (
    Address,
    ProofSubmitted,
    Request,
    RequestCancelled,
    RequestFailed,
    RequestFulfilled,
    RequestId,
    RequestState,
    Slot,
    SlotFilled,
    SlotFreed,
    SlotReservationsFull,
    SlotState,
    StorageRequested,
    slot_id,
)

PRICE_PER_SLOT_PER_SECOND = DEFAULT_ASK.price_per_slot_per_second
COLLATERAL = DEFAULT_ASK.collateral_per_slot


@contextmanager
def reverts(error_name: str) -> Iterator[None]:
    with pytest.raises(ContractRevertError) as caught:
        yield
    assert caught.value.error_name == error_name


async def post(env: MarketEnv, request: Request | None = None) -> Request:
    request = request or env.new_request(await env.client.get_signer())
    await env.client.request_storage(request)
    return request


async def fill(env: MarketEnv, host: Market, request: Request, index: int) -> int:
    """Reserve and fill one slot; returns the fill's timestamp."""
    await host.reserve_slot(request.id, index)
    collateral = await host.slot_collateral(request.id, index)
    await host.fill_slot(request.id, index, await env.valid_proof(request, index), collateral)
    return await env.now()


async def start(env: MarketEnv, request: Request) -> list[int]:
    """Fill every slot, slot ``i`` by ``env.hosts[i]``; returns the fill timestamps."""
    return [await fill(env, env.hosts[i], request, i) for i in range(request.ask.slots)]


async def address(market: Market) -> Address:
    return await market.get_signer()


# --- requests ---------------------------------------------------------------------------------------------------


async def test_request_storage_takes_max_price_and_records_the_request(market_env: MarketEnv) -> None:
    env = market_env
    client = await address(env.client)
    recorder = await EventRecorder.on(env.client)
    before = await env.client.token_balance(client)
    request = env.new_request(client)

    await env.client.request_storage(request)
    created = await env.now()

    assert await env.client.token_balance(client) == before - DEFAULT_ASK.max_price
    assert await env.client.get_request(request.id) == request
    assert await env.client.request_state(request.id) == RequestState.NEW
    assert await env.client.request_expires_at(request.id) == created + request.expiry
    assert await env.client.request_end(request.id) == created + DEFAULT_ASK.duration
    assert request.id in await env.client.my_requests()
    assert await recorder.wait_for(1) == [StorageRequested(request.id, DEFAULT_ASK, created + request.expiry)]


async def test_unknown_request_has_no_state_and_no_request(market_env: MarketEnv) -> None:
    unknown = RequestId(b"\x42" * 32)
    assert await market_env.client.get_request(unknown) is None
    assert await market_env.client.request_state(unknown) is None


@pytest.mark.parametrize(
    ("change", "error_name"),
    [
        ({"expiry": 0}, "InvalidExpiry"),
        ({"expiry": DEFAULT_ASK.duration}, "InvalidExpiry"),
        ({"ask": replace(DEFAULT_ASK, slots=0, max_slot_loss=0)}, "InsufficientSlots"),
        ({"ask": replace(DEFAULT_ASK, max_slot_loss=DEFAULT_ASK.slots + 1)}, "InvalidMaxSlotLoss"),
        ({"ask": replace(DEFAULT_ASK, slot_size=1000)}, "InvalidSlotSize"),
        ({"ask": replace(DEFAULT_ASK, proof_probability=0)}, "InsufficientProofProbability"),
        ({"ask": replace(DEFAULT_ASK, collateral_per_byte=0)}, "InsufficientCollateral"),
        ({"ask": replace(DEFAULT_ASK, price_per_byte_per_second=0)}, "InsufficientReward"),
        ({"ask": replace(DEFAULT_ASK, duration=10**9)}, "DurationExceedsLimit"),
    ],
)
async def test_request_storage_rejects_invalid_requests(
    market_env: MarketEnv, change: dict[str, object], error_name: str
) -> None:
    base = market_env.new_request(await address(market_env.client))
    request = replace(base, **change)  # type: ignore[arg-type]
    with reverts(error_name):
        await market_env.client.request_storage(request)
    assert await market_env.client.request_state(request.id) is None


async def test_request_storage_rejects_empty_cid_foreign_client_and_duplicates(market_env: MarketEnv) -> None:
    env = market_env
    request = env.new_request(await address(env.client))
    with reverts("InvalidCid"):
        await env.client.request_storage(replace(request, content=replace(request.content, cid=b"")))
    with reverts("InvalidClientAddress"):
        await env.hosts[0].request_storage(request)
    await env.client.request_storage(request)
    with reverts("RequestAlreadyExists"):
        await env.client.request_storage(request)


# --- reservations -----------------------------------------------------------------------------------------------


async def test_reservations_fill_up_at_max_reservations(market_env: MarketEnv) -> None:
    env = market_env
    request = await post(env)
    recorder = await EventRecorder.on(env.client)
    max_reservations = (await env.client.config()).max_reservations
    assert len(env.hosts) > max_reservations

    for host in env.hosts[:max_reservations]:
        assert await host.can_reserve_slot(request.id, 0)
        await host.reserve_slot(request.id, 0)

    assert await recorder.wait_for(1) == [SlotReservationsFull(request.id, 0)]
    late = env.hosts[max_reservations]
    assert not await late.can_reserve_slot(request.id, 0)
    with pytest.raises(SlotReservationNotAllowedError):
        await late.reserve_slot(request.id, 0)
    assert await late.can_reserve_slot(request.id, 1)


async def test_a_host_cannot_reserve_twice_nor_a_missing_or_filled_slot(market_env: MarketEnv) -> None:
    env = market_env
    request = await post(env)
    host = env.hosts[0]
    await host.reserve_slot(request.id, 0)
    assert not await host.can_reserve_slot(request.id, 0)
    with pytest.raises(SlotReservationNotAllowedError):
        await host.reserve_slot(request.id, 0)
    assert not await host.can_reserve_slot(request.id, DEFAULT_ASK.slots)
    assert not await host.can_reserve_slot(RequestId(b"\x42" * 32), 0)

    await host.fill_slot(request.id, 0, await env.valid_proof(request, 0), COLLATERAL)
    assert not await env.hosts[1].can_reserve_slot(request.id, 0)


# --- filling ----------------------------------------------------------------------------------------------------


async def test_filling_all_slots_starts_the_request_with_events_in_chain_order(market_env: MarketEnv) -> None:
    env = market_env
    recorder = await EventRecorder.on(env.client)
    request = await post(env)
    await start(env, request)

    slots = [slot_id(request.id, i) for i in range(3)]
    expected = [
        StorageRequested(request.id, DEFAULT_ASK, await env.client.request_expires_at(request.id)),
        ProofSubmitted(slots[0]),
        SlotFilled(request.id, 0),
        ProofSubmitted(slots[1]),
        SlotFilled(request.id, 1),
        ProofSubmitted(slots[2]),
        SlotFilled(request.id, 2),
        RequestFulfilled(request.id),
    ]
    assert await recorder.wait_for(len(expected)) == expected
    assert await env.client.request_state(request.id) == RequestState.STARTED


async def test_fill_takes_collateral_and_makes_the_filler_the_host(market_env: MarketEnv) -> None:
    env = market_env
    request = await post(env)
    host = env.hosts[0]
    sid = slot_id(request.id, 0)
    before = await host.token_balance(await address(host))
    assert await host.get_active_slot(sid) is None

    await fill(env, host, request, 0)

    assert await host.token_balance(await address(host)) == before - COLLATERAL
    assert await host.slot_state(sid) == SlotState.FILLED
    assert await host.get_host(sid) == await address(host)
    assert await host.current_collateral(sid) == COLLATERAL
    assert await host.get_active_slot(sid) == Slot(request, 0)
    assert await host.my_slots() == [sid]
    assert await env.hosts[1].my_slots() == []
    assert await env.client.request_state(request.id) == RequestState.NEW


async def test_fill_without_reservation_is_refused(market_env: MarketEnv) -> None:
    env = market_env
    request = await post(env)
    with reverts("ReservationRequired"):
        await env.hosts[0].fill_slot(request.id, 0, await env.valid_proof(request, 0), COLLATERAL)


async def test_fill_of_an_already_filled_slot_is_a_slot_state_mismatch(market_env: MarketEnv) -> None:
    env = market_env
    request = await post(env)
    await env.hosts[1].reserve_slot(request.id, 0)
    await fill(env, env.hosts[0], request, 0)
    with pytest.raises(SlotStateMismatchError):
        await env.hosts[1].fill_slot(request.id, 0, await env.valid_proof(request, 0), COLLATERAL)


async def test_fill_of_a_slot_of_an_expired_request_is_a_slot_state_mismatch(market_env: MarketEnv) -> None:
    env = market_env
    request = await post(env)
    await env.hosts[0].reserve_slot(request.id, 0)
    await env.advance_to(await env.client.request_expires_at(request.id) + 1)
    with pytest.raises(SlotStateMismatchError):
        await env.hosts[0].fill_slot(request.id, 0, await env.valid_proof(request, 0), COLLATERAL)


async def test_fill_of_a_missing_slot_or_unknown_request_reverts(market_env: MarketEnv) -> None:
    env = market_env
    request = await post(env)
    proof = await env.valid_proof(request, 0)
    with reverts("InvalidSlot"):
        await env.hosts[0].fill_slot(request.id, DEFAULT_ASK.slots, proof, COLLATERAL)
    with reverts("UnknownRequest"):
        await env.hosts[0].fill_slot(RequestId(b"\x42" * 32), 0, proof, COLLATERAL)


async def test_fill_with_an_invalid_proof_is_refused(market_env: MarketEnv) -> None:
    env = market_env
    request = await post(env)
    host = env.hosts[0]
    await host.reserve_slot(request.id, 0)
    with pytest.raises(ProofInvalidError):
        await host.fill_slot(request.id, 0, await env.invalid_proof(request, 0), COLLATERAL)
    assert await host.slot_state(slot_id(request.id, 0)) == SlotState.FREE


# --- proofs -----------------------------------------------------------------------------------------------------


async def test_no_proof_is_required_in_the_period_of_the_fill(market_env: MarketEnv) -> None:
    env = market_env
    request = await post(env)
    await start(env, request)
    sid = slot_id(request.id, 0)
    assert not await env.hosts[0].is_proof_required(sid)
    assert not await env.hosts[0].will_proof_be_required(sid)


async def test_host_submits_one_proof_per_required_period(market_env: MarketEnv) -> None:
    env = market_env
    request = await post(env)
    await start(env, request)
    host = env.hosts[0]
    sid = slot_id(request.id, 0)
    recorder = await EventRecorder.on(env.client)

    period = await env.advance_to_required_proof(sid)
    assert await host.submit_proof(sid, await env.valid_proof(request, 0)) == period  # the period it counts for
    assert await recorder.wait_for(1) == [ProofSubmitted(sid)]
    with reverts("ProofAlreadySubmitted"):
        await host.submit_proof(sid, await env.valid_proof(request, 0))

    period = await env.advance_to_required_proof(sid)
    assert await host.submit_proof(sid, await env.valid_proof(request, 0)) == period
    assert await recorder.wait_for(2) == [ProofSubmitted(sid), ProofSubmitted(sid)]


async def test_proof_from_another_account_is_refused(market_env: MarketEnv) -> None:
    env = market_env
    request = await post(env)
    await start(env, request)
    sid = slot_id(request.id, 0)
    await env.advance_to_required_proof(sid)
    with reverts("ProofNotSubmittedByHost"):
        await env.hosts[1].submit_proof(sid, await env.valid_proof(request, 0))


async def test_invalid_proof_is_refused(market_env: MarketEnv) -> None:
    env = market_env
    request = await post(env)
    await start(env, request)
    sid = slot_id(request.id, 0)
    await env.advance_to_required_proof(sid)
    with pytest.raises(ProofInvalidError):
        await env.hosts[0].submit_proof(sid, await env.invalid_proof(request, 0))
    # The refused proof does not count: a valid one is still accepted in the same period.
    await env.hosts[0].submit_proof(sid, await env.valid_proof(request, 0))


# --- validation: missed proofs, slashing, repair, failure -------------------------------------------------------


async def test_missed_proof_marked_by_a_validator_slashes_the_host_and_rewards_the_validator(
    market_env: MarketEnv,
) -> None:
    env = market_env
    request = await post(env)
    await start(env, request)
    sid = slot_id(request.id, 0)
    config = await env.client.config()
    periodicity = await env.client.periodicity()
    validator = await address(env.validator)

    period = await env.advance_to_required_proof(sid)
    assert not await env.validator.can_mark_proof_as_missing(sid, period)
    with reverts("PeriodNotEnded"):
        await env.validator.mark_proof_as_missing(sid, period)
    await env.advance_to(periodicity.period_end(period))
    assert not await env.validator.can_mark_proof_as_missing(sid, period)  # the end instant is not "ended" yet

    await env.advance_to(periodicity.period_end(period) + 1)
    assert await env.validator.can_mark_proof_as_missing(sid, period)
    before = await env.validator.token_balance(validator)
    await env.validator.mark_proof_as_missing(sid, period)

    slashed = COLLATERAL * config.collateral.slash_percentage // 100
    reward = slashed * config.collateral.validator_reward_percentage // 100
    assert await env.validator.token_balance(validator) == before + reward
    assert await env.client.current_collateral(sid) == COLLATERAL - slashed
    assert await env.client.missing_proofs(sid) == 1
    assert await env.client.slot_state(sid) == SlotState.FILLED
    assert not await env.validator.can_mark_proof_as_missing(sid, period)
    with reverts("ProofAlreadyMarkedMissing"):
        await env.validator.mark_proof_as_missing(sid, period)


async def test_a_submitted_or_timed_out_proof_cannot_be_marked_missing(market_env: MarketEnv) -> None:
    env = market_env
    request = await post(env)
    await start(env, request)
    sid = slot_id(request.id, 0)
    config = await env.client.config()
    periodicity = await env.client.periodicity()

    proven = await env.advance_to_required_proof(sid)
    await env.hosts[0].submit_proof(sid, await env.valid_proof(request, 0))
    await env.advance_to(periodicity.period_end(proven) + 1)
    with reverts("ProofNotMissing"):
        await env.validator.mark_proof_as_missing(sid, proven)

    missed = await env.advance_to_required_proof(sid)
    await env.advance_to(periodicity.period_end(missed) + config.proofs.timeout)
    assert not await env.validator.can_mark_proof_as_missing(sid, missed)
    with reverts("ValidationTimedOut"):
        await env.validator.mark_proof_as_missing(sid, missed)
    assert await env.client.missing_proofs(sid) == 0


async def mark_missed_proofs(env: MarketEnv, request: Request, index: int, count: int) -> None:
    sid = slot_id(request.id, index)
    periodicity = await env.client.periodicity()
    for _ in range(count):
        period = await env.advance_to_required_proof(sid)
        await env.advance_to(periodicity.period_end(period) + 1)
        await env.validator.mark_proof_as_missing(sid, period)


async def test_max_number_of_slashes_frees_the_slot_for_repair(market_env: MarketEnv) -> None:
    env = market_env
    request = await post(env)
    await start(env, request)
    sid = slot_id(request.id, 0)
    slashes = (await env.client.config()).collateral.max_number_of_slashes
    recorder = await EventRecorder.on(env.client)

    await mark_missed_proofs(env, request, 0, slashes - 1)
    assert await env.client.slot_state(sid) == SlotState.FILLED
    await mark_missed_proofs(env, request, 0, 1)

    assert await recorder.wait_for(1) == [SlotFreed(request.id, 0)]
    assert await env.client.slot_state(sid) == SlotState.REPAIR
    assert await env.client.get_host(sid) is None
    assert await env.client.current_collateral(sid) == 0
    assert await env.client.missing_proofs(sid) == 0
    assert sid not in await env.hosts[0].my_slots()
    # One lost slot is within maxSlotLoss (1): the request keeps running.
    assert await env.client.request_state(request.id) == RequestState.STARTED
    with reverts("SlotNotAcceptingProofs"):
        await env.validator.mark_proof_as_missing(sid, 0)


async def test_repair_fill_posts_discounted_collateral_but_holds_the_full_amount(market_env: MarketEnv) -> None:
    env = market_env
    request = await post(env)
    for host in env.hosts[1:3]:  # with hosts 0..2 holding reservations, slot 0's reservations are full
        await host.reserve_slot(request.id, 0)
    await start(env, request)
    sid = slot_id(request.id, 0)
    repair_reward = (await env.client.config()).collateral.repair_reward_percentage
    await env.hosts[0].free_slot(sid)  # leaving early forfeits the collateral and opens the slot for repair
    recorder = await EventRecorder.on(env.client)

    # Freeing clears the old reservations, so anyone may reserve the slot again, even its former host.
    assert await env.hosts[0].can_reserve_slot(request.id, 0)
    repairer = env.hosts[3]
    discounted = COLLATERAL * (100 - repair_reward) // 100
    assert await repairer.slot_collateral(request.id, 0) == discounted
    before = await repairer.token_balance(await address(repairer))
    await fill(env, repairer, request, 0)

    assert await repairer.token_balance(await address(repairer)) == before - discounted
    assert await repairer.current_collateral(sid) == COLLATERAL
    assert await repairer.get_host(sid) == await address(repairer)
    assert await recorder.wait_for(2) == [ProofSubmitted(sid), SlotFilled(request.id, 0)]
    assert await env.client.request_state(request.id) == RequestState.STARTED


async def test_losing_more_than_max_slot_loss_slots_fails_the_request(market_env: MarketEnv) -> None:
    env = market_env
    request = await post(env)
    await start(env, request)
    recorder = await EventRecorder.on(env.client)
    host_balances = [await h.token_balance(await address(h)) for h in env.hosts[:3]]

    await env.hosts[0].free_slot(slot_id(request.id, 0))
    assert await env.client.request_state(request.id) == RequestState.STARTED
    await env.hosts[1].free_slot(slot_id(request.id, 1))
    failed_at = await env.now()

    assert await recorder.wait_for(3) == [SlotFreed(request.id, 0), SlotFreed(request.id, 1), RequestFailed(request.id)]
    assert await env.client.request_state(request.id) == RequestState.FAILED
    assert await env.client.request_end(request.id) == failed_at - 1
    sid2 = slot_id(request.id, 2)
    assert await env.client.slot_state(sid2) == SlotState.FAILED

    # The host of a failed slot only gets the slot off its list; nobody got collateral back.
    await env.hosts[2].free_slot(sid2)
    assert await env.hosts[2].my_slots() == []
    assert [await h.token_balance(await address(h)) for h in env.hosts[:3]] == host_balances

    client = await address(env.client)
    before = await env.client.token_balance(client)
    assert await env.client.withdraw_funds(request.id) == DEFAULT_ASK.max_price  # what came back, it says
    assert await env.client.token_balance(client) == before + DEFAULT_ASK.max_price


async def test_missed_proofs_on_too_many_slots_fail_the_request(market_env: MarketEnv) -> None:
    env = market_env
    request = await post(env, env.new_request(await address(env.client), replace(DEFAULT_ASK, max_slot_loss=0)))
    await start(env, request)
    recorder = await EventRecorder.on(env.client)
    slashes = (await env.client.config()).collateral.max_number_of_slashes

    await mark_missed_proofs(env, request, 0, slashes)

    assert await recorder.wait_for(2) == [SlotFreed(request.id, 0), RequestFailed(request.id)]
    assert await env.client.request_state(request.id) == RequestState.FAILED


# --- payouts and withdrawals ------------------------------------------------------------------------------------


async def test_finished_request_pays_hosts_and_returns_the_rest_to_the_client(market_env: MarketEnv) -> None:
    env = market_env
    market_before = await env.client.token_balance(env.marketplace_address)
    request = await post(env)
    await env.advance_to(await env.now() + 10)  # fills come later than the request, so the client has a refund
    filled_at = await start(env, request)
    ends_at = await env.client.request_end(request.id)

    await env.advance_to(ends_at + 1)
    assert await env.client.request_state(request.id) == RequestState.FINISHED
    for i, host in enumerate(env.hosts[:3]):
        sid = slot_id(request.id, i)
        assert await host.slot_state(sid) == SlotState.FINISHED
        before = await host.token_balance(await address(host))
        await host.free_slot(sid)
        payout = (ends_at - filled_at[i]) * PRICE_PER_SLOT_PER_SECOND
        assert await host.token_balance(await address(host)) == before + payout + COLLATERAL
        assert await host.slot_state(sid) == SlotState.PAID
        assert await host.my_slots() == []
        with reverts("AlreadyPaid"):
            await host.free_slot(sid)

    client = await address(env.client)
    before = await env.client.token_balance(client)
    await env.client.withdraw_funds(request.id)
    refund = DEFAULT_ASK.max_price - sum((ends_at - t) * PRICE_PER_SLOT_PER_SECOND for t in filled_at)
    assert refund > 0
    assert await env.client.token_balance(client) == before + refund
    assert request.id not in await env.client.my_requests()
    with reverts("NothingToWithdraw"):
        await env.client.withdraw_funds(request.id)
    # Everything the request and its hosts put into the marketplace has gone out again.
    assert await env.client.token_balance(env.marketplace_address) == market_before


async def test_cancelled_request_pays_hosts_until_expiry_and_refunds_the_client(market_env: MarketEnv) -> None:
    env = market_env
    market_before = await env.client.token_balance(env.marketplace_address)
    request = await post(env)
    await env.advance_to(await env.now() + 10)
    filled_at = await fill(env, env.hosts[0], request, 0)
    expires_at = await env.client.request_expires_at(request.id)
    recorder = await EventRecorder.on(env.client)

    await env.advance_to(expires_at + 1)
    sid = slot_id(request.id, 0)
    assert await env.client.request_state(request.id) == RequestState.CANCELLED
    assert await env.client.slot_state(sid) == SlotState.CANCELLED
    assert await env.client.slot_state(slot_id(request.id, 1)) == SlotState.FREE

    host = env.hosts[0]
    before = await host.token_balance(await address(host))
    await host.free_slot(sid)
    host_payout = (expires_at - filled_at) * PRICE_PER_SLOT_PER_SECOND
    assert await host.token_balance(await address(host)) == before + host_payout + COLLATERAL

    client = await address(env.client)
    before = await env.client.token_balance(client)
    await env.client.withdraw_funds(request.id)
    assert await env.client.token_balance(client) == before + DEFAULT_ASK.max_price - host_payout
    assert await recorder.wait_for(1) == [RequestCancelled(request.id)]
    assert await env.client.token_balance(env.marketplace_address) == market_before


async def test_withdrawal_needs_the_client_and_an_ended_request(market_env: MarketEnv) -> None:
    env = market_env
    request = await post(env)
    with reverts("InvalidState"):
        await env.client.withdraw_funds(request.id)
    await start(env, request)
    with reverts("InvalidState"):
        await env.client.withdraw_funds(request.id)
    await env.advance_to(await env.client.request_end(request.id) + 1)
    with reverts("InvalidClientAddress"):
        await env.hosts[0].withdraw_funds(request.id)
    with reverts("UnknownRequest"):
        await env.client.withdraw_funds(RequestId(b"\x42" * 32))


async def test_free_slot_refuses_free_slots_and_other_accounts(market_env: MarketEnv) -> None:
    env = market_env
    request = await post(env)
    with reverts("SlotIsFree"):
        await env.hosts[0].free_slot(slot_id(request.id, 0))
    await fill(env, env.hosts[0], request, 0)
    with reverts("InvalidSlotHost"):
        await env.hosts[1].free_slot(slot_id(request.id, 0))


async def test_leaving_a_filled_slot_forfeits_the_collateral(market_env: MarketEnv) -> None:
    env = market_env
    request = await post(env)
    host = env.hosts[0]
    await fill(env, host, request, 0)
    before = await host.token_balance(await address(host))
    sid = slot_id(request.id, 0)

    await host.free_slot(sid)

    assert await host.token_balance(await address(host)) == before
    assert await host.slot_state(sid) == SlotState.REPAIR
    assert await host.my_slots() == []


# --- derived states at the right instants -----------------------------------------------------------------------


async def test_request_is_cancelled_only_after_its_expiry_instant(market_env: MarketEnv) -> None:
    env = market_env
    request = await post(env)
    await fill(env, env.hosts[0], request, 0)
    expires_at = await env.client.request_expires_at(request.id)
    ends_at = await env.client.request_end(request.id)
    sid = slot_id(request.id, 0)

    await env.advance_to(expires_at)
    assert await env.client.request_state(request.id) == RequestState.NEW
    assert await env.client.slot_state(sid) == SlotState.FILLED
    assert await env.client.request_end(request.id) == ends_at

    await env.advance_to(expires_at + 1)
    assert await env.client.request_state(request.id) == RequestState.CANCELLED
    assert await env.client.slot_state(sid) == SlotState.CANCELLED
    assert await env.client.request_end(request.id) == expires_at


async def test_started_request_finishes_only_after_its_end_instant(market_env: MarketEnv) -> None:
    env = market_env
    request = await post(env)
    await start(env, request)
    ends_at = await env.client.request_end(request.id)
    sid = slot_id(request.id, 0)

    await env.advance_to(ends_at)
    assert await env.client.request_state(request.id) == RequestState.STARTED
    assert await env.client.slot_state(sid) == SlotState.FILLED

    await env.advance_to(ends_at + 1)
    assert await env.client.request_state(request.id) == RequestState.FINISHED
    assert await env.client.slot_state(sid) == SlotState.FINISHED
    assert await env.client.request_end(request.id) == ends_at


async def test_expiry_alone_emits_no_event(market_env: MarketEnv) -> None:
    env = market_env
    request = await post(env)
    recorder = await EventRecorder.on(env.client)
    await env.advance_to(await env.client.request_expires_at(request.id) + 1)
    assert await env.client.request_state(request.id) == RequestState.CANCELLED
    # RequestCancelled only comes with the client's withdrawal; a later event proves nothing was queued before it.
    await env.client.withdraw_funds(request.id)
    assert await recorder.wait_for(1) == [RequestCancelled(request.id)]


# --- events -----------------------------------------------------------------------------------------------------


async def test_unsubscribed_handler_receives_nothing_more(market_env: MarketEnv) -> None:
    env = market_env
    seen: list[StorageRequested] = []

    async def on_requested(event: StorageRequested) -> None:
        seen.append(event)

    subscription = await env.client.subscribe(StorageRequested, on_requested)
    recorder = await EventRecorder.on(env.client)
    first = await post(env)
    await recorder.wait_for(1)
    await subscription.unsubscribe()
    await post(env)
    await recorder.wait_for(2)
    assert [e.request_id for e in seen] == [first.id]
