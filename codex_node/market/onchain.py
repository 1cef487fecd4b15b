"""``OnChainMarket``: the :class:`~codex_node.market.market.Market` port on a real chain (web3.py ``AsyncWeb3``).

One instance acts for one account. Transactions go through that account's :class:`~codex_node.market.txsender.TxSender`
(nonces in one place, typed reverts); events come from one :class:`~codex_node.market.events.EventStream` (persisted
cursor, chain order), which also drives the on-chain :class:`~codex_node.market.clock.ChainClock`.
:meth:`OnChainMarket.for_account` gives another account's view sharing the stream and the clock (tests run a
client, hosts and a validator on one chain that way).

Rules kept here:

- No web3 type leaves this module: contract tuples become ``market/types.py`` values, reverts become our
  exceptions (:func:`~codex_node.market.market.revert_error` via :class:`~codex_node.market.reverts.ErrorDecoder`),
  anything else from the node a :class:`~codex_node.errors.ChainError`.
- Views read the ``latest`` block: they describe the chain as of the newest mined block, whose timestamp is the
  clock's ``now``. A transaction lands in a later block; a proof built from :meth:`get_challenge` stays valid as
  long as the period does not end and the slot's pointer does not wrap in between: with the pointer at 255 the
  very next block wraps it, so the sales read the challenge through ``sales.challenge.stable_challenge``.
- ``request_storage`` and ``fill_slot`` first raise the marketplace's token allowance by the amount they move
  (``allowance + amount``). One lock per account spans the approval *and* the transaction that spends it, so
  the allowance read never includes what a concurrent spend of this account is about to take (two concurrent
  fills used to approve on the same reading: over-approval, and an approval whose gas ran out). A call cancelled
  between the approval and its main transaction leaves that allowance behind, which is harmless: only this
  account's own later calls can use it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

import structlog
from eth_utils.address import to_checksum_address
from prometheus_client import CollectorRegistry

from codex_node.errors import ChainError, ContractRevertError, MarketError
from codex_node.market.clock import ChainClock
from codex_node.market.deployment import Deployment, artifact
from codex_node.market.events import (
    DEFAULT_PAGE_SIZE,
    DEFAULT_POLL_INTERVAL,
    ChainHead,
    EventMetrics,
    EventStream,
)
from codex_node.market.logdecoder import LogDecoder
from codex_node.market.market import E, EventHandler, Subscription, revert_error
from codex_node.market.reverts import ErrorDecoder
from codex_node.market.txsender import (
    DEFAULT_GAS_EXTRA,
    DEFAULT_GAS_MARGIN,
    DEFAULT_RESEND_AFTER,
    SentTransaction,
    TxMetrics,
    TxSender,
)
from codex_node.market.types import (
    Address,
    Ask,
    CollateralConfig,
    Content,
    HistoryMark,
    MarketEvent,
    MarketplaceConfig,
    Periodicity,
    ProofConfig,
    Request,
    RequestId,
    RequestState,
    Slot,
    SlotId,
    SlotPayment,
    SlotState,
    slot_collateral,
    slot_id,
)

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from web3 import AsyncWeb3
    from web3.contract import AsyncContract

    from codex_node.data.proof import StorageProof
    from codex_node.stores.kv import KVStore

log = structlog.get_logger(__name__)

T = TypeVar("T")

ZERO_ADDRESS: Final = "0x" + "00" * 20
VIEW_BLOCK: Final = "latest"


@dataclass(frozen=True, slots=True)
class MarketOptions:
    """Tuning of the chain access; the defaults suit a real chain, tests poll faster."""

    confirmations: int = 0
    """Blocks an event's block must be buried under before it is delivered."""
    page_size: int = DEFAULT_PAGE_SIZE
    """Blocks per ``eth_getLogs`` request while catching up."""
    poll_interval: float = DEFAULT_POLL_INTERVAL
    """Seconds between head polls of the event stream (also how often the on-chain clock moves)."""
    gas_margin: float = DEFAULT_GAS_MARGIN
    gas_extra: int = DEFAULT_GAS_EXTRA
    receipt_timeout: float = 300.0
    receipt_poll_interval: float = 0.1
    resend_after: float = DEFAULT_RESEND_AFTER
    """Seconds a transaction may stay unmined before it is sent again with its nonce (``market/txsender.py``)."""
    max_fee_per_gas: int | None = None
    """The most a transaction offers per gas, in wei, however often it is sent again (``None``: no cap)."""


