"""Anchor §8.2 "Proofs" over separate processes on Hardhat: hosts submit periodic proofs; a host that sends wrong
proofs is marked missing by a validator (``--validator``) and, after the contract's ``maxNumberOfSlashes`` marks,
slashed out of its slot; with fewer marks its slot stays filled.

Every amount follows the contract (``Marketplace.markProofAsMissing``): each mark slashes ``slashPercentage`` % of
the slot's collateral and pays the validator ``validatorRewardPercentage`` % of that slash; the mark that reaches
``maxNumberOfSlashes`` frees the slot, and the host forfeits what collateral was left. The requests are nodes=3,
tolerance=1 (the smallest erasure coding), so one freed slot leaves the request running with the slot in Repair.

The chain is driven one period at a time (``periods.py``): each host tries its proof before the period ends, the
validator checks the period just after.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from codex_node.data.erasure import ErasureLayout, ErasureParams
from codex_node.market.deployment import DEV_CONFIG
from codex_node.market.types import RequestId, RequestState, SlotState, slot_id
from integration.localnet import LocalNet, LocalNode
from integration.periods import fill_period, next_period

BLOCK = 65_536
NODES, TOLERANCE = 3, 1
PERIOD = DEV_CONFIG.proofs.period
DURATION = 40 * PERIOD
EXPIRY = 10 * PERIOD
PRICE = 1
COLLATERAL_PER_BYTE = 2
SLASHES = DEV_CONFIG.collateral.max_number_of_slashes
SLASH_PERCENT = DEV_CONFIG.collateral.slash_percentage
REWARD_PERCENT = DEV_CONFIG.collateral.validator_reward_percentage
NO_ADDRESS = "0x" + "0" * 40


def slot_size_of(size: int) -> int:
    return ErasureLayout(ErasureParams.from_request(NODES, TOLERANCE), size).slot_size


def offer(host: LocalNode, slot_size: int, slots: int = 1) -> str:
    """Room and collateral for exactly ``slots`` slots; the availability's id."""
    return host.api.create_availability(
        total_size=slots * slot_size,
        duration=2 * DURATION,
        min_price_per_byte_per_second=PRICE,
        total_collateral=slots * slot_size * COLLATERAL_PER_BYTE,
    ).id


def request(client: LocalNode, data: bytes) -> tuple[str, RequestId]:
    cid = client.api.upload(data)
    pid = client.api.request_storage(
        cid,
        duration=DURATION,
        price_per_byte_per_second=PRICE,
        proof_probability=1,  # a proof every period after the fill's (outside the downtime, as the contract says)
        collateral_per_byte=COLLATERAL_PER_BYTE,
        expiry=EXPIRY,
        nodes=NODES,
        tolerance=TOLERANCE,
    )
    return pid, RequestId(bytes.fromhex(pid.removeprefix("0x")))


def start(
    net: LocalNet, client: LocalNode, pid: str, rid: RequestId, hosts: list[LocalNode], validator: LocalNode
) -> None:
    """Drive the chain until the purchase started, letting every host that filled a slot prove it meanwhile."""
    sids = [slot_id(rid, i) for i in range(NODES)]
    for _ in range(8):
        try:
            net.wait_for(
                lambda: client.api.get_purchase(pid).state == "started", what="the purchase started", within=10
            )
            return
        except AssertionError as e:
            if "timed out" not in str(e):
                raise
        next_period(net, provers=[(h, [(rid, s) for s in sids]) for h in hosts], validators=[validator])
    raise AssertionError("the purchase did not start within 8 periods")


@pytest.fixture(scope="module")
def client(net: LocalNet) -> LocalNode:
    return net.add_node("client")


@pytest.fixture(scope="module")
def validator(net: LocalNet, client: LocalNode) -> LocalNode:
    return net.add_node("validator", "--validator", "--metrics", "--metrics-port", "0")


