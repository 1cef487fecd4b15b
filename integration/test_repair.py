"""Anchor §8.2 "Slot repair" over separate processes on Hardhat: a freed slot is rebuilt by another host from the
erasure code, from slots fetched from their hosts (*remote*), from one slot it holds and one fetched (*mixed*), or
from slots it holds itself (*local*); it is filled in ``Repair`` with the discounted collateral, proven, and paid.

One request (nodes=3, tolerance=1: K=2 data slots and one parity slot) lives through the three cases, one slot
lost at a time (the contract fails a request that loses more than ``maxSlotLoss`` = 1 slot at once):

0. (the ``story`` fixture) three hosts offer room for one slot each and fetch their slots from the client; R, a host
   with no offer yet, knows them all;
1. *remote*: the client stops (nobody holds the original dataset any more) and slot 2's host leaves; R, offered a
   slot after the freeing, fetches slots 0 and 1 from their hosts and rebuilds slot 2 (the parity slot);
2. *mixed*: slot 1's host leaves; R, its offer enlarged by ``PATCH``, rebuilds slot 1 from slot 2 (its own, from
   case 1) and slot 0 (fetched from its host);
3. *local*: the client comes back and slot 0's host leaves; R, its offer enlarged again, rebuilds slot 0 from the
   two slots it holds and fetches no data block, though the client holds the whole dataset;
4. every repaired slot is proven afterwards, the request finishes, and every account's tokens moved exactly as the
   contract says.

The cases run in this order because each one builds the local slots of the next. A host "leaves" the way an
operator gives a slot up: its node is stopped and ``freeSlot`` is sent from its account (the contract frees a filled
slot of a running request for repair and keeps the collateral); the node being stopped, its own transaction sender
and the test never race for the account's nonce. (A slot freed by the validator after missed proofs is
``tests/e2e/test_network_marketplace.py``.)

The tests share one net and one request and run in file order; each checks that the one before it got there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pytest
from eth_account import Account

from codex_node.data.erasure import ErasureLayout, ErasureParams
from codex_node.data.slots import BLOCK_SIZE
from codex_node.market.deployment import DEV_CONFIG
from codex_node.market.types import RequestId, RequestState, SlotId, SlotState, slot_id
from integration.localnet import STEP_TIMEOUT, LocalNet, LocalNode, dev_key

NODES, TOLERANCE = 3, 1
K = NODES - TOLERANCE
PERIOD = DEV_CONFIG.proofs.period
DURATION = 40 * PERIOD  # the time jumps to the end at once; room for the fills, three repairs and their proofs
EXPIRY = 10 * PERIOD
PRICE = 3
COLLATERAL_PER_BYTE = 2
REPAIR_PERCENT = DEV_CONFIG.collateral.repair_reward_percentage
METRICS = ("--metrics", "--metrics-port", "0")
FETCHED = "codex_blockexchange_bytes_fetched_total"
REBUILT = "codex_slot_repair_rebuilt_bytes_total"


@dataclass
class Story:
    """The net's nodes and the one request the cases repair, with what each case leaves for the next."""

    net: LocalNet
    client: LocalNode
    holder: dict[int, LocalNode]
    """Slot index → the host that filled it first (each holds one slot)."""
    repairer: LocalNode
    pid: str
    rid: RequestId
    rows: int
    slot_size: int
    before: dict[str, int]
    """Every account's token balance before the request."""
    offer: str | None = None
    """R's availability (created in the first case, enlarged in the others)."""
    repaired: dict[int, int] = field(default_factory=dict)
    """Slot index → the block R's repair filled it in."""

    @property
    def collateral(self) -> int:
        return COLLATERAL_PER_BYTE * self.slot_size

    def sid(self, index: int) -> SlotId:
        return slot_id(self.rid, index)


