"""Accounting invariants of the ledger behind MockMarket, under random sequences of marketplace operations.

Whatever clients, hosts and validators do, in whatever order and at whatever times: no token is created or lost,
the marketplace can always pay what it owes (a payout or refund never fails for lack of funds), and once every
request is over and everyone has collected, the marketplace keeps exactly the collateral it confiscated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from hypothesis import given, settings
from hypothesis import strategies as st

from codex_node.errors import CodexError, ContractRevertError
from codex_node.market.types import Address, Ask, Content, Request, RequestState, SlotId, SlotState, slot_id
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.mockledger import MARKETPLACE_ADDRESS, MarketLedger
from codex_node.testing.mockmarket import MOCK_MARKET_CONFIG, account

if TYPE_CHECKING:
    from codex_node.proofs import StorageProof

CLIENTS = [account(1), account(2)]
HOSTS = [account(10), account(11), account(12), account(13)]
VALIDATOR = account(99)
FUNDS = 10**15
PROOF = cast("StorageProof", None)  # the ledger has no verifier here: any proof is accepted


@dataclass(frozen=True)
class Post:
    client: int
    slots: int
    max_slot_loss: int
    expiry: int
    duration: int


@dataclass(frozen=True)
class Fill:
    host: int
    request: int
    slot: int


# Free, Prove and MarkMissing pick one of the slots that have a host, and act as that host (or validator):
# permissions are the unit tests' business, this test is about money.


@dataclass(frozen=True)
class Free:
    pick: int


@dataclass(frozen=True)
class Prove:
    pick: int


@dataclass(frozen=True)
class MarkMissing:
    pick: int


@dataclass(frozen=True)
class Withdraw:
    request: int


@dataclass(frozen=True)
class Wait:
    seconds: int


indexes = st.integers(0, 3)
slots = st.integers(0, 2)
# Weighted towards filling, proving and validating so most runs reach started, repaired and failed requests.
operations = st.one_of(
    st.builds(
        Post, st.integers(0, 1), st.integers(1, 3), st.integers(0, 2), st.integers(100, 600), st.integers(601, 3000)
    ),
    st.builds(Fill, indexes, indexes, slots),
    st.builds(Fill, indexes, st.just(0), slots),
    st.builds(Free, indexes),
    st.builds(Prove, indexes),
    st.builds(Prove, indexes),
    st.builds(MarkMissing, indexes),
    st.builds(MarkMissing, indexes),
    st.builds(Withdraw, indexes),
    st.builds(Wait, st.integers(1, 90)),
    st.builds(Wait, st.integers(1, 90)),
)


class Run:
    def __init__(self) -> None:
        self.clock = FakeClock(1_700_000_040)
        self.ledger = MarketLedger(self.clock, MOCK_MARKET_CONFIG)
        self.requests: list[Request] = []
        self.confiscated = 0
        for address in (*CLIENTS, *HOSTS, VALIDATOR):
            self.ledger.mint(address, FUNDS)

    def total(self) -> int:
        return sum(self.ledger.balances.values())

    def request(self, index: int) -> Request | None:
        # Index 0 is the newest request: operations mostly concern live requests.
        return self.requests[-1 - index % len(self.requests)] if self.requests else None

    def hosted(self, pick: int) -> tuple[Request, SlotId, Address] | None:
        hosted = [
            (request, sid, host)
            for request in self.requests
            for sid in (slot_id(request.id, i) for i in range(request.ask.slots))
            if (host := self.ledger.get_host(sid)) is not None
        ]
        return hosted[pick % len(hosted)] if hosted else None

    def apply(self, op: object) -> None:
        try:
            self._apply(op)
        except ContractRevertError as error:
            # Everyone holds plenty of tokens, so running short can only mean the marketplace is insolvent.
            if error.error_name.startswith("ERC20"):
                raise AssertionError(f"{op}: {error}") from error
        except CodexError:
            pass  # the other reverts are the contract's rules refusing a random operation

    def _apply(self, op: object) -> None:
        ledger = self.ledger
        match op:
            case Post(client, slots, max_slot_loss, expiry, duration):
                ask = Ask(1, 1, 1, slots, 65_536, duration, min(max_slot_loss, slots))
                nonce = len(self.requests).to_bytes(32, "big")
                request = Request(CLIENTS[client], ask, Content(b"cid", b"\x00" * 32), expiry, nonce)
                ledger.request_storage(CLIENTS[client], request)
                self.requests.append(request)
            case Fill(host_index, index, slot) if (target := self.request(index)) is not None:
                filler, slot = HOSTS[host_index], slot % target.ask.slots
                if ledger.can_reserve_slot(filler, target.id, slot):
                    ledger.reserve_slot(filler, target.id, slot)
                posted = ledger.slot_collateral(target.id, slot)
                ledger.fill_slot(filler, target.id, slot, PROOF, posted)
                # A repairing host posts less than it gets back: the confiscated collateral pays the difference.
                self.confiscated -= target.ask.collateral_per_slot - posted
            case Free(pick) if (hosted := self.hosted(pick)) is not None:
                _, sid, owner = hosted
                forfeited = ledger.current_collateral(sid) if ledger.slot_state(sid) == SlotState.FILLED else 0
                ledger.free_slot(owner, sid)
                self.confiscated += forfeited
            case Prove(pick) if (hosted := self.hosted(pick)) is not None:
                _, sid, owner = hosted
                ledger.submit_proof(owner, sid, PROOF)
            case MarkMissing(pick) if (hosted := self.hosted(pick)) is not None:
                self._mark_missing(hosted[0], hosted[1])
            case Withdraw(index) if (ended := self.request(index)) is not None:
                ledger.withdraw_funds(ended.client, ended.id)
            case Wait(seconds):
                self.clock.advance(seconds)

    def _mark_missing(self, request: Request, slot: SlotId) -> None:
        period = self.ledger.periodicity.period_of(self.clock.now()) - 1
        before = self.ledger.current_collateral(slot)
        self.ledger.mark_proof_as_missing(VALIDATOR, slot, period)
        # Computed here, not read back from the ledger, so a wrong slash shows up as a wrong final balance.
        collateral = MOCK_MARKET_CONFIG.collateral
        slashed = request.ask.collateral_per_slot * collateral.slash_percentage // 100
        reward = slashed * collateral.validator_reward_percentage // 100
        freed = self.ledger.get_host(slot) is None
        # The slash stays in the marketplace minus the validator's reward; so does the rest if the slot was freed.
        self.confiscated += (before if freed else slashed) - reward

    def settle(self) -> None:
        """End every request and let every host and client collect what it is owed."""
        self.clock.advance(10_000)
        for request in self.requests:
            assert self.ledger.request_state(request.id) in (
                RequestState.CANCELLED,
                RequestState.FINISHED,
                RequestState.FAILED,
            )
            for slot in range(request.ask.slots):
                sid = slot_id(request.id, slot)
                host = self.ledger.get_host(sid)
                if host is not None and self.ledger.slot_state(sid) == SlotState.FAILED:
                    self.confiscated += self.ledger.current_collateral(sid)
                if host is not None and self.ledger.slot_state(sid) != SlotState.PAID:
                    self.ledger.free_slot(host, sid)
            try:
                self.ledger.withdraw_funds(request.client, request.id)
            except ContractRevertError as error:
                if error.error_name != "NothingToWithdraw":
                    raise


@settings(max_examples=100, deadline=None)
@given(st.lists(operations, min_size=20, max_size=60))
def test_no_token_is_created_or_lost_and_the_marketplace_stays_solvent(ops: list[object]) -> None:
    run = Run()
    total = run.total()
    for op in ops:
        run.apply(op)
        assert run.total() == total
        assert run.ledger.balances.get(MARKETPLACE_ADDRESS, 0) >= 0
    run.settle()
    assert run.total() == total
    assert run.ledger.balances.get(MARKETPLACE_ADDRESS, 0) == run.confiscated
