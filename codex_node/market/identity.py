"""Which chain a data dir belongs to, so a node never mixes the records of two chains.

The node records, in its metadata store, the chain id, the genesis block hash and the marketplace address it
works with (``meta/chain/id``, ``meta/chain/genesis``, ``meta/chain/marketplace``, written in one batch the
first time). At every start, embedded or remote chain, :func:`verify` reads the same three facts from the chain
and compares: any difference raises :class:`ChainMismatchError` saying what differs (expected vs found) and how
to fix it. A restarted Hardhat node, a removed embedded chain or a redeployed marketplace are all differences:
the sales and purchase records refer to slots of the old one.

:func:`check` is the pure comparison; :func:`load`/:func:`record` are the KV I/O; :func:`read` asks the chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import structlog

from codex_node.errors import ChainMismatchError, KVError
from codex_node.market.types import Address

if TYPE_CHECKING:
    from web3 import AsyncWeb3

    from codex_node.stores.kv import KVStore

log = structlog.get_logger(__name__)

KEY_CHAIN_ID: Final = "meta/chain/id"
KEY_GENESIS: Final = "meta/chain/genesis"
KEY_MARKETPLACE: Final = "meta/chain/marketplace"


@dataclass(frozen=True)
class ChainIdentity:
    chain_id: int
    genesis_hash: bytes
    marketplace: Address

    def describe(self) -> str:
        return f"chain id {self.chain_id}, genesis 0x{self.genesis_hash.hex()}, marketplace {self.marketplace}"


def check(recorded: ChainIdentity | None, found: ChainIdentity, *, data_dir: str = "the data dir") -> None:
    """Raise :class:`ChainMismatchError` unless ``found`` is the chain ``recorded`` (None: nothing recorded yet)."""
    if recorded is None:
        return
    differences = []
    if recorded.chain_id != found.chain_id:
        differences.append(f"chain id (expected {recorded.chain_id}, found {found.chain_id})")
    if recorded.genesis_hash != found.genesis_hash:
        differences.append(
            f"genesis block hash (expected 0x{recorded.genesis_hash.hex()}, found 0x{found.genesis_hash.hex()})"
        )
    if recorded.marketplace.lower() != found.marketplace.lower():
        differences.append(f"marketplace address (expected {recorded.marketplace}, found {found.marketplace})")
    if differences:
        raise ChainMismatchError(
            f"{data_dir} holds the records of another chain: {'; '.join(differences)}. "
            f"Use a different --data-dir for this chain, or remove the old data dir to start over "
            "(this discards its records of the old chain)"
        )


def load(kv: KVStore) -> ChainIdentity | None:
    """The recorded identity, or None if the data dir has not worked with a chain yet."""
    values = [kv.get(key) for key in (KEY_CHAIN_ID, KEY_GENESIS, KEY_MARKETPLACE)]
    if all(v is None for v in values):
        return None
    chain_id, genesis, marketplace = values
    if chain_id is None or genesis is None or marketplace is None:
        raise KVError("the chain identity record (meta/chain/...) is incomplete")
    try:
        return ChainIdentity(int(chain_id.decode()), genesis, Address(marketplace.decode()))
    except (UnicodeDecodeError, ValueError) as e:
        raise KVError(f"the chain identity record (meta/chain/...) is corrupt: {e}") from e


def record(kv: KVStore, identity: ChainIdentity) -> None:
    batch = kv.batch()
    batch.put(KEY_CHAIN_ID, str(identity.chain_id).encode())
    batch.put(KEY_GENESIS, identity.genesis_hash)
    batch.put(KEY_MARKETPLACE, identity.marketplace.encode())
    kv.write(batch)


async def read(w3: AsyncWeb3[Any], marketplace: Address) -> ChainIdentity:
    """The identity of the chain ``w3`` talks to, with ``marketplace`` as its marketplace."""
    chain_id = await w3.eth.chain_id
    genesis = await w3.eth.get_block(0)
    return ChainIdentity(chain_id, bytes(genesis["hash"]), marketplace)


async def verify(
    kv: KVStore, w3: AsyncWeb3[Any], marketplace: Address, *, data_dir: str = "the data dir"
) -> ChainIdentity:
    """Compare the chain with the recorded identity (recording it the first time); return the chain's."""
    found = await read(w3, marketplace)
    recorded = load(kv)
    check(recorded, found, data_dir=data_dir)
    if recorded is None:
        record(kv, found)
        log.info("chain identity recorded", chain_id=found.chain_id, marketplace=marketplace)
    return found
