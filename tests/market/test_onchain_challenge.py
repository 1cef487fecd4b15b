"""The challenge a proof is built for is the one the contract checks it against (the embedded chain, for real).

The contract's challenge of a slot is the hash of the block ``pointer`` blocks back, and the pointer grows by one
per block: between two blocks the hashed block stays the same, except when the pointer wraps (255 → 0). A view
runs in the latest block; the proof's transaction (its gas estimate, then the block it is mined in) runs in the
next one. So when the latest block's pointer is 255, the latest block's challenge is not the one the proof is
checked against, and reading it again after the refusal gives the same stale value: the node used to refuse
itself a valid period (seen in the end-to-end restart test, once in a few dozen runs).
"""

from __future__ import annotations

from pathlib import Path

from chainenv import OnChainEnv
from prometheus_client import CollectorRegistry

from codex_node.market.embedded import EmbeddedChain
from codex_node.market.onchain import MarketOptions, OnChainMarket
from codex_node.market.types import Periodicity, Request, SlotId, slot_id
from codex_node.proofs import StorageProof, prove_slot_data
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.memorykv import MemoryKV

OPTIONS = MarketOptions(poll_interval=0.05, receipt_poll_interval=0.01)
LAST_POINTER = 255


def _pointer(slot: SlotId, period: int, block: int, downtime_product: int) -> int:
    """The contract's ``_getPointer`` (Proofs.sol)."""
    return (block % 256 + (period * downtime_product) % 256 + int.from_bytes(slot, "big") % 256) % 256


async def _latest_pointer(env: OnChainEnv, node: OnChainMarket, slot: SlotId) -> int:
    """The pointer as a view in the latest block sees it (what ``get_pointer`` used to read)."""
    marketplace = node._shared.marketplace
    return int(await marketplace.functions.getPointer(slot).call({}, "latest"))


async def _proof(env: OnChainEnv, request: Request, index: int, challenge: bytes) -> StorageProof:
    dataset = env._datasets[request.id]
    assert dataset.tree is not None
    samples = (await env.client.config()).proofs.proof_samples
    sid = slot_id(request.id, index)
    return prove_slot_data(
        dataset.slots[index], dataset.tree, index, challenge, sid, samples, slot_tree=dataset.trees[index]
    )


async def _travel_to_last_pointer(chain: EmbeddedChain, node: OnChainMarket, slot: SlotId) -> int:
    """Mine blocks, then jump to the start of a later period, so that the jump's block has ``slot``'s pointer at
    255 (the next block wraps it to 0). Returns that period."""
    periodicity: Periodicity = await node.periodicity()
    product = (await node.config()).proofs.downtime_product
    now = await chain.latest_timestamp()
    first = periodicity.period_of(now) + 1
    for period in range(first, first + 8):
        start = periodicity.period_start(period)
        for extra in range(256):
            if extra >= start - now - 1:  # the blocks before the jump are a second apart
                break
            if _pointer(slot, period, chain.head + extra + 1, product) == LAST_POINTER:
                if extra:
                    await chain.mine(extra)
                await chain.travel_to(start)
                return period
    raise AssertionError("no period within 8 lets the pointer sit at 255 at its start")


async def test_a_proof_built_when_the_latest_pointer_is_the_last_before_the_wrap_is_accepted(tmp_path: Path) -> None:
    chain = EmbeddedChain(
        tmp_path / "chain", block_time=0, clock=FakeClock(1_600_000_000), registry=CollectorRegistry()
    )
    await chain.start()
    try:
        node = OnChainMarket(chain.w3, chain.deployment, chain.node_account, MemoryKV(), options=OPTIONS)
        client = node.for_account(chain.client_account)
        await node.start()
        env = OnChainEnv("embedded", None, chain.w3, client, [node], client, chain.deployment.marketplace)  # type: ignore[arg-type]
        request = env.new_request(await client.get_signer())
        await client.request_storage(request)
        await node.reserve_slot(request.id, 0)
        sid = slot_id(request.id, 0)
        # The fill, early in a period with the pointer far from the wrap (not what this test is about).
        periodicity = await node.periodicity()
        for _ in range(8):
            await chain.travel_to(periodicity.period_end(periodicity.period_of(await chain.latest_timestamp())) + 1)
            if await _latest_pointer(env, node, sid) <= 192:
                break
        fill_proof = await _proof(env, request, 0, await node.get_challenge(sid))
        await node.fill_slot(request.id, 0, fill_proof, request.ask.collateral_per_slot)

        period = await _travel_to_last_pointer(chain, node, sid)
        assert await _latest_pointer(env, node, sid) == LAST_POINTER  # the case: the next block wraps

        challenge = await node.get_challenge(sid)
        credited = await node.submit_proof(sid, await _proof(env, request, 0, challenge))

        assert credited == period
        await node.stop()
        await client.stop()
    finally:
        await chain.stop()
