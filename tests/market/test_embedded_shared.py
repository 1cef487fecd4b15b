"""EmbeddedChain shared by several nodes: derived accounts, funded on request; head listeners after every move.

The chain is a copy of the module's template (``conftest.py``), driven by a FakeClock with no mining task: every
block is one the test makes, so each listener call is accounted for.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import EMBEDDED_T0 as T0

from codex_node.market.deployment import token_balance
from codex_node.market.embedded import MIN_ETHER, MIN_TOKENS, EmbeddedChain, derived_account
from codex_node.market.evmbackend import DEV_ACCOUNT_KEYS
from codex_node.market.sharedchain import SharedChain
from codex_node.testing.fakeclock import FakeClock


@pytest.fixture
async def chain(chain_dir: Path) -> AsyncIterator[EmbeddedChain]:
    c = EmbeddedChain(chain_dir, block_time=0, clock=FakeClock(T0 + 1000), sync=False, registry=None)
    await c.start()
    yield c
    await c.stop()


def test_derived_accounts_are_distinct_deterministic_and_not_the_dev_accounts() -> None:
    accounts = [derived_account(i) for i in range(50)]
    keys = {bytes(a.key) for a in accounts}
    assert len(keys) == 50
    assert keys.isdisjoint(DEV_ACCOUNT_KEYS)
    assert [a.address for a in accounts] == [derived_account(i).address for i in range(50)]


@pytest.mark.parametrize("index", [-1, 2**32])
def test_a_derived_account_index_out_of_range_is_refused(index: int) -> None:
    with pytest.raises(ValueError, match="account index"):
        derived_account(index)


async def test_funded_accounts_hold_ether_and_tokens_each(chain: EmbeddedChain) -> None:
    joined = [await SharedChain.join(chain, index=i) for i in range(3)]
    assert len({s.account.address for s in joined}) == 3
    assert chain.node_account.address not in {s.account.address for s in joined}
    for shared in joined:
        assert shared.chain is chain
        assert await chain.w3.eth.get_balance(shared.account.address) >= MIN_ETHER
        assert await token_balance(chain.w3, chain.deployment, shared.account.address) >= MIN_TOKENS


async def test_funding_an_account_twice_tops_it_up_once(chain: EmbeddedChain) -> None:
    first = await chain.funded_account(7)
    balance = await token_balance(chain.w3, chain.deployment, first.address)
    again = await chain.funded_account(7)
    assert again.address == first.address
    assert await token_balance(chain.w3, chain.deployment, first.address) == balance


async def test_head_listeners_are_called_after_each_move_of_the_head_only(chain: EmbeddedChain) -> None:
    calls: list[str] = []
    remove_a = chain.add_head_listener(lambda: calls.append("a"))
    chain.add_head_listener(lambda: calls.append("b"))

    await chain.latest_timestamp()  # a read moves nothing
    assert calls == []
    await chain.mine(2)
    assert calls == ["a", "b"]
    await chain.travel_to(await chain.latest_timestamp() + 3600)
    assert calls == ["a", "b"] * 2
    await chain.funded_account(11)  # a transaction (ether, then tokens): each is a block

    assert len(calls) >= 6
    assert chain.head_listeners == 2
    remove_a()
    remove_a()  # removing twice is harmless
    assert chain.head_listeners == 1
    calls.clear()
    await chain.mine()
    assert calls == ["b"]
