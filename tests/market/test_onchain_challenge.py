"""The challenge at the pointer's wrap, on every chain the node runs on (the embedded chain, eth-tester, Hardhat).

The contract's challenge of a slot is the hash of the block ``pointer`` blocks back, and the pointer grows by one
per block: between two blocks the hashed block stays the same, except when the pointer wraps (255 → 0). A view
runs in the latest block, the proof's transaction in a later one. So the challenge a view reads while the latest
block's pointer is 255 is refused (the end-to-end restart test, 1/256 per slot and period: refused at the estimate
on the embedded chain, with the view read again unchanged), and ``sales.challenge.stable_challenge`` waits for
the wrap instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from chainenv import OnChainEnv
from chainfixtures import WAIT, chain_snapshot, market
from prometheus_client import CollectorRegistry

from codex_node.errors import ProofInvalidError
from codex_node.market.embedded import EmbeddedChain
from codex_node.market.onchain import MarketOptions, OnChainMarket
from codex_node.market.types import Request, SlotId, slot_id
from codex_node.proofs import StorageProof, prove_slot_data
from codex_node.sales.challenge import stable_challenge
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.memorykv import MemoryKV

OPTIONS = MarketOptions(poll_interval=0.05, receipt_poll_interval=0.01)
LAST_POINTER = 255
CHAINS = ["embedded", "eth-tester", pytest.param("hardhat", marks=pytest.mark.hardhat)]


@dataclass
class Setup:
    env: OnChainEnv
    host: OnChainMarket
    owner: OnChainMarket
    """The account whose event stream (and with it the clock) the others share."""
    mine: Callable[[int], Awaitable[None]]
    """Mine that many empty blocks, a second apart."""
    jump: Callable[[int], Awaitable[None]]
    """Mine one block stamped exactly that time."""


@asynccontextmanager
async def setup(name: str, tmp_path: Path) -> AsyncIterator[Setup]:
    if name != "embedded":
        async with chain_snapshot(name) as (chain, w3, deployment):
            client = market(chain, w3, deployment)
            host = client.for_account(chain.accounts[1])

            async def mine(blocks: int) -> None:
                chain.control.mine(blocks)

            async def jump(timestamp: int) -> None:
                chain.control.mine_at(timestamp)

            env = OnChainEnv(name, chain, w3, client, [host], client, deployment.marketplace)
            yield Setup(env, host, client, mine, jump)
            await host.stop()
            await client.stop()
        return
    embedded = EmbeddedChain(
        tmp_path / "chain", block_time=0, clock=FakeClock(1_600_000_000), registry=CollectorRegistry()
    )
    await embedded.start()
    try:
        node = OnChainMarket(embedded.w3, embedded.deployment, embedded.node_account, MemoryKV(), options=OPTIONS)
        client = node.for_account(embedded.client_account)
        env = OnChainEnv("embedded", None, embedded.w3, client, [node], client, embedded.deployment.marketplace)  # type: ignore[arg-type]
        yield Setup(env, node, node, embedded.mine, embedded.travel_to)
        await node.stop()
        await client.stop()
    finally:
        await embedded.stop()


def _pointer(slot: SlotId, period: int, block: int, downtime_product: int) -> int:
    """The contract's ``_getPointer`` (Proofs.sol)."""
    return (block % 256 + (period * downtime_product) % 256 + int.from_bytes(slot, "big") % 256) % 256


async def _latest_pointer(host: OnChainMarket, slot: SlotId) -> int:
    """The pointer as a view in the latest block sees it (where ``get_pointer`` used to read)."""
    return int(await host._shared.marketplace.functions.getPointer(slot).call({}, "latest"))


async def _proof(env: OnChainEnv, request: Request, index: int, challenge: bytes) -> StorageProof:
    dataset = env._datasets[request.id]
    assert dataset.tree is not None
    samples = (await env.client.config()).proofs.proof_samples
    sid = slot_id(request.id, index)
    return prove_slot_data(
        dataset.slots[index], dataset.tree, index, challenge, sid, samples, slot_tree=dataset.trees[index]
    )


async def _fill(s: Setup, request: Request) -> None:
    """Fill slot 0 early in a period, with the pointer far from the wrap (not what these tests are about)."""
    sid = slot_id(request.id, 0)
    periodicity = await s.host.periodicity()
    for _ in range(8):
        await s.jump(periodicity.period_end(periodicity.period_of(await s.env.now())) + 1)
        if await _latest_pointer(s.host, sid) <= 192:
            break
    proof = await _proof(s.env, request, 0, await s.host.get_challenge(sid))
    await s.host.fill_slot(request.id, 0, proof, request.ask.collateral_per_slot)


async def _to_last_pointer(s: Setup, slot: SlotId) -> int:
    """Mine blocks, then jump to the start of a later period, so that the jump's block has ``slot``'s pointer at
    255 (the next block wraps it to 0). Returns that period."""
    periodicity = await s.host.periodicity()
    product = (await s.host.config()).proofs.downtime_product
    number, now = await s.env.latest()
    first = periodicity.period_of(now) + 1
    for period in range(first, first + 8):
        start = periodicity.period_start(period)
        for extra in range(256):
            if extra >= start - now - 1:  # the blocks before the jump are a second apart
                break
            if _pointer(slot, period, number + extra + 1, product) == LAST_POINTER:
                if extra:
                    await s.mine(extra)
                await s.jump(start)
                return period
    raise AssertionError("no period within 8 lets the pointer sit at 255 at its start")


async def _at_the_last_pointer(s: Setup) -> tuple[Request, SlotId, int]:
    """A filled slot, and the chain moved to a block whose pointer for it is 255; the period of that block."""
    request = s.env.new_request(await s.env.client.get_signer())
    await s.env.client.request_storage(request)
    await s.host.reserve_slot(request.id, 0)
    await _fill(s, request)
    sid = slot_id(request.id, 0)
    period = await _to_last_pointer(s, sid)
    assert await _latest_pointer(s.host, sid) == LAST_POINTER  # the case: the next block wraps
    return request, sid, period


@pytest.mark.parametrize("chain_name", CHAINS)
async def test_a_proof_of_the_challenge_read_when_the_latest_pointer_is_255_is_refused(
    chain_name: str, tmp_path: Path
) -> None:
    """The cause, on each chain: the view's challenge is not the one the transaction's block checks."""
    async with setup(chain_name, tmp_path) as s:
        request, sid, _ = await _at_the_last_pointer(s)
        challenge = await s.host.get_challenge(sid)
        with pytest.raises(ProofInvalidError):
            await s.host.submit_proof(sid, await _proof(s.env, request, 0, challenge))


@pytest.mark.parametrize("chain_name", CHAINS)
async def test_the_stable_challenge_waits_for_the_wrap_and_its_proof_is_accepted(
    chain_name: str, tmp_path: Path
) -> None:
    async with setup(chain_name, tmp_path) as s:
        request, sid, period = await _at_the_last_pointer(s)
        await s.owner.start()
        reading = asyncio.create_task(stable_challenge(s.host, s.host.clock, sid))
        async with asyncio.timeout(WAIT):
            while s.host.clock.waiters == 0:  # noqa: ASYNC110 - the clock offers no signal; the timeout guards
                await asyncio.sleep(0.01)
        assert not reading.done()  # the pointer is at the wrap: no challenge yet
        await s.mine(1)
        s.owner.events.wake()
        async with asyncio.timeout(WAIT):
            challenge = await reading

        credited = await s.host.submit_proof(sid, await _proof(s.env, request, 0, challenge))

        assert credited == period
