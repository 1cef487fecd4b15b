"""The contract's timing rules for marking a missing proof, at their boundaries (``Proofs._checkProofMissing``)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from codex_node.market.types import Periodicity
from codex_node.validation import timing

PERIODS = Periodicity(60)
TIMEOUT = 30
P = 1000
END = PERIODS.period_end(P)


def test_not_markable_at_the_second_the_period_ends() -> None:
    assert not timing.markable(PERIODS, TIMEOUT, END, P)  # PeriodNotEnded: end >= block.timestamp


def test_markable_from_one_second_after_the_end() -> None:
    assert timing.markable(PERIODS, TIMEOUT, END + 1, P)


def test_markable_until_one_second_before_the_timeout() -> None:
    assert timing.markable(PERIODS, TIMEOUT, END + TIMEOUT - 1, P)


def test_not_markable_once_the_timeout_has_passed() -> None:
    assert not timing.markable(PERIODS, TIMEOUT, END + TIMEOUT, P)  # ValidationTimedOut


def test_the_current_period_is_never_due() -> None:
    assert timing.due_periods(PERIODS, TIMEOUT, END - 1, P - 1) == []
    assert timing.due_periods(PERIODS, TIMEOUT, END, P - 1) == []


def test_the_period_just_ended_is_due_from_one_second_after_its_end() -> None:
    assert timing.due_periods(PERIODS, TIMEOUT, END + 1, P - 1) == [P]
    assert timing.due_periods(PERIODS, TIMEOUT, END + 1, P) == []  # already checked


def test_a_period_is_due_no_more_once_its_window_closed() -> None:
    assert timing.due_periods(PERIODS, TIMEOUT, END + TIMEOUT, P - 1) == []
    assert timing.lapsed(PERIODS, TIMEOUT, END + TIMEOUT, P - 1) == 1


def test_next_check_is_one_second_after_the_next_period_ends() -> None:
    assert timing.next_check(PERIODS, TIMEOUT, END + 1, P) == PERIODS.period_end(P + 1) + 1
    assert timing.next_check(PERIODS, TIMEOUT, END, P - 1) == END + 1


def test_a_validator_far_behind_counts_every_lapsed_period() -> None:
    now = PERIODS.period_end(P + 5) + 1
    assert timing.lapsed(PERIODS, TIMEOUT, now, P - 1) == 5  # P .. P+4 lapsed; P+5 is still open
    assert timing.due_periods(PERIODS, TIMEOUT, now, P - 1) == [P + 5]


@given(
    seconds=st.integers(1, 600),
    timeout=st.integers(1, 1200),
    now=st.integers(0, 10**7),
    back=st.integers(0, 40),
)
def test_due_periods_are_exactly_the_markable_ones_after_the_last_checked(
    seconds: int, timeout: int, now: int, back: int
) -> None:
    periods = Periodicity(seconds)
    after = max(-1, now // seconds - back)
    expected = [p for p in range(after + 1, now // seconds + 1) if timing.markable(periods, timeout, now, p)]
    assert timing.due_periods(periods, timeout, now, after) == expected
    if not expected:  # sleeping until the next check misses no period that opens meanwhile
        wake = timing.next_check(periods, timeout, now, after)
        for t in range(now, min(wake, now + 40)):
            assert not any(timing.markable(periods, timeout, t, p) for p in range(after + 1, t // seconds + 1))
