"""The embedded chain's synchronous core: a py-evm chain on :class:`LevelChainDB`, eth-tester in front of it, and
a web3 async provider that runs every request on the chain's one worker thread.

* :func:`open_chain` opens the chain in a database, creating genesis on first use. The chain is Prague (the fork
  the contracts are compiled for), chain id :data:`DEV_CHAIN_ID` (eth-tester's: TestToken lets anyone mint on
  it), with :data:`DEV_ACCOUNT_KEYS` funded at genesis. Block timestamps come from a ``time_source`` (the
  node's Clock plus the time-travel offset), never from py-evm's own wall-clock reads: a new block gets
  ``max(parent + 1, time_source())``.
* :class:`PersistentBackend` is eth-tester's ``PyEVMBackend`` over such a chain. It finds transactions through
  py-evm's transaction index instead of eth-tester's scan of every block from the head (which grows with the
  chain: a block a second is 86,400 blocks a day).
* :class:`WorkerProvider` is web3's ``AsyncEthereumTesterProvider`` whose requests run through ``run`` (the
  chain's single worker thread, so a request, a mining tick and a time jump never interleave), and whose
  reverts look like a JSON-RPC node's (``{"code": 3, "data": "0x<revert data>"}``), so web3 raises
  ``ContractCustomError``/``ContractLogicError`` carrying the revert data exactly as with Hardhat.

Everything here runs on the worker thread; nothing here is async except the provider's request hand-off.
"""

from __future__ import annotations

import ast
import itertools
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Final, cast

from eth.abc import BlockAPI, BlockHeaderAPI, SignedTransactionAPI
from eth.chains.base import MiningChain
from eth.exceptions import CanonicalHeadNotFound
from eth.exceptions import TransactionNotFound as EVMTransactionNotFound
from eth.vm.forks.prague import PragueVM
from eth_keys.main import KeyAPI
from eth_tester import EthereumTester, PyEVMBackend
from eth_tester.backends.pyevm.main import generate_genesis_state_for_keys, get_default_genesis_params
from eth_tester.backends.pyevm.serializers import serialize_transaction, serialize_transaction_receipt
from eth_tester.exceptions import TransactionFailed, TransactionNotFound
from eth_typing import BlockNumber, Hash32
from web3.providers.async_base import AsyncBaseProvider
from web3.providers.eth_tester import AsyncEthereumTesterProvider
from web3.providers.eth_tester.defaults import API_ENDPOINTS
from web3.types import RPCEndpoint, RPCResponse

from codex_node.market.chaindb import LevelChainDB
from codex_node.market.evmgas import quick_gas_estimate

DEV_CHAIN_ID: Final = 131277322940537
"""eth-tester's chain id; ``TestToken.mint`` is open to anyone on it (and on Hardhat's 31337)."""

DEV_ACCOUNT_KEYS: Final = tuple(i.to_bytes(32, "big") for i in range(1, 11))
"""Private keys 1..10, each funded with 1,000,000 ether at genesis. Publicly known (they are eth-tester's
defaults): for the embedded dev chain only, never for anything of value."""

TimeSource = Callable[[], int]


def _chain_class(time_source: TimeSource) -> type[MiningChain]:
    class EmbeddedChainVM(MiningChain):  # one class per chain instance: it closes over the time source
        chain_id = DEV_CHAIN_ID
        vm_configuration = ((BlockNumber(0), PragueVM),)

        def create_header_from_parent(self, parent_header: BlockHeaderAPI, **header_params: Any) -> BlockHeaderAPI:
            header_params["gas_limit"] = parent_header.gas_limit  # constant gas limit, as eth-tester's chain
            header_params.setdefault("timestamp", max(parent_header.timestamp + 1, time_source()))
            return super().create_header_from_parent(parent_header, **header_params)

        def get_transaction_builder(self) -> Any:  # eth-tester asks the chain for it
            return super().get_vm().get_transaction_builder()

        # py-evm runs the transaction ~13 times per estimate; this runs it twice (market/evmgas.py).
        gas_estimator = staticmethod(quick_gas_estimate)

        def estimate_gas(self, transaction: SignedTransactionAPI, at_header: BlockHeaderAPI | None = None) -> int:
            # py-evm estimates in a block stamped with the wall clock; ours is stamped by the time source, as the
            # block the transaction will land in is. After time travel the two differ by the travelled time, and
            # a proof estimated at the wall clock's period would be refused although the mined call succeeds.
            parent = at_header if at_header is not None else self.get_canonical_head()
            vm = cast(Any, self.get_vm(parent))  # VirtualMachineAPI does not declare the state-building parts
            header = self.create_header_from_parent(parent)
            if hasattr(header, "base_fee_per_gas"):
                header = header.copy(base_fee_per_gas=0)
            prev_hashes = itertools.chain((parent.hash,), vm.previous_hashes)
            state = vm.build_state(vm.chaindb.db, header, vm.chain_context, prev_hashes)
            snapshot = state.snapshot()
            try:
                return int(self.gas_estimator(state, transaction))
            finally:
                state.revert(snapshot)

    return EmbeddedChainVM


