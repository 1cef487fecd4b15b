"""The storage quota record and its arithmetic (pure: no I/O).

One record, ``meta/quota/used`` = ``{"max", "used", "reserved"}``, holds the whole quota so that any change to it
is a single key in a write batch: the repo store changes ``used`` with the block metadata, the sales
reservations change ``reserved`` with their availability records (``RepoStore.commit_with_quota``).

``used`` is the sum of the sizes of the blocks that have metadata; ``reserved`` is promised to availabilities and
reservations; ``max`` is the configured quota. A change that makes ``used + reserved`` grow is refused when the
new total would pass ``max`` (reaching it exactly is allowed). A change that does not make the total grow (a
release, or reserved bytes becoming used bytes) is always allowed, even when an operator lowered ``max`` below
what is already held — but no value may go below zero.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from codex_node.errors import QuotaNotEnoughError, QuotaUnderflowError, StoreError

QUOTA_KEY = "meta/quota/used"


@dataclass(frozen=True, slots=True)
class Quota:
    """The quota as persisted. All values are bytes."""

    max: int
    used: int = 0
    reserved: int = 0

    @property
    def total_used(self) -> int:
        return self.used + self.reserved

    @property
    def available(self) -> int:
        """Bytes that can still be stored or reserved (0 when an operator lowered ``max`` below the usage)."""
        return max(0, self.max - self.used - self.reserved)

    def encode(self) -> bytes:
        record = {"max": self.max, "used": self.used, "reserved": self.reserved}
        return json.dumps(record, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Quota:
        try:
            d = json.loads(raw)
            return cls(max=int(d["max"]), used=int(d["used"]), reserved=int(d["reserved"]))
        except (ValueError, KeyError, TypeError) as e:
            raise StoreError(f"corrupt quota record: {e}") from e

    def change(self, *, used: int = 0, reserved: int = 0) -> Quota:
        """The quota after adding ``used`` and ``reserved`` (either may be negative).

        Raises :class:`QuotaNotEnoughError` when the total grows past ``max`` and :class:`QuotaUnderflowError`
        when a value would go below zero (releasing what was never taken is a bookkeeping bug, refused whole).
        """
        new = Quota(self.max, self.used + used, self.reserved + reserved)
        if new.used < 0 or new.reserved < 0:
            raise QuotaUnderflowError(
                f"quota would go negative (used {self.used}{used:+d}, reserved {self.reserved}{reserved:+d})"
            )
        need = used + reserved
        if need > 0 and new.total_used > new.max:
            raise QuotaNotEnoughError(
                f"not enough storage quota: {need} bytes needed, {self.available} of {self.max} available"
            )
        return new
