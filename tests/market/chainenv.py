"""``OnChainMarket`` envs for the shared Market suite: an in-process eth-tester chain and a Hardhat node.

Both chains are set up once per session (contracts deployed, accounts funded) and every env runs inside a
snapshot that is reverted when it closes, so tests see the same starting chain and block numbers. Each env starts
at the beginning of a proof period, like the mock env, and builds its own ``OnChainMarket`` per account (fresh
senders, a fresh event stream over a ``MemoryKV``), so nothing carries over between tests.

Chain time: on eth-tester every block is one second after its parent (the chain is set a month ahead of the
wall clock, so the wall clock never pushes a timestamp). On Hardhat a block gets ``max(parent + 1, wall clock +
offset)``, so time also moves with the seconds the test takes; the suite reads timestamps back, so that is fine.

Proofs are real (``codex_node.proofs`` over random slot data kept per request). A proof is built from the
challenge the views see (the latest block) and checked by the contract in a later block; ``valid_proof`` first
moves past a point where the slot's pointer would wrap or the period would end in between, which would change
the challenge. ``advance_to_required_proof`` picks a period and a block at which the slot's pointer is outside
the downtime for the next few blocks, so the proof, and a validator marking it missing, see it required.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_tester import EthereumTester, PyEVMBackend
from eth_utils.address import to_checksum_address
from marketenv import DEFAULT_ASK, DEFAULT_EXPIRY, MarketEnv
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.providers.eth_tester import AsyncEthereumTesterProvider

from codex_node.data.slots import BLOCK_SIZE
from codex_node.market import deployment as deploying
from codex_node.market.deployment import Deployment
from codex_node.market.evmgas import quick_gas_estimate
from codex_node.market.onchain import MarketOptions, OnChainMarket
from codex_node.market.rpcsession import http_provider
from codex_node.market.types import Address, Ask, Content, Request, RequestId, SlotId, slot_id
from codex_node.proofs import DatasetTree, SlotTree, StorageProof, prove_slot_data
from codex_node.testing.memorykv import MemoryKV
from tests.harness import hardhat

FUNDS = 10**15
TEST_OPTIONS = MarketOptions(poll_interval=0.05, receipt_poll_interval=0.01)
POINTER_WINDOW = 8
"""Blocks after the one ``advance_to_required_proof`` lands on during which the slot's pointer stays required."""
WRAP_MARGIN = 4
"""Blocks a proof needs between the view that read its challenge and the transaction that carries it."""


class ChainControl(Protocol):
    """The test-only chain operations an env needs (all synchronous)."""

    def snapshot(self) -> Any: ...

    def revert(self, snapshot: Any) -> None: ...

    def mine(self, blocks: int) -> None:
        """Mine ``blocks`` empty blocks, one second apart."""
        ...

    def mine_at(self, timestamp: int) -> None:
        """Mine one empty block with exactly ``timestamp``."""
        ...


class EthTesterControl:
    def __init__(self, tester: EthereumTester) -> None:
        self.tester = tester

    def snapshot(self) -> Any:
        return self.tester.take_snapshot()

    def revert(self, snapshot: Any) -> None:
        self.tester.revert_to_snapshot(snapshot)

    def mine(self, blocks: int) -> None:
        if blocks > 0:
            self.tester.mine_blocks(blocks)

    def mine_at(self, timestamp: int) -> None:
        # eth-tester's time travel stamps the mined block one second before its argument (the pending block
        # after it gets the argument itself).
        self.tester.time_travel(timestamp + 1)


class HardhatControl:
    def __init__(self, url: str) -> None:
        self.url = url

    def snapshot(self) -> Any:
        return hardhat.rpc(self.url, "evm_snapshot")

    def revert(self, snapshot: Any) -> None:
        assert hardhat.rpc(self.url, "evm_revert", [snapshot]) is True

    def mine(self, blocks: int) -> None:
        if blocks > 0:
            hardhat.rpc(self.url, "hardhat_mine", [hex(blocks), hex(1)])

    def mine_at(self, timestamp: int) -> None:
        hardhat.rpc(self.url, "evm_mine", [timestamp])


@dataclass
class SharedChain:
    """A chain with the marketplace deployed and the accounts funded, shared by every env of a session."""

    name: str
    control: ChainControl
    new_w3: Callable[[], AsyncWeb3[Any]]
    deployment: Deployment
    deployer: str
    accounts: Sequence[LocalAccount | str]
    """client, hosts..., validator, spare accounts."""


# --- session-wide chains ------------------------------------------------------------------------------------------

_shared: dict[str, SharedChain] = {}
_hardhat_node: hardhat.HardhatNode | None = None


def stop_shared_chains() -> None:
    """End the session's Hardhat node (the eth-tester chain is just memory)."""
    global _hardhat_node
    if _hardhat_node is not None:
        _hardhat_node.stop()
        _hardhat_node = None
    _shared.clear()