def open_chain(db: LevelChainDB, time_source: TimeSource, genesis_timestamp: int) -> tuple[MiningChain, bool]:
    """The chain stored in ``db``, or a new one from genesis (at ``genesis_timestamp``) if ``db`` holds none.

    Returns the chain and whether it was created now.
    """
    chain_class = _chain_class(time_source)
    try:
        chain_class.get_chaindb_class()(db).get_canonical_head()
    except CanonicalHeadNotFound:
        # Random extra data: every new chain has its own genesis hash, even two created in the same second, so
        # the identity check tells a recreated chain from the one a data dir's records belong to.
        params = get_default_genesis_params(
            overrides={"timestamp": genesis_timestamp, "extra_data": secrets.token_bytes(32)}
        )
        state = generate_genesis_state_for_keys([KeyAPI.PrivateKey(k) for k in DEV_ACCOUNT_KEYS])
        return cast(MiningChain, chain_class.from_genesis(db, params, state)), True
    return chain_class(db), False


class PersistentBackend(PyEVMBackend):  # type: ignore[misc]  # eth-tester is untyped
    """eth-tester's py-evm backend over a chain we opened (it cannot be reset to a new genesis)."""

    def __init__(self, chain: MiningChain) -> None:
        # PyEVMBackend.__init__ would build a throwaway in-memory genesis chain: set its two fields instead.
        self.chain = chain
        self.account_keys = tuple(KeyAPI.PrivateKey(k) for k in DEV_ACCOUNT_KEYS)

    def reset_to_genesis(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("the embedded chain is persistent: remove its directory to start a new one")

    def _locate(self, transaction_hash: bytes) -> tuple[BlockAPI, SignedTransactionAPI, int]:
        pending = self.chain.get_block()
        for index, transaction in enumerate(pending.transactions):
            if transaction.hash == transaction_hash:
                return pending, transaction, index
        try:
            number, index = self.chain.chaindb.get_transaction_index(Hash32(transaction_hash))
        except EVMTransactionNotFound:
            raise TransactionNotFound(f"No transaction found with hash 0x{transaction_hash.hex()}") from None
        block = self.chain.get_canonical_block_by_number(number)
        return block, block.transactions[index], index

    def get_transaction_by_hash(self, transaction_hash: bytes) -> Any:
        block, transaction, index = self._locate(transaction_hash)
        is_pending = block.number == self.chain.get_block().number
        return serialize_transaction(block, transaction, index, is_pending)

    def get_transaction_receipt(self, transaction_hash: bytes) -> Any:
        block, transaction, index = self._locate(transaction_hash)
        is_pending = block.number == self.chain.get_block().number
        receipts = block.get_receipts(self.chain.chaindb)
        return serialize_transaction_receipt(block, receipts, transaction, index, is_pending, self.chain.get_vm())


def new_tester(chain: MiningChain) -> tuple[EthereumTester, PersistentBackend]:
    backend = PersistentBackend(chain)
    return EthereumTester(backend), backend


def stamp_pending(backend: PersistentBackend, time_source: TimeSource) -> None:
    """Stamp the pending block now: ``max(its stamp, time_source())``.

    py-evm makes the pending header when it mines the block before, and stamps it then; a transaction is mined in
    it (eth-tester mines each one as it comes), a ``pending`` view runs in it, while a gas estimate runs in a block
    stamped by ``time_source`` at the estimate. Stamped anew before each of them, the three agree: the block a
    transaction lands in is the one its estimate and the ``pending`` views saw (the period, hence the challenge).
    """
    chain = backend.chain
    if not chain.get_block().transactions:  # always true: eth-tester mines each transaction as it comes
        now = time_source()
        if now > chain.header.timestamp:
            chain.header = chain.header.copy(timestamp=now)


def mine(tester: EthereumTester, backend: PersistentBackend, time_source: TimeSource, blocks: int = 1) -> None:
    """Mine ``blocks`` empty blocks; the first is stamped now (:func:`stamp_pending`)."""
    stamp_pending(backend, time_source)
    tester.mine_blocks(blocks)


def mine_consecutive(tester: EthereumTester, backend: PersistentBackend, blocks: int) -> None:
    """Mine ``blocks`` empty blocks stamped one second apart after the latest block, whatever the time."""
    chain = backend.chain
    for _ in range(blocks):
        chain.header = chain.header.copy(timestamp=chain.get_canonical_head().timestamp + 1)
        tester.mine_blocks(1)


def mine_at(tester: EthereumTester, backend: PersistentBackend, timestamp: int) -> None:
    """Mine one empty block stamped ``timestamp`` (must be later than the latest block)."""
    chain = backend.chain
    latest = chain.get_canonical_head().timestamp
    if timestamp <= latest:
        raise ValueError(f"cannot travel to {timestamp}: the latest block is at {latest}")
    chain.header = chain.header.copy(timestamp=timestamp)
    tester.mine_blocks(1)


# --- the provider -----------------------------------------------------------------------------------------------

Run = Callable[[Callable[[], RPCResponse]], Awaitable[RPCResponse]]


class WorkerProvider(AsyncEthereumTesterProvider):
    """web3's eth-tester provider, with requests executed by ``run`` and JSON-RPC-style revert errors."""

    def __init__(self, tester: EthereumTester, run: Run) -> None:
        # The parent's __init__ builds an in-memory EthereumTester of its own: set the fields it sets instead.
        AsyncBaseProvider.__init__(self)
        self.ethereum_tester = tester
        self.api_endpoints = API_ENDPOINTS
        self._run = run
        self._next_id = 0

    async def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        request_id = str(self._next_id)
        self._next_id += 1
        # The tester is read on the worker thread: the chain replaces it when it reopens its database.
        return await self._run(lambda: handle_request(self.ethereum_tester, method, params, request_id))


def handle_request(tester: EthereumTester, method: str, params: Any, request_id: str) -> RPCResponse:
    """One JSON-RPC request against eth-tester (web3's dispatch table), with reverts as JSON-RPC errors."""
    namespace, _, endpoint = method.partition("_")
    delegator = API_ENDPOINTS.get(namespace, {}).get(endpoint)
    if delegator is None:
        return _error(request_id, -32601, f"Unknown RPC Endpoint: {method}")
    try:
        result = delegator(tester, params)
    except NotImplementedError:
        return _error(request_id, -32601, f"RPC Endpoint has not been implemented: {method}")
    except TransactionFailed as e:
        data = revert_data(e)
        if data is None:
            return _error(request_id, 3, f"execution reverted: {e.args[0] if e.args else e}")
        return _error(request_id, 3, "execution reverted", data="0x" + data.hex())
    return cast(RPCResponse, {"id": request_id, "jsonrpc": "2.0", "result": result})


def _error(request_id: str, code: int, message: str, data: str | None = None) -> RPCResponse:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return cast(RPCResponse, {"id": request_id, "jsonrpc": "2.0", "error": error})


def revert_data(e: TransactionFailed) -> bytes | None:
    """The raw revert data eth-tester folded into ``e``, or None when it only kept a message.

    eth-tester raises ``TransactionFailed(Revert(data))`` from gas estimation, ``TransactionFailed(repr(data))``
    from a call reverting with a custom error, and ``TransactionFailed(reason)`` for ``Error(string)`` and for
    failures that are not reverts (out of gas): those keep only their message (the contracts use custom errors).
    """
    arg: object = e.args[0] if e.args else None
    if isinstance(arg, Exception):
        arg = arg.args[0] if arg.args else None
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, str) and arg[:2] in ("b'", 'b"'):
        try:
            value = ast.literal_eval(arg)
        except (ValueError, SyntaxError):
            return None
        return value if isinstance(value, bytes) else None
    return None
