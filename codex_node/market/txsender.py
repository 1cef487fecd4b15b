"""One transaction sender per account: the only place the node assigns nonces.

Every transaction of an account goes through its :class:`TxSender`, in three phases, run by a task the sender
owns (so a caller that stops waiting cannot tear a phase in half):

1. **prepare** – estimate gas (times ``gas_margin``, plus ``gas_extra``) and fees. A revert found here raises
   the contract's typed error (:class:`~codex_node.market.reverts.ErrorDecoder`) and costs no nonce. A caller
   cancelled here cancels the send: nothing was assigned.
2. **broadcast** – under one lock: take the next nonce, sign (``LocalAccount``) or hand the transaction to the
   node (an unlocked account, ``eth_sendTransaction``), send. Once a nonce is assigned this phase always runs to
   the end, even if the caller is cancelled (anchor issues #538 and #963: a cancelled sales agent must not leave
   a nonce gap that blocks every later transaction). Broadcasts are therefore in nonce order, which chains that
   cannot queue out-of-order nonces (Hardhat and eth-tester when automining) need. If the node did not take the
   transaction, the nonce is re-read from the chain (``pending`` count) before the next one, so an unused nonce
   is reused and a used one is not.
3. **receipt** – wait for the receipt. A transaction that was mined but failed is replayed as a call in its
   block to recover the revert data. A cancelled caller stops waiting here; the sender keeps watching the
   transaction in the background and logs its outcome.

Metrics (:class:`TxMetrics`): transactions sent and failed by contract function, transactions broadcast whose
receipt has not been seen yet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, cast

import structlog
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address
from prometheus_client import CollectorRegistry, Counter, Gauge
from web3.exceptions import TimeExhausted
from web3.types import Nonce, Wei

from codex_node.errors import ChainError, CodexError, TransactionError
from codex_node.market.reverts import ErrorDecoder
from codex_node.market.types import Address

if TYPE_CHECKING:
    from web3 import AsyncWeb3
    from web3.types import TxParams, TxReceipt

log = structlog.get_logger(__name__)

DEFAULT_GAS_MARGIN: Final = 1.2
"""Gas limit = estimate × margin + :data:`DEFAULT_GAS_EXTRA`: state may change between the estimate and the block
the transaction lands in."""
DEFAULT_GAS_EXTRA: Final = 25_000
"""Covers one storage slot going from zero to non-zero after the estimate (22,100 gas instead of 5,000): an
``approve`` estimated while the allowance was non-zero, mined after a fill used it up, needs exactly that."""
DEFAULT_RECEIPT_TIMEOUT: Final = 300.0
DEFAULT_POLL_INTERVAL: Final = 0.1


class TxMetrics:
    """Prometheus metrics of every sender of a node; create one per registry and share it between senders."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.sent = Counter(
            "codex_chain_transactions_sent",
            "Transactions broadcast, by contract function",
            ["function"],
            registry=registry,
        )
        self.failed = Counter(
            "codex_chain_transactions_failed",
            "Transactions that failed, by contract function and reason (revert, rejected, timeout, error)",
            ["function", "reason"],
            registry=registry,
        )
        self.pending = Gauge(
            "codex_chain_transactions_pending",
            "Transactions broadcast whose receipt has not been seen yet",
            registry=registry,
        )


@dataclass(frozen=True, slots=True)
class SentTransaction:
    """A mined, successful transaction."""

    tx_hash: bytes
    nonce: int
    block_number: int
    gas_used: int


@dataclass(slots=True)
class _Job:
    to: Address
    data: bytes
    label: str
    nonce: int | None = None
    abandoned: bool = False
    tx_hash: bytes | None = None
    broadcast_done: asyncio.Event = field(default_factory=asyncio.Event)


