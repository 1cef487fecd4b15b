"""Fetching verified blocks from peers: parallel, bounded, with retries, back-off and stall detection.

:class:`BlockFetcher` implements :class:`~codex_node.blockexchange.port.BlockGetter` (the repo first, then peers)
and, for callers that store what arrives (the network slot data source, the ``/data/{cid}/network`` routes),
:meth:`BlockFetcher.fetch`, which hands every verified batch to a callback as it lands, and
:meth:`BlockFetcher.fetch_parts`, the same over CIDs that come part by part (a large dataset's segments): the
workers go on from one part to the next without waiting for the first's last batches, so a part's end costs no
round trip.

How a fetch runs: the CIDs are cut into batches of :attr:`FetchOptions.batch_blocks` (a part's only when the
queue runs low: at most :attr:`FetchOptions.parallel` new batches wait in it); :attr:`FetchOptions.parallel`
workers take batches from one queue and ask one peer each (``POST {peer}/blocks``, ``blockexchange/wire.py``),
choosing among the peers ``Providers.find`` gave the least busy one that has not been asked for that batch yet.
An answer is checked and handed on a group (:attr:`FetchOptions.group_blocks`) at a time as it arrives: each
group's blocks are hashed against their CIDs in a worker thread, and those that match are handed on while the
rest of the answer comes in. What a peer does not have goes back to the queue for another peer. A peer whose
answer is malformed, fails, makes no progress for :attr:`FetchOptions.stall_seconds` (measured on the injected
clock; time the worker spends waiting for its own store does not count), or carries a block whose bytes do not
hash to its CID is abandoned (the blocks of its answer that match are kept), reported through
``Providers.misbehaved``, counted in ``codex_blockexchange_peer_failures_total{reason}`` and not asked again in
this fetch; its unfinished blocks go to the others. When no peer is left to ask for a batch, the fetcher backs off
(``backoff_seconds``, doubled each round), asks ``Providers.find`` again, and tries every peer once more, for at
most :attr:`FetchOptions.rounds` rounds; then the fetch raises :class:`~codex_node.errors.BlocksUnavailableError`
naming how many blocks no one served.

Every block is checked against its CID before the callback sees it: a wrong byte is never handed on, so never
stored. Memory: each worker holds at most two groups, one arriving and verified and the one before it being handed
on (stored) meanwhile, plus what its connection buffers (``blockexchange/piecereader.py``), whatever the batch's
size.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog

from codex_node.blockexchange.metrics import FetchMetrics
from codex_node.blockexchange.peerclient import PeerClient
from codex_node.clock import Clock
from codex_node.data.cid import Cid
from codex_node.data.merkle import Buffer
from codex_node.data.slots import BLOCK_SIZE
from codex_node.errors import BlockNotFoundError, BlocksUnavailableError, PeerError
from codex_node.peers.port import PeerInfo, Providers
from codex_node.stores.repostore import RepoStore

log = structlog.get_logger(__name__)

_T = TypeVar("_T")
_MIB = 1024 * 1024

Payload = bytes | memoryview
"""A block's bytes as read from a peer's answer: a view of the piece that held it when it came in one piece."""
OnVerified = Callable[[list[tuple[Cid, Payload]]], Awaitable[None]]
"""Receives each batch of verified blocks (CID, bytes) as it lands, in no particular order."""


@dataclass(frozen=True, slots=True)
class FetchOptions:
    batch_blocks: int = 256
    """Blocks asked of a peer in one request: 256 × 64 KiB = 16 MiB, the most a request may name
    (``blockexchange/wire.py``). A request has a fixed cost on both sides (the holder's routing and reads, the
    asker's HTTP exchange): 256 rather than 64 cut the holder's CPU per download by a fifth (``docs/network.md``)."""
    group_blocks: int = 64
    """Verified blocks handed on (stored) at a time, as a batch's answer arrives: what a worker holds is the group
    being stored and the one arriving (2 × 4 MiB), whatever the batch's size. 128 measured 12 % slower (more memory
    in flight), 32 8 % slower (more stores)."""
    parallel: int = 3
    """Requests in flight at once, over all peers."""
    find_limit: int = 8
    """Peers asked of ``Providers.find`` at a time."""
    rounds: int = 3
    """Passes over the peers (with back-off between) before a block is given up."""
    backoff_seconds: int = 1
    """Wait before the second pass; doubled before each further one."""
    stall_seconds: int = 10
    """A peer's answer that makes no progress for this long is abandoned."""
    max_block_bytes: int = BLOCK_SIZE
    """The largest data block accepted from a batch answer."""
    max_manifest_bytes: int = 16 * _MIB
    """The largest manifest accepted (a manifest lists 32 bytes per block; 16 MiB covers a 24 GiB dataset)."""

    def __post_init__(self) -> None:
        for name in (
            "batch_blocks",
            "group_blocks",
            "parallel",
            "find_limit",
            "rounds",
            "stall_seconds",
            "max_block_bytes",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")


class _Stalled(Exception):  # noqa: N818 - internal signal, never leaves this module
    pass


class _Corrupt(Exception):  # noqa: N818 - internal signal, never leaves this module
    def __init__(self, cid: Cid) -> None:
        super().__init__(str(cid))
        self.cid = cid


@dataclass
class _Batch:
    cids: list[Cid]
    tried: set[str] = field(default_factory=set)
    round: int = 0


@dataclass
class _Run:
    """One :meth:`BlockFetcher.fetch`: the peers known, those abandoned, the work left, progress."""

    key: Cid
    peers: list[PeerInfo]
    on_verified: OnVerified
    queue: asyncio.Queue[_Batch | None]
    started: int
    open_batches: int = 0
    """Batches queued or being asked for: the run ends once none is left and no part is still to come."""
    queued_blocks: int = 0
    """Blocks cut into batches so far (the count an unavailable-blocks error names)."""
    feeding: bool = True
    ended: bool = False
    room: asyncio.Event = field(default_factory=asyncio.Event)
    """Set by a worker that took a batch: the feeder may queue more."""
    bad: set[str] = field(default_factory=set)
    busy: dict[str, int] = field(default_factory=dict)
    unavailable: list[Cid] = field(default_factory=list)
    blocks: int = 0
    nbytes: int = 0
    logged_at: int = 0


@dataclass
class _Progress:
    last: int
    waiting: bool = False
    """The asker is waiting on itself (its store), not on the peer: that time is no stall."""


class _Handover:
    """A worker's verified batch being handed on (stored) while it fetches the next one."""

    def __init__(self) -> None:
        self.task: asyncio.Future[None] | None = None

    async def settle(self) -> None:
        """Wait for the hand-over in progress; raises what it raised."""
        task, self.task = self.task, None
        if task is not None:
            await task

    async def drop(self) -> None:
        """Stop the hand-over in progress (the fetch failed or was cancelled) and wait for it to end."""
        task, self.task = self.task, None
        if task is None:
            return
        if not task.done():
            task.cancel()
            await asyncio.wait([task])
        if not task.cancelled():
            task.exception()  # the fetch is failing already: its own error is the one that propagates


async def _one_part(cids: Sequence[Cid]) -> AsyncIterator[Sequence[Cid]]:
    yield cids


def _verify(received: list[tuple[Cid, Payload]]) -> tuple[list[tuple[Cid, Payload]], Cid | None]:
    """The blocks whose bytes match their CIDs, and the first CID whose bytes do not (``None``: all match)."""
    good: list[tuple[Cid, Payload]] = []
    wrong: Cid | None = None
    for cid, data in received:
        if cid.matches(data):
            good.append((cid, data))
        elif wrong is None:
            wrong = cid
    return good, wrong


class BlockFetcher:
    """Verified blocks from the repo or from peers (see the module docstring). :meth:`close` (or ``stop``) when
    done."""

    def __init__(
        self,
        repo: RepoStore,
        providers: Providers,
        clock: Clock,
        *,
        client: PeerClient | None = None,
        options: FetchOptions | None = None,
        metrics: FetchMetrics | None = None,
    ) -> None:
        self._repo = repo
        self._providers = providers
        self._clock = clock
        self._client = client or PeerClient()
        self.options = options or FetchOptions()
        self._metrics = metrics or FetchMetrics(None)

    async def close(self) -> None:
        await self._client.close()

    async def start(self) -> None:
        """A node part: nothing to start (connections open on first use)."""

    async def stop(self) -> None:
        await self.close()

    # --- BlockGetter -------------------------------------------------------------------------------------------

    async def get_blocks(
        self, cids: Sequence[Cid], *, hint: Cid | None = None, check_local: bool = True
    ) -> list[Buffer]:
        unique = list({c.text: c for c in cids}.values())
        local = [c for c in unique if self._repo.has_block(c)]  # index lookups: no worker thread for the rest
        found: dict[str, Buffer] = {}
        if local:  # one worker-thread hop and one buffer for all of them, runs of a pack read at once
            read = await asyncio.to_thread(self._repo.read_blocks, local, check=check_local)
            found = {c.text: data for c, data in zip(local, read, strict=True) if data is not None}
        missing = [c for c in unique if c.text not in found]  # and those deleted since the index said they were here

        async def keep(blocks: list[tuple[Cid, Payload]]) -> None:
            for cid, data in blocks:
                # A copy: a view would hold its whole receive piece (and keep it from the pool) as long as the caller
                # keeps the block.
                found[cid.text] = data if isinstance(data, bytes) else bytes(data)

        await self.fetch(missing, hint=hint, on_verified=keep)
        return [found[c.text] for c in cids]

    # --- one block (a manifest) --------------------------------------------------------------------------------

    async def get_manifest_block(self, cid: Cid) -> bytes:
        """The verified bytes of ``cid`` (a manifest or protected manifest): from the repo, else from a peer."""
        try:
            return await self._repo.get_block(cid)
        except BlockNotFoundError:
            pass
        opts = self.options
        bad: set[str] = set()
        for round_ in range(opts.rounds):
            if round_:
                await self._backoff(round_ - 1)
            for peer in await self._providers.find(cid, limit=opts.find_limit):
                if peer.peer_id in bad:
                    continue
                try:
                    data = await self._guarded(
                        self._client.get_block(peer, cid, max_bytes=opts.max_manifest_bytes), _Progress(self._now())
                    )
                except PeerError as e:
                    self._bad(peer, bad, "error", str(e))
                    continue
                except _Stalled:
                    self._bad(peer, bad, "stalled", f"no answer for {opts.stall_seconds} s")
                    continue
                if data is None:
                    continue
                if not cid.matches(data):
                    self._bad(peer, bad, "corrupt", f"its bytes for {cid} do not match the CID")
                    continue
                self._providers.served(peer, cid, len(data))
                return data
        raise BlocksUnavailableError(f"{cid} could be had from none of the peers asked ({opts.rounds} rounds)")

    # --- many blocks ------------------------------------------------------------------------------------------

    async def fetch(self, cids: Sequence[Cid], *, hint: Cid | None, on_verified: OnVerified) -> None:
        """Fetch every CID of ``cids`` from peers, handing verified batches to ``on_verified`` as they land.

        Raises :class:`BlocksUnavailableError` (after every batch that could be had was handed on) when some
        blocks could be had from no peer. An exception from ``on_verified`` stops the fetch and propagates.
        """
        if not cids:
            return
        await self.fetch_parts(_one_part(cids), hint=hint or cids[0], on_verified=on_verified)

    async def fetch_parts(self, parts: AsyncIterator[Sequence[Cid]], *, hint: Cid, on_verified: OnVerified) -> None:
        """:meth:`fetch` over every CID of every part ``parts`` gives, all in one run (``hint``: the dataset or
        manifest to find peers by). The next part is asked for only when the queue runs low, so the parts are
        made as the fetch goes; an exception from ``parts`` stops the fetch and propagates, as one from
        ``on_verified`` does. A CID in several parts is fetched for each (a part is deduplicated on its own)."""
        opts = self.options
        run = _Run(
            key=hint,
            peers=await self._providers.find(hint, limit=opts.find_limit),
            on_verified=on_verified,
            queue=asyncio.Queue(),
            started=self._now(),
        )
        tasks = [asyncio.ensure_future(self._feed(run, parts))]
        tasks += [asyncio.ensure_future(self._worker(run)) for _ in range(opts.parallel)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
        if run.blocks or run.unavailable:
            self._log_progress(run, final=True)
        if run.unavailable:
            raise BlocksUnavailableError(
                f"{len(run.unavailable)} of {run.queued_blocks} blocks of {hint} could be had from none of the peers "
                f"asked ({opts.rounds} rounds; first missing: {run.unavailable[0]})"
            )

    async def _feed(self, run: _Run, parts: AsyncIterator[Sequence[Cid]]) -> None:
        """Cut the parts into batches as the queue runs low; end the run once the last part's batches are done."""
        size, low = self.options.batch_blocks, self.options.parallel
        try:
            async for part in parts:
                unique = list({c.text: c for c in part}.values())
                for i in range(0, len(unique), size):
                    while run.queue.qsize() >= low:
                        run.room.clear()
                        await run.room.wait()
                    batch = unique[i : i + size]
                    run.open_batches += 1
                    run.queued_blocks += len(batch)
                    run.queue.put_nowait(_Batch(batch))
        finally:
            run.feeding = False
            aclose = getattr(parts, "aclose", None)
            if aclose is not None:
                await aclose()  # a generator left at a yield (the fetch failed) runs its clean-up now
        self._end_if_done(run)

    async def _worker(self, run: _Run) -> None:
        handover = _Handover()
        try:
            while True:
                if run.queue.empty():
                    # Nothing to ask for meanwhile (the next part is still being made, or the run is ending): finish
                    # the hand-over first, so an error storing it stops the fetch now, not once more work comes.
                    await handover.settle()
                batch = await run.queue.get()
                if batch is None:
                    break
                run.room.set()
                await self._run_batch(run, batch, handover)
            await handover.settle()
        finally:
            await handover.drop()

    def _finished(self, run: _Run) -> None:
        run.open_batches -= 1
        self._end_if_done(run)

    def _end_if_done(self, run: _Run) -> None:
        if run.open_batches == 0 and not run.feeding and not run.ended:
            run.ended = True
            for _ in range(self.options.parallel):
                run.queue.put_nowait(None)

    async def _run_batch(self, run: _Run, batch: _Batch, handover: _Handover) -> None:
        peer = self._pick(run, batch)
        if peer is None:
            if batch.round + 1 >= self.options.rounds:
                run.unavailable.extend(batch.cids)
                self._finished(run)
                return
            await self._backoff(batch.round)
            self._merge_peers(run, await self._providers.find(run.key, limit=self.options.find_limit))
            run.queue.put_nowait(_Batch(batch.cids, set(), batch.round + 1))
            return
        run.busy[peer.peer_id] = run.busy.get(peer.peer_id, 0) + 1
        try:
            left = await self._ask(run, peer, batch.cids, handover)
        finally:
            run.busy[peer.peer_id] -= 1
        if left:
            run.queue.put_nowait(_Batch(left, batch.tried | {peer.peer_id}, batch.round))
        else:
            self._finished(run)

    def _pick(self, run: _Run, batch: _Batch) -> PeerInfo | None:
        candidates = [p for p in run.peers if p.peer_id not in run.bad and p.peer_id not in batch.tried]
        if not candidates:
            return None
        return min(candidates, key=lambda p: run.busy.get(p.peer_id, 0))

    @staticmethod
    def _merge_peers(run: _Run, found: list[PeerInfo]) -> None:
        known = {p.peer_id for p in run.peers}
        run.peers.extend(p for p in found if p.peer_id not in known)

    async def _ask(self, run: _Run, peer: PeerInfo, cids: list[Cid], handover: _Handover) -> list[Cid]:
        """Ask ``peer`` for ``cids``; hand on what it served correctly, group by group as the answer arrives;
        return the CIDs still to be had."""
        pending: list[tuple[Cid, Payload]] = []  # received, not verified yet: one group at most
        done: set[str] = set()
        progress = _Progress(self._now())
        group = self.options.group_blocks

        async def hand_on_pending() -> None:
            """Verify the blocks received (in a worker thread: hashlib releases the GIL, so the hashing overlaps the
            other requests' transfers), hand on those that match, raise :class:`_Corrupt` for one that does not."""
            received = pending[:]
            pending.clear()
            got, wrong = await asyncio.to_thread(_verify, received)
            if got:
                done.update(cid.text for cid, _ in got)
                # The worker goes on reading while this group is handed on (stored): one hand-over at a time.
                await handover.settle()
                handover.task = asyncio.ensure_future(self._hand_on(run, peer, got))
            if wrong is not None:
                raise _Corrupt(wrong)

        async def read() -> None:
            stream = self._client.stream_blocks(peer, cids, max_bytes=self.options.max_block_bytes)
            async with contextlib.aclosing(stream):
                async for index, payload in stream:
                    progress.last = self._now()
                    if payload is None:
                        continue
                    pending.append((cids[index], payload))
                    if len(pending) >= group:
                        progress.waiting = True
                        try:
                            await hand_on_pending()
                        finally:
                            progress.waiting = False
                            progress.last = self._now()

        failure: tuple[str, str] | None = None
        try:
            try:
                await self._guarded(read(), progress)
            except PeerError as e:
                failure = ("error", str(e))
            except _Stalled:
                failure = ("stalled", f"no progress for {self.options.stall_seconds} s")
            if pending:  # what came before the answer ended or failed is kept if it hashes right
                await hand_on_pending()
        except _Corrupt as e:
            failure = ("corrupt", f"its bytes for block {e.cid} do not match the CID")
        if failure is not None:
            self._bad(peer, run.bad, *failure)
        return [c for c in cids if c.text not in done]

    async def _hand_on(self, run: _Run, peer: PeerInfo, got: list[tuple[Cid, Payload]]) -> None:
        nbytes = sum(len(data) for _, data in got)
        await run.on_verified(got)
        self._providers.served(peer, run.key, nbytes)
        self._metrics.blocks.inc(len(got))
        self._metrics.bytes.inc(nbytes)
        run.blocks += len(got)
        run.nbytes += nbytes
        self._log_progress(run, final=False)

    async def _guarded(self, work: Coroutine[Any, Any, _T], progress: _Progress) -> _T:
        """Run ``work``; raise :class:`_Stalled` (cancelling it) once ``progress.last`` is ``stall_seconds`` old."""
        task = asyncio.ensure_future(work)
        waiter: asyncio.Future[None] | None = None
        try:
            while True:
                deadline = progress.last + self.options.stall_seconds
                waiter = asyncio.ensure_future(self._clock.wait_until(deadline))
                await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
                if task.done():
                    return task.result()
                if progress.waiting:
                    progress.last = self._now()
                elif self._now() >= progress.last + self.options.stall_seconds:
                    raise _Stalled
        finally:
            if waiter is not None:
                waiter.cancel()
            if not task.done():
                task.cancel()
                await asyncio.wait([task])

    def _bad(self, peer: PeerInfo, bad: set[str], reason: str, detail: str) -> None:
        bad.add(peer.peer_id)
        self._metrics.bad_peers.labels(reason).inc()
        self._providers.misbehaved(peer, f"{reason}: {detail}")
        log.warning("peer abandoned", peer=peer.peer_id, url=peer.url, reason=reason, detail=detail[:200])

    async def _backoff(self, round_: int) -> None:
        await self._clock.wait_until(self._now() + self.options.backoff_seconds * 2**round_)

    def _now(self) -> int:
        return self._clock.now()

    def _log_progress(self, run: _Run, *, final: bool) -> None:
        now = self._now()
        if not final and now == run.logged_at:
            return  # at most one line per second of the clock
        run.logged_at = now
        elapsed = max(now - run.started, 1)
        log.info(
            "blocks fetched" if final else "fetching blocks",
            cid=run.key.text,
            blocks=run.blocks,
            mib=round(run.nbytes / _MIB, 1),
            mib_per_s=round(run.nbytes / _MIB / elapsed, 1),
            peers_abandoned=len(run.bad),
        )
