"""Fakes for the sales agent's ports, and a ready-made environment on MockMarket + FakeClock.

The per-state tests drive one state's ``run`` at a time against this environment; everything a state does to the
outside world lands in the fakes below, where the tests assert on it.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from codex_node.errors import BytesOutOfBoundsError, CodexError
from codex_node.market.types import Ask, Content, Request, RequestId, Slot
from codex_node.sales.agent import SalesAgent
from codex_node.sales.context import OnBlocks, SalesContext, SalesData
from codex_node.sales.proofmargin import ProofMargins
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.mockledger import ProofTarget
from codex_node.testing.mockmarket import MockMarket, account

if TYPE_CHECKING:
    from codex_node.proofs import StorageProof

BLOCK = 65_536
FUNDS = 10**15
ASK = Ask(
    proof_probability=1,
    price_per_byte_per_second=1,
    collateral_per_byte=2,
    slots=3,
    slot_size=2 * BLOCK,
    duration=24 * 3600,
    max_slot_loss=1,
)
EXPIRY = 600


@dataclass(frozen=True)
class FakeAvailability:
    id: bytes


@dataclass(frozen=True)
class FakeReservation:
    id: bytes
    availability_id: bytes
    size: int
    request_id: RequestId
    slot_index: int
    valid_until: int
    collateral: int


@dataclass
class FakeReservations:
    """Just enough of the reservations book for one agent: one availability, no accounting rules."""

    has_availability: bool = True
    race_on_create: bool = False
    created: list[FakeReservation] = field(default_factory=list)
    released: list[int] = field(default_factory=list)
    lowered: list[int] = field(default_factory=list)
    find_args: list[tuple[int, ...]] = field(default_factory=list)

    async def find_availability(
        self, size: int, duration: int, price: int, collateral_per_byte: int, valid_until: int
    ) -> Any:
        self.find_args.append((size, duration, price, collateral_per_byte, valid_until))
        return FakeAvailability(b"\xaa" * 32) if self.has_availability else None

    async def explain_match(
        self, size: int, duration: int, price: int, collateral_per_byte: int, valid_until: int
    ) -> list[Any]:
        return []

    async def create_reservation(
        self,
        availability_id: bytes,
        slot_size: int,
        request_id: RequestId,
        slot_index: int,
        collateral_per_byte: int,
        valid_until: int,
    ) -> Any:
        if self.race_on_create:
            raise BytesOutOfBoundsError("availability too small now")
        r = FakeReservation(
            os.urandom(32),
            availability_id,
            slot_size,
            request_id,
            slot_index,
            valid_until,
            slot_size * collateral_per_byte,
        )
        self.created.append(r)
        return r

    async def release(self, reservation_id: bytes, availability_id: bytes, nbytes: int) -> None:
        self.released.append(nbytes)

    async def lower_collateral(self, reservation_id: bytes, availability_id: bytes, collateral: int) -> Any:
        self.lowered.append(collateral)
        return FakeReservation(reservation_id, availability_id, ASK.slot_size, RequestId(b""), 0, 0, collateral)


@dataclass
class FakeDataSource:
    """Pretends to store a slot in batches of one block; remembers every expiry it was told."""

    fail_with: CodexError | None = None
    fetched: list[tuple[int, int, bool]] = field(default_factory=list)
    raised: list[int] = field(default_factory=list)
    lowered: list[int] = field(default_factory=list)

    async def fetch(
        self, request: Request, slot_index: int, expiry: int, on_blocks: OnBlocks, *, is_repairing: bool = False
    ) -> None:
        self.fetched.append((slot_index, expiry, is_repairing))
        if self.fail_with is not None:
            raise self.fail_with
        for _ in range(request.ask.slot_size // BLOCK):
            await on_blocks(BLOCK)

    async def raise_expiry(self, request: Request, slot_index: int, expiry: int) -> None:
        self.raised.append(expiry)

    async def lower_expiry(self, request: Request, slot_index: int, expiry: int) -> None:
        self.lowered.append(expiry)


@dataclass(frozen=True)
class FakeProof:
    challenge: bytes
    wrong: bool = False


@dataclass
class FakeProver:
    fail_with: CodexError | None = None
    proved: list[bytes] = field(default_factory=list)
    forgotten: list[Slot] = field(default_factory=list)

    async def prove(self, slot: Slot, challenge: bytes) -> StorageProof:
        if self.fail_with is not None:
            raise self.fail_with
        self.proved.append(challenge)
        return cast("StorageProof", FakeProof(challenge))

    def corrupt(self, proof: StorageProof) -> StorageProof:
        return cast("StorageProof", FakeProof(cast(FakeProof, proof).challenge, wrong=True))

    async def forget(self, slot: Slot) -> None:
        self.forgotten.append(slot)


@dataclass
class FakeTimers:
    watched: dict[RequestId, int] = field(default_factory=dict)

    def watch(self, request_id: RequestId, expires_at: int) -> None:
        self.watched[request_id] = expires_at


@dataclass
class RecordingHooks:
    filled: list[SalesAgent] = field(default_factory=list)
    cleaned: list[tuple[SalesAgent, int, bool]] = field(default_factory=list)
    retried: list[SalesAgent] = field(default_factory=list)

    def worker_released(self, agent: SalesAgent) -> None:
        self.filled.append(agent)

    async def sale_ended(
        self, agent: SalesAgent, returned_collateral: int, reprocess: bool, *, retry: bool = False
    ) -> None:
        self.cleaned.append((agent, returned_collateral, reprocess))
        if retry:
            self.retried.append(agent)


@dataclass
class SalesEnv:
    """A host (``market``) and a client on one MockMarket, with a posted request and fake ports."""

    clock: FakeClock
    market: MockMarket
    client: MockMarket
    other_host: MockMarket
    request: Request
    reservations: FakeReservations = field(default_factory=FakeReservations)
    data_source: FakeDataSource = field(default_factory=FakeDataSource)
    prover: FakeProver = field(default_factory=FakeProver)
    timers: FakeTimers = field(default_factory=FakeTimers)
    hooks: RecordingHooks = field(default_factory=RecordingHooks)
    simulate_proof_failures: int = 0
    proof_margins: ProofMargins | None = None

    @property
    def context(self) -> SalesContext:
        return SalesContext(
            market=self.market,
            clock=self.clock,
            reservations=cast(Any, self.reservations),
            data_source=cast(Any, self.data_source),
            prover=self.prover,
            timers=self.timers,
            hooks=self.hooks,
            simulate_proof_failures=self.simulate_proof_failures,
            proof_margins=self.proof_margins,
        )

    def agent(self, slot_index: int = 0, *, known_request: bool = True, reserved: bool = True) -> SalesAgent:
        """An agent (not started) for a slot of the request, optionally already holding a reservation."""
        data = SalesData(self.request.id, slot_index, request=self.request if known_request else None)
        if reserved:
            data.reservation = cast(
                Any,
                FakeReservation(
                    os.urandom(32), b"\xaa" * 32, ASK.slot_size, self.request.id, slot_index, 0, ASK.collateral_per_slot
                ),
            )
        return SalesAgent(self.context, data)

    async def fill(self, market: MockMarket, slot_index: int) -> None:
        """``market``'s account reserves and fills the slot (as if its own agent had)."""
        await market.reserve_slot(self.request.id, slot_index)
        collateral = await market.slot_collateral(self.request.id, slot_index)
        await market.fill_slot(self.request.id, slot_index, cast("StorageProof", FakeProof(b"")), collateral)

    async def fill_all(self) -> None:
        for i in range(ASK.slots):
            await self.fill(self.market, i)

    def cleaned(self) -> tuple[int, bool]:
        """The one clean-up call's (returned collateral, reprocess)."""
        assert len(self.hooks.cleaned) == 1, self.hooks.cleaned
        _, collateral, reprocess = self.hooks.cleaned[0]
        return collateral, reprocess