class _Shared:
    """What every account's view of one marketplace shares: contracts, event stream, clock, metrics."""

    def __init__(
        self,
        w3: AsyncWeb3[Any],
        deployment: Deployment,
        kv: KVStore,
        options: MarketOptions,
        registry: CollectorRegistry | None,
    ) -> None:
        market_abi, token_abi = artifact("Marketplace")["abi"], artifact("TestToken")["abi"]
        self.w3 = w3
        self.deployment = deployment
        self.options = options
        self.marketplace: AsyncContract = w3.eth.contract(address=deployment.marketplace, abi=market_abi)  # type: ignore[call-overload]
        self.token: AsyncContract = w3.eth.contract(address=deployment.token, abi=token_abi)  # type: ignore[call-overload]
        self.errors = ErrorDecoder([market_abi, token_abi])
        self.tx_metrics = TxMetrics(registry)
        self.clock = ChainClock()
        self.events = EventStream(
            w3,
            deployment.marketplace,
            LogDecoder(market_abi),
            kv,
            start_block=deployment.block_number,
            page_size=options.page_size,
            confirmations=options.confirmations,
            poll_interval=options.poll_interval,
            metrics=EventMetrics(registry),
        )
        self.events.add_block_listener(self._on_head)
        self.config: MarketplaceConfig | None = None

    def _on_head(self, head: ChainHead) -> None:
        self.clock.observe(head.number, head.timestamp)