@pytest.fixture(scope="module")
def story(net: LocalNet) -> Story:
    """A started request whose three slots are held by three hosts, one each; R knows them all and offers nothing."""
    data = os.urandom(5 * BLOCK_SIZE + 1234)  # 6 blocks: 3 rows of K=2, every block distinct
    layout = ErasureLayout(ErasureParams.from_request(NODES, TOLERANCE), len(data))
    client = net.add_node("client")
    hosts = [net.add_node(f"host-{i}", bootstrap=[client]) for i in range(NODES)]
    repairer = net.add_node("repairer", *METRICS, bootstrap=[client, *hosts])
    for h in hosts:  # room and collateral for exactly one slot each
        h.api.create_availability(
            total_size=layout.slot_size,
            duration=2 * DURATION,
            min_price_per_byte_per_second=1,
            total_collateral=layout.slot_size * COLLATERAL_PER_BYTE,
        )
    before = {n.name: net.view.balance(n.address) for n in [client, *hosts, repairer]}
    pid = client.api.request_storage(
        client.api.upload(data),
        duration=DURATION,
        price_per_byte_per_second=PRICE,
        proof_probability=1,  # a proof every period: a repaired slot's first periodic proof comes one period on
        collateral_per_byte=COLLATERAL_PER_BYTE,
        expiry=EXPIRY,
        nodes=NODES,
        tolerance=TOLERANCE,
    )
    rid = RequestId(bytes.fromhex(pid.removeprefix("0x")))
    net.wait_for(lambda: all(proving(h) for h in hosts), what="every host's sale waiting for a period to prove in")
    net.advance_periods(1)
    net.until(lambda: client.api.get_purchase(pid).state == "started", what="the purchase started", periods=8)
    by_address = {h.address: h for h in hosts}
    holder = {i: by_address[net.view.host(slot_id(rid, i))] for i in range(NODES)}
    assert len({h.name for h in holder.values()}) == NODES  # one slot each
    return Story(net, client, holder, repairer, pid, rid, layout.rows, layout.slot_size, before)


def proving(node: LocalNode, index: int | None = None) -> bool:
    """Whether a sale of ``node`` (of slot ``index``, if given) went into ``SaleInitialProving``."""
    return bool(
        node.process.find(
            lambda e: (
                e.get("event") == "sale state"
                and e.get("to_state") == "SaleInitialProving"
                and (index is None or e.get("slot_index") == index)
            )
        )
    )


def leave(story: Story, index: int) -> None:
    """Slot ``index``'s host stops its node and frees the slot from its account (``freeSlot``)."""
    net, host = story.net, story.holder[index]
    net.stop_node(host.name)
    account = Account.from_key(dev_key(host.index))
    w3 = net.view.w3
    free = net.view.market.get_function_by_signature("freeSlot(bytes32)")(story.sid(index))
    tx = free.build_transaction(
        {"from": account.address, "nonce": w3.eth.get_transaction_count(account.address, "pending")}
    )
    sent = w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
    assert w3.eth.wait_for_transaction_receipt(sent, timeout=STEP_TIMEOUT)["status"] == 1
    assert net.view.slot_state(story.sid(index)) == SlotState.REPAIR
    assert net.view.request_state(story.rid) == RequestState.STARTED  # one slot lost: within maxSlotLoss


def offer_one_more_slot(story: Story) -> None:
    """R offers room and collateral for one more slot, after the freeing (the anchor's order): created, then
    enlarged by ``PATCH``."""
    api = story.repairer.api
    if story.offer is None:
        story.offer = api.create_availability(
            total_size=story.slot_size,
            duration=2 * DURATION,
            min_price_per_byte_per_second=1,
            total_collateral=story.collateral,
        ).id
        return
    (current,) = api.list_availabilities()
    api.update_availability(
        story.offer,
        total_size=current.total_size + story.slot_size,
        total_collateral=current.total_collateral + story.collateral,
    )


def repair(story: Story, index: int, *, local: list[int], remote: list[int]) -> None:
    """Slot ``index`` was freed: R is offered one more slot and rebuilds it from K other slots, ``local`` ones
    read from its own repo and ``remote`` ones fetched from their hosts; it fills the slot with the discounted
    collateral."""
    net, r = story.net, story.repairer
    sid = story.sid(index)
    fetched, rebuilt = r.metric(FETCHED), r.metric(REBUILT)
    balance = net.view.balance(r.address)
    offer_one_more_slot(story)

    # Once the slot is rebuilt, the sale waits for the next period to prove in (fillSlot checks a proof): no test
    # waits a wall minute and a half for it.
    net.wait_for(lambda: proving(r, index), what=f"slot {index} rebuilt by R, its sale waiting to prove")
    net.advance_periods(1)
    net.until(
        lambda: net.view.host(sid) == r.address and net.view.slot_state(sid) == SlotState.FILLED,
        what=f"slot {index} repaired and filled by R",
        periods=4,
    )
    assert "SaleFilled" in [t.to_state for t in r.api.get_slot("0x" + sid.hex()).history]
    # The sources, as R's repair chose them: its own slots first, then others (each checked against its manifest).
    (started,) = r.process.find(lambda e: e.get("event") == "slot repair started" and e.get("slot_index") == index)
    assert started["local_slots"] == sorted(local)
    (done,) = r.process.find(lambda e: e.get("event") == "slot repaired" and e.get("slot_index") == index)
    assert done["sources"] == sorted(local + remote)
    # Every block of the slot was rebuilt; the data blocks of exactly the remote slots came over the network (slot
    # blocks are whole 64 KiB blocks; the slot manifests R asked for are a few hundred bytes each).
    assert r.metric(REBUILT) - rebuilt == story.slot_size
    data_fetched = len(remote) * story.slot_size
    assert data_fetched <= r.metric(FETCHED) - fetched < data_fetched + BLOCK_SIZE
    # A repairing host posts (100 - repairRewardPercentage)% of the slot's collateral, rounded down as the
    # contract does; it gets the whole collateral back at the end (the difference is its reward).
    assert balance - net.view.balance(r.address) == story.collateral * (100 - REPAIR_PERCENT) // 100
    story.repaired[index] = fill_block(net, story.rid, index)


