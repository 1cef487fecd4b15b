"""Concurrent spends of one account: each approval covers exactly the transaction that spends it.

An account's approve-then-spend pairs (``requestStorage``, ``fillSlot``) must not interleave: an approval computed
from an allowance that a concurrent spend is about to use up over-approves, and its gas, estimated while the
allowance was non-zero, can run out once that spend has taken it to zero (the second of two concurrent fills
failed this way on the embedded chain).
"""

from __future__ import annotations

import asyncio

from chainenv import chain_env, eth_tester_chain

from codex_node.market.deployment import artifact
from codex_node.market.types import RequestState


async def test_concurrent_requests_of_one_client_all_land_and_leave_no_allowance() -> None:
    async with chain_env(await eth_tester_chain()) as env:
        client = env.client
        address = await client.get_signer()
        requests = [env.new_request(address) for _ in range(4)]
        await asyncio.gather(*(client.request_storage(r) for r in requests))
        for request in requests:
            assert await client.request_state(request.id) == RequestState.NEW
        token = env.w3.eth.contract(address=env.chain.deployment.token, abi=artifact("TestToken")["abi"])  # type: ignore[call-overload]
        assert await token.functions.allowance(address, env.marketplace_address).call() == 0
