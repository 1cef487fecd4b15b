"""Alert rules over one set of :class:`Readings`, and the book of alerts that are active.

:func:`evaluate` is pure: readings and thresholds in, the conditions that hold out. :class:`AlertBook` keeps the
active ones, and on each :meth:`AlertBook.update` logs a change once (``alert raised`` / ``alert cleared``),
counts it (``codex_alerts_raised_total{alert}``, ``codex_alerts_active{alert}``) and hands it to its listeners
(the webhook). An alert that stays active is neither logged nor sent again; its message may be refreshed.

Rules (key: when it is active):

- ``proof_missed``: a slot this node hosts has missed proofs on chain;
- ``proof_margin_low``: a proof landed with less than ``proof_margin_fraction`` of its period left;
- ``gas_low``: the node's account has less than ``min_gas_wei`` for transactions;
- ``token_low``: the token balance is below the collateral the availabilities still promise;
- ``quota_nearly_full``: used + reserved bytes are over ``quota_fraction`` of the quota;
- ``disk_nearly_full``: the data dir's disk has less than ``min_disk_free`` bytes free;
- ``chain_unreachable``: the chain did not answer;
- ``chain_behind``: the event stream is more than ``max_cursor_lag`` blocks behind the head.

A reading the node could not take (``None``) never raises an alert of its own rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

log = structlog.get_logger(__name__)

Severity = Literal["warning", "critical"]

RULES: tuple[str, ...] = (
    "proof_missed",
    "proof_margin_low",
    "gas_low",
    "token_low",
    "quota_nearly_full",
    "disk_nearly_full",
    "chain_unreachable",
    "chain_behind",
)


@dataclass(frozen=True, slots=True)
class Thresholds:
    proof_margin_fraction: float = 0.1
    min_gas_wei: int = 5 * 10**15
    quota_fraction: float = 0.95
    min_disk_free: int = 1024**3
    max_cursor_lag: int = 20


@dataclass(frozen=True, slots=True)
class Readings:
    """What the node measured at ``at`` (its clock's seconds); ``None``: not measured or not applicable."""

    at: int
    quota_max: int | None = None
    quota_used: int | None = None
    quota_reserved: int | None = None
    disk_free: int | None = None
    chain_reachable: bool | None = None
    chain_error: str | None = None
    head_block: int | None = None
    cursor_block: int | None = None
    gas_balance: int | None = None
    token_balance: int | None = None
    collateral_promised: int | None = None
    missed_proofs: dict[str, int] = field(default_factory=dict)
    """Slot id (hex) → missed proofs on chain, for hosted slots with any."""
    lowest_margin: tuple[str, int, int, int] | None = None
    """(slot id hex, period, margin seconds, period seconds) of the tightest recent proof."""

    @property
    def cursor_lag(self) -> int | None:
        if self.head_block is None or self.cursor_block is None:
            return None
        return max(0, self.head_block + 1 - self.cursor_block)


@dataclass(frozen=True, slots=True)
class Condition:
    """A rule that holds: its key, how bad, and what the operator should know."""

    key: str
    severity: Severity
    message: str


@dataclass(frozen=True, slots=True)
class Alert:
    key: str
    severity: Severity
    message: str
    since: int


@dataclass(frozen=True, slots=True)
class AlertChange:
    """An alert that was raised (``active``) or cleared, at ``at``."""

    alert: Alert
    active: bool
    at: int


def evaluate(r: Readings, t: Thresholds) -> list[Condition]:
    """The conditions that hold for ``r`` (pure)."""
    out: list[Condition] = []
    if r.missed_proofs:
        total = sum(r.missed_proofs.values())
        slots = ", ".join(sorted(s[:10] for s in r.missed_proofs))
        out.append(Condition("proof_missed", "critical", f"{total} missed proof(s) on hosted slot(s) {slots}"))
    if r.lowest_margin is not None:
        slot, period, margin, seconds = r.lowest_margin
        if seconds > 0 and margin < seconds * t.proof_margin_fraction:
            out.append(
                Condition(
                    "proof_margin_low",
                    "warning",
                    f"the proof of period {period} for slot {slot[:10]} landed {margin}s before its period ended "
                    f"(under {t.proof_margin_fraction:.0%} of {seconds}s)",
                )
            )
    if r.gas_balance is not None and r.gas_balance < t.min_gas_wei:
        out.append(Condition("gas_low", "critical", f"gas balance {r.gas_balance} wei is under {t.min_gas_wei} wei"))
    if r.token_balance is not None and r.collateral_promised and r.token_balance < r.collateral_promised:
        out.append(
            Condition(
                "token_low",
                "warning",
                f"token balance {r.token_balance} is below the {r.collateral_promised} collateral the availabilities "
                "still promise",
            )
        )
    if r.quota_max and r.quota_used is not None and r.quota_reserved is not None:
        taken = r.quota_used + r.quota_reserved
        if taken > r.quota_max * t.quota_fraction:
            out.append(
                Condition(
                    "quota_nearly_full",
                    "warning",
                    f"{taken} of {r.quota_max} quota bytes used or reserved (over {t.quota_fraction:.0%})",
                )
            )
    if r.disk_free is not None and r.disk_free < t.min_disk_free:
        out.append(Condition("disk_nearly_full", "critical", f"the data dir's disk has {r.disk_free} bytes free"))
    if r.chain_reachable is False:
        out.append(Condition("chain_unreachable", "critical", f"the chain did not answer: {r.chain_error or '?'}"))
    lag = r.cursor_lag
    if lag is not None and lag > t.max_cursor_lag:
        out.append(
            Condition(
                "chain_behind",
                "warning",
                f"the event stream is {lag} blocks behind the head {r.head_block} (more than {t.max_cursor_lag})",
            )
        )
    return out


AlertListener = Callable[[AlertChange], None]


class AlertBook:
    """The active alerts; logs, counts and announces each change once."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._active: dict[str, Alert] = {}
        self._listeners: list[AlertListener] = []
        self.raised = Counter("codex_alerts_raised", "Alerts raised, by rule", ["alert"], registry=registry)
        self.active_gauge = Gauge(
            "codex_alerts_active", "Alerts active now (1) or not (0), by rule", ["alert"], registry=registry
        )
        for key in RULES:
            self.active_gauge.labels(key).set(0)

    def add_listener(self, listener: AlertListener) -> None:
        self._listeners.append(listener)

    def active(self) -> list[Alert]:
        """Most severe first, then oldest."""
        return sorted(self._active.values(), key=lambda a: (a.severity != "critical", a.since, a.key))

    def update(self, conditions: list[Condition], now: int) -> list[AlertChange]:
        """Make the active alerts those of ``conditions``; return (and announce) what changed."""
        changes: list[AlertChange] = []
        holding = {c.key: c for c in conditions}
        for key, alert in list(self._active.items()):
            if key not in holding:
                del self._active[key]
                changes.append(AlertChange(alert, active=False, at=now))
        for key, c in holding.items():
            known = self._active.get(key)
            if known is None:
                alert = Alert(c.key, c.severity, c.message, since=now)
                self._active[key] = alert
                changes.append(AlertChange(alert, active=True, at=now))
            elif known.message != c.message or known.severity != c.severity:
                self._active[key] = Alert(c.key, c.severity, c.message, since=known.since)
        for change in changes:
            self._announce(change)
        return changes

    def _announce(self, change: AlertChange) -> None:
        a = change.alert
        if change.active:
            self.raised.labels(a.key).inc()
            self.active_gauge.labels(a.key).set(1)
            log.warning("alert raised", alert=a.key, severity=a.severity, message=a.message)
        else:
            self.active_gauge.labels(a.key).set(0)
            log.info("alert cleared", alert=a.key, active_since=a.since)
        for listener in self._listeners:
            listener(change)
