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
   A locally signed transaction whose broadcast got no answer (connection reset, timeout, an HTTP error) is not
   taken as refused: the node may hold it, and its hash is known, so the sender watches for it like any other
   (and sends the same copy again if it never shows, see below). A caller never sees an error for a transaction
   that lands, and nothing is sent under another nonce.
3. **receipt** – wait for the receipt (of any copy sent: see below). A transaction that was mined but failed is
   replayed as a call in its block to recover the revert data. A cancelled caller stops waiting here; the sender
   keeps watching the transaction in the background and logs its outcome. A node that does not answer for a
   while is asked again, with back-off, until ``receipt_timeout``: an outage does not fail a transaction that
   was sent (nor make anyone send it again).

A broadcast whose answer was lost (the connection failed, timed out, or the provider or a proxy in front of it
answered an HTTP error) may or may not have reached the node. Its nonce stays assigned and the sender asks the node
whether it holds the transaction as soon as the node answers again, and before the next nonce is broadcast; if it
does not, the same copy is sent again at once. So an outage that swallowed broadcasts leaves no nonce gap, which a
chain that cannot queue out-of-order nonces would answer by refusing every later transaction.

A transaction not mined within ``resend_after`` seconds is sent again **with the same nonce and the same call**
(to, data, gas): if the node dropped it, at the fees it had (or the chain's current ones, when higher); if it is
still waiting in the pool, outbidding it (``market/fees.py``: the current fees or 12.5 % more, whichever is
higher), since the chain evidently wants more. Whichever copy is mined ends the send; no other nonce is ever
used for it, so the nonce sequence stays whole. When the account's nonce moved past ours while none of our copies
was mined, another transaction used it (the key is used elsewhere): the send fails with a TransactionError.

**Fee cap.** With ``max_fee_per_gas`` (the operator's ``--eth-max-fee-per-gas``) no copy ever offers more than
the cap (``fees.capped``), however often it is sent again. When the chain asks for more, the sender logs a
warning once per transaction, counts it in ``codex_chain_transactions_at_fee_cap`` and keeps waiting and checking
at the cap (a dropped copy is sent again at the cap; a waiting one is left alone, as outbidding it would pay
more) until the base fee comes down or ``receipt_timeout`` ends the send.

**Nonces after a reorganisation.** The next nonce is kept between sends only while another send holds one; a
send that finds none in flight reads the account's ``pending`` count from the chain. So transactions that were
mined on blocks a reorganisation (or Hardhat's ``evm_revert``) removed leave no gap: their nonces are used again.

Metrics (:class:`TxMetrics`): transactions sent, sent again and failed by contract function, transactions
broadcast whose receipt has not been seen yet, transactions waiting at the fee cap.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, NoReturn, cast

import structlog
from aiohttp import ClientError
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address
from prometheus_client import CollectorRegistry, Counter, Gauge
from web3.exceptions import TransactionNotFound, Web3RPCError
from web3.types import Nonce, Wei

from codex_node.errors import ChainError, CodexError, TransactionError
from codex_node.market import fees
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
DEFAULT_RESEND_AFTER: Final = 90.0
"""Seconds a broadcast transaction may stay unmined before it is sent again (several blocks on any chain)."""
MAX_POLL_BACKOFF: Final = 5.0
"""Longest pause between receipt polls while the node does not answer."""


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
        self.resent = Counter(
            "codex_chain_transactions_resent",
            "Transactions sent again with their nonce after not being mined in time, by contract function",
            ["function"],
            registry=registry,
        )
        self.pending = Gauge(
            "codex_chain_transactions_pending",
            "Transactions broadcast whose receipt has not been seen yet",
            registry=registry,
        )
        self.at_fee_cap = Gauge(
            "codex_chain_transactions_at_fee_cap",
            "Transactions waiting because the chain asks for a higher fee than --eth-max-fee-per-gas allows",
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
    params: TxParams | None = None
    """The last copy broadcast, nonce and fees included."""
    hashes: list[bytes] = field(default_factory=list)
    """Every copy broadcast (the first, then each one sent again)."""
    lost: bool = False
    """Its broadcast's answer was lost and the node has not been seen holding it yet (module docstring)."""
    at_fee_cap: bool = False
    """The chain asked for more than the fee cap (counted in the gauge until the send ends)."""
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
        resend_after: float = DEFAULT_RESEND_AFTER,
        max_fee_per_gas: int | None = None,
    ) -> None:
        """``max_fee_per_gas``: the most any copy of a transaction offers per gas, in wei (``None``: no cap)."""
        if gas_margin < 1.0:
            raise ValueError("gas_margin must be at least 1.0")
        if resend_after <= 0 or poll_interval <= 0:
            raise ValueError("resend_after and poll_interval must be positive")
        if max_fee_per_gas is not None and max_fee_per_gas <= 0:
            raise ValueError("max_fee_per_gas must be positive")
        self._max_fee = max_fee_per_gas
        self._w3 = w3
        self._local = account if isinstance(account, LocalAccount) else None
        self._address = Address(to_checksum_address(account.address if isinstance(account, LocalAccount) else account))
        self._errors = errors
        self._metrics = metrics if metrics is not None else TxMetrics()
        self._gas_margin = gas_margin
        self._gas_extra = gas_extra
        self._receipt_timeout = receipt_timeout
        self._poll_interval = poll_interval
        self._resend_after = resend_after
        self._lock = asyncio.Lock()
        self._next_nonce: int | None = None
        self._chain_id: int | None = None
        self._tasks: dict[asyncio.Task[SentTransaction], _Job] = {}
        self._lost: list[_Job] = []
        """Jobs whose broadcast answer was lost, in nonce order, until the node is seen holding them."""
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
        current = await self._chain(job, "reading the fees", self._current_fees())
        return cast("TxParams", {"chainId": self._chain_id, **self._within_cap(job, current)})

    def _within_cap(self, job: _Job, wanted: dict[str, int]) -> dict[str, int]:
        """``wanted`` lowered to the fee cap; the first time a send of ``job`` meets the cap is logged and counted."""
        if fees.over_cap(wanted, self._max_fee):
            if not job.at_fee_cap:
                job.at_fee_cap = True
                self._metrics.at_fee_cap.inc()
                log.warning(
                    "the chain asks for more than the fee cap: waiting at the cap",
                    function=job.label,
                    nonce=job.nonce,
                    wanted=wanted,
                    max_fee_per_gas=self._max_fee,
                )
            return fees.capped(wanted, self._max_fee)
        return wanted

    async def _broadcast_in_order(self, job: _Job, params: TxParams) -> bytes:
        # Cancellable only until the nonce is taken: from then on the caller no longer cancels this task (see
        # ``send``) and ``aclose`` waits for the broadcast to end before it cancels anything.
        async with self._lock:
            await self._chain(job, "sending again the transactions whose broadcast was lost", self._settle_lost())
            job.nonce = await self._take_nonce(job)
            try:
                return await self._broadcast(job, params, job.nonce)
            finally:
                job.broadcast_done.set()

    async def _take_nonce(self, job: _Job) -> int:
        if self._next_nonce is None or not self._nonce_held(job):
            # No other send holds a nonce: the chain's count is the truth. It is lower than ours when blocks with
            # our mined transactions left the chain (a reorganisation): their nonces are free again.
            address = cast(ChecksumAddress, self._address)
            count = await self._chain(job, "reading the nonce", self._w3.eth.get_transaction_count(address, "pending"))
            if self._next_nonce is not None and int(count) < self._next_nonce:
                log.warning(
                    "the account's nonce went back on chain (blocks left the chain): using it again",
                    expected=self._next_nonce,
                    chain=int(count),
                )
            self._next_nonce = int(count)
        return self._next_nonce

    def _nonce_held(self, job: _Job) -> bool:
        """Whether another send holds a nonce and is not finished (its transaction may not be mined yet)."""
        return any(
            other is not job and other.nonce is not None and not task.done() for task, other in self._tasks.items()
        )

    async def _broadcast(self, job: _Job, params: TxParams, nonce: int) -> bytes:
        params = {**params, "nonce": Nonce(nonce)}
        try:
            tx_hash = await self._send_copy(job, params)
        except Exception as e:  # noqa: BLE001 - web3/eth-tester raise many unrelated types; classified here
            if self._local is not None and _answer_lost(e) and self._errors.error_for(e) is None:
                # The node may have taken it: watch for its hash (and send the same copy again if it never shows).
                log.warning("broadcast answer lost: watching for it", function=job.label, nonce=nonce, error=str(e))
                tx_hash = job.hashes[-1]
                job.lost = True
                self._lost.append(job)
            else:
                self._refused(job, nonce, e)
        self._next_nonce = nonce + 1
        job.tx_hash = tx_hash
        job.params = params
        self._metrics.sent.labels(job.label).inc()
        self._metrics.pending.inc()
        log.debug("transaction sent", function=job.label, nonce=nonce, tx=tx_hash.hex())
        return tx_hash

    def _refused(self, job: _Job, nonce: int, e: Exception) -> NoReturn:
        # Whether the node kept the transaction is unknown (Hardhat mines a reverting one and still answers
        # with an error): ask the chain before the next nonce is assigned.
        self._next_nonce = None
        typed = self._errors.error_for(e)
        if typed is not None:
            self._metrics.failed.labels(job.label, "revert").inc()
            raise typed from None
        self._metrics.failed.labels(job.label, "rejected").inc()
        raise TransactionError(f"{job.label}: node refused the transaction (nonce {nonce}): {_one_line(e)}") from e

    async def _send_copy(self, job: _Job, params: TxParams) -> bytes:
        """Broadcast ``params``; a locally signed copy's hash is in ``job.hashes`` before it leaves, so a copy the
        node took while its answer was lost is still recognised when it is mined."""
        if self._local is not None:
            signed = self._local.sign_transaction(cast(Any, params))
            if bytes(signed.hash) not in job.hashes:
                job.hashes.append(bytes(signed.hash))
            return bytes(await self._w3.eth.send_raw_transaction(signed.raw_transaction))
        tx_hash = bytes(await self._w3.eth.send_transaction(params))
        if tx_hash not in job.hashes:
            job.hashes.append(tx_hash)
        return tx_hash

    async def _await_receipt(self, job: _Job, tx_hash: bytes) -> SentTransaction:
        try:
            receipt = await self._watch(job)
        finally:
            self._metrics.pending.dec()
        if self.after_mined is not None:
            self.after_mined()
        if receipt["status"] != 1:
            self._metrics.failed.labels(job.label, "revert").inc()
            raise await self._replayed_revert(job, receipt)
        return SentTransaction(
            tx_hash=bytes(receipt["transactionHash"]),
            nonce=cast(int, job.nonce),
            block_number=int(receipt["blockNumber"]),
            gas_used=int(receipt["gasUsed"]),
        )

    async def _watch(self, job: _Job) -> TxReceipt:
        """Poll for the receipt of any copy of ``job`` until ``receipt_timeout``; send it again when it is late."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._receipt_timeout
        resend_at = loop.time() + self._resend_after
        failures = 0
        last_error = ""
        while True:
            try:
                receipt = await self._any_receipt(job)
                if receipt is None and job.lost:  # the node answers again: make sure it holds the transaction
                    async with self._lock:
                        await self._settle_lost()
                elif receipt is None and loop.time() >= resend_at:
                    resend_at = loop.time() + self._resend_after
                    receipt = await self._send_again(job)
                if failures:
                    log.info("chain answers again", function=job.label, nonce=job.nonce, failed_polls=failures)
                failures = 0
            except TransactionError:
                self._metrics.failed.labels(job.label, "rejected").inc()
                raise
            except Exception as e:  # noqa: BLE001 - transport failures from web3/aiohttp: the node may come back
                failures += 1
                last_error = _one_line(e)
                if failures == 1:
                    log.warning("chain unreachable while waiting for a receipt", function=job.label, error=last_error)
                receipt = None
            if receipt is not None:
                return receipt
            if loop.time() >= deadline:
                self._next_nonce = None  # whether the node still holds it is unknown: ask before the next nonce
                if failures:
                    self._metrics.failed.labels(job.label, "error").inc()
                    raise ChainError(f"{job.label}: waiting for the receipt failed (nonce {job.nonce}): {last_error}")
                self._metrics.failed.labels(job.label, "timeout").inc()
                raise TransactionError(
                    f"{job.label}: not mined within {self._receipt_timeout:.0f} s (nonce {job.nonce})"
                )
            await asyncio.sleep(min(self._poll_interval * 2**failures, max(MAX_POLL_BACKOFF, self._poll_interval)))

    async def _settle_lost(self) -> None:
        """Make sure the node holds every transaction whose broadcast answer was lost, lowest nonce first: each one
        it does not know is sent again (the same copy). Call with the lock held; transport errors propagate (the
        node is still unreachable: the jobs stay lost)."""
        while self._lost:
            job = self._lost[0]
            if not await self._node_holds(job):
                try:
                    await self._send_copy(job, cast("TxParams", job.params))
                except Web3RPCError as e:  # the node answered no ("nonce too low": a copy was mined meanwhile)
                    log.warning(
                        "sending a lost broadcast again refused",
                        function=job.label,
                        nonce=job.nonce,
                        error=_one_line(e),
                    )
                else:
                    log.warning(
                        "a lost broadcast never reached the node: sent again", function=job.label, nonce=job.nonce
                    )
            job.lost = False
            self._lost.pop(0)

    async def _node_holds(self, job: _Job) -> bool:
        for tx_hash in job.hashes:
            try:
                await self._w3.eth.get_transaction(cast(Any, tx_hash))
            except TransactionNotFound:
                continue
            return True
        return False

    async def _any_receipt(self, job: _Job) -> TxReceipt | None:
        for tx_hash in reversed(job.hashes):
            try:
                return await self._w3.eth.get_transaction_receipt(cast(Any, tx_hash))
            except TransactionNotFound:
                continue
        return None

    async def _send_again(self, job: _Job) -> TxReceipt | None:
        """Send ``job`` again with its nonce (see the module docstring); its receipt if it turns out mined."""
        sent = cast("TxParams", job.params)
        try:
            waiting: Any = await self._w3.eth.get_transaction(cast(Any, job.hashes[-1]))
        except TransactionNotFound:
            waiting = None
        if waiting is not None and waiting.get("blockNumber") is not None:
            return await self._any_receipt(job)  # mined since the last poll
        address = cast(ChecksumAddress, self._address)
        if int(await self._w3.eth.get_transaction_count(address, "latest")) > cast(int, job.nonce):
            receipt = await self._any_receipt(job)
            if receipt is None:
                raise TransactionError(
                    f"{job.label}: nonce {job.nonce} was used by another transaction of {self._address}"
                )
            return receipt
        current = await self._current_fees()
        wanted = fees.at_least(current, sent) if waiting is None else fees.outbid(current, waiting)
        new_fees = self._within_cap(job, wanted)
        if waiting is not None and not fees.raises(new_fees, waiting):
            return None  # at the cap: outbidding it would pay more than the operator allows; it waits as it is
        params = cast("TxParams", {**sent, **new_fees})
        if "maxFeePerGas" in new_fees:
            params.pop("gasPrice", None)
        reason = "dropped by the node" if waiting is None else "still waiting in the pool"
        try:
            tx_hash = await self._send_copy(job, params)
        except Web3RPCError as e:  # the node answered no, e.g. "nonce too low" as a copy was just mined
            log.warning("sending again refused", function=job.label, nonce=job.nonce, error=_one_line(e))
            return None
        job.params = params
        self._metrics.resent.labels(job.label).inc()
        log.warning(
            "transaction not mined in time: sent again with its nonce",
            function=job.label,
            nonce=job.nonce,
            reason=reason,
            fees=new_fees,
            tx=tx_hash.hex(),
        )
        return None

    async def _current_fees(self) -> dict[str, int]:
        latest = await self._w3.eth.get_block("latest")
        base_fee = latest.get("baseFeePerGas")
        if base_fee is None:
            return {"gasPrice": int(await self._w3.eth.gas_price)}
        priority = int(await self._w3.eth.max_priority_fee)
        return {"maxFeePerGas": 2 * int(base_fee) + priority, "maxPriorityFeePerGas": priority}

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
        if job.at_fee_cap:
            self._metrics.at_fee_cap.dec()
        if task.cancelled():
            return
        error = task.exception()
        if job.abandoned:
            if error is None:
                log.info("abandoned transaction mined", function=job.label, nonce=job.nonce)
            else:
                log.warning("abandoned transaction failed", function=job.label, nonce=job.nonce, error=str(error))


def _answer_lost(e: BaseException) -> bool:
    """Whether ``e`` says the answer did not come back (the connection failed, timed out, or the HTTP layer failed),
    as opposed to the node answering no: the transaction may have reached the node."""
    return isinstance(e, (OSError, TimeoutError, ClientError)) and not isinstance(e, Web3RPCError)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:500] or type(e).__name__
