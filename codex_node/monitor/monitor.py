"""The monitor part: every ``interval`` seconds of its clock, read the node, keep a storage sample, update alerts.

It also answers the health route (:meth:`Monitor.health`) from a fresh set of readings. Readiness means the node
can do its job now: the metadata store is open, the chain (when the node runs a marketplace) answers and the event
stream is at most ``max_cursor_lag`` blocks behind it, and the data dir's disk has ``min_ready_disk`` bytes free.

Reads only; never writes the node's state. Time comes from the injected clock (tests: ``FakeClock``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from codex_node.clock import Clock
from codex_node.monitor.alerts import AlertBook, Readings, Thresholds, evaluate
from codex_node.monitor.chain import ChainProbe
from codex_node.monitor.samples import StorageSample, StorageSamples
from codex_node.sales.proofmargin import ProofMargins
from codex_node.stores.diskspace import free_bytes
from codex_node.stores.quota import Quota
from codex_node.utils.trackedtasks import TrackedTasks

log = structlog.get_logger(__name__)

INTERVAL = 30
MIN_READY_DISK = 64 * 1024**2
MARGIN_WINDOW = 3600
"""Proofs of the last hour count for the margin alert: a tight proof raises it, an hour of good ones clears it."""


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Health:
    ready: bool
    checks: tuple[Check, ...]
    readings: Readings


class Monitor:
    def __init__(
        self,
        *,
        clock: Clock,
        quota: Callable[[], Quota],
        store_open: Callable[[], bool],
        data_dir: Path,
        book: AlertBook,
        samples: StorageSamples,
        chain: ChainProbe | None = None,
        margins: ProofMargins | None = None,
        thresholds: Thresholds | None = None,
        interval: int = INTERVAL,
        min_ready_disk: int = MIN_READY_DISK,
    ) -> None:
        self._clock = clock
        self._quota = quota
        self._store_open = store_open
        self._data_dir = data_dir
        self.book = book
        self.samples = samples
        self._chain = chain
        self.margins = margins
        self.thresholds = thresholds or Thresholds()
        self._interval = interval
        self._min_ready_disk = min_ready_disk
        self._tasks = TrackedTasks("monitor")
        self.last_check: int | None = None

    async def start(self) -> None:
        await self.check()
        self._tasks.spawn(self._run(), name="monitor")

    async def stop(self) -> None:
        await self._tasks.cancel_all()

    async def _run(self) -> None:
        while True:
            await self._clock.wait_until(self._clock.now() + self._interval)
            try:
                await self.check()
            except (OSError, ValueError) as e:  # a failed reading must not end the watch
                log.warning("monitor check failed", error=repr(e))

    async def check(self) -> Readings:
        """Read, keep a storage sample, update the alerts; return the readings."""
        readings = await self.read()
        if readings.quota_max is not None:
            self.samples.add(
                StorageSample(
                    at=readings.at,
                    quota_max=readings.quota_max,
                    quota_used=readings.quota_used or 0,
                    quota_reserved=readings.quota_reserved or 0,
                    disk_free=readings.disk_free,
                )
            )
        self.book.update(evaluate(readings, self.thresholds), readings.at)
        self.last_check = readings.at
        return readings

    async def read(self) -> Readings:
        now = self._clock.now()
        quota = self._quota()
        try:
            disk: int | None = free_bytes(self._data_dir)  # one statvfs call: microseconds, no thread needed
        except OSError:
            disk = None
        lowest = self._lowest_margin(now)
        if self._chain is None:
            return Readings(now, quota.max, quota.used, quota.reserved, disk, lowest_margin=lowest)
        c = await self._chain.read()
        return Readings(
            now,
            quota.max,
            quota.used,
            quota.reserved,
            disk,
            chain_reachable=c.reachable,
            chain_error=c.error,
            head_block=c.head_block,
            cursor_block=c.cursor_block,
            gas_balance=c.gas_balance,
            token_balance=c.token_balance,
            collateral_promised=c.collateral_promised,
            missed_proofs=c.missed_proofs,
            lowest_margin=lowest,
        )

    def _lowest_margin(self, now: int) -> tuple[str, int, int, int] | None:
        if self.margins is None:
            return None
        recent = [m for m in self.margins.latest() if m.at >= now - MARGIN_WINDOW]
        if not recent:
            return None
        m = min(recent, key=lambda m: m.fraction)
        return (m.slot_id, m.period, m.margin, m.period_seconds)

    async def health(self) -> Health:
        """Readiness from fresh readings (see the module docstring)."""
        r = await self.read()
        checks = readiness(r, self._store_open(), self)
        return Health(ready=all(c.ok for c in checks), checks=checks, readings=r)

    @property
    def chain_watched(self) -> bool:
        return self._chain is not None

    @property
    def min_ready_disk(self) -> int:
        return self._min_ready_disk


def readiness(r: Readings, store_open: bool, m: Monitor) -> tuple[Check, ...]:
    """The readiness checks of ``r`` (pure but for the monitor's settings)."""
    checks = [Check("store", store_open, "metadata store open" if store_open else "metadata store closed")]
    if m.chain_watched:
        if r.chain_reachable:
            checks.append(Check("chain", True, f"head block {r.head_block}"))
            lag = r.cursor_lag or 0
            limit = m.thresholds.max_cursor_lag
            checks.append(Check("events", lag <= limit, f"event cursor {lag} blocks behind the head (limit {limit})"))
        else:
            checks.append(Check("chain", False, f"chain unreachable: {r.chain_error or '?'}"))
    if r.disk_free is None:
        checks.append(Check("disk", False, "free space of the data dir's disk unknown"))
    else:
        ok = r.disk_free >= m.min_ready_disk
        checks.append(Check("disk", ok, f"{r.disk_free} bytes free (need {m.min_ready_disk})"))
    return tuple(checks)