async def _fund(
    w3: AsyncWeb3[Any], deployment: Deployment, deployer: str, accounts: Sequence[LocalAccount | str]
) -> None:
    for account in accounts:
        address = account if isinstance(account, str) else account.address
        await deploying.mint(w3, deployment, deployer, address, FUNDS)


async def eth_tester_chain() -> SharedChain:
    if "eth-tester" in _shared:
        return _shared["eth-tester"]
    tester = EthereumTester(PyEVMBackend())
    tester.backend.chain.gas_estimator = quick_gas_estimate  # py-evm's bisection runs a transaction ~13 times
    provider = AsyncEthereumTesterProvider()
    provider.ethereum_tester = tester

    def new_w3() -> AsyncWeb3[Any]:
        return AsyncWeb3(provider)

    w3 = new_w3()
    tester.mine_blocks(257)  # proofs read the 256 previous block hashes
    # Genesis is stamped with the wall clock and a block takes max(wall clock, parent + 1): a month ahead, every
    # timestamp depends on the test's own steps only.
    latest = await w3.eth.get_block("latest")
    tester.time_travel(int(latest["timestamp"]) + 30 * 24 * 3600)
    deployer = (await w3.eth.accounts)[0]
    deployment = await deploying.deploy(w3, deployer)
    keys = tester.backend.account_keys[1:9]
    accounts = [Account.from_key(str(key)) for key in keys]
    await _fund(w3, deployment, deployer, accounts)
    _shared["eth-tester"] = SharedChain("eth-tester", EthTesterControl(tester), new_w3, deployment, deployer, accounts)
    return _shared["eth-tester"]


async def hardhat_chain() -> SharedChain:
    global _hardhat_node
    if "hardhat" in _shared:
        return _shared["hardhat"]
    node = hardhat.HardhatNode()
    node.start()
    _hardhat_node = node
    url = node.url

    def new_w3() -> AsyncWeb3[Any]:
        return AsyncWeb3(http_provider(url))  # as the node makes it (market/rpcsession.py)

    control = HardhatControl(url)
    control.mine(257)
    w3 = new_w3()
    try:
        dev_accounts = [to_checksum_address(a) for a in node.accounts]
        deployer = dev_accounts[0]
        deployment = await deploying.deploy(w3, deployer)
        accounts = dev_accounts[1:9]
        await _fund(w3, deployment, deployer, accounts)
    finally:
        await w3.provider.disconnect()  # type: ignore[attr-defined]
    _shared["hardhat"] = SharedChain("hardhat", control, new_w3, deployment, deployer, accounts)
    return _shared["hardhat"]


