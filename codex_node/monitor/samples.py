"""Storage samples kept in memory: quota used/reserved/max and disk free over time, for the dashboard's chart.

A bounded ring (``KEEP`` samples; at one a minute, a day); lost on restart, which the chart says. Never grows.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

KEEP = 1440


@dataclass(frozen=True, slots=True)
class StorageSample:
    at: int
    quota_max: int
    quota_used: int
    quota_reserved: int
    disk_free: int | None


class StorageSamples:
    def __init__(self, keep: int = KEEP) -> None:
        self._samples: deque[StorageSample] = deque(maxlen=keep)

    def add(self, sample: StorageSample) -> None:
        self._samples.append(sample)

    def since(self, at: int = 0, limit: int = KEEP) -> list[StorageSample]:
        """Samples taken at or after ``at``, oldest first, at most the latest ``limit``."""
        found = [s for s in self._samples if s.at >= at]
        return found[-limit:] if limit > 0 else []