class TxSender:
    """Sends the transactions of one account. See the module docstring for the guarantees.

    ``account`` is a ``LocalAccount`` (signs here, ``eth_sendRawTransaction``) or the address of an account the
    node holds unlocked (``eth_sendTransaction``). ``errors`` names reverts (usually built from the marketplace and
    token ABIs).
    """

    def __init__(
        self,
        w3: AsyncWeb3[Any],
        account: LocalAccount | str,
        errors: ErrorDecoder,
        *,
        metrics: TxMetrics | None = None,
        gas_margin: float = DEFAULT_GAS_MARGIN,
        gas_extra: int = DEFAULT_GAS_EXTRA,
        receipt_timeout: float = DEFAULT_RECEIPT_TIMEOUT,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> None:
        if gas_margin < 1.0:
            raise ValueError("gas_margin must be at least 1.0")
        self._w3 = w3
        self._local = account if isinstance(account, LocalAccount) else None
        self._address = Address(to_checksum_address(account.address if isinstance(account, LocalAccount) else account))
        self._errors = errors
        self._metrics = metrics if metrics is not None else TxMetrics()
        self._gas_margin = gas_margin
        self._gas_extra = gas_extra
        self._receipt_timeout = receipt_timeout
        self._poll_interval = poll_interval
        self._lock = asyncio.Lock()
        self._next_nonce: int | None = None
        self._chain_id: int | None = None
        self._tasks: dict[asyncio.Task[SentTransaction], _Job] = {}
        self._closed = False
        self.after_mined: Callable[[], None] | None = None
        """Called after each mined transaction of this sender (the market uses it to poke its event stream)."""

    @property
    def address(self) -> Address:
        return self._address

    @property
    def in_flight(self) -> int:
        """Sends not finished yet (including abandoned ones the sender still watches)."""
        return len(self._tasks)

    async def send(self, to: Address, data: bytes, *, label: str) -> SentTransaction:
        """Send a call of ``label`` (the contract function's name) and wait until it is mined.

        Raises the contract's typed error on a revert, :class:`TransactionError` when the transaction could not be
        sent or was not mined in time, :class:`ChainError` when the node could not be asked.
        """
        if self._closed:
            raise TransactionError(f"{label}: the transaction sender of {self._address} is closed")
        job = _Job(Address(to), data, label)
        task = asyncio.get_running_loop().create_task(self._run(job), name=f"tx {label} from {self._address}")
        self._tasks[task] = job
        task.add_done_callback(self._finished)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if job.nonce is None:
                task.cancel()  # nothing assigned yet: the send simply does not happen
            else:
                job.abandoned = True
                log.info("caller stopped waiting for a transaction", function=label, nonce=job.nonce)
            raise

    async def aclose(self, grace: float = 10.0) -> None:
        """Refuse new sends; give in-flight ones ``grace`` seconds to be mined, then stop watching them.

        A send that holds a nonce is never cancelled before its broadcast ended, so closing leaves no gap either.
        """
        self._closed = True
        if not self._tasks:
            return
        _, pending = await asyncio.wait(list(self._tasks), timeout=grace)
        for task in pending:
            job = self._tasks.get(task)
            if job is not None and job.nonce is not None:
                await job.broadcast_done.wait()
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    # --- the three phases ---------------------------------------------------------------------------------------

    async def _run(self, job: _Job) -> SentTransaction:
        params = await self._prepare(job)
        tx_hash = await self._broadcast_in_order(job, params)
        return await self._await_receipt(job, tx_hash)

    async def _prepare(self, job: _Job) -> TxParams:
        call: TxParams = {"from": self._address, "to": job.to, "data": job.data}
        estimate = await self._chain(job, "estimating gas", self._w3.eth.estimate_gas(call))
        params: TxParams = {**call, "gas": int(estimate * self._gas_margin) + self._gas_extra, "value": Wei(0)}
        if self._local is not None:
            params.update(await self._fees(job))
        return params

    async def _fees(self, job: _Job) -> TxParams:
        if self._chain_id is None:
            self._chain_id = await self._chain(job, "reading the chain id", self._w3.eth.chain_id)
        latest = await self._chain(job, "reading the latest block", self._w3.eth.get_block("latest"))
        base_fee = latest.get("baseFeePerGas")
        if base_fee is None:
            return {"chainId": self._chain_id, "gasPrice": await self._w3.eth.gas_price}
        priority = await self._chain(job, "reading the priority fee", self._w3.eth.max_priority_fee)
        return {"chainId": self._chain_id, "maxPriorityFeePerGas": priority, "maxFeePerGas": 2 * base_fee + priority}

    async def _broadcast_in_order(self, job: _Job, params: TxParams) -> bytes:
        # Cancellable only until the nonce is taken: from then on the caller no longer cancels this task (see
        # ``send``) and ``aclose`` waits for the broadcast to end before it cancels anything.
        async with self._lock:
            job.nonce = await self._take_nonce(job)
            try:
                return await self._broadcast(job, params, job.nonce)
            finally:
                job.broadcast_done.set()

    async def _take_nonce(self, job: _Job) -> int:
        if self._next_nonce is None:
            address = cast(ChecksumAddress, self._address)
            count = await self._chain(job, "reading the nonce", self._w3.eth.get_transaction_count(address, "pending"))
            self._next_nonce = int(count)
        return self._next_nonce

    async def _broadcast(self, job: _Job, params: TxParams, nonce: int) -> bytes:
        params = {**params, "nonce": Nonce(nonce)}
        try:
            if self._local is not None:
                signed = self._local.sign_transaction(cast(Any, params))
                tx_hash = bytes(await self._w3.eth.send_raw_transaction(signed.raw_transaction))
            else:
                tx_hash = bytes(await self._w3.eth.send_transaction(params))
        except Exception as e:  # web3/eth-tester raise many unrelated types; each is classified below
            # Whether the node kept the transaction is unknown (Hardhat mines a reverting one and still answers
            # with an error): ask the chain before the next nonce is assigned.
            self._next_nonce = None
            typed = self._errors.error_for(e)
            if typed is not None:
                self._metrics.failed.labels(job.label, "revert").inc()
                raise typed from None
            self._metrics.failed.labels(job.label, "rejected").inc()
            raise TransactionError(f"{job.label}: node refused the transaction (nonce {nonce}): {_one_line(e)}") from e
        self._next_nonce = nonce + 1
        job.tx_hash = tx_hash
        self._metrics.sent.labels(job.label).inc()
        self._metrics.pending.inc()
        log.debug("transaction sent", function=job.label, nonce=nonce, tx=tx_hash.hex())
        return tx_hash

    async def _await_receipt(self, job: _Job, tx_hash: bytes) -> SentTransaction:
        try:
            receipt = await self._w3.eth.wait_for_transaction_receipt(
                cast(Any, tx_hash), timeout=self._receipt_timeout, poll_latency=self._poll_interval
            )
        except TimeExhausted:
            self._metrics.failed.labels(job.label, "timeout").inc()
            self._next_nonce = None
            raise TransactionError(
                f"{job.label}: not mined within {self._receipt_timeout:.0f} s (nonce {job.nonce})"
            ) from None
        except Exception as e:  # transport failures from web3/aiohttp
            self._metrics.failed.labels(job.label, "error").inc()
            raise ChainError(f"{job.label}: waiting for the receipt failed: {_one_line(e)}") from e
        finally:
            self._metrics.pending.dec()
        if self.after_mined is not None:
            self.after_mined()
        if receipt["status"] != 1:
            self._metrics.failed.labels(job.label, "revert").inc()
            raise await self._replayed_revert(job, receipt)
        return SentTransaction(
            tx_hash=tx_hash,
            nonce=cast(int, job.nonce),
            block_number=int(receipt["blockNumber"]),
            gas_used=int(receipt["gasUsed"]),
        )

    async def _replayed_revert(self, job: _Job, receipt: TxReceipt) -> CodexError:
        """The error of a mined, failed transaction: replay it as a call on the state it left."""
        call: TxParams = {"from": self._address, "to": job.to, "data": job.data}
        try:
            await self._w3.eth.call(call, receipt["blockNumber"])
        except Exception as e:  # noqa: BLE001 - a revert is what we hope for; anything else means we cannot tell
            typed = self._errors.error_for(e)
            if typed is not None:
                return typed
            return TransactionError(f"{job.label}: failed on chain, replay failed too: {_one_line(e)}")
        return TransactionError(f"{job.label}: failed on chain (nonce {job.nonce}); its replay did not revert")

    # --- helpers ------------------------------------------------------------------------------------------------

    async def _chain(self, job: _Job, what: str, awaitable: Awaitable[Any]) -> Any:
        """Await a node query; a revert becomes the contract's typed error, anything else a ChainError."""
        try:
            return await awaitable
        except Exception as e:  # web3/eth-tester raise many unrelated types; each is classified here
            typed = self._errors.error_for(e)
            if typed is not None:
                self._metrics.failed.labels(job.label, "revert").inc()
                raise typed from None
            self._metrics.failed.labels(job.label, "error").inc()
            raise ChainError(f"{job.label}: {what} failed: {_one_line(e)}") from e

    def _finished(self, task: asyncio.Task[SentTransaction]) -> None:
        job = self._tasks.pop(task)
        if task.cancelled():
            return
        error = task.exception()
        if job.abandoned:
            if error is None:
                log.info("abandoned transaction mined", function=job.label, nonce=job.nonce)
            else:
                log.warning("abandoned transaction failed", function=job.label, nonce=job.nonce, error=str(error))


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:500] or type(e).__name__
