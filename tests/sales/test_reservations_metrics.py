"""The per-availability gauges are read from the reservations book when Prometheus scrapes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from codex_node.market.types import RequestId
from codex_node.sales.availability import AvailabilityTerms
from codex_node.sales.metrics import ReservationsCollector
from codex_node.sales.reservations import Reservations
from codex_node.testing.fakequota import FakeQuotaLedger
from codex_node.testing.memorykv import MemoryKV

SLOT = 65_536


async def test_committed_bytes_and_collateral_per_availability_follow_the_book() -> None:
    book = Reservations(FakeQuotaLedger(MemoryKV(), 10 * SLOT))
    registry = CollectorRegistry()
    registry.register(ReservationsCollector(book.availability_totals))
    availability = await book.create_availability(
        AvailabilityTerms(
            total_size=4 * SLOT, duration=3600, min_price_per_byte_per_second=1, total_collateral=1_000_000
        )
    )
    labels = {"availability": availability.id.hex()}
    assert registry.get_sample_value("codex_availability_bytes_committed", labels) == 0

    reservation = await book.create_reservation(availability.id, SLOT, RequestId(b"\x01" * 32), 0, 2, 10**10)
    assert registry.get_sample_value("codex_availability_bytes_committed", labels) == SLOT
    assert registry.get_sample_value("codex_availability_collateral_committed", labels) == 2 * SLOT

    await book.delete_reservation(reservation.id, availability.id, returned_collateral=2 * SLOT)
    assert registry.get_sample_value("codex_availability_bytes_committed", labels) == 0
    assert registry.get_sample_value("codex_availability_collateral_committed", labels) == 0