# --- datasets -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Dataset:
    slots: tuple[bytes, ...]
    trees: tuple[SlotTree, ...]
    tree: DatasetTree | None

    @classmethod
    def random(cls, ask: Ask, seed: int) -> _Dataset:
        rng = random.Random(seed)
        blocks = max(1, ask.slot_size // BLOCK_SIZE) if ask.slot_size % BLOCK_SIZE == 0 else 1
        slots = tuple(rng.randbytes(blocks * BLOCK_SIZE) for _ in range(min(ask.slots, 64)))
        trees = tuple(SlotTree.from_bytes(s) for s in slots)
        return cls(slots, trees, DatasetTree([t.root for t in trees]) if trees else None)

    @property
    def root(self) -> bytes:
        return self.tree.root if self.tree is not None else bytes(32)


# --- the env ------------------------------------------------------------------------------------------------------


@dataclass
class OnChainEnv:
    """:class:`marketenv.MarketEnv` over ``OnChainMarket`` accounts on a shared chain."""

    name: str
    chain: SharedChain
    w3: AsyncWeb3[Any]
    client: OnChainMarket
    hosts: Sequence[OnChainMarket]
    validator: OnChainMarket
    marketplace_address: Address
    _datasets: dict[RequestId, _Dataset] = field(default_factory=dict)
    _counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def markets(self) -> list[OnChainMarket]:
        return [self.client, *self.hosts, self.validator]

    async def latest(self) -> tuple[int, int]:
        """(number, timestamp) of the latest block."""
        block = await self.w3.eth.get_block("latest")
        return int(block["number"]), int(block["timestamp"])

    async def now(self) -> int:
        return (await self.latest())[1]

    async def advance_to(self, timestamp: int) -> None:
        if timestamp > await self.now():
            self.chain.control.mine_at(timestamp)

    async def mint(self, address: Address, amount: int) -> None:
        await deploying.mint(self.w3, self.chain.deployment, self.chain.deployer, address, amount)

    def new_request(self, client: Address, ask: Ask = DEFAULT_ASK, expiry: int = DEFAULT_EXPIRY) -> Request:
        counter = next(self._counter)
        nonce = counter.to_bytes(32, "big")
        dataset = _Dataset.random(ask, seed=counter)
        request = Request(
            client=client,
            ask=ask,
            content=Content(cid=b"\x01\x55" + nonce, merkle_root=dataset.root),
            expiry=expiry,
            nonce=nonce,
        )
        self._datasets[request.id] = dataset
        return request

    # --- proofs ---------------------------------------------------------------------------------------------------

    async def valid_proof(self, request: Request, slot_index: int) -> StorageProof:
        sid = slot_id(request.id, slot_index)
        await self._keep_challenge_stable(sid)
        return await self._proof(request, slot_index)

    async def invalid_proof(self, request: Request, slot_index: int) -> StorageProof:
        proof = await self._proof(request, slot_index)
        other = self._datasets[request.id].slots[(slot_index + 1) % request.ask.slots]
        forged = other[: len(proof.cells[0])]
        assert forged != proof.cells[0]
        return replace(proof, cells=(forged, *proof.cells[1:]))

    async def _proof(self, request: Request, slot_index: int) -> StorageProof:
        sid = slot_id(request.id, slot_index)
        dataset = self._datasets[request.id]
        assert dataset.tree is not None
        challenge = await self.client.get_challenge(sid)
        samples = (await self.client.config()).proofs.proof_samples
        return prove_slot_data(
            dataset.slots[slot_index],
            dataset.tree,
            slot_index,
            challenge,
            sid,
            samples,
            slot_tree=dataset.trees[slot_index],
        )

    async def _keep_challenge_stable(self, sid: SlotId) -> None:
        """Move on if the pointer would wrap, or the period end, before a transaction sent now lands."""
        periodicity = await self.client.periodicity()
        _, now = await self.latest()
        if periodicity.period_end(periodicity.period_of(now)) - now <= WRAP_MARGIN:
            self.chain.control.mine_at(periodicity.period_end(periodicity.period_of(now)))
        pointer = await self.client.get_pointer(sid)
        if pointer >= 256 - WRAP_MARGIN:
            self.chain.control.mine(256 - pointer)

    async def advance_to_required_proof(self, slot: SlotId) -> int:
        config = await self.client.config()
        periodicity = await self.client.periodicity()
        downtime, product = config.proofs.downtime, config.proofs.downtime_product
        number, now = await self.latest()

        def pointer(period: int, block: int) -> int:
            return (block % 256 + (period * product) % 256 + int.from_bytes(slot, "big") % 256) % 256

        # Fewest blocks mined first (mining is what costs time here); each later period shifts the pointer by
        # ``downtime_product``, so one of the next few periods usually fits with no extra block at all.
        first = periodicity.period_of(now) + 1
        for extra in range(256):
            for period in range(first, first + 8):
                start = periodicity.period_start(period)
                if extra > start - now - 5:  # blocks mined before the jump are a second apart; keep a margin
                    continue
                jump_block = number + extra + 1
                if all(pointer(period, jump_block + i) >= downtime for i in range(POINTER_WINDOW)):
                    self.chain.control.mine(extra)
                    self.chain.control.mine_at(start)
                    assert await self.client.is_proof_required(slot)
                    return period
        raise AssertionError("unreachable")


async def _open_env(chain: SharedChain, name: str) -> OnChainEnv:
    w3 = chain.new_w3()
    block = await w3.eth.get_block("latest")
    periodicity = (await OnChainMarket(w3, chain.deployment, chain.accounts[0], MemoryKV()).periodicity()).seconds
    # Start on a period boundary, like the mock env, so the first steps of a test share one period.
    chain.control.mine_at((int(block["timestamp"]) // periodicity + 1) * periodicity)
    head = await w3.eth.block_number
    deployment = replace(chain.deployment, block_number=head)
    client_account, *host_accounts, validator_account = chain.accounts[:6]
    client = OnChainMarket(w3, deployment, client_account, MemoryKV(), options=TEST_OPTIONS)
    env = OnChainEnv(
        name=name,
        chain=chain,
        w3=w3,
        client=client,
        hosts=[client.for_account(a) for a in host_accounts],
        validator=client.for_account(validator_account),
        marketplace_address=deployment.marketplace,
    )
    await client.start()
    return env


async def _close_env(env: OnChainEnv) -> None:
    for market in reversed(env.markets):  # the client (owner of the stream) last
        await market.stop()
    assert env.client.events.handler_failures == 0


@asynccontextmanager
async def chain_env(chain: SharedChain) -> AsyncIterator[OnChainEnv]:
    snapshot = chain.control.snapshot()
    try:
        env = await _open_env(chain, chain.name)
        try:
            yield env
        finally:
            await _close_env(env)
            if isinstance(env.w3.provider, AsyncHTTPProvider):
                await env.w3.provider.disconnect()
    finally:
        chain.control.revert(snapshot)


@asynccontextmanager
async def eth_tester_env() -> AsyncIterator[MarketEnv]:
    async with chain_env(await eth_tester_chain()) as env:
        yield env


@asynccontextmanager
async def hardhat_env() -> AsyncIterator[MarketEnv]:
    async with chain_env(await hardhat_chain()) as env:
        yield env