def fill_block(net: LocalNet, rid: RequestId, index: int) -> int:
    """The block of the last ``SlotFilled`` of slot ``index``."""
    return max(
        int(log["blockNumber"])
        for log in net.view.market.events.SlotFilled.get_logs(from_block=0)
        if bytes(log["args"]["requestId"]) == rid and int(log["args"]["slotIndex"]) == index
    )


def proofs_after(net: LocalNet, sid: SlotId, block: int) -> int:
    """``ProofSubmitted`` events of ``sid`` mined after ``block`` (the contract accepted those proofs)."""
    logs = net.view.market.events.ProofSubmitted.get_logs(from_block=block + 1)
    return sum(1 for log in logs if bytes(log["args"]["id"]) == sid)


def test_a_freed_slot_is_repaired_from_remote_slots_only(story: Story) -> None:
    story.net.stop_node("client")  # nobody holds the whole dataset: the slots can only come from their hosts
    leave(story, 2)
    repair(story, 2, local=[], remote=[0, 1])


def test_a_freed_slot_is_repaired_from_a_local_and_a_remote_slot(story: Story) -> None:
    assert list(story.repaired) == [2], "the remote case did not get there"
    leave(story, 1)
    repair(story, 1, local=[2], remote=[0])


def test_a_freed_slot_is_repaired_from_local_slots_only_while_a_peer_holds_them_all(story: Story) -> None:
    assert list(story.repaired) == [2, 1], "the earlier cases did not get there"
    net, r = story.net, story.repairer
    client = net.restart_node("client")  # it holds every slot: R could fetch them all, and must not
    r.api.connect(client.api.peer_id(), [client.url])
    leave(story, 0)
    repair(story, 0, local=[1, 2], remote=[])


def test_the_repaired_slots_are_proven_and_every_host_is_paid_at_the_end(story: Story) -> None:
    assert list(story.repaired) == [2, 1, 0], "the repairs did not all get there"
    net, client, r = story.net, story.client, story.repairer
    sids = [story.sid(i) for i in range(NODES)]

    # The rebuilt slots' periodic proofs are accepted (fillSlot already checked one proof of each): the last one
    # filled is due for its first in the next period.
    net.advance_periods(1)
    net.until(
        lambda: all(proofs_after(net, story.sid(i), block) >= 1 for i, block in story.repaired.items()),
        what="a periodic proof of every repaired slot",
        periods=3,
    )

    end = net.view.request_end(story.rid)
    net.advance_to(end + 1)
    net.wait_for(lambda: [net.view.slot_state(s) for s in sids] == [SlotState.PAID] * NODES, what="every slot paid")
    net.wait_for(lambda: client.api.get_purchase(story.pid).state == "finished", what="the purchase finished")

    filled = net.view.fill_times(story.rid)  # the last fill of each slot: R's repairs
    price_per_slot_per_second = PRICE * story.slot_size
    payout = sum((end - filled[i]) * price_per_slot_per_second for i in range(NODES))
    reward = story.collateral - story.collateral * (100 - REPAIR_PERCENT) // 100
    expected = {
        "client": -payout,  # paid maxPrice; the freed hosts' unpaid time came back, R's time was charged anew
        "repairer": payout + NODES * reward,  # paid for its time; the whole collateral back for 90 % posted
        **{h.name: -story.collateral for h in story.holder.values()},  # forfeited when they freed their slots
    }

    def flows() -> dict[str, int]:
        return {name: net.view.balance(net.nodes[name].address) - b for name, b in story.before.items()}

    try:
        net.wait_for(lambda: flows() == expected or None, what="every token flow as the contract says")
    except AssertionError:
        assert flows() == expected  # says which account differs

    def offer_whole_again() -> bool:  # each of R's sales, once it ended, gave its bytes and collateral back
        (a,) = r.api.list_availabilities()
        return (a.total_size, a.free_size, a.total_collateral, a.total_remaining_collateral) == (
            NODES * story.slot_size,
            NODES * story.slot_size,
            NODES * story.collateral,
            NODES * story.collateral,
        )

    net.wait_for(offer_whole_again, what="R's offer whole again (every sale ended)")
    assert r.api.debug_books().balanced
