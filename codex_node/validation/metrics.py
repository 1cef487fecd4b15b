"""Prometheus metrics of the validator: what it watches, what it marked, and whether it keeps up."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class ValidatorMetrics:
    """One set per validator; the node passes its own registry (``None``: a private one, for tests)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.slots_watched = Gauge(
            "codex_validator_slots_watched", "Filled slots of this validator's group it watches", registry=registry
        )
        self.marked = Counter(
            "codex_validator_proofs_marked_missing",
            "Missing storage proofs this validator marked on chain (each one slashed a host)",
            registry=registry,
        )
        self.mark_failures = Counter(
            "codex_validator_mark_failures",
            "markProofAsMissing transactions that failed, by reason: the contract error's name when it reverted "
            "(ProofNotRequired: the challenge pointer moved into the downtime between the check and the transaction; "
            "ProofAlreadyMarkedMissing: another validator was first), else the error type (gas, chain unreachable)",
            ["reason"],
            registry=registry,
        )
        self.check_failures = Counter(
            "codex_validator_check_failures",
            "Slot checks that could not read the chain (the slot is checked again next period)",
            registry=registry,
        )
        self.rounds = Counter(
            "codex_validator_rounds",
            "Rounds run: one per period that ended, over every watched slot",
            registry=registry,
        )
        self.last_period = Gauge(
            "codex_validator_last_period", "The latest proof period this validator checked", registry=registry
        )
        self.lapsed_periods = Counter(
            "codex_validator_lapsed_periods",
            "Periods whose marking window closed before the validator checked them (it fell behind)",
            registry=registry,
        )