@pytest.fixture
def own(net: LocalNet) -> Iterator[None]:
    """The nodes a test adds are stopped when it ends (the next test's requests are not theirs to fill)."""
    before = set(net.nodes)
    yield
    for name in set(net.nodes) - before:
        net.stop_node(name)


def test_a_slot_is_freed_after_too_many_missed_proofs_and_the_host_loses_its_collateral(
    net: LocalNet, client: LocalNode, validator: LocalNode, own: None
) -> None:
    data = os.urandom(2 * BLOCK + 321)
    slot_size = slot_size_of(len(data))
    honest = net.add_node("honest", bootstrap=[client])
    failing = net.add_node("failing", "--simulate-proof-failures", "1", bootstrap=[client])
    offer(honest, slot_size, slots=2)
    failing_offer = offer(failing, slot_size)
    before = {n.name: net.view.balance(n.address) for n in (honest, failing, validator)}
    marked_before = validator.api.validator().proofs_marked
    metric_before = validator.metric("codex_validator_proofs_marked_missing_total")

    pid, rid = request(client, data)
    sids = [slot_id(rid, i) for i in range(NODES)]
    start(net, client, pid, rid, [honest, failing], validator)
    holders = [net.view.host(s) for s in sids]
    assert sorted(holders) == sorted([honest.address] * 2 + [failing.address])  # the honest host holds two
    (lost,) = [s for s, h in zip(sids, holders, strict=True) if h == failing.address]
    kept = [s for s in sids if s != lost]
    # The failing host still holds the data and gets the bytes back when it loses the slot: without this it could
    # take its own freed slot again.
    failing.api.update_availability(failing_offer, enabled=False)
    collateral = slot_size * COLLATERAL_PER_BYTE
    slash = collateral * SLASH_PERCENT // 100
    mark_reward = slash * REWARD_PERCENT // 100

    # --- each period the failing host's proof is refused; the validator marks it until the slot is freed --------
    for _ in range(12):
        if net.view.slot_state(lost) != SlotState.FILLED:
            break
        # never freed before the limit: each mark short of it only slashes
        missed = net.view.missing_proofs(lost)
        assert missed < SLASHES
        assert net.view.current_collateral(lost) == collateral - missed * slash
        next_period(net, provers=[(honest, [(rid, s) for s in kept]), (failing, [(rid, lost)])], validators=[validator])
    last = net.now() // PERIOD - 1

    assert net.view.freed_slots(rid) == [sids.index(lost)]  # SlotFreed, once, for the failing host's slot
    assert net.view.slot_state(lost) == SlotState.REPAIR  # one slot lost of tolerance 1: the request goes on
    assert net.view.request_state(rid) == RequestState.STARTED
    assert net.view.host(lost) == NO_ADDRESS
    assert net.view.current_collateral(lost) == 0
    assert net.view.missing_proofs(lost) == 0  # reset by the freeing
    status = validator.api.validator()
    assert status.proofs_marked - marked_before == SLASHES
    assert validator.metric("codex_validator_proofs_marked_missing_total") - metric_before == SLASHES
    # the only refusal possible: the challenge pointer wrapped into the downtime between check and transaction
    assert set(status.mark_failures) <= {"ProofNotRequired"}
    # the token flows: the validator earned its share of each slash; the failing host lost its whole collateral
    assert net.view.balance(validator.address) - before["validator"] == SLASHES * mark_reward
    assert net.view.balance(failing.address) - before["failing"] == -collateral
    assert net.view.balance(honest.address) - before["honest"] == -2 * collateral  # posted, not paid out yet

    # --- the honest host proved every period after its fill, and nobody marked it --------------------------
    for s in kept:
        filled = fill_period(net, rid, s)
        assert filled is not None
        # the fill's own proof, then a ProofSubmitted every period
        assert set(range(filled, last + 1)) <= set(net.view.proof_periods(s))
        assert net.view.slot_state(s) == SlotState.FILLED
        assert net.view.missing_proofs(s) == 0
        assert net.view.current_collateral(s) == collateral
        assert honest.api.get_slot("0x" + s.hex()).state == "SaleProving"
    assert not set(net.view.proof_periods(lost)) - {fill_period(net, rid, lost)}  # only its fill's proof landed

    # --- the failing host's sale learns it lost the slot (its next proof round reads Repair) and ends --------
    def sale_errored() -> bool:
        return failing.api.get_slot("0x" + lost.hex()).state == "SaleErrored"

    net.until(sale_errored, what="the failing host's sale errored", periods=2)
    (availability,) = failing.api.list_availabilities()
    assert availability.free_size == slot_size  # the bytes come back to the availability …
    assert availability.total_remaining_collateral == 0  # … the collateral was forfeited on chain
    assert failing.api.debug_books().balanced
    # SlotFreed reached the validator: it watches the honest host's slot only (earlier tests' requests ended)
    net.wait_for(lambda: validator.api.validator().slots_watched == 2, what="the freed slot no longer watched")
    assert validator.metric("codex_validator_slots_watched") == 2

    # The request ends, so that no slot of it is filled or free for the next test's hosts.
    net.advance_to(net.view.request_end(rid) + 1)
    net.wait_for(lambda: all(net.view.slot_state(s) == SlotState.PAID for s in kept), what="the honest host paid")


