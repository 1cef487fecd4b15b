"""When a period's proof can be marked missing: the contract's timing rules as pure functions.

``Proofs._checkProofMissing`` accepts period ``p`` only while ``periodEnd(p) < block.timestamp <
periodEnd(p) + timeout``: not at the very second the period ends (``PeriodNotEnded``), and no longer from
``timeout`` seconds after it (``ValidationTimedOut``). A validator that checks too early is refused; one that
checks too late has lost that period for good. Both functions here take "now" as the chain sees it (the latest
block's timestamp, which is what the contract's views read).

This module does no I/O and never reads a clock.
"""

from __future__ import annotations

from codex_node.market.types import Periodicity


def markable(periods: Periodicity, timeout: int, now: int, period: int) -> bool:
    """Whether a missing proof of ``period`` may be marked at ``now`` (timing only; the chain checks the rest)."""
    end = periods.period_end(period)
    return end < now < end + timeout


def oldest_open(periods: Periodicity, timeout: int, now: int) -> int:
    """The oldest period whose marking window has not closed at ``now`` (it may not have opened yet)."""
    # end(p) + timeout > now  <=>  (p + 1) * seconds > now - timeout  <=>  p >= (now - timeout) // seconds
    return (now - timeout) // periods.seconds


def due_periods(periods: Periodicity, timeout: int, now: int, after: int) -> list[int]:
    """Periods later than ``after`` whose missing proofs may be marked at ``now``, oldest first."""
    first = max(after + 1, oldest_open(periods, timeout, now))
    return [p for p in range(first, periods.period_of(now)) if markable(periods, timeout, now, p)]


def next_check(periods: Periodicity, timeout: int, now: int, after: int) -> int:
    """The first moment after ``now``'s round at which a period later than ``after`` becomes markable."""
    first = max(after + 1, oldest_open(periods, timeout, now))
    return periods.period_end(first) + 1


def lapsed(periods: Periodicity, timeout: int, now: int, after: int) -> int:
    """How many periods later than ``after`` had their window close before ``now`` (checked too late)."""
    return max(0, oldest_open(periods, timeout, now) - (after + 1))
