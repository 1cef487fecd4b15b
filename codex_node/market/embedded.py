"""The embedded chain: an in-process dev chain whose state lives in the data dir.

With no ``--eth-provider`` the node runs this chain instead of talking to a remote one::

    chain = EmbeddedChain(data_dir / "chain", block_time=config.dev_block_time)
    await chain.start()          # opens (or creates) the chain; deploys and funds on first start
    chain.w3                     # AsyncWeb3 on the chain
    chain.deployment             # Deployment: chain id, marketplace and token addresses
    chain.node_account           # LocalAccount the node signs with (key in <path>/node.key, created once)
    chain.client_account         # a funded dev account (tests: the client posting requests)
    await chain.funded_account(i)   # tests: the i-th derived account, topped up (one per node sharing the chain)
    chain.add_head_listener(wake)   # called after every operation that moved the head (returns the remover)
    await chain.mine(3); await chain.travel_to(ts)   # tests: move the chain
    await chain.stop()

Layout of ``path``: ``db/`` (the py-evm LevelDB, :mod:`chaindb`), ``node.key`` (mode 0600),
``deployment.json``. Removing the directory starts a new chain (the node's identity check then refuses the
data dir's records of the old one).

First start: genesis (dev accounts of :data:`~evmbackend.DEV_ACCOUNT_KEYS`), blocks mined up to block 257 (proofs
read the 256 previous block hashes), TestToken and Marketplace deployed with :data:`DEV_CONFIG` by dev account 0,
``deployment.json`` written last. Every start: the chain is reopened; a missing ``deployment.json`` (a crash
during the first start) deploys again; the node and client accounts are topped up with ether and tokens when
below a threshold (so a crash between steps, or a new key, heals at the next start).

While running, a task owned by the chain mines an empty block every ``block_time`` seconds of the injected
Clock, so on-chain time moves like a real chain's (``block_time=0``: only transactions and :meth:`mine` make
blocks). Block timestamps are ``max(parent + 1, clock.now() + offset)``; :meth:`travel_to` sets the offset so
the chain stays where it jumped to and moves on at the clock's pace. The offset is kept in the chain's database
(written before the jump's block, so a crash between the two still leaves the chain where it jumped to): after a
restart the chain goes on at once from ``clock.now() + offset`` instead of waiting for the wall clock to catch up
with its head. A chain whose head is far ahead of the clock with no offset stored (made by a version that did not
keep it) takes the head's lead as its offset.

Write failures (a full disk): a write the chain's database refuses poisons it (``chaindb.py``: LevelDB would drop
every later write at the next open). The chain then reopens its database and rebuilds py-evm and eth-tester on
it before anything else runs, so a block is seen (by the event stream, the API) only once it is on disk. While
the database cannot be reopened every operation raises :class:`~codex_node.errors.ChainError` and is retried by
its caller; the mining task logs one warning line at most every :data:`FAILURE_WARNING_INTERVAL` seconds of the
Clock (not a traceback per tick) and one line when mining works again.

Several nodes on one chain (tests: ``market/sharedchain.py``): whoever starts the chain owns it and stops it; each
node signs with an account of its own, :func:`derived_account` ``(i)``, a key derived from the index alone (as
public as the dev keys: never for anything of value), funded like the node account by :meth:`funded_account`.
Every operation that moves the head (a transaction, a mining tick, a time jump) calls the head listeners
afterwards, on the event loop, so every node's event stream can poll at once instead of at its next interval.

Concurrency: eth-tester and py-evm are synchronous and not thread-safe, so every chain operation (each JSON-RPC
request of ``w3``, each mining tick, each time jump) runs on one worker thread, one at a time, in the order
submitted; the event loop never blocks on the EVM, and a mining tick can never interleave with a transaction.
A caller cancelled while its request runs does not stop it (as with a remote node: a sent transaction lands).
:meth:`stop` cancels the mining task, waits for queued work to finish, then closes the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import secrets
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

import structlog
from eth_account import Account
from eth_typing import BlockNumber, ChecksumAddress
from eth_utils.crypto import keccak
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry
from web3 import AsyncWeb3

from codex_node import metrics
from codex_node.clock import Clock, SystemClock
from codex_node.config import read_private_key
from codex_node.errors import ChainError, DeploymentFileError, KVError
from codex_node.market import deployment as deploying
from codex_node.market import evmbackend
from codex_node.market.chaindb import ChainDBWriteError, LevelChainDB
from codex_node.market.deployment import DEV_CONFIG, MIN_BLOCK_HEIGHT, Deployment
from codex_node.utils.trackedtasks import TrackedTasks

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from eth_tester import EthereumTester

log = structlog.get_logger(__name__)

T = TypeVar("T")

ETHER: Final = 10**18
FUND_ETHER: Final = 1_000 * ETHER
"""Ether given to the node and client accounts when they hold less than :data:`MIN_ETHER`."""
MIN_ETHER: Final = 100 * ETHER
FUND_TOKENS: Final = 10**24
"""Test tokens minted to the node and client accounts when they hold less than :data:`MIN_TOKENS`."""
MIN_TOKENS: Final = 10**23
GENESIS_LEAD: Final = MIN_BLOCK_HEIGHT + 60
"""Genesis is stamped this many seconds in the past, so the first 257 blocks (a second apart) end before now."""

MAX_TIMESTAMP: Final = 253_402_300_799
"""The last second of year 9999: :meth:`EmbeddedChain.travel_to` goes no further (py-evm breaks on 2**256)."""
OFFSET_KEY: Final = b"codex-node:time-offset"
"""Key of the time-travel offset (decimal seconds) in the chain's database; py-evm's keys never look like it."""
LEGACY_LEAD: Final = 600
"""A head more than this many seconds ahead of the clock with no offset stored was moved there by time travel."""

FAILURE_WARNING_INTERVAL: Final = 60
"""Seconds of the Clock between two warnings of a mining task that keeps failing."""

NODE_KEY_FILE: Final = "node.key"
DEPLOYMENT_FILE: Final = "deployment.json"
DB_DIR: Final = "db"
DERIVED_KEY_DOMAIN: Final = b"codex-node embedded chain account "
"""Prefix hashed with an account index into that account's key (:func:`derived_account`)."""
MAX_ACCOUNT_INDEX: Final = 2**32 - 1

