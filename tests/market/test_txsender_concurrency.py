"""Twenty concurrent fillSlot calls from one account land with consecutive nonces; cancelling half of the callers
midway leaves no nonce gap and no stuck transaction (anchor issues #538, #963).

Runs on Hardhat (a real JSON-RPC node that refuses out-of-order nonces while automining) with an unlocked dev
account and with a locally signing account, and on eth-tester.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import replace
from typing import Any

import pytest
from chainenv import OnChainEnv, SharedChain, _Dataset
from chainfixtures import chain_snapshot, eventually, market
from eth_account import Account
from eth_utils.address import to_checksum_address
from marketenv import DEFAULT_ASK

from codex_node.market import deployment as deploying
from codex_node.market.types import Content, Request, SlotState, slot_id

SLOTS = 20
MIDWAY = 7
"""The caller whose fillSlot broadcast triggers the cancellation of every odd caller (itself included)."""
WINDOW = 2 * SLOTS + 6
"""Blocks the fills may take (an approval and a fill each, plus slack) during which no challenge may change."""


def wrap_free_request(env: OnChainEnv, client: str, product: int) -> tuple[Request, int]:
    """A request with ``SLOTS`` slots and a pointer shift ``s`` such that, if the chain is positioned at it, no
    slot's pointer wraps (which changes its challenge) during the next ``WINDOW`` blocks."""
    ask = replace(DEFAULT_ASK, slots=SLOTS, max_slot_loss=SLOTS)
    dataset = _Dataset.random(ask, seed=4242)
    for counter in itertools.count(1):
        nonce = (10**9 + counter).to_bytes(32, "big")
        request = Request(client, ask, Content(b"\x01\x55" + nonce, dataset.root), 600, nonce)  # type: ignore[arg-type]
        offsets = {int.from_bytes(slot_id(request.id, i), "big") % 256 for i in range(SLOTS)}
        # pointer(block) = (block + period * product + offset) % 256; it wraps where that sum is 0 mod 256.
        for shift in range(256):
            if all((shift + k + offset) % 256 != 0 for offset in offsets for k in range(1, WINDOW)):
                env._datasets[request.id] = dataset
                return request, shift
    raise AssertionError("unreachable")


async def position_chain(env: OnChainEnv, shift: int) -> None:
    """Mine to the start of a period at a block where ``(block + period * product) % 256 == shift``."""
    config = await env.client.config()
    seconds, product = config.proofs.period, config.proofs.downtime_product
    number, now = await env.latest()
    for extra in range(256):
        for period in range(now // seconds + 1, now // seconds + 9):
            start = period * seconds
            if extra <= start - now - 5 and (number + extra + 1 + period * product) % 256 == shift:
                env.chain.control.mine(extra)
                env.chain.control.mine_at(start)
                return
    raise AssertionError("no position found")


async def host_account(chain: SharedChain, w3: Any, kind: str) -> Any:
    if kind == "unlocked":
        return chain.accounts[1]
    account = Account.create()  # a fresh local key: funded here with ether and tokens
    funder = chain.deployer
    await w3.eth.wait_for_transaction_receipt(
        await w3.eth.send_transaction({"from": funder, "to": account.address, "value": 10**20})
    )
    await deploying.mint(w3, chain.deployment, funder, account.address, 10**15)
    return account


async def mined_nonces(env: OnChainEnv, sender: str, first_block: int) -> list[int]:
    """Nonces of every transaction ``sender`` got mined after ``first_block``, in block order."""
    latest = await env.w3.eth.block_number
    nonces = []
    for number in range(first_block + 1, latest + 1):
        block = await env.w3.eth.get_block(number, full_transactions=True)
        nonces += [int(tx["nonce"]) for tx in block["transactions"] if to_checksum_address(tx["from"]) == sender]
    return nonces


@pytest.mark.parametrize(
    ("chain_name", "kind"),
    [
        pytest.param("hardhat", "unlocked", marks=pytest.mark.hardhat),
        pytest.param("hardhat", "local", marks=pytest.mark.hardhat),
        ("eth-tester", "local"),
    ],
)
async def test_twenty_concurrent_fills_with_half_cancelled_leave_no_gap(chain_name: str, kind: str) -> None:
    async with chain_snapshot(chain_name) as (chain, w3, deployment):
        client = market(chain, w3, deployment)
        host = client.for_account(await host_account(chain, w3, kind))
        env = OnChainEnv("concurrency", chain, w3, client, [host], client, deployment.marketplace)
        config = await client.config()
        request, shift = wrap_free_request(env, await client.get_signer(), config.proofs.downtime_product)
        await client.request_storage(request)
        signer = await host.get_signer()

        # Twenty concurrent reservations: the simplest transactions, all from one account.
        start_block = await w3.eth.block_number
        start_nonce = await w3.eth.get_transaction_count(signer)
        await asyncio.gather(*(host.reserve_slot(request.id, i) for i in range(SLOTS)))
        assert await mined_nonces(env, signer, start_block) == list(range(start_nonce, start_nonce + SLOTS))

        # Twenty concurrent fills (each an approval and a fillSlot), half of the callers cancelled midway.
        await position_chain(env, shift)
        proofs = [await env.valid_proof(request, i) for i in range(SLOTS)]
        collateral = request.ask.collateral_per_slot
        start_block = await w3.eth.block_number
        start_nonce = await w3.eth.get_transaction_count(signer)
        calls: list[asyncio.Task[None]] = []
        cancelled: list[int] = []
        broadcast = host.sender._broadcast

        async def cancel_midway(job: Any, params: Any, nonce: int) -> bytes:
            # When slot MIDWAY's fillSlot is being broadcast (its nonce taken), cancel every odd caller still
            # running, MIDWAY's own included: its transaction must land anyway, the others' must never be sent.
            if job.label == "fillSlot" and int.from_bytes(job.data[36:68], "big") == MIDWAY and not cancelled:
                cancelled.extend(i for i in range(1, SLOTS, 2) if calls[i].cancel())
            return await broadcast(job, params, nonce)

        host.sender._broadcast = cancel_midway  # type: ignore[method-assign]
        calls += [asyncio.create_task(host.fill_slot(request.id, i, proofs[i], collateral)) for i in range(SLOTS)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert MIDWAY in cancelled

        kept = [i for i in range(SLOTS) if i not in cancelled]
        assert [results[i] for i in kept] == [None] * len(kept)  # every caller that stayed got its slot
        await eventually(lambda: host.sender.in_flight == 0)  # abandoned transactions were still watched to the end
        nonces = await mined_nonces(env, signer, start_block)
        assert nonces == list(range(start_nonce, start_nonce + len(nonces)))  # consecutive: no gap
        assert await w3.eth.get_transaction_count(signer, "pending") == start_nonce + len(nonces)  # none stuck
        states = [await client.slot_state(slot_id(request.id, i)) for i in range(SLOTS)]
        assert all(states[i] == SlotState.FILLED for i in kept)
        assert states[MIDWAY] == SlotState.FILLED  # cancelled after its nonce was taken: still landed
        never_sent = [i for i in cancelled if states[i] == SlotState.FREE]
        assert len(never_sent) >= SLOTS // 2 - 5, "the cancellation came too late to test anything"
        # Each fill is an approval and a fillSlot; a caller cancelled between the two leaves just the approval.
        assert len(nonces) >= 2 * states.count(SlotState.FILLED)

        # The account keeps working: one more transaction lands right away with the next nonce.
        await host.free_slot(slot_id(request.id, kept[0]))
        assert await w3.eth.get_transaction_count(signer) == start_nonce + len(nonces) + 1
        await host.stop()
        await client.stop()
