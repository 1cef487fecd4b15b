"""The ``market_env`` fixture: one parameter per Market implementation the shared suite runs against.

To add an implementation, write an async factory that yields a :class:`marketenv.MarketEnv` and add it to
``ENV_FACTORIES`` (with marks such as ``pytest.mark.hardhat`` where it needs outside processes).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pytest
from chainenv import eth_tester_env, hardhat_env, stop_shared_chains
from marketenv import DEFAULT_ASK, DEFAULT_EXPIRY, MarketEnv, RequestFactory

from codex_node.market.embedded import EmbeddedChain
from codex_node.market.types import Address, Ask, Request, SlotId
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.mockledger import MARKETPLACE_ADDRESS, ProofTarget
from codex_node.testing.mockmarket import MockMarket, account

if TYPE_CHECKING:
    from codex_node.proofs import StorageProof

FUNDS = 10**15


@dataclass(frozen=True)
class _FakeProof:
    """Stands in for a StorageProof until the proof maths lands; ``valid`` is what the fake verifier checks."""

    request_id: bytes
    slot_index: int
    valid: bool


def _fake_verifier(proof: StorageProof, target: ProofTarget) -> bool:
    fake = cast(_FakeProof, proof)
    return fake.valid and fake.slot_index == target.slot_index


@dataclass
class MockMarketEnv:
    """MockMarket accounts over one FakeClock."""

    clock: FakeClock
    client: MockMarket
    hosts: Sequence[MockMarket]
    validator: MockMarket
    name: str = "mock"
    marketplace_address: Address = MARKETPLACE_ADDRESS
    _requests: RequestFactory = field(default_factory=RequestFactory)

    async def now(self) -> int:
        return self.clock.now()

    async def advance_to(self, timestamp: int) -> None:
        self.clock.set(timestamp)

    async def mint(self, address: Address, amount: int) -> None:
        self.client.mint(address, amount)

    async def advance_to_required_proof(self, slot_id: SlotId) -> int:
        periodicity = await self.client.periodicity()
        period = periodicity.period_of(self.clock.now()) + 1
        self.clock.set(periodicity.period_start(period))
        assert await self.client.is_proof_required(slot_id)
        return period

    async def valid_proof(self, request: Request, slot_index: int) -> StorageProof:
        return cast("StorageProof", _FakeProof(request.id, slot_index, valid=True))

    async def invalid_proof(self, request: Request, slot_index: int) -> StorageProof:
        return cast("StorageProof", _FakeProof(request.id, slot_index, valid=False))

    def new_request(self, client: Address, ask: Ask = DEFAULT_ASK, expiry: int = DEFAULT_EXPIRY) -> Request:
        return self._requests.new_request(client, ask, expiry)


@asynccontextmanager
async def mock_env() -> AsyncIterator[MarketEnv]:
    # Start on a period boundary so "the period of the fill" is a whole period in every test.
    clock = FakeClock(1_700_000_040)
    client = MockMarket(clock, signer=account(1), verifier=_fake_verifier)
    hosts = [client.as_account(account(10 + i)) for i in range(4)]
    validator = client.as_account(account(99))
    for market in (client, *hosts, validator):
        market.mint(market.signer, FUNDS)
    env = MockMarketEnv(clock=clock, client=client, hosts=hosts, validator=validator)
    yield env
    assert client.handler_errors == []


EnvFactory = Callable[[], AbstractAsyncContextManager[MarketEnv]]

ENV_FACTORIES: dict[str, tuple[EnvFactory, tuple[pytest.MarkDecorator, ...]]] = {
    # name: (factory, marks), e.g. "hardhat": (hardhat_env, (pytest.mark.hardhat, pytest.mark.slow))
    "mock": (mock_env, ()),
    # OnChainMarket on an in-process eth-tester chain and on a Hardhat node (tests/market/chainenv.py).
    "eth-tester": (eth_tester_env, ()),
    "hardhat": (hardhat_env, (pytest.mark.hardhat,)),
}


@pytest.fixture(params=[pytest.param(name, marks=marks) for name, (_, marks) in ENV_FACTORIES.items()])
async def market_env(request: pytest.FixtureRequest) -> AsyncIterator[MarketEnv]:
    factory, _ = ENV_FACTORIES[request.param]
    async with factory() as env:
        yield env


@pytest.fixture(scope="session", autouse=True)
def _stop_shared_chains() -> Iterator[None]:
    """The chains the on-chain envs share are made on first use; the Hardhat node ends with the session."""
    yield
    stop_shared_chains()


# --- an embedded chain on disk, made once per module and copied per test --------------------------------------

EMBEDDED_T0 = 1_800_000_000
"""The fake clock's time when the template chain is made (the embedded-chain tests start their clocks there)."""


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A chain that went through its first start (and was stopped)."""
    path = tmp_path_factory.mktemp("template") / "chain"
    chain = EmbeddedChain(path, block_time=0, clock=FakeClock(EMBEDDED_T0), sync=False, registry=None)

    async def first_start() -> None:
        await chain.start()
        await chain.stop()

    asyncio.run(first_start())
    return path


@pytest.fixture
def chain_dir(template: Path, tmp_path: Path) -> Path:
    path = tmp_path / "chain"
    shutil.copytree(template, path)
    return path