def _fake_verifier(proof: StorageProof, target: ProofTarget) -> bool:
    """Like the contract: a proof verifies only against the challenge it was made for.

    ``FakeProof(b"")`` is a fill of a test's own making whose challenge does not matter: it always verifies.
    """
    fake = cast(FakeProof, proof)
    return not fake.wrong and fake.challenge in (b"", target.challenge)


async def make_env(ask: Ask = ASK) -> SalesEnv:
    clock = FakeClock()
    client = MockMarket(clock, signer=account(1), verifier=_fake_verifier)
    host = client.as_account(account(2))
    other = client.as_account(account(3))
    for a in (account(1), account(2), account(3)):
        client.mint(a, FUNDS)
    request = Request(
        client=account(1),
        ask=ask,
        content=Content(cid=b"\x01\x55\x12\x20" + os.urandom(32), merkle_root=os.urandom(32)),
        expiry=EXPIRY,
        nonce=os.urandom(32),
    )
    await client.request_storage(request)
    return SalesEnv(clock=clock, market=host, client=client, other_host=other, request=request)


def assert_declared(state: object, result: object) -> None:
    """``result`` (a state or ``None``) is among the transitions ``state`` declares."""
    if result is None:
        return
    declared = type(state).transitions  # type: ignore[attr-defined]
    assert type(result).__name__ in declared, f"{type(state).__name__} returned undeclared {type(result).__name__}"


async def until_idle(max_turns: int = 20_000) -> None:
    """Run the event loop until no callback but ours is ready: every task then waits on the fake clock, a market
    event or another future only the test can resolve.

    Exact for these worlds (no I/O, no threads, no real-time timers), where counting "quiet" turns of the loop is
    a guess that a long enough chain of awaits outlasts. Reads the default loop's ready queue (``_ready``).
    """
    loop = asyncio.get_running_loop()
    ready = getattr(loop, "_ready", None)
    if ready is None:
        raise RuntimeError("until_idle needs asyncio's default event loop")
    for _ in range(max_turns):
        await asyncio.sleep(0)
        if not ready:
            return
    raise AssertionError("the event loop never went idle")


async def until_waiting(clock: FakeClock, waiters: int = 1, *, spins: int = 200) -> None:
    """Let the event loop run until ``waiters`` tasks sleep on ``clock`` (fails instead of hanging)."""
    for _ in range(spins):
        if clock.waiters >= waiters:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"expected {waiters} clock waiter(s), have {clock.waiters}")


async def next_period_start(env: SalesEnv) -> int:
    periodicity = await env.market.periodicity()
    return periodicity.period_end(periodicity.period_of(env.clock.now()))
