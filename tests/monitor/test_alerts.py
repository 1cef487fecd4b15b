"""Alert rules (pure) and the alert book: each change logged, counted and announced once."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from codex_node.monitor.alerts import AlertBook, AlertChange, Readings, Thresholds, evaluate

T = Thresholds(proof_margin_fraction=0.1, min_gas_wei=100, quota_fraction=0.9, min_disk_free=1000, max_cursor_lag=5)
HEALTHY = Readings(
    at=1,
    quota_max=1000,
    quota_used=100,
    quota_reserved=100,
    disk_free=10_000,
    chain_reachable=True,
    head_block=50,
    cursor_block=50,
    gas_balance=1000,
    token_balance=500,
    collateral_promised=400,
    lowest_margin=("aa" * 32, 7, 30, 60),
)


def keys(r: Readings) -> list[str]:
    return [c.key for c in evaluate(r, T)]


def test_a_healthy_node_has_no_alert() -> None:
    assert keys(HEALTHY) == []


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"missed_proofs": {"bb" * 32: 2}}, "proof_missed"),
        ({"lowest_margin": ("aa" * 32, 7, 5, 60)}, "proof_margin_low"),
        ({"gas_balance": 99}, "gas_low"),
        ({"token_balance": 399}, "token_low"),
        ({"quota_used": 750, "quota_reserved": 151}, "quota_nearly_full"),
        ({"disk_free": 999}, "disk_nearly_full"),
        ({"chain_reachable": False, "chain_error": "connection refused"}, "chain_unreachable"),
        ({"cursor_block": 45}, "chain_behind"),
    ],
)
def test_each_rule_fires_on_its_own_reading(change: dict[str, object], key: str) -> None:
    r = Readings(**{**{f: getattr(HEALTHY, f) for f in HEALTHY.__dataclass_fields__}, **change})  # type: ignore[arg-type]
    assert keys(r) == [key]


def test_readings_the_node_could_not_take_raise_nothing() -> None:
    assert keys(Readings(at=1)) == []


def test_a_change_is_logged_counted_and_announced_once() -> None:
    registry = CollectorRegistry()
    book = AlertBook(registry)
    heard: list[AlertChange] = []
    book.add_listener(heard.append)
    low_gas = evaluate(Readings(at=1, gas_balance=1), T)
    with capture_logs() as logs:
        book.update(low_gas, now=10)
        book.update(low_gas, now=20)  # still active: nothing new
        book.update(evaluate(Readings(at=1, gas_balance=2), T), now=25)  # message refreshed, not raised again
        book.update([], now=30)
    assert [(c.alert.key, c.active, c.at) for c in heard] == [("gas_low", True, 10), ("gas_low", False, 30)]
    assert [e["event"] for e in logs] == ["alert raised", "alert cleared"]
    assert registry.get_sample_value("codex_alerts_raised_total", {"alert": "gas_low"}) == 1
    assert registry.get_sample_value("codex_alerts_active", {"alert": "gas_low"}) == 0
    assert book.active() == []


def test_active_alerts_are_listed_most_severe_first_with_their_start() -> None:
    book = AlertBook(CollectorRegistry())
    book.update(evaluate(Readings(at=1, quota_max=10, quota_used=10, quota_reserved=0), T), now=5)
    book.update(evaluate(Readings(at=1, quota_max=10, quota_used=10, quota_reserved=0, gas_balance=0), T), now=9)
    assert [(a.key, a.since) for a in book.active()] == [("gas_low", 9), ("quota_nearly_full", 5)]