def test_a_slot_is_not_freed_with_fewer_missed_proofs_than_the_limit(
    net: LocalNet, client: LocalNode, validator: LocalNode, own: None
) -> None:
    every = 3  # a wrong proof every 3rd period: at most one in any 3 periods in a row, per slot
    data = os.urandom(2 * BLOCK + 123)
    slot_size = slot_size_of(len(data))
    host = net.add_node("sometimes-failing", "--simulate-proof-failures", str(every), bootstrap=[client])
    offer(host, slot_size, slots=NODES)  # it holds both slots
    marked_before = validator.api.validator().proofs_marked
    pid, rid = request(client, data)
    sids = [slot_id(rid, i) for i in range(NODES)]
    start(net, client, pid, rid, [host], validator)
    assert [net.view.host(s) for s in sids] == [host.address] * NODES
    provers = [(host, [(rid, s) for s in sids])]

    # --- until the first mark: its period p is the first with a mark, so no slot has more than one by p + 2 ----
    marked = None
    for _ in range(3 * every + 2):  # one wrong proof in 3 periods, each markable unless the pointer is in downtime
        checked = next_period(net, provers=provers, validators=[validator])
        if sum(net.view.missing_proofs(s) for s in sids):
            marked = checked
            break
    assert marked is not None, "no proof marked missing"
    window = [next_period(net, provers=provers, validators=[validator]) for _ in range(every - 1)]
    assert window == [marked + 1, marked + 2]

    collateral = slot_size * COLLATERAL_PER_BYTE
    slash = collateral * SLASH_PERCENT // 100
    missed = [net.view.missing_proofs(s) for s in sids]
    assert all(m < SLASHES for m in missed)  # below the limit …
    assert [net.view.slot_state(s) for s in sids] == [SlotState.FILLED] * NODES  # … so nothing was freed
    assert net.view.freed_slots(rid) == []
    assert net.view.request_state(rid) == RequestState.STARTED
    assert [net.view.current_collateral(s) for s in sids] == [collateral - m * slash for m in missed]
    assert validator.api.validator().proofs_marked - marked_before == sum(missed)
    # the slot marked in period p proved the next periods with right proofs: ProofSubmitted on chain
    for s, m in zip(sids, missed, strict=True):
        if m:
            assert set(window) <= set(net.view.proof_periods(s))
    for s in sids:
        assert host.api.get_slot("0x" + s.hex()).state == "SaleProvingSimulated"

    net.advance_to(net.view.request_end(rid) + 1)
    net.wait_for(lambda: [net.view.slot_state(s) for s in sids] == [SlotState.PAID] * NODES, what="the host paid out")
