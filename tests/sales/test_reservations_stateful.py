"""Random sequences of book operations, failed writes and restarts: the books balance after every step."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Coroutine
from typing import Any, TypeVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from codex_node.errors import CodexError, KVError
from codex_node.market.types import RequestId, slot_id
from codex_node.sales.accounting import check_books
from codex_node.sales.availability import Availability, AvailabilityPatch, AvailabilityTerms, Reservation
from codex_node.sales.reservations import RECLAIM_GRANULE, Reservations
from codex_node.testing.fakequota import FakeQuotaLedger
from codex_node.testing.memorykv import MemoryKV

T = TypeVar("T")
G = RECLAIM_GRANULE
QUOTA = 64 * G

sizes = st.integers(1, 24).map(lambda n: n * G // 2)
amounts = st.integers(0, 4)


class BooksMachine(RuleBasedStateMachine):
    """Drives one book like a node would (including the repo's block puts and maintenance) and checks rule 1."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.kv = MemoryKV()
        self.ledger = FakeQuotaLedger(self.kv, QUOTA)
        ids = itertools.count(1)
        self.new_id = lambda: next(ids).to_bytes(32, "big")
        self.book = Reservations(self.ledger, new_id=self.new_id)
        self.garbage = 0  # bytes of ended sales' blocks not yet deleted by maintenance
        self.requests = itertools.count(1)

    def teardown(self) -> None:
        self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def attempt(self, coro: Coroutine[Any, Any, T]) -> T | None:
        """Run one operation; a refusal must leave the store exactly as it was."""
        before = dict(self.kv.iterate(""))
        writes = self.kv.writes
        try:
            result = self.run(coro)
        except CodexError:
            assert dict(self.kv.iterate("")) == before
            return None
        assert self.kv.writes <= writes + 1  # one operation, one batch
        return result

    def availabilities(self) -> list[Availability]:
        return self.run(self.book.availabilities())

    def reservations(self) -> list[Reservation]:
        return self.run(self.book.all_reservations())

    # --- operations ---------------------------------------------------------------------------------------------

    @initialize()
    def two_availabilities_holding_all_of_the_quota(self) -> None:
        # All of the quota promised from the start, so that ended sales' blocks really compete for room.
        self.run(
            self.book.create_availability(
                AvailabilityTerms(
                    total_size=QUOTA * 3 // 4, duration=3, min_price_per_byte_per_second=1, total_collateral=50 * G
                )
            )
        )
        self.run(
            self.book.create_availability(
                AvailabilityTerms(
                    total_size=QUOTA // 4, duration=3, min_price_per_byte_per_second=1, total_collateral=50 * G
                )
            )
        )

    @rule(
        size=sizes,
        duration=st.integers(1, 3),
        collateral=st.integers(1, 50),
        enabled=st.booleans(),
        until=st.just(0) | amounts,
    )
    def create(self, size: int, duration: int, collateral: int, enabled: bool, until: int) -> None:
        self.attempt(
            self.book.create_availability(
                AvailabilityTerms(
                    total_size=size,
                    duration=duration,
                    min_price_per_byte_per_second=1,
                    total_collateral=collateral * G,
                    enabled=enabled,
                    until=until,
                )
            )
        )

    @rule(
        data=st.data(),
        total_size=st.none() | sizes,
        total_collateral=st.none() | st.integers(0, 50).map(lambda c: c * G),
        enabled=st.none() | st.booleans(),
        until=st.none() | amounts,
        duration=st.none() | st.integers(0, 3),
    )
    def update(
        self,
        data: st.DataObject,
        total_size: int | None,
        total_collateral: int | None,
        enabled: bool | None,
        until: int | None,
        duration: int | None,
    ) -> None:
        availabilities = self.availabilities()
        if not availabilities:
            return
        a = data.draw(st.sampled_from(availabilities))
        self.attempt(
            self.book.update_availability(
                a.id,
                AvailabilityPatch(
                    total_size=total_size,
                    total_collateral=total_collateral,
                    enabled=enabled,
                    until=until,
                    duration=duration,
                ),
            )
        )

    @rule(slot=sizes, cpb=st.integers(0, 3), valid_until=amounts)
    def reserve(self, slot: int, cpb: int, valid_until: int) -> None:
        found = self.run(self.book.find_availability(slot, 1, 1, cpb, valid_until))
        if found is None:
            return
        n = next(self.requests)
        r = self.attempt(
            self.book.create_reservation(found.id, slot, RequestId(n.to_bytes(32, "big")), 0, cpb, valid_until)
        )
        assert r is not None  # nothing changed since find: the reservation must succeed

    @rule(data=st.data(), fraction=st.sampled_from([0.0, 0.25, 0.5, 1.0]))
    def release(self, data: st.DataObject, fraction: float) -> None:
        reservations = self.reservations()
        if not reservations:
            return
        r = data.draw(st.sampled_from(reservations))
        nbytes = int(r.size * fraction)
        writes = self.kv.writes
        self.run(self.book.release(r.id, r.availability_id, nbytes))
        assert self.kv.writes == writes + 1
        self.ledger.store_blocks(nbytes)  # the repo stores the downloaded blocks

    @rule(data=st.data(), returned=st.integers(0, 10 * G))
    def cleanup(self, data: st.DataObject, returned: int) -> None:
        reservations = self.reservations()
        if not reservations:
            return
        r = data.draw(st.sampled_from(reservations))
        assert self.attempt(self.book.delete_reservation(r.id, r.availability_id, returned)) is True
        self.garbage += r.downloaded  # the blocks stay until maintenance
        assert self.run(self.book.delete_reservation(r.id, r.availability_id, returned)) is False

    @rule(fraction=st.sampled_from([0.5, 1.0]))
    def maintenance(self, fraction: float) -> None:
        nbytes = int(self.garbage * fraction)
        self.ledger.delete_blocks(nbytes)
        self.garbage -= nbytes

    @rule()
    def reclaim(self) -> None:
        self.run(self.book.reclaim_returning_bytes())

    @rule(data=st.data())
    def restart_with_inactive_slots(self, data: st.DataObject) -> None:
        reservations = self.reservations()
        active = {slot_id(r.request_id, r.slot_index) for r in reservations if data.draw(st.booleans())}
        ended = sum(r.downloaded for r in reservations if slot_id(r.request_id, r.slot_index) not in active)
        self.restart()
        self.run(self.book.delete_inactive_reservations(active, returned_collateral=lambda r: r.collateral))
        self.garbage += ended
        assert len(self.reservations()) == len(active)

    @rule(data=st.data(), op=st.sampled_from(["create", "update", "reserve", "release", "cleanup"]))
    def crash_during_a_write(self, data: st.DataObject, op: str) -> None:
        """The operation's write fails (as if the process died before it reached the disk); the node restarts."""
        coro = self._operation(data, op)
        if coro is None:
            return
        before = dict(self.kv.iterate(""))
        self.kv.fail_next_write()
        with contextlib.suppress(CodexError):
            self.run(coro)
        # Refused or failed, the operation left nothing behind; and had it succeeded, it wrote nothing (any write
        # would have failed).
        assert dict(self.kv.iterate("")) == before
        with contextlib.suppress(KVError):
            self.kv.put("test/spend-the-injected-failure", b"")  # in case the operation never tried to write
        self.kv.delete("test/spend-the-injected-failure")
        self.restart()

    def _operation(self, data: st.DataObject, op: str) -> Coroutine[Any, Any, object] | None:
        availabilities = self.availabilities()
        reservations = self.reservations()
        if op == "create":
            return self.book.create_availability(
                AvailabilityTerms(total_size=G, duration=1, min_price_per_byte_per_second=1, total_collateral=G)
            )
        if op == "update" and availabilities:
            a = data.draw(st.sampled_from(availabilities))
            return self.book.update_availability(a.id, AvailabilityPatch(total_size=a.total_size + G))
        if op == "reserve" and availabilities:
            a = data.draw(st.sampled_from(availabilities))
            return self.book.create_reservation(a.id, G // 2, RequestId(b"\xee" * 32), 0, 0, 0)
        if op == "release" and reservations:
            r = data.draw(st.sampled_from(reservations))
            return self.book.release(r.id, r.availability_id, r.size)
        if op == "cleanup" and reservations:
            r = data.draw(st.sampled_from(reservations))
            return self.book.delete_reservation(r.id, r.availability_id, r.collateral)
        return None

    def restart(self) -> None:
        self.ledger = self.ledger.reopen()
        self.book = Reservations(self.ledger, new_id=self.new_id)

    # --- the books ------------------------------------------------------------------------------------------------

    @invariant()
    def books_balance(self) -> None:
        on_disk = FakeQuotaLedger(self.kv, QUOTA).quota
        assert on_disk == self.ledger.quota
        reservations = self.reservations()
        problems = check_books(
            self.availabilities(),
            reservations,
            reserved=on_disk.reserved,
            used=on_disk.used,
            stored=sum(r.downloaded for r in reservations) + self.garbage,
            quota_max=on_disk.max,
        )
        assert problems == []


BooksMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestBooks = BooksMachine.TestCase