HeadListener = Callable[[], None]


def derived_account(index: int) -> LocalAccount:
    """The ``index``-th derived dev account: its key is ``keccak256(DERIVED_KEY_DOMAIN ‖ index)``, the same on every
    embedded chain, distinct from the genesis dev accounts and from every other index."""
    if not 0 <= index <= MAX_ACCOUNT_INDEX:
        raise ValueError(f"account index must be in 0..{MAX_ACCOUNT_INDEX}, got {index}")
    account: LocalAccount = Account.from_key(keccak(DERIVED_KEY_DOMAIN + index.to_bytes(4, "big")))
    return account


class EmbeddedChain:
    """An in-process chain persisted under ``path``. See the module docstring for the life cycle."""

    def __init__(
        self,
        path: Path,
        *,
        block_time: int = 1,
        clock: Clock | None = None,
        sync: bool = True,
        registry: CollectorRegistry | None = None,
        open_db: Callable[[Path, bool], LevelChainDB] | None = None,
    ) -> None:
        """``open_db(path, sync)``: the database (tests inject a fault-injecting one)."""
        if block_time < 0:
            raise ValueError(f"block_time must be 0 (no mining task) or more seconds, got {block_time}")
        self.path = path
        self.block_time = block_time
        self._clock: Clock = clock or SystemClock()
        self._sync = sync
        self._registry = registry
        self._open_db = open_db or (lambda path, sync: LevelChainDB(path, sync=sync))
        self._offset = 0
        self._executor: ThreadPoolExecutor | None = None
        self._accepting = False
        self._db: LevelChainDB | None = None
        self._tester: EthereumTester | None = None
        self._backend: evmbackend.PersistentBackend | None = None
        self._w3: AsyncWeb3[Any] | None = None
        self._deployment: Deployment | None = None
        self._node_account: LocalAccount | None = None
        self._genesis_hash = b""
        self._tasks = TrackedTasks("embedded chain")
        self._unregister: Callable[[], None] = lambda: None
        self._head_listeners: list[HeadListener] = []
        self.head = 0
        """Number of the latest block (updated after each operation; read by metrics)."""
        self.blocks_mined = 0
        """Blocks the mining task made."""
        self.failed_ticks = 0
        """Mining ticks that failed (a full disk); counted in the metrics."""
        self._failing_since: int | None = None
        self._last_warning: int | None = None
        self.dev_accounts: tuple[LocalAccount, ...] = tuple(Account.from_key(k) for k in evmbackend.DEV_ACCOUNT_KEYS)
        """The genesis-funded dev accounts; [0] deploys, [1] is :attr:`client_account`."""

    # --- the API --------------------------------------------------------------------------------------------------

    @property
    def w3(self) -> AsyncWeb3[Any]:
        return _started(self._w3)

    @property
    def deployment(self) -> Deployment:
        return _started(self._deployment)

    @property
    def node_account(self) -> LocalAccount:
        return _started(self._node_account)

    @property
    def client_account(self) -> LocalAccount:
        return self.dev_accounts[1]

    @property
    def chain_id(self) -> int:
        return evmbackend.DEV_CHAIN_ID

    @property
    def genesis_hash(self) -> bytes:
        return _started(self._genesis_hash or None)

    async def funded_account(self, index: int) -> LocalAccount:
        """:func:`derived_account` ``(index)``, topped up with ether and test tokens like the node account."""
        account = derived_account(index)
        await self._top_up(account.address)
        return account

    def add_head_listener(self, listener: HeadListener) -> Callable[[], None]:
        """Call ``listener()`` (on the event loop; it must be quick and not raise) after every operation that moved
        the head; returns the function that removes it again."""
        self._head_listeners.append(listener)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._head_listeners.remove(listener)

        return remove

    @property
    def head_listeners(self) -> int:
        """How many head listeners are registered (one per node sharing the chain, while it runs)."""
        return len(self._head_listeners)

    async def start(self) -> None:
        """Open the chain (creating, deploying and funding as needed) and start the mining task."""
        if self._executor is not None:
            raise RuntimeError("embedded chain already started")
        began = time.perf_counter()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedded-chain")
        self._accepting = True
        try:
            created = await self._call(self._open)
            self._w3 = AsyncWeb3(evmbackend.WorkerProvider(_started(self._tester), self._rpc))
            self._node_account = Account.from_key(await self._call(self._node_key))
            self._deployment = await self._load_or_deploy()
            await self._top_up(self.node_account.address)
            await self._top_up(self.client_account.address)
        except BaseException:
            await self.stop()
            raise
        self._unregister = metrics.register(
            metrics.LiveCollector(
                self._metrics,
                (
                    "codex_embedded_chain_head",
                    "codex_embedded_chain_mined_blocks",
                    "codex_embedded_chain_mining_failures",
                ),
            ),
            self._registry,
        )
        self._tasks.reopen()
        if self.block_time > 0:
            self._tasks.spawn(self._mine_forever(), name="embedded-chain-miner")
        log.info(
            "embedded chain started",
            path=str(self.path),
            created=created,
            block=self.head,
            chain_id=self.chain_id,
            marketplace=self.deployment.marketplace,
            token=self.deployment.token,
            node_account=self.node_account.address,
            seconds=round(time.perf_counter() - began, 3),
        )

    async def stop(self) -> None:
        """Stop mining, let queued operations finish, close the database. Idempotent."""
        executor = self._executor
        if executor is None:
            return
        self._accepting = False
        await self._tasks.cancel_all()
        # The worker finishes what was submitted (a cancelled caller's request still runs to its end).
        await asyncio.to_thread(executor.shutdown, wait=True)
        self._executor = None
        if self._db is not None:
            self._db.close()
            self._db = None
        self._unregister()
        self._unregister = lambda: None
        log.info("embedded chain stopped", block=self.head)

    async def mine(self, blocks: int = 1) -> None:
        """Mine ``blocks`` empty blocks (each at least a second after its parent)."""
        if blocks < 1:
            raise ValueError(f"blocks must be at least 1, got {blocks}")
        await self._call(lambda: self._mine(blocks))

    async def travel_to(self, timestamp: int) -> None:
        """Mine a block stamped ``timestamp`` (later than the latest block); later blocks continue from there at
        the clock's pace."""

        if timestamp > MAX_TIMESTAMP:
            raise ValueError(f"cannot travel to {timestamp}: later than {MAX_TIMESTAMP} (the end of year 9999)")

        def jump() -> None:
            latest = int(self._backend_().chain.get_canonical_head().timestamp)
            if timestamp <= latest:
                raise ValueError(f"cannot travel to {timestamp}: the latest block is at {latest}")
            previous = self._offset
            self._set_offset(timestamp - self._clock.now())  # first: a crash after it still lands there
            try:
                evmbackend.mine_at(self._tester_(), self._backend_(), timestamp)
            except BaseException:
                self._set_offset(previous)
                raise
            self._update_head()

        await self._call(jump)

    async def latest_timestamp(self) -> int:
        """Timestamp of the latest block (what an on-chain clock reads)."""
        return await self._call(lambda: int(self._backend_().chain.get_canonical_head().timestamp))

    # --- worker-thread operations -------------------------------------------------------------------------------

    async def _call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the chain's worker thread, after everything submitted before it."""
        if not self._accepting or self._executor is None:
            raise ChainError("the embedded chain is not running")
        head = self.head
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, functools.partial(self._guarded, fn)
            )
        finally:
            if self.head != head:
                for listener in list(self._head_listeners):
                    listener()

    def _guarded(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on a sound database: reopen it first after a failed write, and right after ``fn``'s own."""
        if self._db is not None and self._db.failure is not None:
            self._recover()
        try:
            return fn()
        except ChainDBWriteError as e:
            with contextlib.suppress(ChainError):  # still failing: the next operation tries again
                self._recover()  # the state shown from now on is the one on disk
            raise ChainError(f"the embedded chain could not write its database: {e}") from e

    def _recover(self) -> None:
        db = _started(self._db)
        try:
            db.reopen()
        except KVError as e:
            raise ChainError(f"the embedded chain's database is unavailable: {e}") from e
        chain, _created = evmbackend.open_chain(db, self._now, self._clock.now() - GENESIS_LEAD)
        self._tester, self._backend = evmbackend.new_tester(chain)
        if self._w3 is not None:
            cast(evmbackend.WorkerProvider, self._w3.provider).ethereum_tester = self._tester
        self._update_head()
        log.info("embedded chain: database reopened after a failed write", block=self.head)

    async def _rpc(self, request: Callable[[], T]) -> T:
        def run() -> T:
            try:
                # The pending block is stamped now, so a transaction lands at the time its gas estimate saw (the
                # period, hence a proof's challenge); also right after a restart, whose pending header py-evm made
                # before the time offset was read.
                evmbackend.stamp_pending(self._backend_(), self._now)
                return request()
            finally:
                self._update_head()

        return await self._call(run)

    def _now(self) -> int:
        return self._clock.now() + self._offset

    def _open(self) -> bool:
        self._db = self._open_db(self.path / DB_DIR, self._sync)
        chain, created = evmbackend.open_chain(self._db, self._now, self._clock.now() - GENESIS_LEAD)
        self._tester, self._backend = evmbackend.new_tester(chain)
        self._genesis_hash = bytes(chain.get_canonical_block_header_by_number(BlockNumber(0)).hash)
        self._offset = self._stored_offset(int(chain.get_canonical_head().timestamp))
        self._update_head()
        if self.head < MIN_BLOCK_HEIGHT - 1:
            # Up to block 256 a second apart from the back-dated genesis: they end before now. Not fsynced one by
            # one: the deployment's synced blocks make them durable, and a crash before that redoes this step.
            self._db.sync = False
            try:
                evmbackend.mine_consecutive(self._tester_(), self._backend_(), MIN_BLOCK_HEIGHT - 1 - self.head)
            finally:
                self._db.sync = self._sync
            self._update_head()
        return created

    def _stored_offset(self, head_timestamp: int) -> int:
        raw = _started(self._db).get(OFFSET_KEY)
        if raw is not None:
            return int(raw)
        lead = head_timestamp - self._clock.now()
        if lead > LEGACY_LEAD:
            log.info("embedded chain: head ahead of the clock, going on from it", lead_seconds=lead)
            self._set_offset(lead)
            return lead
        return 0

    def _set_offset(self, offset: int) -> None:
        _started(self._db)[OFFSET_KEY] = str(offset).encode()
        self._offset = offset

    def _mine(self, blocks: int) -> None:
        evmbackend.mine(self._tester_(), self._backend_(), self._now, blocks)
        self._update_head()

    def _update_head(self) -> None:
        self.head = int(self._backend_().chain.header.block_number) - 1

    def _node_key(self) -> bytes:
        path = self.path / NODE_KEY_FILE
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(secrets.token_bytes(32).hex() + "\n")
                f.flush()
                os.fsync(f.fileno())
            log.info("embedded chain: new node key", path=str(path))
        try:
            return read_private_key(path)
        except (OSError, ValueError) as e:
            raise ChainError(f"cannot use the embedded chain's node key: {e}") from e

    def _tester_(self) -> EthereumTester:
        return _started(self._tester)

    def _backend_(self) -> evmbackend.PersistentBackend:
        return _started(self._backend)

    # --- start-up steps -----------------------------------------------------------------------------------------

    async def _load_or_deploy(self) -> Deployment:
        path = self.path / DEPLOYMENT_FILE
        if path.exists():
            found = Deployment.load(path)
            code = await self.w3.eth.get_code(cast(ChecksumAddress, found.marketplace))
            if found.chain_id != self.chain_id or not code:
                raise DeploymentFileError(
                    f"{path} names a marketplace this chain does not have (chain id {found.chain_id}, "
                    f"{found.marketplace}); remove {self.path} to start a new embedded chain"
                )
            return found
        deployed = await deploying.deploy(self.w3, self.dev_accounts[0].address, DEV_CONFIG)
        deployed.save(path)
        return deployed

    async def _top_up(self, account: str) -> None:
        w3, dep, funder = self.w3, self.deployment, self.dev_accounts[0].address
        if await w3.eth.get_balance(account) < MIN_ETHER:  # type: ignore[arg-type]
            tx = await w3.eth.send_transaction({"from": funder, "to": account, "value": FUND_ETHER})  # type: ignore[typeddict-item]
            await w3.eth.wait_for_transaction_receipt(tx)
            log.info("embedded chain: ether sent", account=account, wei=FUND_ETHER)
        if await deploying.token_balance(w3, dep, account) < MIN_TOKENS:
            await deploying.mint(w3, dep, funder, account, FUND_TOKENS)
            log.info("embedded chain: tokens minted", account=account, amount=FUND_TOKENS)

    # --- the mining task ----------------------------------------------------------------------------------------

    async def _mine_forever(self) -> None:
        while True:
            await self._clock.wait_until(self._clock.now() + self.block_time)
            try:
                mined = await self._call(self._tick)
            except Exception as e:  # noqa: BLE001 - a failed tick (disk full, a bug) is retried at the next one
                if not self._accepting:
                    return  # stopping
                self._tick_failed(e)
            else:
                self.blocks_mined += mined
                if self._failing_since is not None:
                    log.info(
                        "embedded chain: mining recovered",
                        block=self.head,
                        failed_ticks=self.failed_ticks,
                        seconds=self._clock.now() - self._failing_since,
                    )
                    self._failing_since = self._last_warning = None

    def _tick_failed(self, e: Exception) -> None:
        """Count the failure; warn on the first and then at most every :data:`FAILURE_WARNING_INTERVAL` s."""
        now = self._clock.now()
        self.failed_ticks += 1
        if self._failing_since is None:
            self._failing_since = now
        if self._last_warning is not None and now - self._last_warning < FAILURE_WARNING_INTERVAL:
            return
        self._last_warning = now
        log.warning(
            "embedded chain: mining failed, retrying every block",
            error=" ".join(str(e).split()) or type(e).__name__,
            error_type=type(e).__name__,
            failing_seconds=now - self._failing_since,
            failed_ticks=self.failed_ticks,
            next_warning_in=FAILURE_WARNING_INTERVAL,
        )

    def _tick(self) -> int:
        """Mine a block unless the chain is ahead of the clock (a burst of transactions, a block a second each,
        moves it ahead): then skip, so that it falls back in step instead of staying ahead for ever."""
        if self._now() <= self._backend_().chain.get_canonical_head().timestamp:
            return 0
        self._mine(1)
        return 1

    def _metrics(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("codex_embedded_chain_head", "Latest block of the embedded chain", value=self.head)
        yield CounterMetricFamily(
            "codex_embedded_chain_mined_blocks",
            "Empty blocks mined by the embedded chain's timer",
            value=self.blocks_mined,
        )
        yield CounterMetricFamily(
            "codex_embedded_chain_mining_failures",
            "Mining ticks of the embedded chain that failed (a full disk)",
            value=self.failed_ticks,
        )


def _started(value: T | None) -> T:
    if value is None:
        raise ChainError("the embedded chain is not started")
    return value
