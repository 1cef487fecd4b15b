"""Helpers for the chain tests beyond the shared suite: a chain inside a snapshot, posting requests, waiting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from chainenv import TEST_OPTIONS, SharedChain, eth_tester_chain, hardhat_chain
from marketenv import DEFAULT_ASK
from web3 import AsyncHTTPProvider, AsyncWeb3

from codex_node.market.deployment import Deployment
from codex_node.market.onchain import MarketOptions, OnChainMarket
from codex_node.market.types import Address, Ask, Content, Request
from codex_node.stores.kv import KVStore
from codex_node.testing.memorykv import MemoryKV

CHAINS: dict[str, Callable[[], Awaitable[SharedChain]]] = {"eth-tester": eth_tester_chain, "hardhat": hardhat_chain}
WAIT = 10.0
"""Seconds a chain test waits for something the event stream delivers (a guard, not a pace)."""


@asynccontextmanager
async def chain_snapshot(name: str) -> AsyncIterator[tuple[SharedChain, AsyncWeb3[Any], Deployment]]:
    """The shared chain ``name`` inside a snapshot, a fresh AsyncWeb3 on it, and its deployment starting now."""
    chain = await CHAINS[name]()
    snapshot = chain.control.snapshot()
    w3 = chain.new_w3()
    try:
        deployment = replace(chain.deployment, block_number=await w3.eth.block_number)
        yield chain, w3, deployment
    finally:
        if isinstance(w3.provider, AsyncHTTPProvider):
            await w3.provider.disconnect()
        chain.control.revert(snapshot)


def market(
    chain: SharedChain,
    w3: AsyncWeb3[Any],
    deployment: Deployment,
    *,
    account: int = 0,
    kv: KVStore | None = None,
    options: MarketOptions = TEST_OPTIONS,
) -> OnChainMarket:
    """An OnChainMarket for ``chain.accounts[account]`` (0 is the client)."""
    return OnChainMarket(w3, deployment, chain.accounts[account], kv if kv is not None else MemoryKV(), options=options)


_nonces = iter(range(10**6, 2 * 10**6))


def new_request(client: Address, ask: Ask = DEFAULT_ASK) -> Request:
    """A request to post (its content is never proven: for tests that only need the request's events)."""
    nonce = next(_nonces).to_bytes(32, "big")
    return Request(client, ask, Content(b"\x01\x55" + nonce, nonce), 600, nonce)


async def eventually(predicate: Callable[[], bool]) -> None:
    """Wait until ``predicate()`` holds (the event stream delivers asynchronously); fails after ``WAIT`` s."""
    async with asyncio.timeout(WAIT):
        while not predicate():  # noqa: ASYNC110 - the stream offers no per-test signal; the timeout is a guard
            await asyncio.sleep(0.01)
