"""EmbeddedChain: first start, reopen, the mining task, time travel, concurrency, reverts, start-up failures.

A chain is created once per module (genesis, 256 blocks, deployment: ~1 s) and copied for each test, which
then reopens the copy (~0.1 s): reopening is exactly what the tests exercise. Time comes from a FakeClock; the
tests wait for the chain's worker thread, never for the wall clock.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import EMBEDDED_T0 as T0
from eth_utils import keccak
from prometheus_client.registry import CollectorRegistry
from web3.exceptions import ContractCustomError, TransactionNotFound

from codex_node.errors import ChainError, ChainMismatchError, DeploymentFileError
from codex_node.market import evmbackend, identity
from codex_node.market.chaindb import LevelChainDB
from codex_node.market.deployment import MIN_BLOCK_HEIGHT, Deployment, artifact, token_balance
from codex_node.market.embedded import MIN_ETHER, MIN_TOKENS, OFFSET_KEY, EmbeddedChain
from codex_node.market.evmbackend import DEV_CHAIN_ID
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.memorykv import MemoryKV


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0 + 1000)


def open_chain(path: Path, clock: FakeClock, block_time: int = 0) -> EmbeddedChain:
    return EmbeddedChain(path, block_time=block_time, clock=clock, sync=False, registry=None)


@pytest.fixture
async def chain(chain_dir: Path, clock: FakeClock) -> AsyncIterator[EmbeddedChain]:
    c = open_chain(chain_dir, clock)
    await c.start()
    yield c
    await c.stop()


async def settle(chain: EmbeddedChain) -> None:
    """Let woken tasks submit their work, then wait until the worker has done everything submitted so far."""
    for _ in range(10):
        await asyncio.sleep(0)
    await chain.latest_timestamp()


def token(chain: EmbeddedChain) -> Any:
    return chain.w3.eth.contract(address=chain.deployment.token, abi=artifact("TestToken")["abi"])


async def transfer(chain: EmbeddedChain, to: str, amount: int) -> None:
    """A token transfer signed locally by the node account (as the node's own transactions are)."""
    account = chain.node_account
    tx = (
        await token(chain)
        .functions.transfer(to, amount)
        .build_transaction(
            {"from": account.address, "nonce": await chain.w3.eth.get_transaction_count(account.address)}
        )
    )
    tx_hash = await chain.w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
    receipt = await chain.w3.eth.wait_for_transaction_receipt(tx_hash)
    assert receipt["status"] == 1


# --- first start and reopen -------------------------------------------------------------------------------------


async def test_first_start_mines_past_256_deploys_and_funds_the_accounts(chain: EmbeddedChain) -> None:
    w3, deployed = chain.w3, chain.deployment
    assert deployed.chain_id == DEV_CHAIN_ID == await w3.eth.chain_id
    assert deployed.block_number >= MIN_BLOCK_HEIGHT
    assert await w3.eth.get_code(deployed.marketplace)
    assert await w3.eth.get_code(deployed.token)
    for account in (chain.node_account.address, chain.client_account.address):
        assert await w3.eth.get_balance(account) >= MIN_ETHER
        assert await token_balance(w3, deployed, account) >= MIN_TOKENS
    assert Deployment.load(chain.path / "deployment.json") == deployed
    assert (chain.path / "node.key").stat().st_mode & 0o777 == 0o600


async def test_the_first_blocks_are_back_dated_so_the_chain_starts_near_the_clock(template: Path) -> None:
    # The template was created at T0: its 256 catch-up blocks are a second apart and end before T0.
    c = open_chain(template.parent / "chain", FakeClock(T0))  # read-only look: no block is mined at T0
    await c.start()
    try:
        block_256 = await c.w3.eth.get_block(256)
        genesis = await c.w3.eth.get_block(0)
        assert block_256["timestamp"] - genesis["timestamp"] == 256
        assert block_256["timestamp"] < T0
    finally:
        await c.stop()


async def test_a_restart_continues_the_same_chain(chain_dir: Path, clock: FakeClock) -> None:
    first = open_chain(chain_dir, clock)
    await first.start()
    receiver = first.dev_accounts[5].address
    await transfer(first, receiver, 777)
    before = {
        "genesis": first.genesis_hash,
        "deployment": first.deployment,
        "node": first.node_account.address,
        "block": await first.w3.eth.block_number,
        "balance": await token_balance(first.w3, first.deployment, receiver),
        "nonce": await first.w3.eth.get_transaction_count(first.node_account.address),
    }
    await first.stop()

    clock.advance(30)
    second = open_chain(chain_dir, clock)
    await second.start()
    try:
        assert second.genesis_hash == before["genesis"]
        assert second.deployment == before["deployment"]
        assert second.node_account.address == before["node"]
        assert await second.w3.eth.block_number == before["block"]  # funded already: nothing was sent
        assert await token_balance(second.w3, second.deployment, receiver) == before["balance"]
        assert await second.w3.eth.get_transaction_count(second.node_account.address) == before["nonce"]
        await transfer(second, receiver, 1)  # the node's nonce continues
        await second.mine(2)
        assert await second.w3.eth.block_number == before["block"] + 3
        assert await token_balance(second.w3, second.deployment, receiver) == before["balance"] + 1
    finally:
        await second.stop()


def test_each_new_chain_has_its_own_genesis_even_in_the_same_second(tmp_path: Path) -> None:
    hashes = []
    for name in ("a", "b"):
        db = LevelChainDB(tmp_path / name, sync=False)
        chain, created = evmbackend.open_chain(db, lambda: T0, T0)
        assert created
        hashes.append(chain.get_canonical_head().hash)
        db.close()
    assert hashes[0] != hashes[1]


# --- the mining task --------------------------------------------------------------------------------------------


async def test_the_mining_task_mines_a_block_every_block_time_of_the_clock(chain_dir: Path, clock: FakeClock) -> None:
    c = open_chain(chain_dir, clock, block_time=5)
    await c.start()
    try:
        head = await c.w3.eth.block_number
        clock.advance(4)
        await settle(c)
        assert await c.w3.eth.block_number == head
        clock.advance(1)
        await settle(c)
        latest = await c.w3.eth.get_block("latest")
        assert latest["number"] == head + 1
        assert latest["timestamp"] == clock.now()
        clock.advance(5)
        await settle(c)
        assert await c.w3.eth.block_number == head + 2
        assert c.blocks_mined == 2
    finally:
        await c.stop()


async def test_stop_ends_the_mining_task_and_closes_the_chain(chain_dir: Path, clock: FakeClock) -> None:
    c = open_chain(chain_dir, clock, block_time=1)
    await c.start()
    head = c.head
    await asyncio.sleep(0)  # the task starts waiting on the clock
    assert clock.waiters == 1
    await c.stop()
    assert clock.waiters == 0
    clock.advance(10)
    await asyncio.sleep(0)
    assert c.head == head
    with pytest.raises(ChainError, match="not running"):
        await c.w3.eth.block_number
    await c.stop()  # idempotent
    again = open_chain(chain_dir, clock)  # the database was closed: it can be opened again
    await again.start()
    assert await again.w3.eth.block_number == head
    await again.stop()


async def test_no_block_is_mined_while_the_chain_is_ahead_of_the_clock(chain_dir: Path, clock: FakeClock) -> None:
    c = open_chain(chain_dir, clock, block_time=1)
    await c.start()
    try:
        # A burst of blocks (as transactions make: a block each, a second apart) moves the chain ahead of the clock.
        await c.mine(5)
        ahead = await c.w3.eth.get_block("latest")
        assert ahead["timestamp"] == clock.now() + 4
        clock.set(ahead["timestamp"])
        await settle(c)
        assert await c.w3.eth.block_number == ahead["number"]
        clock.advance(1)
        await settle(c)
        assert await c.w3.eth.block_number == ahead["number"] + 1
    finally:
        await c.stop()


# --- time travel ------------------------------------------------------------------------------------------------


async def test_travel_to_mines_a_block_at_that_time_and_the_chain_moves_on_from_there(
    chain: EmbeddedChain, clock: FakeClock
) -> None:
    target = clock.now() + 3600
    await chain.travel_to(target)
    assert await chain.latest_timestamp() == target
    clock.advance(10)
    await chain.mine()
    assert await chain.latest_timestamp() == target + 10


async def test_time_travel_survives_a_restart_and_mining_goes_on_at_once(chain_dir: Path, clock: FakeClock) -> None:
    c = open_chain(chain_dir, clock, block_time=1)
    await c.start()
    target = clock.now() + 3600
    await c.travel_to(target)
    await c.stop()
    clock.advance(5)  # the node was down for 5 s
    again = open_chain(chain_dir, clock, block_time=1)
    await again.start()
    try:
        head = await again.w3.eth.block_number
        clock.advance(1)
        await settle(again)
        latest = await again.w3.eth.get_block("latest")
        assert latest["number"] == head + 1  # not an hour of wall clock later
        assert latest["timestamp"] == target + 6  # the down time passed on the chain too
    finally:
        await again.stop()


async def test_a_transaction_lands_at_the_time_the_pending_block_showed_also_right_after_a_restart(
    chain_dir: Path, clock: FakeClock
) -> None:
    """The pending block (where the proof's challenge is read), a gas estimate and the block a transaction is
    mined in share one timestamp: now. py-evm stamps the pending header when it mines the block before, and on a
    reopen before the time offset was read (the travelled hour was missing from it)."""
    c = open_chain(chain_dir, clock)
    await c.start()
    target = clock.now() + 3600
    await c.travel_to(target)
    await c.stop()
    clock.advance(30)  # down for 30 s
    again = open_chain(chain_dir, clock)
    await again.start()
    try:
        pending = await again.w3.eth.get_block("pending")
        await transfer(again, again.client_account.address, 1)
        mined = await again.w3.eth.get_block("latest")
        assert (pending["timestamp"], mined["timestamp"]) == (target + 30, target + 30)
        clock.advance(10)  # no block mined meanwhile (block_time=0): the next transaction is still stamped now
        await transfer(again, again.client_account.address, 1)
        assert (await again.w3.eth.get_block("latest"))["timestamp"] == target + 40
    finally:
        await again.stop()


async def test_a_chain_ahead_of_the_clock_without_a_stored_offset_goes_on_from_its_head(
    chain_dir: Path, clock: FakeClock
) -> None:
    c = open_chain(chain_dir, clock)
    await c.start()
    target = clock.now() + 3600
    await c.travel_to(target)
    await c.stop()
    db = LevelChainDB(chain_dir / "db", sync=False)  # a data dir of a version that did not keep the offset
    del db[OFFSET_KEY]
    db.close()
    again = open_chain(chain_dir, clock, block_time=1)
    await again.start()
    try:
        await settle(again)  # the mining task waits on the clock
        clock.advance(1)
        await settle(again)
        assert await again.latest_timestamp() == target + 1
    finally:
        await again.stop()


async def test_travel_beyond_year_9999_is_refused_and_the_chain_keeps_working(chain: EmbeddedChain) -> None:
    with pytest.raises(ValueError, match="year 9999"):
        await chain.travel_to(2**256)
    await chain.mine()
    await chain.travel_to(await chain.latest_timestamp() + 10)


async def test_travelling_backwards_is_refused(chain: EmbeddedChain) -> None:
    latest = await chain.latest_timestamp()
    with pytest.raises(ValueError, match="cannot travel"):
        await chain.travel_to(latest)


async def test_mine_makes_blocks_a_second_apart_when_the_clock_stands_still(chain: EmbeddedChain) -> None:
    before = await chain.w3.eth.get_block("latest")
    await chain.mine(3)
    after = await chain.w3.eth.get_block("latest")
    assert after["number"] == before["number"] + 3
    assert after["timestamp"] >= before["timestamp"] + 3


# --- concurrency ------------------------------------------------------------------------------------------------


async def test_transactions_ticks_and_jumps_submitted_together_all_land(chain_dir: Path, clock: FakeClock) -> None:
    c = open_chain(chain_dir, clock, block_time=1)
    await c.start()
    try:
        w3, funder = c.w3, c.dev_accounts[0].address
        receivers = [acct.address for acct in c.dev_accounts[2:]]
        before = {r: await w3.eth.get_balance(r) for r in receivers}
        start_block = await w3.eth.block_number

        async def send(to: str) -> int:
            tx = await w3.eth.send_transaction({"from": funder, "to": to, "value": 1})  # type: ignore[typeddict-item]
            receipt = await w3.eth.wait_for_transaction_receipt(tx)
            return int(receipt["status"])

        async def move_time() -> None:
            for _ in range(5):
                clock.advance(1)
                await asyncio.sleep(0)
            await c.travel_to(clock.now() + 100)

        results = await asyncio.gather(*(send(r) for r in receivers for _ in range(3)), move_time())
        assert results[:-1] == [1] * (3 * len(receivers))
        for r in receivers:
            assert await w3.eth.get_balance(r) == before[r] + 3
        blocks = [await w3.eth.get_block(n) for n in range(start_block, await w3.eth.block_number + 1)]
        assert all(a["timestamp"] < b["timestamp"] for a, b in itertools.pairwise(blocks))
    finally:
        await c.stop()


# --- what web3 sees ---------------------------------------------------------------------------------------------


async def test_a_revert_carries_the_custom_error_data_like_a_json_rpc_node(chain: EmbeddedChain) -> None:
    market = chain.w3.eth.contract(address=chain.deployment.marketplace, abi=artifact("Marketplace")["abi"])
    with pytest.raises(ContractCustomError) as caught:
        await market.functions.getRequest(b"\x01" * 32).call()
    assert caught.value.data == "0x" + keccak(text="UnknownRequest()")[:4].hex()


async def test_a_reverting_gas_estimate_carries_the_error_and_its_arguments(chain: EmbeddedChain) -> None:
    poor = chain.dev_accounts[9].address
    with pytest.raises(ContractCustomError) as caught:
        await token(chain).functions.transfer(chain.client_account.address, 1).estimate_gas({"from": poor})
    data = caught.value.data
    assert isinstance(data, str)
    assert data.startswith("0x" + keccak(text="ERC20InsufficientBalance(address,uint256,uint256)")[:4].hex())
    assert poor.lower().removeprefix("0x") in data


async def test_an_old_transaction_is_found_through_the_index(chain: EmbeddedChain) -> None:
    tx = await chain.w3.eth.send_transaction(
        {"from": chain.dev_accounts[0].address, "to": chain.client_account.address, "value": 5}  # type: ignore[typeddict-item]
    )
    await chain.mine(50)
    receipt = await chain.w3.eth.get_transaction_receipt(tx)
    assert receipt["blockNumber"] == await chain.w3.eth.block_number - 50
    assert (await chain.w3.eth.get_transaction(tx))["value"] == 5
    with pytest.raises(TransactionNotFound):
        await chain.w3.eth.get_transaction_receipt(b"\x02" * 32)


async def test_metrics_show_the_head(chain_dir: Path, clock: FakeClock) -> None:
    registry = CollectorRegistry()
    c = EmbeddedChain(chain_dir, block_time=0, clock=clock, sync=False, registry=registry)
    await c.start()
    try:
        await c.mine(2)
        assert registry.get_sample_value("codex_embedded_chain_head") == await c.w3.eth.block_number
    finally:
        await c.stop()
    assert registry.get_sample_value("codex_embedded_chain_head") is None


# --- start-up failures ------------------------------------------------------------------------------------------


async def test_a_deployment_file_naming_a_missing_contract_is_refused(chain_dir: Path, clock: FakeClock) -> None:
    path = chain_dir / "deployment.json"
    good = Deployment.load(path)
    Deployment(good.chain_id, good.token.__class__("0x" + "11" * 20), good.token, good.block_number).save(path)
    c = open_chain(chain_dir, clock)
    with pytest.raises(DeploymentFileError, match="does not have"):
        await c.start()
    good.save(path)  # a failed start released everything: the chain opens again
    await c.start()
    await c.stop()


async def test_a_missing_deployment_file_deploys_again(chain_dir: Path, clock: FakeClock) -> None:
    old = Deployment.load(chain_dir / "deployment.json")
    (chain_dir / "deployment.json").unlink()
    c = open_chain(chain_dir, clock)
    await c.start()
    try:
        assert c.deployment.marketplace != old.marketplace
        assert await c.w3.eth.get_code(c.deployment.marketplace)
        assert Deployment.load(chain_dir / "deployment.json") == c.deployment
    finally:
        await c.stop()


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
async def test_a_node_key_others_may_read_is_refused(chain_dir: Path, clock: FakeClock) -> None:
    (chain_dir / "node.key").chmod(0o644)
    c = open_chain(chain_dir, clock)
    with pytest.raises(ChainError, match="chmod 600"):
        await c.start()


async def test_a_new_node_key_is_funded_at_the_next_start(chain_dir: Path, clock: FakeClock) -> None:
    (chain_dir / "node.key").unlink()
    c = open_chain(chain_dir, clock)
    await c.start()
    try:
        assert await c.w3.eth.get_balance(c.node_account.address) >= MIN_ETHER
        assert await token_balance(c.w3, c.deployment, c.node_account.address) >= MIN_TOKENS
    finally:
        await c.stop()


def test_a_negative_block_time_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="block_time"):
        EmbeddedChain(tmp_path, block_time=-1)


async def test_a_reopened_chain_passes_the_identity_check_and_a_new_one_does_not(
    chain_dir: Path, clock: FakeClock
) -> None:
    kv = MemoryKV()
    c = open_chain(chain_dir, clock)
    await c.start()
    recorded = await identity.verify(kv, c.w3, c.deployment.marketplace)
    assert recorded.genesis_hash == c.genesis_hash
    assert recorded.chain_id == DEV_CHAIN_ID
    await c.stop()

    await c.start()  # restarted: the same chain
    await identity.verify(kv, c.w3, c.deployment.marketplace)
    await c.stop()

    shutil.rmtree(chain_dir)  # the operator removed the chain: a new one is created
    fresh = open_chain(chain_dir, clock)
    await fresh.start()
    try:
        with pytest.raises(ChainMismatchError, match="genesis block hash"):
            await identity.verify(kv, fresh.w3, fresh.deployment.marketplace)
    finally:
        await fresh.stop()
