"""The marketplace event stream: every event exactly once, in chain order, across restarts.

:class:`EventStream` follows one contract's logs. On :meth:`~EventStream.start` it catches up from the cursor
persisted in the metadata store with ``eth_getLogs`` in pages of ``page_size`` blocks, then follows the chain by
polling the head every ``poll_interval`` seconds (or at once after :meth:`~EventStream.wake`, which the market
calls after each of its transactions). That works on every node (eth-tester, Hardhat, geth) without filters or
websockets. Over a websocket provider a ``newHeads`` subscription (``market/newheads.py``) also wakes it at each
block, and the timed poll becomes a safety net (every :data:`SUBSCRIBED_POLL_FACTOR` intervals); the logs are
still read from the cursor, so delivery is the same either way.
Logs are delivered once the block is ``confirmations`` deep (0: as soon as mined).

Invariants:

- The cursor is ``(block, log_index)`` of the first log not delivered yet, stored at
  ``meta/chain/cursor/<contract address>`` (JSON, with its anchor's hash and the recent anchors, in one write;
  the older ``block:index`` form is still read). It is written after all handlers of a log have returned, and
  after each page (the page's blocks are then fully delivered). No ``await`` separates a log's last handler from
  the cursor write, so a restart never delivers a log twice unless the process died (or the task was cancelled)
  while that log's handlers ran. :meth:`~EventStream.stop` waits for the log being delivered to finish.
- Handlers of one log run one after the other, in subscription order; logs in ``(block, log_index)`` order.
  A handler's exception is logged and counted, never stops the stream or the other handlers.
- A subscriber added before :meth:`~EventStream.start` receives the catch-up (that is how a restarted node learns
  what happened while it was down); one added while the stream runs receives logs of blocks mined after it
  subscribed only ("future events").
- Every head seen is reported to the block listeners (the on-chain clock) before its logs are delivered.

Reorganisations and lost blocks: the cursor carries the hash of its *anchor*, the last block whose logs were
delivered (``block - 1``, or ``block`` itself while inside it), and the stream remembers the hashes of the last
:data:`RECENT_BLOCKS` anchors with it. Before every poll (so also at start) the anchor is checked against the
chain; when the chain has another block there, or none (a remote chain reorganised, Hardhat ``evm_revert``, an
embedded chain that came back shorter), the stream rewinds to the last remembered block the chain still has and
delivers again from the block after it. Handlers are idempotent, so a log delivered twice does no harm; logs of
blocks that left the chain are not taken back, but the subscribers of
:class:`~codex_node.market.types.ChainReorganised` hear of the rewind first (a host's sale reads its slot again).
A reorganisation deeper than the remembered anchors rewinds to the oldest of them (with a warning). Anchor hashes
are read before the logs they cover, so a reorganisation between the two reads is found at the next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TypeVar

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from codex_node.errors import ChainError
from codex_node.market.logdecoder import ChainLog, LogDecoder
from codex_node.market.newheads import NewHeads
from codex_node.market.types import SUBSCRIBABLE, Address, ChainReorganised, HistoryMark, MarketEvent

if TYPE_CHECKING:
    from web3 import AsyncWeb3
    from web3.types import FilterParams, LogReceipt

    from codex_node.stores.kv import KVStore

log = structlog.get_logger(__name__)

E = TypeVar("E", bound=MarketEvent)

CURSOR_PREFIX: Final = "meta/chain/cursor/"
DEFAULT_PAGE_SIZE: Final = 1000
DEFAULT_POLL_INTERVAL: Final = 1.0
MAX_RETRY_DELAY: Final = 30.0
SUBSCRIBED_POLL_FACTOR: Final = 10
"""While a websocket subscription announces new blocks, the timed poll runs this many times less often."""
RECENT_BLOCKS: Final = 64
"""Anchors (block number and hash) remembered with the cursor: how deep a reorganisation the stream rewinds
exactly; a deeper one rewinds to the oldest of them."""


@dataclass(frozen=True, slots=True, order=True)
class Cursor:
    """The first log not delivered yet: ``log_index`` within ``block``; ``anchor_hash`` is the hash of the
    :attr:`anchor` block as the stream saw it (``None``: unknown, e.g. a cursor stored by an older version)."""

    block: int
    log_index: int = 0
    anchor_hash: bytes | None = field(default=None, compare=False)

    @property
    def anchor(self) -> int:
        """The last block whose logs were (at least partly) delivered."""
        return self.block if self.log_index > 0 else self.block - 1

    @classmethod
    def decode(cls, raw: bytes) -> Cursor:
        """A cursor stored by :meth:`EventStream` (JSON with the anchors) or by an older version (``block:index``)."""
        return _decode_stored(raw)[0]


@dataclass(frozen=True, slots=True)
class ChainHead:
    number: int
    timestamp: int
    hash: bytes = field(default=b"", repr=False)
    parent_hash: bytes = field(default=b"", repr=False)


Anchor = tuple[int, bytes]
"""A block number and the hash the stream saw there."""


def _encode_stored(cursor: Cursor, recent: list[Anchor]) -> bytes:
    return json.dumps(
        {
            "block": cursor.block,
            "log_index": cursor.log_index,
            "anchor_hash": cursor.anchor_hash.hex() if cursor.anchor_hash is not None else None,
            "recent": [[number, block_hash.hex()] for number, block_hash in recent],
        },
        separators=(",", ":"),
    ).encode()


def _decode_stored(raw: bytes) -> tuple[Cursor, list[Anchor]]:
    text = raw.decode()
    if not text.startswith("{"):
        block, _, index = text.partition(":")
        return Cursor(int(block), int(index or 0)), []
    data = json.loads(text)
    anchor_hash = bytes.fromhex(data["anchor_hash"]) if data.get("anchor_hash") else None
    recent = [(int(number), bytes.fromhex(block_hash)) for number, block_hash in data.get("recent", [])]
    return Cursor(int(data["block"]), int(data["log_index"]), anchor_hash), recent


BlockListener = Callable[[ChainHead], None]


class EventMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.delivered = Counter(
            "codex_chain_events", "Marketplace events delivered to handlers, by event", ["event"], registry=registry
        )
        self.handler_errors = Counter(
            "codex_chain_event_handler_errors", "Event handlers that raised, by event", ["event"], registry=registry
        )
        self.cursor_block = Gauge(
            "codex_chain_cursor_block", "First block whose events are not all delivered yet", registry=registry
        )
        self.head_block = Gauge("codex_chain_head_block", "Latest block seen", registry=registry)
        self.rewinds = Counter(
            "codex_chain_event_rewinds",
            "Times the event stream found the chain changed under its cursor and delivered again",
            registry=registry,
        )


@dataclass(eq=False, slots=True)
class _Subscriber:
    event_type: type[Any]
    handler: Callable[[Any], Awaitable[None]]
    from_block: int
    active: bool = True


class StreamSubscription:
    def __init__(self, stream: EventStream, subscriber: _Subscriber) -> None:
        self._stream = stream
        self._subscriber = subscriber

    async def unsubscribe(self) -> None:
        self._stream._remove(self._subscriber)


class EventStream:
    """Follows the logs of the contract at ``address``; see the module docstring."""

    def __init__(
        self,
        w3: AsyncWeb3[Any],
        address: Address,
        decoder: LogDecoder,
        kv: KVStore,
        *,
        start_block: int,
        page_size: int = DEFAULT_PAGE_SIZE,
        confirmations: int = 0,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        stop_grace: float = 30.0,
        metrics: EventMetrics | None = None,
    ) -> None:
        """``start_block``: where to begin when no cursor is stored (the contract's deployment block)."""
        if page_size < 1 or confirmations < 0 or poll_interval <= 0:
            raise ValueError("page_size must be >= 1, confirmations >= 0, poll_interval > 0")
        self._w3 = w3
        self._address = address
        self._decoder = decoder
        self._kv = kv
        self._key = CURSOR_PREFIX + address
        self._page_size = page_size
        self._confirmations = confirmations
        self._poll_interval = poll_interval
        self._stop_grace = stop_grace
        self._metrics = metrics if metrics is not None else EventMetrics()
        self._start_block = start_block
        stored = kv.get(self._key)
        self._cursor, self._recent = _decode_stored(stored) if stored is not None else (Cursor(start_block), [])
        self._subscribers: list[_Subscriber] = []
        self._listeners: list[BlockListener] = []
        self._head: ChainHead | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._new_heads = NewHeads(w3, self.wake)
        self._delivering = False
        self._stopping = False
        self._progress = asyncio.Condition()
        self.handler_failures = 0
        """Handler calls that raised (also counted in the metrics; tests assert it stays 0)."""

    # --- subscribers and listeners ----------------------------------------------------------------------------

    async def subscribe(self, event_type: type[E], handler: Callable[[E], Awaitable[None]]) -> StreamSubscription:
        if event_type not in SUBSCRIBABLE:
            raise TypeError(f"{event_type!r} is not a marketplace event type")
        from_block = 0
        if self._task is not None:
            # Future events only: blocks after the one mined last (read now, not the head seen at the last poll).
            from_block = int(await self._query("reading the block number", self._w3.eth.block_number)) + 1
        subscriber = _Subscriber(event_type, handler, from_block)
        self._subscribers.append(subscriber)
        return StreamSubscription(self, subscriber)

    def _remove(self, subscriber: _Subscriber) -> None:
        subscriber.active = False
        with contextlib.suppress(ValueError):
            self._subscribers.remove(subscriber)

    def add_block_listener(self, listener: BlockListener) -> None:
        """``listener`` is called (synchronously) with every new head the stream sees."""
        self._listeners.append(listener)
        if self._head is not None:
            listener(self._head)

    # --- state ------------------------------------------------------------------------------------------------

    @property
    def cursor(self) -> Cursor:
        return self._cursor

    @property
    def head(self) -> ChainHead | None:
        return self._head

    @property
    def subscribed(self) -> bool:
        """Whether a websocket subscription currently announces new blocks (else the stream only polls)."""
        return self._new_heads.subscribed

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def wake(self) -> None:
        """Poll now instead of at the next interval (something was just mined)."""
        self._wake.set()

    async def wait_delivered(self, block: int) -> None:
        """Return once every log up to and including ``block`` has been delivered (for tests and shutdown)."""
        async with self._progress:
            await self._progress.wait_for(lambda: self._cursor.block > block)

    def history_mark(self) -> HistoryMark:
        """The oldest anchor the stream remembers (a block whose logs were delivered, at least partly), with its
        hash: every log of the blocks before it has been delivered, a rewind never goes back past it, and a
        reorganisation deeper than that changes its hash, which :meth:`past_events` checks. Before any anchor is
        known: the start block, unchecked."""
        if not self._recent:
            return HistoryMark(self._start_block)
        number, block_hash = self._recent[0]
        return HistoryMark(number, block_hash)

    async def past_events(self, since: HistoryMark | None = None) -> list[MarketEvent]:
        """Every decodable event from the mark ``since`` (``None``: from the start block, the deployment) to the
        latest block, in chain order. A mark whose anchor block is no longer on the chain (the chain changed since
        it was taken, or is another one) is not used: then every event from the start block.

        A read of the chain's history in pages of ``page_size`` blocks: nothing is delivered to subscribers and the
        cursor does not move. Undecodable logs are skipped, as the stream skips them.
        """
        first = self._start_block
        if since is not None and since.point > self._start_block:
            if since.anchor is None or await self._block_hash(since.point) == since.anchor:
                first = since.point
            else:
                log.warning(
                    "the chain changed since the mark was taken: reading the history from the start",
                    contract=self._address,
                    mark=since.point,
                    from_block=first,
                )
        last = int(await self._query("reading the block number", self._w3.eth.block_number))
        out: list[MarketEvent] = []
        while first <= last:
            end = min(last, first + self._page_size - 1)
            for chain_log in await self._logs(first, end):
                try:
                    event = self._decoder.decode(chain_log)
                except ValueError:
                    continue
                if event is not None:
                    out.append(event)
            first = end + 1
        return out

    # --- lifecycle --------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Read the head (so block listeners have a time at once), then run the catch-up and follow loop."""
        if self._task is not None:
            raise RuntimeError("the event stream was already started")
        await self._observe_head()
        log.info("event stream started", contract=self._address, cursor=self._cursor.block, head=self._head)
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"events of {self._address}")
        self._new_heads.start()

    async def stop(self) -> None:
        """Stop following; a log whose handlers are running is finished first (up to ``stop_grace`` seconds)."""
        await self._new_heads.stop()
        task = self._task
        if task is None or task.done():
            return
        self._stopping = True
        self._wake.set()
        if self._delivering:
            await asyncio.wait([task], timeout=self._stop_grace)
        task.cancel()
        await asyncio.wait([task])
        log.info("event stream stopped", contract=self._address, cursor=self._cursor.block)

    # --- the loop ---------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        delay = self._poll_interval
        failed = 0
        while not self._stopping:
            try:
                await self._poll_once()
                if failed:
                    log.info("chain reachable again: event stream catching up", failed_polls=failed)
                delay, failed = self._poll_interval, 0
            except ChainError as e:
                failed += 1
                log.warning("event stream poll failed", error=str(e), retry_in=delay, failed_polls=failed)
                delay = min(delay * 2, MAX_RETRY_DELAY)
            if self._stopping:
                return
            wait = max(delay, self._poll_interval * SUBSCRIBED_POLL_FACTOR) if self.subscribed else delay
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            self._wake.clear()

    async def _poll_once(self) -> None:
        head = await self._observe_head()
        if not await self._anchor_on_chain(head):
            await self._rewind(head)
        target = head.number - self._confirmations
        while self._cursor.block <= target and not self._stopping:
            end = min(target, self._cursor.block + self._page_size - 1)
            end_hash = head.hash if end == head.number else await self._block_hash(end)  # before the logs
            for chain_log in await self._logs(self._cursor.block, end):
                if chain_log.position < (self._cursor.block, self._cursor.log_index):
                    continue  # delivered before a restart
                await self._deliver(chain_log)
                await self._advance(Cursor(chain_log.block_number, chain_log.log_index + 1, chain_log.block_hash))
                if self._stopping:
                    return
            await self._advance(Cursor(end + 1, 0, end_hash))

    async def _anchor_on_chain(self, head: ChainHead) -> bool:
        """Whether the chain still has the cursor's anchor block (unknown anchors are taken as there)."""
        cursor = self._cursor
        if cursor.anchor_hash is None or cursor.anchor < 0:
            return True
        if cursor.anchor > head.number:
            return False  # the chain is shorter than what was delivered
        if cursor.anchor == head.number:
            return head.hash == cursor.anchor_hash
        if cursor.anchor == head.number - 1:
            return head.parent_hash == cursor.anchor_hash
        return await self._block_hash(cursor.anchor) == cursor.anchor_hash

    async def _rewind(self, head: ChainHead) -> None:
        """Move the cursor back to the block after the last remembered anchor the chain still has."""
        common: Anchor | None = None
        for number, block_hash in reversed(self._recent):
            if number <= head.number and await self._block_hash(number) == block_hash:
                common = (number, block_hash)
                break
        if common is not None:
            cursor = Cursor(common[0] + 1, 0, common[1])
        else:  # deeper than what is remembered: from the oldest remembered block (or the start), unchecked
            oldest = self._recent[0][0] if self._recent else self._start_block
            cursor = Cursor(min(oldest, self._cursor.block))
            log.warning(
                "chain reorganised deeper than the blocks the event stream remembers",
                remembered=len(self._recent),
                from_block=cursor.block,
            )
        log.warning(
            "chain changed under the event stream: delivering again",
            contract=self._address,
            cursor=self._cursor.block,
            from_block=cursor.block,
            head=head.number,
        )
        self._recent = [anchor for anchor in self._recent if anchor[0] < cursor.block]
        self._store(cursor)
        self._metrics.rewinds.inc()
        await self._announce(ChainReorganised(cursor.block))

    async def _announce(self, event: ChainReorganised) -> None:
        """Tell every :class:`ChainReorganised` subscriber, before any log is delivered again."""
        self._delivering = True
        try:
            for subscriber in list(self._subscribers):
                if subscriber.active and subscriber.event_type is ChainReorganised:
                    await self._call(subscriber, event, f"rewind to block {event.first_block}")
        finally:
            self._delivering = False

    async def _block_hash(self, number: int) -> bytes | None:
        """The hash of block ``number``, or None when the chain has no such block."""
        try:
            block = await self._w3.eth.get_block(number)
        except Exception as e:  # web3 raises BlockNotFound, or the node's own error, for a missing block
            if number > int(await self._query("reading the block number", self._w3.eth.block_number)):
                return None
            raise ChainError(f"reading block {number} failed: {' '.join(str(e).split())}") from e
        return bytes(block["hash"])

    async def _observe_head(self) -> ChainHead:
        block = await self._query("reading the latest block", self._w3.eth.get_block("latest"))
        head = ChainHead(
            int(block["number"]), int(block["timestamp"]), bytes(block["hash"]), bytes(block["parentHash"])
        )
        # A later timestamp counts too: after a reorganisation to a shorter chain the new blocks have numbers the
        # stream saw already, and the clock must still move with them (it never goes back).
        if self._head is None or head.number > self._head.number or head.timestamp > self._head.timestamp:
            self._head = head
            self._metrics.head_block.set(head.number)
            for listener in list(self._listeners):
                listener(head)
        return head

    async def _logs(self, first: int, last: int) -> list[ChainLog]:
        """Logs of blocks ``first..last`` in chain order; a range the node refuses is split in halves."""
        params: FilterParams = {"address": self._address, "fromBlock": first, "toBlock": last}  # type: ignore[typeddict-item]
        try:
            raw: list[LogReceipt] = await self._w3.eth.get_logs(params)
        except Exception as e:  # nodes cap ranges and result sizes in their own ways
            if first == last:
                raise ChainError(f"eth_getLogs of block {first} failed: {' '.join(str(e).split())}") from e
            middle = (first + last) // 2
            log.debug("eth_getLogs range refused, splitting", first=first, last=last, error=str(e))
            return await self._logs(first, middle) + await self._logs(middle + 1, last)
        logs = [_chain_log(r) for r in raw if not r.get("removed", False)]
        return sorted(logs, key=lambda entry: entry.position)

    async def _deliver(self, chain_log: ChainLog) -> None:
        try:
            event = self._decoder.decode(chain_log)
        except ValueError as e:
            log.warning("undecodable marketplace log skipped", position=chain_log.position, error=str(e))
            return
        if event is None:
            return
        name = type(event).__name__
        self._delivering = True
        try:
            for subscriber in list(self._subscribers):
                if not subscriber.active or chain_log.block_number < subscriber.from_block:
                    continue
                if not isinstance(event, subscriber.event_type):
                    continue
                await self._call(subscriber, event, chain_log.position)
            self._metrics.delivered.labels(name).inc()
        finally:
            self._delivering = False

    async def _call(self, subscriber: _Subscriber, event: MarketEvent, position: object) -> None:
        try:
            await subscriber.handler(event)
        except Exception:  # a failing handler must not stop the stream nor the other handlers
            name = type(event).__name__
            self.handler_failures += 1
            self._metrics.handler_errors.labels(name).inc()
            log.exception("market event handler failed", event_type=name, position=position)

    async def _advance(self, cursor: Cursor) -> None:
        if cursor <= self._cursor:
            return
        if cursor.anchor_hash is not None and (not self._recent or self._recent[-1][0] < cursor.anchor):
            self._recent = [*self._recent[-(RECENT_BLOCKS - 1) :], (cursor.anchor, cursor.anchor_hash)]
        self._store(cursor)  # synchronous: nothing can interleave with the last handler
        async with self._progress:
            self._progress.notify_all()

    def _store(self, cursor: Cursor) -> None:
        self._kv.put(self._key, _encode_stored(cursor, self._recent))
        self._cursor = cursor
        self._metrics.cursor_block.set(cursor.block)

    async def _query(self, what: str, awaitable: Awaitable[Any]) -> Any:
        try:
            return await awaitable
        except Exception as e:  # web3 raises many unrelated types for a node that does not answer
            raise ChainError(f"{what} failed: {' '.join(str(e).split())}") from e


def _chain_log(raw: LogReceipt) -> ChainLog:
    return ChainLog(
        block_number=int(raw["blockNumber"]),
        log_index=int(raw["logIndex"]),
        block_hash=bytes(raw["blockHash"]) if raw.get("blockHash") is not None else None,
        topics=tuple(bytes(t) for t in raw["topics"]),
        data=bytes(raw["data"]),
    )