class OnChainMarket:
    """The Market port for one account on one deployment. See the module docstring.

    ``account`` is a ``LocalAccount`` (signs locally) or the address of an account the node holds unlocked.
    ``kv`` keeps the event cursor. ``registry`` receives the Prometheus metrics (``None``: a private registry).
    Call :meth:`start` before relying on events or the clock, :meth:`stop` at shutdown.
    """

    def __init__(
        self,
        w3: AsyncWeb3[Any],
        deployment: Deployment,
        account: LocalAccount | str,
        kv: KVStore,
        *,
        options: MarketOptions | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._init(_Shared(w3, deployment, kv, options or MarketOptions(), registry), account, owner=True)

    def _init(self, shared: _Shared, account: LocalAccount | str, *, owner: bool) -> None:
        self._shared = shared
        self._owner = owner
        options = shared.options
        self._sender = TxSender(
            shared.w3,
            account,
            shared.errors,
            metrics=shared.tx_metrics,
            gas_margin=options.gas_margin,
            gas_extra=options.gas_extra,
            receipt_timeout=options.receipt_timeout,
            poll_interval=options.receipt_poll_interval,
            resend_after=options.resend_after,
            max_fee_per_gas=options.max_fee_per_gas,
        )
        self._sender.after_mined = shared.events.wake
        self._address = self._sender.address
        self._spend_lock = asyncio.Lock()

    def for_account(self, account: LocalAccount | str) -> OnChainMarket:
        """Another account's view of the same marketplace (own sender; shared stream, clock and cursor)."""
        view = OnChainMarket.__new__(OnChainMarket)
        view._init(self._shared, account, owner=False)
        return view

    # --- lifecycle and plumbing -------------------------------------------------------------------------------

    @property
    def clock(self) -> ChainClock:
        """Latest block timestamp, moved by the event stream (started by :meth:`start`)."""
        return self._shared.clock

    @property
    def events(self) -> EventStream:
        return self._shared.events

    @property
    def sender(self) -> TxSender:
        return self._sender

    @property
    def deployment(self) -> Deployment:
        return self._shared.deployment

    @property
    def options(self) -> MarketOptions:
        return self._shared.options

    async def start(self) -> None:
        """Start the event stream (catch-up, then follow); the clock has the head's time when this returns."""
        if not self._owner:
            raise RuntimeError("start the market the account views were made from")
        await self._shared.events.start()

    async def stop(self) -> None:
        """Stop the event stream (owner only) and this account's sender; in-flight transactions still land."""
        if self._owner:
            await self._shared.events.stop()
        await self._sender.aclose()

    async def _view(self, what: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except Exception as e:  # web3/eth-tester raise many unrelated types; each is classified here
            typed = self._shared.errors.error_for(e)
            if typed is not None:
                raise typed from None
            raise ChainError(f"{what} failed: {' '.join(str(e).split())}") from e

    async def _read(self, function: str, *args: Any) -> Any:
        fn = self._shared.marketplace.functions[function](*args)
        return await self._view(function, fn.call({"from": self._address}, VIEW_BLOCK))

    async def _transact(self, function: str, *args: Any) -> SentTransaction:
        market = self._shared.marketplace
        data = bytes.fromhex(market.encode_abi(function, args=list(args))[2:])
        return await self._sender.send(Address(market.address), data, label=function)

    async def _spend(self, amount: int, function: str, *args: Any) -> SentTransaction:
        """Raise the marketplace's allowance by ``amount``, then send ``function``, which transfers it.

        One lock per account spans both transactions: an allowance read while another spend of this account is
        in flight would be approved again (over-approval), and that approval's gas, estimated while the allowance
        was non-zero, runs out when the other spend takes it to zero first (two concurrent fills, end to end).
        """
        token = self._shared.token
        spender = self._shared.deployment.marketplace
        async with self._spend_lock:
            allowance = int(
                await self._view("allowance", token.functions.allowance(self._address, spender).call({}, VIEW_BLOCK))
            )
            data = bytes.fromhex(token.encode_abi("approve", args=[spender, allowance + amount])[2:])
            await self._sender.send(Address(token.address), data, label="approve")
            return await self._transact(function, *args)

    # --- identity and configuration ---------------------------------------------------------------------------

    async def get_signer(self) -> Address:
        return self._address

    async def config(self) -> MarketplaceConfig:
        if self._shared.config is None:
            self._shared.config = _config(await self._read("configuration"))
        return self._shared.config

    async def periodicity(self) -> Periodicity:
        return Periodicity((await self.config()).proofs.period)

    async def token_balance(self, address: Address) -> int:
        call = self._shared.token.functions.balanceOf(to_checksum_address(address)).call({}, VIEW_BLOCK)
        return int(await self._view("balanceOf", call))

    # --- client side ------------------------------------------------------------------------------------------

    async def request_storage(self, request: Request) -> None:
        await self._spend(request.ask.max_price, "requestStorage", request.to_abi())
        log.info("storage requested", request_id=request.id.hex(), slots=request.ask.slots)

    async def withdraw_funds(self, request_id: RequestId) -> int:
        sent = await self._transact("withdrawFunds", request_id)
        receipt = await self._view("receipt", self._shared.w3.eth.get_transaction_receipt(sent.tx_hash))  # type: ignore[arg-type]
        return sum(
            _transfers_to(receipt, self._shared.deployment.token, self._shared.deployment.marketplace, self._address)
        )

    async def my_requests(self) -> list[RequestId]:
        return [RequestId(bytes(r)) for r in await self._read("myRequests")]

    # --- views ------------------------------------------------------------------------------------------------

    async def get_request(self, request_id: RequestId) -> Request | None:
        try:
            return _request(await self._read("getRequest", request_id))
        except ContractRevertError as e:
            if e.error_name == "UnknownRequest":
                return None
            raise

    async def request_state(self, request_id: RequestId) -> RequestState | None:
        try:
            return RequestState(await self._read("requestState", request_id))
        except ContractRevertError as e:
            if e.error_name == "UnknownRequest":
                return None
            raise

    async def request_end(self, request_id: RequestId) -> int:
        return int(await self._read("requestEnd", request_id))

    async def request_expires_at(self, request_id: RequestId) -> int:
        return int(await self._read("requestExpiry", request_id))

    async def slot_state(self, slot_id: SlotId) -> SlotState:
        return SlotState(await self._read("slotState", slot_id))

    async def get_host(self, slot_id: SlotId) -> Address | None:
        host = str(await self._read("getHost", slot_id))
        return None if int(host, 16) == 0 else Address(to_checksum_address(host))

    async def get_active_slot(self, slot_id: SlotId) -> Slot | None:
        try:
            request, index = await self._read("getActiveSlot", slot_id)
        except ContractRevertError as e:
            if e.error_name == "SlotIsFree":
                return None
            raise
        return Slot(_request(request), int(index))

    async def current_collateral(self, slot_id: SlotId) -> int:
        return int(await self._read("currentCollateral", slot_id))

    async def slot_collateral(self, request_id: RequestId, slot_index: int) -> int:
        request = await self.get_request(request_id)
        if request is None:
            raise revert_error("UnknownRequest")
        if slot_index >= request.ask.slots:
            raise revert_error("InvalidSlot")
        state = await self.slot_state(slot_id(request_id, slot_index))
        return slot_collateral(request.ask.collateral_per_slot, state, (await self.config()).collateral)

    async def my_slots(self) -> list[SlotId]:
        return [SlotId(bytes(s)) for s in await self._read("mySlots")]

    async def missing_proofs(self, slot_id: SlotId) -> int:
        return int(await self._read("missingProofs", slot_id))

    # --- host side --------------------------------------------------------------------------------------------

    async def can_reserve_slot(self, request_id: RequestId, slot_index: int) -> bool:
        return bool(await self._read("canReserveSlot", request_id, slot_index))

    async def reserve_slot(self, request_id: RequestId, slot_index: int) -> None:
        await self._transact("reserveSlot", request_id, slot_index)

    async def fill_slot(self, request_id: RequestId, slot_index: int, proof: StorageProof, collateral: int) -> None:
        await self._spend(collateral, "fillSlot", request_id, slot_index, proof.to_abi())
        log.info("slot filled", request_id=request_id.hex(), slot_index=slot_index)

    async def free_slot(self, slot_id: SlotId) -> SlotPayment:
        sent = await self._transact("freeSlot", slot_id)
        receipt = await self._view("receipt", self._shared.w3.eth.get_transaction_receipt(sent.tx_hash))  # type: ignore[arg-type]
        paid = _transfers_to(receipt, self._shared.deployment.token, self._shared.deployment.marketplace, self._address)
        # _payoutSlot transfers the payout first, then the collateral; a freeSlot that pays nothing transfers none.
        return SlotPayment(paid[0], paid[1]) if len(paid) >= 2 else SlotPayment()

    async def gas_balance(self) -> int:
        """Wei the node's account holds (``sales.account.GasWallet``)."""
        return int(await self._view("balance", self._shared.w3.eth.get_balance(to_checksum_address(self._address))))

    async def submit_proof(self, slot_id: SlotId, proof: StorageProof) -> int:
        sent = await self._transact("submitProof", slot_id, proof.to_abi())
        block = await self._view("reading the proof's block", self._shared.w3.eth.get_block(sent.block_number))
        return (await self.periodicity()).period_of(int(block["timestamp"]))

    # --- proofs and validation --------------------------------------------------------------------------------

    async def is_proof_required(self, slot_id: SlotId) -> bool:
        return bool(await self._read("isProofRequired", slot_id))

    async def will_proof_be_required(self, slot_id: SlotId) -> bool:
        return bool(await self._read("willProofBeRequired", slot_id))

    async def get_challenge(self, slot_id: SlotId) -> bytes:
        return bytes(await self._read("getChallenge", slot_id))

    async def get_pointer(self, slot_id: SlotId) -> int:
        return int(await self._read("getPointer", slot_id))

    async def can_mark_proof_as_missing(self, slot_id: SlotId, period: int) -> bool:
        # The contract's view reverts with the reason a proof cannot be marked, and returns if it can.
        try:
            await self._read("canMarkProofAsMissing", slot_id, period)
        except (ContractRevertError, MarketError):  # a revert, whichever type its name maps to
            return False
        return True

    async def mark_proof_as_missing(self, slot_id: SlotId, period: int) -> None:
        await self._transact("markProofAsMissing", slot_id, period)

    # --- events -----------------------------------------------------------------------------------------------

    async def subscribe(self, event_type: type[E], handler: EventHandler[E]) -> Subscription:
        return await self._shared.events.subscribe(event_type, handler)

    async def past_events(self, since: HistoryMark | None = None) -> list[MarketEvent]:
        """Every marketplace event from the mark ``since`` (``None``, or a mark the chain no longer has: from the
        deployment block) to the latest block, in chain order (a read only: nothing is delivered, no cursor moves).
        The validator rebuilds its watch list from it at start."""
        return await self._shared.events.past_events(since)

    async def history_mark(self) -> HistoryMark:
        """A block before which every event has been delivered and will not be delivered again, with its hash (the
        validator's checkpoint, ``validation/checkpoint.py``)."""
        return self._shared.events.history_mark()


# --- contract tuples → our types ------------------------------------------------------------------------------


_TRANSFER_TOPIC = bytes.fromhex("ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef")
"""keccak256("Transfer(address,address,uint256)"): the ERC-20 transfer event."""


def _transfers_to(receipt: Any, token: str, sender: str, recipient: str) -> list[int]:
    """The amounts of the token's ``Transfer`` events from ``sender`` to ``recipient`` in a receipt, in log order."""
    out = []
    for entry in receipt["logs"]:
        topics = [bytes(t) for t in entry["topics"]]
        if (
            len(topics) == 3
            and topics[0] == _TRANSFER_TOPIC
            and to_checksum_address(entry["address"]) == to_checksum_address(token)
            and to_checksum_address(topics[1][-20:]) == to_checksum_address(sender)
            and to_checksum_address(topics[2][-20:]) == to_checksum_address(recipient)
        ):
            out.append(int.from_bytes(bytes(entry["data"]), "big"))
    return out


def _request(raw: Any) -> Request:
    client, ask, content, expiry, nonce = raw
    return Request(
        client=Address(to_checksum_address(client)),
        ask=Ask(*(int(v) for v in ask)),
        content=Content(cid=bytes(content[0]), merkle_root=bytes(content[1])),
        expiry=int(expiry),
        nonce=bytes(nonce),
    )


def _config(raw: Any) -> MarketplaceConfig:
    collateral, proofs, reservations, request_duration_limit = raw
    return MarketplaceConfig(
        collateral=CollateralConfig(*(int(v) for v in collateral)),
        proofs=ProofConfig(*(int(v) for v in proofs)),
        max_reservations=int(reservations[0]),
        request_duration_limit=int(request_duration_limit),
    )
