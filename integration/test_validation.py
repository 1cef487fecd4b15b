"""Anchor §8.2 "Validation" over separate processes on Hardhat.

1. Two validators split the slots in two groups (``--validator-groups 2 --validator-group-index 0|1``, a slot's
   group: its id modulo 2): each watches and marks the slots of its own group only. Two of three hosts send wrong
   proofs; their slots are marked until freed, and the second slot freed is more than the request's tolerance
   (1): the request fails on chain, the client's purchase says so, every host's sale ends, and the honest host's
   availability gets its bytes back but not the collateral the contract kept.
2. A validator started after the slots were filled (it saw none of the fills happen) restores its watch list from
   the chain's history and marks the missing proofs of those slots.

The chain is driven one period at a time (``proofkit.py``). The validators of the first test also start once the
purchase started (restored from history too): marking while the hosts still fill could free a slot before the
request starts, which then never would.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import partial

import pytest

from codex_node.market.types import RequestState, SlotState
from codex_node.validation.watchlist import group_of
from integration.localnet import PERIOD, LocalNet, LocalNode
from integration.proofkit import (
    BLOCK,
    NO_ADDRESS,
    SLASHES,
    Terms,
    end_every_request,
    hosting_state,
    next_period,
    reward_of,
    start,
    start_validator,
)

TERMS = Terms()
GROUPS = 2


@pytest.fixture(scope="module")
def client(net: LocalNet) -> LocalNode:
    return net.add_node("client")


@pytest.fixture(autouse=True)
def requests_end(net: LocalNet) -> Iterator[None]:
    yield
    end_every_request(net, TERMS)


def watching(validator: LocalNode, slots: int) -> bool:
    """Whether ``validator`` watches exactly ``slots`` slots."""
    return validator.api.validator().slots_watched == slots


def test_two_validators_of_one_group_each_fail_a_request_that_lost_too_many_slots(
    net: LocalNet, client: LocalNode, own_nodes: None
) -> None:
    data = os.urandom(2 * BLOCK + 777)
    slot_size = TERMS.slot_size(len(data))
    honest = net.add_node("honest", bootstrap=[client])
    failing = [net.add_node(f"failing-{i}", "--simulate-proof-failures", "1", bootstrap=[client]) for i in range(2)]
    hosts = [honest, *failing]
    offers = {h.name: TERMS.offer(h, slot_size) for h in hosts}
    quota_before = honest.api.space().quota_reserved_bytes
    before = {n.name: net.view.balance(n.address) for n in hosts}

    pid, rid, sids = TERMS.request(client, data)
    start(net, client, pid, rid, sids, hosts)
    by_address = {h.address: h for h in hosts}
    holder = {s: by_address[net.view.host(s)] for s in sids}
    assert sorted(h.name for h in holder.values()) == sorted(h.name for h in hosts)  # one slot each
    for host in failing:  # it keeps the data and gets the bytes back: it must not take its freed slot again
        host.api.update_availability(offers[host.name], enabled=False)
    kept = next(s for s in sids if holder[s] is honest)
    lost = [s for s in sids if s != kept]
    group = {s: group_of(s, GROUPS) for s in sids}
    validators = []
    for g in range(GROUPS):
        before[f"validator-{g}"] = net.view.balance(net.next_address())  # it may mark as soon as it runs
        split = ("--validator-groups", str(GROUPS), "--validator-group-index", str(g))
        validators.append(start_validator(net, f"validator-{g}", *split))
    # each validator watches the slots of its group, restored from the chain's history: together every slot, once
    for g, v in enumerate(validators):
        mine = sum(1 for s in sids if group[s] == g)
        net.wait_for(partial(watching, v, mine), what=f"{v.name} watching")
        assert (v.api.validator().groups, v.api.validator().group_index) == (GROUPS, g)

    # --- every period the failing hosts' proofs are refused; their group's validator marks them ---------------
    provers = [(holder[s], [(rid, s)]) for s in sids]
    for _ in range(12):
        if net.view.request_state(rid) != RequestState.STARTED:
            break
        next_period(net, provers=provers, validators=validators)
    last = net.now() // PERIOD - 1

    assert net.view.request_state(rid) == RequestState.FAILED
    assert net.view.request_failed(rid)
    freed = net.view.freed_slots(rid)
    assert sorted(freed) == sorted(sids.index(s) for s in lost)  # both failing hosts' slots, the honest one never
    assert [net.view.slot_state(s) for s in sids] == [SlotState.FAILED] * TERMS.nodes
    for s in lost:
        assert net.view.host(s) == NO_ADDRESS
        assert net.view.current_collateral(s) == 0
    assert net.view.missing_proofs(kept) == 0  # the honest host was never marked …
    # … it proved every period from its fill until the request failed (ProofSubmitted on chain)
    proven = set(net.view.proof_periods(kept))
    assert set(range(min(proven), last + 1)) <= proven

    # Each freed slot took exactly maxNumberOfSlashes marks, all from the validator of its group.
    collateral = TERMS.collateral(slot_size)
    for g, v in enumerate(validators):
        marks = SLASHES * sum(1 for s in lost if group[s] == g)
        status = v.api.validator()
        assert status.proofs_marked == marks, f"{v.name}: group {g}"
        assert v.metric("codex_validator_proofs_marked_missing_total") == status.proofs_marked
        assert net.view.balance(v.address) - before[v.name] == marks * reward_of(collateral)
        assert set(status.mark_failures) <= {"ProofNotRequired"}  # the pointer wrapped between check and mark
        # RequestFailed/SlotFreed reached it: it watches none of the request's slots any more
        net.wait_for(partial(watching, v, 0), what=f"{v.name} dropping the failed request")

    # --- the client's purchase failed; every host's sale ended ----------------------------------------------
    net.wait_for(lambda: client.api.get_purchase(pid).state == "failed", what="the client's purchase failed")

    states: dict[str, str] = {}

    def sales_ended() -> bool:
        states.update({holder[s].name: hosting_state(holder[s], s) for s in sids})
        return states["honest"] == "SaleFailed" and all(
            states[h.name] in ("SaleErrored", "SaleFailed") for h in failing
        )

    try:
        net.until(sales_ended, what="every host's sale ended", periods=2)
    except AssertionError:
        assert states == {}, "the hosts' sales did not all end"
    for host in hosts:  # everyone lost the collateral: the failing hosts by slashing, the honest one to the failure
        assert net.view.balance(host.address) - before[host.name] == -collateral
        assert host.api.debug_books().balanced
    # the sale's state is recorded before it ends and hands its bytes back
    net.wait_for(lambda: honest.api.list_availabilities()[0].free_size == slot_size, what="the bytes back")
    (availability,) = honest.api.list_availabilities()
    assert availability.free_size == slot_size  # the bytes came back …
    assert availability.total_remaining_collateral == 0  # … the collateral stays in the contract
    assert honest.api.list_reservations(offers["honest"]) == []
    assert honest.api.space().quota_reserved_bytes == quota_before


def test_a_validator_started_after_the_fills_restores_them_from_history_and_marks_them(
    net: LocalNet, client: LocalNode, own_nodes: None
) -> None:
    data = os.urandom(2 * BLOCK + 99)
    slot_size = TERMS.slot_size(len(data))
    host = net.add_node("unwatched", "--simulate-proof-failures", "1", bootstrap=[client])
    TERMS.offer(host, slot_size, slots=TERMS.nodes)  # it holds every slot, proving none
    pid, rid, sids = TERMS.request(client, data)
    start(net, client, pid, rid, sids, [host])  # no validator runs: no missed proof is marked
    assert [net.view.host(s) for s in sids] == [host.address] * TERMS.nodes
    assert sum(net.view.missing_proofs(s) for s in sids) == 0

    before = net.view.balance(net.next_address())  # it may mark as soon as it runs
    validator = start_validator(net, "late-validator")
    status = validator.api.validator()
    assert status.slots_watched == TERMS.nodes  # from the chain's history: it saw no fill happen
    assert validator.metric("codex_validator_slots_watched") == TERMS.nodes

    provers = [(host, [(rid, s) for s in sids])]
    for _ in range(8):
        if net.view.request_state(rid) != RequestState.STARTED:
            break
        next_period(net, provers=provers, validators=[validator])
    # two slots freed (maxNumberOfSlashes marks each) fail the request (tolerance 1); the third may be marked too
    assert net.view.request_state(rid) == RequestState.FAILED
    freed = net.view.freed_slots(rid)
    assert len(freed) == TERMS.tolerance + 1
    still = [s for i, s in enumerate(sids) if i not in freed]
    marks = SLASHES * len(freed) + sum(net.view.missing_proofs(s) for s in still)
    status = validator.api.validator()
    assert status.proofs_marked == marks
    assert validator.metric("codex_validator_proofs_marked_missing_total") == marks
    assert net.view.balance(validator.address) - before == marks * reward_of(TERMS.collateral(slot_size))
    assert set(status.mark_failures) <= {"ProofNotRequired"}
    net.wait_for(lambda: validator.api.validator().slots_watched == 0, what="the failed request's slots dropped")
