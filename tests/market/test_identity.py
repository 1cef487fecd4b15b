"""Chain identity: the pure check, the KV record, and verify() against real (in-memory and embedded) chains."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from eth_tester import EthereumTester, PyEVMBackend
from web3 import AsyncWeb3
from web3.providers.eth_tester import AsyncEthereumTesterProvider

from codex_node.errors import ChainMismatchError, KVError
from codex_node.market import identity
from codex_node.market.identity import ChainIdentity
from codex_node.market.types import Address
from codex_node.stores.kv import LevelDBStore
from codex_node.testing.memorykv import MemoryKV

MARKET = Address("0x2946259E0334f33A064106302415aD3391BeD384")
OTHER_MARKET = Address("0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512")
RECORDED = ChainIdentity(chain_id=31337, genesis_hash=b"\x11" * 32, marketplace=MARKET)


# --- the pure check ---------------------------------------------------------------------------------------------


def test_nothing_recorded_accepts_any_chain() -> None:
    identity.check(None, RECORDED)


def test_the_same_chain_is_accepted_whatever_the_address_case() -> None:
    identity.check(RECORDED, ChainIdentity(31337, b"\x11" * 32, Address(MARKET.lower())))


@pytest.mark.parametrize(
    ("found", "fragments"),
    [
        (ChainIdentity(1, b"\x11" * 32, MARKET), ["chain id (expected 31337, found 1)"]),
        (
            ChainIdentity(31337, b"\x22" * 32, MARKET),
            [f"genesis block hash (expected 0x{'11' * 32}, found 0x{'22' * 32})"],
        ),
        (ChainIdentity(31337, b"\x11" * 32, OTHER_MARKET), [f"expected {MARKET}, found {OTHER_MARKET}"]),
        (ChainIdentity(5, b"\x22" * 32, OTHER_MARKET), ["chain id", "genesis block hash", "marketplace address"]),
    ],
)
def test_a_mismatch_says_what_differs_and_how_to_fix_it(found: ChainIdentity, fragments: list[str]) -> None:
    with pytest.raises(ChainMismatchError) as caught:
        identity.check(RECORDED, found, data_dir="/data/codex")
    message = str(caught.value)
    assert message.startswith("/data/codex holds the records of another chain")
    for fragment in fragments:
        assert fragment in message
    assert "different --data-dir" in message
    assert "remove the old data dir" in message


# --- the record -------------------------------------------------------------------------------------------------


def test_the_record_round_trips_through_leveldb(tmp_path: Path) -> None:
    kv = LevelDBStore(tmp_path / "meta", sync=False)
    assert identity.load(kv) is None
    identity.record(kv, RECORDED)
    kv.close()
    again = LevelDBStore(tmp_path / "meta", sync=False)
    assert identity.load(again) == RECORDED
    assert again.get(identity.KEY_CHAIN_ID) == b"31337"
    again.close()


def test_an_incomplete_record_is_an_error() -> None:
    kv = MemoryKV()
    kv.put(identity.KEY_CHAIN_ID, b"31337")
    with pytest.raises(KVError, match="incomplete"):
        identity.load(kv)


def test_a_corrupt_record_is_an_error() -> None:
    kv = MemoryKV()
    identity.record(kv, RECORDED)
    kv.put(identity.KEY_CHAIN_ID, b"thirty")
    with pytest.raises(KVError, match="corrupt"):
        identity.load(kv)


# --- verify against chains --------------------------------------------------------------------------------------


def memory_chain(genesis_timestamp: int = 1_700_000_000) -> AsyncWeb3[Any]:
    """An in-memory eth-tester chain; the genesis timestamp makes its genesis hash."""
    provider = AsyncEthereumTesterProvider()
    params = PyEVMBackend.generate_genesis_params({"timestamp": genesis_timestamp})
    provider.ethereum_tester = EthereumTester(PyEVMBackend(genesis_parameters=params))
    return AsyncWeb3(provider)


async def test_verify_records_the_first_chain_then_accepts_it_again() -> None:
    kv, w3 = MemoryKV(), memory_chain()
    found = await identity.verify(kv, w3, MARKET)
    genesis = await w3.eth.get_block(0)
    assert found == ChainIdentity(await w3.eth.chain_id, bytes(genesis["hash"]), MARKET)
    assert identity.load(kv) == found
    writes = kv.writes
    assert await identity.verify(kv, w3, MARKET) == found
    assert kv.writes == writes  # nothing rewritten


async def test_verify_refuses_another_chain_with_the_same_chain_id() -> None:
    kv = MemoryKV()
    recorded = await identity.verify(kv, memory_chain(1_700_000_000), MARKET)
    with pytest.raises(ChainMismatchError, match="genesis block hash") as caught:
        await identity.verify(kv, memory_chain(1_700_000_001), MARKET, data_dir="here")
    assert "chain id" not in str(caught.value)  # same chain id: only the genesis differs
    assert identity.load(kv) == recorded  # the record of the first chain is kept


async def test_verify_refuses_a_redeployed_marketplace() -> None:
    kv, w3 = MemoryKV(), memory_chain()
    await identity.verify(kv, w3, MARKET)
    with pytest.raises(ChainMismatchError, match="marketplace address"):
        await identity.verify(kv, w3, OTHER_MARKET)
