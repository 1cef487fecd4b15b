"""Why a slot was not taken: each matching rule's verdict, and the dry run of a whole request."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from codex_node.market.types import Ask, RequestState
from codex_node.sales.availability import Availability
from codex_node.sales.explain import explain_request
from codex_node.sales.matching import RULES, explain, matches, why_not

AVAILABILITY = Availability(
    id=b"\xaa" * 32,
    total_size=1000,
    free_size=1000,
    duration=3600,
    min_price_per_byte_per_second=2,
    total_collateral=10_000,
    total_remaining_collateral=5_000,  # maxCollateralPerByte: 5000 // 1000 free bytes = 5
    until=0,
    enabled=True,
)
SLOT = {"slot_size": 500, "duration": 3600, "price_per_byte_per_second": 2, "collateral_per_byte": 5, "valid_until": 99}
ASK = Ask(
    proof_probability=1,
    price_per_byte_per_second=2,
    collateral_per_byte=5,
    slots=2,
    slot_size=500,
    duration=3600,
    max_slot_loss=1,
)


def failed(a: Availability, **slot: int) -> list[str]:
    return [c.rule for c in explain(a, **{**SLOT, **slot}).failed]


def test_every_rule_passes_for_a_fitting_availability() -> None:
    verdict = explain(AVAILABILITY, **SLOT)
    assert verdict.matches
    assert [c.rule for c in verdict.checks] == list(RULES)


def test_each_rule_names_itself_when_it_fails() -> None:
    assert failed(replace(AVAILABILITY, enabled=False)) == ["enabled"]
    assert failed(AVAILABILITY, slot_size=1001) == ["size"]
    assert failed(AVAILABILITY, duration=3601) == ["duration"]
    assert failed(AVAILABILITY, collateral_per_byte=6) == ["collateral"]
    assert failed(AVAILABILITY, price_per_byte_per_second=1) == ["price"]
    assert failed(replace(AVAILABILITY, until=98)) == ["until"]
    assert failed(replace(AVAILABILITY, until=99)) == []


def test_the_detail_gives_the_numbers_compared() -> None:
    [check] = explain(AVAILABILITY, **{**SLOT, "duration": 7200}).failed
    assert check.detail == "duration 7200 vs availability duration 3600"


def test_why_not_names_each_availability_and_the_rules_it_failed() -> None:
    other = replace(
        AVAILABILITY, id=b"\xbb" * 32, free_size=10, total_remaining_collateral=50, min_price_per_byte_per_second=9
    )
    reason = why_not([explain(AVAILABILITY, **{**SLOT, "duration": 7200}), explain(other, **SLOT)])
    assert reason.startswith("no availability matches: 0xaaaaaaaa… failed duration (duration 7200")
    assert "0xbbbbbbbb… failed size (slot size 500 vs free size 10), price (" in reason
    assert why_not([]) == "no availability matches: there are no availabilities"


@given(
    free=st.integers(1, 2000),
    duration=st.integers(0, 8000),
    price=st.integers(0, 5),
    collateral=st.integers(0, 10),
    until=st.integers(0, 200),
    enabled=st.booleans(),
)
def test_matches_is_exactly_every_rule_passing(
    free: int, duration: int, price: int, collateral: int, until: int, enabled: bool
) -> None:
    a = replace(AVAILABILITY, free_size=free, until=until, enabled=enabled)
    slot = {**SLOT, "duration": duration, "price_per_byte_per_second": price, "collateral_per_byte": collateral}
    most = 5000 // free
    until_ok = until == 0 or until >= 99
    expected = enabled and free >= 500 and duration <= 3600 and collateral <= most and price >= 2 and until_ok
    assert matches(a, **slot) == expected == explain(a, **slot).matches


def dry_run(**changes: object) -> object:
    facts: dict[str, object] = {
        "state": RequestState.NEW,
        "now": 100,
        "expires_at": 200,
        "request_end": 99,
        "availabilities": [AVAILABILITY],
        "wallet_balance": 10**6,
        "slot_collateral": 2500,
    }
    return explain_request(ASK, **{**facts, **changes})  # type: ignore[arg-type]


def test_an_open_request_that_fits_would_be_taken_from_the_best_fit() -> None:
    e = dry_run()
    assert e.would_take
    assert e.reasons == ()
    assert e.chosen == AVAILABILITY.id


def test_a_request_is_not_taken_for_every_reason_that_applies() -> None:
    e = dry_run(now=200, availabilities=[replace(AVAILABILITY, enabled=False)], wallet_balance=10)
    assert not e.would_take  # type: ignore[attr-defined]
    assert e.reasons == (  # type: ignore[attr-defined]
        "the request expired at 200 (now 200) before all its slots were filled",
        "no availability passes every rule",
        "the wallet holds 10 tokens, less than the slot's collateral of 2500",
    )
    assert not e.verdicts[0].matches  # type: ignore[attr-defined]


def test_a_started_request_may_still_be_taken_for_a_repair_and_says_so() -> None:
    e = dry_run(state=RequestState.STARTED, request_end=500)
    assert e.would_take
    assert e.notes


def test_an_ended_or_unknown_request_is_not_taken() -> None:
    assert dry_run(state=RequestState.FINISHED).reasons == ("the request is finished",)  # type: ignore[attr-defined]
    assert dry_run(state=None).reasons[0] == "the request is not on chain"  # type: ignore[attr-defined]
    assert dry_run(availabilities=[]).reasons == ("there are no availabilities",)  # type: ignore[attr-defined]
