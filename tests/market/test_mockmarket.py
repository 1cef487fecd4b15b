"""MockMarket's test controls: failure injection, call log, hooks, accounts, proof controls, event delivery.

The contract behaviour itself is covered by the shared suite (``test_market_contract_suite.py``).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import TYPE_CHECKING, cast

import pytest
from eth_utils.address import is_checksum_address
from structlog.testing import capture_logs

from codex_node.errors import ContractRevertError, ProofInvalidError, SlotStateMismatchError
from codex_node.market.types import (
    Ask,
    Content,
    MarketEvent,
    Request,
    RequestFulfilled,
    SlotId,
    SlotReservationsFull,
    SlotState,
    StorageRequested,
    slot_id,
)
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.mockledger import MARKETPLACE_ADDRESS, ProofTarget
from codex_node.testing.mockmarket import MockMarket, account

if TYPE_CHECKING:
    from codex_node.proofs import StorageProof

ASK = Ask(
    proof_probability=1,
    price_per_byte_per_second=1,
    collateral_per_byte=1,
    slots=2,
    slot_size=65_536,
    duration=3600,
    max_slot_loss=1,
)
PROOF = cast("StorageProof", object())
START = 1_700_000_040  # a period boundary for the 60 s period


def make_request(client: MockMarket, ask: Ask = ASK, nonce: int = 1) -> Request:
    content = Content(cid=b"cid", merkle_root=b"\x07" * 32)
    return Request(client.signer, ask, content, expiry=600, nonce=nonce.to_bytes(32, "big"))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def client(clock: FakeClock) -> MockMarket:
    market = MockMarket(clock, signer=account(1))
    market.mint(market.signer, 10**15)
    return market


@pytest.fixture
def host(client: MockMarket) -> MockMarket:
    market = client.as_account(account(2))
    market.mint(market.signer, 10**15)
    return market


async def filled_slot(client: MockMarket, host: MockMarket, ask: Ask = ASK) -> tuple[Request, SlotId]:
    request = make_request(client, ask)
    await client.request_storage(request)
    await host.reserve_slot(request.id, 0)
    await host.fill_slot(request.id, 0, PROOF, ask.collateral_per_slot)
    return request, slot_id(request.id, 0)


# --- failure injection, call log, hooks -------------------------------------------------------------------------


async def test_fail_next_raises_once_without_changing_state(client: MockMarket, host: MockMarket) -> None:
    request = make_request(client)
    await client.request_storage(request)
    await host.reserve_slot(request.id, 0)
    host.fail_next("fill_slot", SlotStateMismatchError("injected"))

    with pytest.raises(SlotStateMismatchError, match="injected"):
        await host.fill_slot(request.id, 0, PROOF, ASK.collateral_per_slot)
    assert await host.slot_state(slot_id(request.id, 0)) == SlotState.FREE

    await host.fill_slot(request.id, 0, PROOF, ASK.collateral_per_slot)
    assert await host.slot_state(slot_id(request.id, 0)) == SlotState.FILLED


async def test_fail_next_times_queues_that_many_failures(client: MockMarket) -> None:
    client.fail_next("config", ContractRevertError("Boom"), times=2)
    for _ in range(2):
        with pytest.raises(ContractRevertError):
            await client.config()
    assert (await client.config()).max_reservations == 3


async def test_failures_are_per_account_and_can_be_cleared(client: MockMarket, host: MockMarket) -> None:
    host.fail_next("get_signer", ContractRevertError("Boom"))
    assert await client.get_signer() == client.signer
    host.clear_failures()
    assert await host.get_signer() == host.signer


def test_controls_refuse_names_that_are_not_market_methods(client: MockMarket) -> None:
    with pytest.raises(ValueError, match="fillSlot"):
        client.fail_next("fillSlot", RuntimeError())
    with pytest.raises(ValueError, match="mint"):
        client.on_call("mint", None)


async def test_call_log_records_each_accounts_calls_with_arguments(client: MockMarket, host: MockMarket) -> None:
    request = make_request(client)
    await client.request_storage(request)
    await host.reserve_slot(request.id, 1)
    await host.can_reserve_slot(request.id, 0)

    assert [c.method for c in client.call_log] == ["request_storage"]
    assert host.calls("reserve_slot") == [(request.id, 1)]
    assert host.calls("can_reserve_slot") == [(request.id, 0)]


async def test_failed_calls_are_logged_too(client: MockMarket) -> None:
    client.fail_next("withdraw_funds", ContractRevertError("Boom"))
    with pytest.raises(ContractRevertError):
        await client.withdraw_funds(make_request(client).id)
    assert len(client.calls("withdraw_funds")) == 1


async def test_a_caller_cancelled_inside_a_hook_leaves_no_trace(client: MockMarket, host: MockMarket) -> None:
    request = make_request(client)
    await client.request_storage(request)
    await host.reserve_slot(request.id, 0)
    entered = asyncio.Event()

    async def stall() -> None:
        entered.set()
        await asyncio.Event().wait()

    host.on_call("fill_slot", stall)
    task = asyncio.create_task(host.fill_slot(request.id, 0, PROOF, ASK.collateral_per_slot))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    host.on_call("fill_slot", None)
    assert await host.slot_state(slot_id(request.id, 0)) == SlotState.FREE
    await host.fill_slot(request.id, 0, PROOF, ASK.collateral_per_slot)
    assert await host.get_host(slot_id(request.id, 0)) == host.signer


# --- accounts and tokens ----------------------------------------------------------------------------------------


async def test_accounts_share_the_marketplace_but_not_their_lists(client: MockMarket, host: MockMarket) -> None:
    request, sid = await filled_slot(client, host)
    assert await client.slot_state(sid) == SlotState.FILLED
    assert await host.my_slots() == [sid]
    assert await client.my_slots() == []
    assert await client.my_requests() == [request.id]
    assert await host.my_requests() == []


async def test_as_account_accepts_any_address_case(client: MockMarket) -> None:
    view = client.as_account(account(5).lower())
    assert await view.get_signer() == account(5)


async def test_mint_and_balances_count_every_transfer(client: MockMarket, host: MockMarket) -> None:
    total = sum([await client.token_balance(a) for a in (client.signer, host.signer, MARKETPLACE_ADDRESS)])
    await filled_slot(client, host)
    assert await client.token_balance(MARKETPLACE_ADDRESS) == ASK.max_price + ASK.collateral_per_slot
    after = sum([await client.token_balance(a) for a in (client.signer, host.signer, MARKETPLACE_ADDRESS)])
    assert after == total


async def test_request_without_funds_reverts_with_the_erc20_error(clock: FakeClock) -> None:
    poor = MockMarket(clock, signer=account(3))
    poor.mint(poor.signer, ASK.max_price - 1)
    with pytest.raises(ContractRevertError) as caught:
        await poor.request_storage(make_request(poor))
    assert caught.value.error_name == "ERC20InsufficientBalance"
    assert await poor.my_requests() == []
    assert poor.emitted == []


async def test_fill_with_too_little_approved_collateral_reverts(client: MockMarket, host: MockMarket) -> None:
    request = make_request(client)
    await client.request_storage(request)
    await host.reserve_slot(request.id, 0)
    with pytest.raises(ContractRevertError) as caught:
        await host.fill_slot(request.id, 0, PROOF, ASK.collateral_per_slot - 1)
    assert caught.value.error_name == "ERC20InsufficientAllowance"
    assert await host.slot_state(slot_id(request.id, 0)) == SlotState.FREE


def test_account_numbers_are_distinct_checksummed_addresses() -> None:
    assert account(1) == "0x0000000000000000000000000000000000000001"
    assert account(0xABC).lower() == "0x0000000000000000000000000000000000000abc"
    assert is_checksum_address(account(0xABC))
    with pytest.raises(ValueError, match="account"):
        account(0)


# --- proof controls ---------------------------------------------------------------------------------------------


async def test_set_proof_required_overrides_the_probability(
    clock: FakeClock, client: MockMarket, host: MockMarket
) -> None:
    rare = replace(ASK, proof_probability=2**255)
    _, sid = await filled_slot(client, host, rare)
    clock.advance(60)
    assert not await host.is_proof_required(sid)  # one chance in ~2**255 per period
    client.set_proof_required(sid, True)
    assert await host.is_proof_required(sid)
    client.set_proof_required(sid, None)
    assert not await host.is_proof_required(sid)


async def test_forced_requirement_still_spares_the_fill_period_and_unfilled_slots(
    clock: FakeClock, client: MockMarket, host: MockMarket
) -> None:
    request, sid = await filled_slot(client, host)
    client.set_proof_required(sid, True)
    assert not await host.is_proof_required(sid)
    other = slot_id(request.id, 1)
    client.set_proof_required(other, True)
    clock.advance(60)
    assert await host.is_proof_required(sid)
    assert not await host.is_proof_required(other)


async def test_not_required_proof_cannot_be_marked_missing(
    clock: FakeClock, client: MockMarket, host: MockMarket
) -> None:
    _, sid = await filled_slot(client, host)
    client.set_proof_required(sid, False)
    clock.advance(60)
    period = (await client.periodicity()).period_of(clock.now())
    clock.advance(61)
    with pytest.raises(ContractRevertError) as caught:
        await client.mark_proof_as_missing(sid, period)
    assert caught.value.error_name == "ProofNotRequired"


async def test_pointer_in_downtime_turns_required_into_will_be_required(
    clock: FakeClock, client: MockMarket, host: MockMarket
) -> None:
    _, sid = await filled_slot(client, host)
    downtime = (await client.config()).proofs.downtime
    clock.advance(60)
    assert await host.get_pointer(sid) >= downtime  # the default pointer never falls in the downtime
    assert await host.is_proof_required(sid)

    client.set_pointer(sid, downtime - 1)
    assert await host.get_pointer(sid) == downtime - 1
    assert not await host.is_proof_required(sid)
    assert await host.will_proof_be_required(sid)


async def test_default_challenge_is_stable_within_a_period_and_changes_between_periods(
    clock: FakeClock, client: MockMarket, host: MockMarket
) -> None:
    _, sid = await filled_slot(client, host)
    first = await host.get_challenge(sid)
    clock.advance(59)
    assert await host.get_challenge(sid) == first
    clock.advance(1)
    assert await host.get_challenge(sid) != first
    assert len(first) == 32


async def test_verifier_checks_proofs_against_the_slots_target(clock: FakeClock) -> None:
    targets: list[ProofTarget] = []

    def verifier(proof: object, target: ProofTarget) -> bool:
        targets.append(target)
        return proof is PROOF

    client = MockMarket(clock, signer=account(1), verifier=verifier)
    host = client.as_account(account(2))
    for m in (client, host):
        m.mint(m.signer, 10**15)
    request = make_request(client)
    await client.request_storage(request)
    sid = slot_id(request.id, 1)
    client.set_challenge(sid, b"\x09" * 32)
    await host.reserve_slot(request.id, 1)

    with pytest.raises(ProofInvalidError):
        await host.fill_slot(request.id, 1, cast("StorageProof", object()), ASK.collateral_per_slot)
    await host.fill_slot(request.id, 1, PROOF, ASK.collateral_per_slot)

    assert targets[-1] == ProofTarget(
        challenge=b"\x09" * 32,
        slot_id=sid,
        slot_index=1,
        slots=ASK.slots,
        slot_size=ASK.slot_size,
        dataset_root=request.content.merkle_root,
        samples=(await client.config()).proofs.proof_samples,
    )


async def test_proof_validity_override_beats_the_verifier(
    clock: FakeClock, client: MockMarket, host: MockMarket
) -> None:
    _, sid = await filled_slot(client, host)
    clock.advance(60)
    host.proof_validity_override = False
    with pytest.raises(ProofInvalidError):
        await host.submit_proof(sid, PROOF)
    host.proof_validity_override = None
    await host.submit_proof(sid, PROOF)


# --- events -----------------------------------------------------------------------------------------------------


async def test_emit_delivers_an_injected_event_and_records_it(client: MockMarket) -> None:
    seen: list[RequestFulfilled] = []

    async def handler(event: RequestFulfilled) -> None:
        seen.append(event)

    await client.subscribe(RequestFulfilled, handler)
    event = RequestFulfilled(make_request(client).id)
    await client.emit(event)
    assert seen == [event]
    assert client.emitted == [event]


async def test_events_caused_by_a_handler_come_after_the_current_event(client: MockMarket, host: MockMarket) -> None:
    order: list[str] = []
    others = [client.as_account(account(20 + i)) for i in range(3)]

    async def reserve_everything(event: StorageRequested) -> None:
        order.append("reserver saw StorageRequested")
        for market in others:  # fills the reservations: SlotReservationsFull is emitted inside this handler
            await market.reserve_slot(event.request_id, 0)

    async def watch(event: MarketEvent) -> None:
        order.append(f"watcher saw {type(event).__name__}")

    await host.subscribe(StorageRequested, reserve_everything)
    await host.subscribe(StorageRequested, watch)
    await host.subscribe(SlotReservationsFull, watch)
    await client.request_storage(make_request(client))

    assert order == [
        "reserver saw StorageRequested",
        "watcher saw StorageRequested",
        "watcher saw SlotReservationsFull",
    ]


async def test_a_failing_handler_is_logged_and_others_still_get_the_event(client: MockMarket) -> None:
    seen: list[StorageRequested] = []

    async def broken(event: StorageRequested) -> None:
        raise RuntimeError("handler bug")

    async def fine(event: StorageRequested) -> None:
        seen.append(event)

    await client.subscribe(StorageRequested, broken)
    await client.subscribe(StorageRequested, fine)
    with capture_logs() as logs:
        await client.request_storage(make_request(client))

    assert len(seen) == 1
    assert [str(e) for e in client.handler_errors] == ["handler bug"]
    assert any(e["event"] == "market event handler failed" for e in logs)


async def test_events_left_by_a_cancelled_delivery_reach_handlers_on_the_next_call(client: MockMarket) -> None:
    gate = asyncio.Event()
    delivering = asyncio.Event()
    seen: list[int] = []

    async def slow(event: StorageRequested) -> None:
        delivering.set()
        await gate.wait()

    async def record(event: StorageRequested) -> None:
        seen.append(event.ask.slots)

    await client.subscribe(StorageRequested, slow)
    await client.subscribe(StorageRequested, record)
    task = asyncio.create_task(client.request_storage(make_request(client, nonce=1)))
    await delivering.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == []  # the request was posted, its event not yet fully delivered

    gate.set()
    await client.request_storage(make_request(client, replace(ASK, slots=1, max_slot_loss=0), nonce=2))
    assert seen == [2, 1]


async def test_subscribing_to_a_non_event_type_is_refused(client: MockMarket) -> None:
    async def handler(event: object) -> None:
        return None

    with pytest.raises(TypeError):
        await client.subscribe(int, handler)  # type: ignore[type-var]
