"""Anchor §8.2 "Proofs" over separate processes on Hardhat: hosts submit periodic proofs; a host that sends wrong
proofs is marked missing by a validator (``--validator``) and, after the contract's ``maxNumberOfSlashes`` marks,
slashed out of its slot; with fewer marks its slot stays filled.

Every amount follows the contract (``Marketplace.markProofAsMissing``): each mark slashes ``slashPercentage`` % of
the slot's collateral and pays the validator ``validatorRewardPercentage`` % of that slash; the mark that reaches
``maxNumberOfSlashes`` frees the slot, and the host forfeits what collateral was left. The requests are nodes=3,
tolerance=1 (the smallest erasure coding), so one freed slot leaves the request running with the slot in Repair.

The chain is driven one period at a time (``proofkit.py``): each host tries its proof before the period ends, the
validator checks the period just after. The validator starts once the purchase started (it restores the slots
from the chain's history): marking while the hosts still fill could free a slot before the request starts, which
then never would (the failing host has no collateral left to fill it again).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from codex_node.market.types import RequestState, SlotState
from integration.localnet import PERIOD, LocalNet, LocalNode
from integration.proofkit import (
    BLOCK,
    NO_ADDRESS,
    SLASHES,
    Terms,
    end_every_request,
    fill_period,
    hosting_state,
    next_period,
    reward_of,
    slash_of,
    start,
    start_validator,
)

TERMS = Terms()


@pytest.fixture(scope="module")
def client(net: LocalNet) -> LocalNode:
    return net.add_node("client")


@pytest.fixture(autouse=True)
def requests_end(net: LocalNet) -> Iterator[None]:
    yield
    end_every_request(net, TERMS)


def test_a_slot_is_freed_after_too_many_missed_proofs_and_the_host_loses_its_collateral(
    net: LocalNet, client: LocalNode, own_nodes: None
) -> None:
    data = os.urandom(2 * BLOCK + 321)
    slot_size = TERMS.slot_size(len(data))
    honest = net.add_node("honest", bootstrap=[client])
    failing = net.add_node("failing", "--simulate-proof-failures", "1", bootstrap=[client])
    TERMS.offer(honest, slot_size, slots=2)
    failing_offer = TERMS.offer(failing, slot_size)
    before = {n.name: net.view.balance(n.address) for n in (honest, failing)}

    pid, rid, sids = TERMS.request(client, data)
    start(net, client, pid, rid, sids, [honest, failing])
    before["validator"] = net.view.balance(net.next_address())  # it may mark as soon as it runs
    validator = start_validator(net, "validator")
    assert validator.api.validator().slots_watched == TERMS.nodes
    holders = [net.view.host(s) for s in sids]
    assert sorted(holders) == sorted([honest.address] * 2 + [failing.address])  # the honest host holds two
    (lost,) = [s for s, h in zip(sids, holders, strict=True) if h == failing.address]
    kept = [s for s in sids if s != lost]
    # The failing host still holds the data and gets the bytes back when it loses the slot: without this it could
    # take its own freed slot again.
    failing.api.update_availability(failing_offer, enabled=False)
    collateral = TERMS.collateral(slot_size)
    slash, mark_reward = slash_of(collateral), reward_of(collateral)

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
    assert status.proofs_marked == SLASHES
    assert validator.metric("codex_validator_proofs_marked_missing_total") == SLASHES
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
        assert hosting_state(honest, s) == "SaleProving"
    assert not set(net.view.proof_periods(lost)) - {fill_period(net, rid, lost)}  # only its fill's proof landed

    # --- the failing host's sale learns it lost the slot (its next proof round reads Repair) and ends --------
    def sale_errored() -> bool:
        return hosting_state(failing, lost) == "SaleErrored"

    net.until(sale_errored, what="the failing host's sale errored", periods=2)
    # the sale's state is recorded before it ends and hands its bytes back
    net.wait_for(lambda: failing.api.list_availabilities()[0].free_size == slot_size, what="the bytes back")
    (availability,) = failing.api.list_availabilities()
    assert availability.free_size == slot_size  # the bytes come back to the availability …
    assert availability.total_remaining_collateral == 0  # … the collateral was forfeited on chain
    assert failing.api.debug_books().balanced
    # SlotFreed reached the validator: it watches the honest host's slots only
    net.wait_for(lambda: validator.api.validator().slots_watched == 2, what="the freed slot no longer watched")
    assert validator.metric("codex_validator_slots_watched") == 2

    # The request ends, so that no slot of it is filled or free for the next test's hosts.
    net.advance_to(net.view.request_end(rid) + 1)
    net.wait_for(lambda: all(net.view.slot_state(s) == SlotState.PAID for s in kept), what="the honest host paid")


def test_a_slot_is_not_freed_with_fewer_missed_proofs_than_the_limit(
    net: LocalNet, client: LocalNode, own_nodes: None
) -> None:
    every = 3  # a wrong proof every 3rd period: at most one in any 3 periods in a row, per slot
    data = os.urandom(2 * BLOCK + 123)
    slot_size = TERMS.slot_size(len(data))
    host = net.add_node("sometimes-failing", "--simulate-proof-failures", str(every), bootstrap=[client])
    TERMS.offer(host, slot_size, slots=TERMS.nodes)  # it holds every slot
    pid, rid, sids = TERMS.request(client, data)
    start(net, client, pid, rid, sids, [host])
    validator = start_validator(net, "validator-2")
    assert [net.view.host(s) for s in sids] == [host.address] * TERMS.nodes
    provers = [(host, [(rid, s) for s in sids])]
    # No validator ran so far: the first mark below is the first of every slot (the window argument rests on it).
    assert sum(net.view.missing_proofs(s) for s in sids) == 0

    # --- until the first mark: its period p is the first with a mark, so no slot has more than one by p + 2 ----
    marked = None
    for _ in range(3 * every + 2):  # one wrong proof in 3 periods, each markable unless the pointer is in downtime
        checked = next_period(net, provers=provers, validators=[validator])
        first = [s for s in sids if net.view.missing_proofs(s)]
        if first:
            marked = checked
            break
    assert marked is not None, "no proof marked missing"
    window = [next_period(net, provers=provers, validators=[validator]) for _ in range(every - 1)]
    assert window == [marked + 1, marked + 2]

    collateral = TERMS.collateral(slot_size)
    slash = slash_of(collateral)
    missed = [net.view.missing_proofs(s) for s in sids]
    assert all(m < SLASHES for m in missed)  # below the limit …
    assert [net.view.slot_state(s) for s in sids] == [SlotState.FILLED] * TERMS.nodes  # … so nothing was freed
    assert net.view.freed_slots(rid) == []
    assert net.view.request_state(rid) == RequestState.STARTED
    assert [net.view.current_collateral(s) for s in sids] == [collateral - m * slash for m in missed]
    assert validator.api.validator().proofs_marked == sum(missed)
    # the slots marked for period p proved the next periods with right proofs: ProofSubmitted on chain (another
    # slot may have sent its wrong proof, and been marked, in the window)
    for s in first:
        assert set(window) <= set(net.view.proof_periods(s))
    for s in sids:
        assert hosting_state(host, s) == "SaleProvingSimulated"

    net.advance_to(net.view.request_end(rid) + 1)
    net.wait_for(
        lambda: [net.view.slot_state(s) for s in sids] == [SlotState.PAID] * TERMS.nodes, what="the host paid out"
    )
