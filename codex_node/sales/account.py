"""The node's account as the operator sees it: balances, collateral where it sits, and the ledger's totals.

:func:`account_snapshot` reads the chain (balances, the collateral the contract holds for our slots) and the
local books (availabilities, reservations, the ledger); :class:`AccountMetrics` exports the same figures to
Prometheus: the ledger's totals at scrape time (one key read), the chain figures as of the last snapshot (the
``/account`` route and ``codex-node status`` take one; a scrape never waits on the chain).

Read-only: this module never writes the books.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from codex_node.errors import CodexError
from codex_node.market.market import Market
from codex_node.market.types import slot_id
from codex_node.sales.availability import Availability, Reservation
from codex_node.sales.ledger import EarningsLedger, EntryKind, LedgerTotals


@runtime_checkable
class GasWallet(Protocol):
    """A market that can say how much gas money its account holds (``OnChainMarket``)."""

    async def gas_balance(self) -> int: ...


class AccountBooks(Protocol):
    """The part of the reservations book the snapshot reads (``sales.reservations.Reservations``)."""

    async def availabilities(self) -> list[Availability]: ...

    async def all_reservations(self) -> list[Reservation]: ...


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    address: str
    token_balance: int
    gas_balance: int | None
    collateral_locked: int
    """What the contract holds for the slots this node hosts (``currentCollateral``, after any slashing)."""
    collateral_promised: int
    """What the availabilities still offer (``Σ totalRemainingCollateral``)."""
    collateral_reserved: int
    """What reservations set aside for sales whose slot is not filled by us (yet)."""
    hosted_slots: int
    totals: LedgerTotals


async def account_snapshot(
    market: Market, books: AccountBooks, ledger: EarningsLedger, metrics: AccountMetrics | None = None
) -> AccountSnapshot:
    address = await market.get_signer()
    token = await market.token_balance(address)
    gas: int | None = None
    if isinstance(market, GasWallet):
        try:
            gas = await market.gas_balance()
        except CodexError:
            gas = None
    hosted = await market.my_slots()
    locked = 0
    for sid in hosted:
        locked += await market.current_collateral(sid)
    hosted_set = set(hosted)
    reserved = sum(
        r.collateral for r in await books.all_reservations() if slot_id(r.request_id, r.slot_index) not in hosted_set
    )
    promised = sum(a.total_remaining_collateral for a in await books.availabilities())
    snapshot = AccountSnapshot(
        address=address,
        token_balance=token,
        gas_balance=gas,
        collateral_locked=locked,
        collateral_promised=promised,
        collateral_reserved=reserved,
        hosted_slots=len(hosted),
        totals=ledger.totals(),
    )
    if metrics is not None:
        metrics.observe(snapshot)
    return snapshot


class AccountMetrics:
    """The chain figures of the last snapshot as gauges (``codex_account_*``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.token = Gauge("codex_account_token_balance", "Tokens in the node's wallet", registry=registry)
        self.gas = Gauge("codex_account_gas_balance_wei", "Wei in the node's wallet for gas", registry=registry)
        self.locked = Gauge(
            "codex_account_collateral_locked", "Collateral the contract holds for hosted slots", registry=registry
        )
        self.promised = Gauge(
            "codex_account_collateral_promised", "Collateral the availabilities still offer", registry=registry
        )
        self.reserved = Gauge(
            "codex_account_collateral_reserved", "Collateral set aside for sales not filled yet", registry=registry
        )

    def observe(self, s: AccountSnapshot) -> None:
        self.token.set(s.token_balance)
        if s.gas_balance is not None:
            self.gas.set(s.gas_balance)
        self.locked.set(s.collateral_locked)
        self.promised.set(s.collateral_promised)
        self.reserved.set(s.collateral_reserved)


class LedgerCollector(Collector):
    """``codex_ledger_total{kind}``: the ledger's running totals, read at scrape time (they never drift)."""

    def __init__(self, totals: EarningsLedger) -> None:
        self._ledger = totals

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "codex_ledger_total", "Tokens recorded in the earnings ledger, by kind of entry", labels=["kind"]
        )
        totals = self._ledger.totals()
        for kind in EntryKind:
            family.add_metric([kind.value], totals.of(kind))
        yield family

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []
