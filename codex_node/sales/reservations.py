"""The reservations book: availabilities and reservations persisted beside the repo's quota, always balanced.

Every operation reads the records it needs, computes the new ones with the pure functions of
``sales/accounting.py``, and writes them **in one batch together with the quota record** through
:meth:`QuotaLedger.commit_with_quota` (ARCHITECTURE.md rule 1): a crash at any instant leaves either the whole
change or none of it, so ``quota.reserved == Σ availability.freeSize + Σ reservation.size`` always holds on disk.

All writing operations take one ``asyncio.Lock``. Each is a read-compute-write sequence, and two of them must
never interleave: two agents could otherwise both take an availability's last free bytes (nim-codex #825), or a
clean-up could overwrite a PATCH it read before. Today no step inside awaits, but the lock keeps the guarantee
explicit and survives the store becoming asynchronous (offloading fsync'd writes to a thread). Reads need no
lock: each record is written whole, in one batch.

Errors (the API maps them; all but the first two are 422 on the REST side):

- :class:`AvailabilityNotFoundError`, :class:`ReservationNotFoundError` — 404;
- :class:`ValidationError` — a zero or negative size/duration/price/collateral, ``freeSize`` in a PATCH,
  ``totalSize`` below the bytes in use;
- :class:`QuotaNotEnoughError` — the quota cannot hold the new or additional bytes (nim-codex answered 500, #12);
- :class:`UntilOutOfBoundsError` — ``until`` negative or before a hosted slot's end;
- :class:`CollateralOutOfBoundsError` — ``totalCollateral`` below what hosted slots committed;
- :class:`BytesOutOfBoundsError` — from ``create_reservation``/``release`` only: the availability changed after it
  was matched (a lost race; the sale should be ignored and its slot retried), or more bytes released than held.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Collection, Iterator
from typing import Protocol

import structlog

from codex_node.errors import (
    AvailabilityNotFoundError,
    QuotaNotEnoughError,
    ReservationNotFoundError,
)
from codex_node.market.types import RequestId, SlotId, slot_id
from codex_node.sales import accounting
from codex_node.sales.availability import (
    RESERVATIONS_PREFIX,
    Availability,
    AvailabilityPatch,
    AvailabilityTerms,
    Reservation,
    after_reservations_of,
    availability_key,
    is_availability_key,
    reservation_key,
    reservations_prefix,
)
from codex_node.sales.matching import best_fit
from codex_node.stores.kv import KVStore, WriteBatch

__all__ = [
    "Availability",
    "AvailabilityPatch",
    "AvailabilityTerms",
    "OnAvailabilitySaved",
    "QuotaLedger",
    "Reservation",
    "Reservations",
]

log = structlog.get_logger(__name__)

RECLAIM_GRANULE = 64 * 1024
"""Smallest amount of returning bytes worth a quota check (one block)."""


class QuotaLedger(Protocol):
    """What the book needs from the repo store (``stores.repostore.RepoStore``; tests: ``testing.FakeQuotaLedger``)."""

    @property
    def kv(self) -> KVStore: ...

    def commit_with_quota(self, batch: WriteBatch, reserved_delta: int) -> object:
        """Add ``reserved_delta`` to the quota's reserved bytes and write ``batch`` with the quota record, atomically.

        Raises :class:`QuotaNotEnoughError` (writing nothing) when growth would pass the quota."""
        ...


OnAvailabilitySaved = Callable[[Availability], None]
"""Called after an enabled availability was saved in a way that could admit new slots."""


class Reservations:
    """Availabilities and reservations over a :class:`QuotaLedger`. See the module docstring."""

    def __init__(
        self,
        ledger: QuotaLedger,
        *,
        on_availability_saved: OnAvailabilitySaved | None = None,
        new_id: Callable[[], bytes] = lambda: secrets.token_bytes(32),
    ) -> None:
        self._ledger = ledger
        self._saved_listeners: list[OnAvailabilitySaved] = []
        if on_availability_saved is not None:
            self._saved_listeners.append(on_availability_saved)
        self._new_id = new_id
        self._lock = asyncio.Lock()

    def listen_saved(self, listener: OnAvailabilitySaved) -> Callable[[], None]:
        """Call ``listener`` after every save that could admit new slots (``accounting.admits_more``); returns the
        function that stops it. ``Sales`` listens while it runs, to give the waiting slots another look."""
        self._saved_listeners.append(listener)

        def stop() -> None:
            if listener in self._saved_listeners:
                self._saved_listeners.remove(listener)

        return stop

    # --- availabilities -----------------------------------------------------------------------------------------

    async def create_availability(self, terms: AvailabilityTerms) -> Availability:
        """Offer ``terms.total_size`` bytes (reserved in the quota now) and ``terms.total_collateral`` for sale."""
        availability = accounting.new_availability(self._new_id(), terms)
        async with self._lock:
            batch = self._kv.batch()
            batch.put(availability_key(availability.id), availability.encode())
            self._ledger.commit_with_quota(batch, terms.total_size)
        log.info("availability created", availability_id=availability.id.hex(), total_size=terms.total_size)
        self._saved(None, availability)
        return availability

    async def update_availability(self, availability_id: bytes, patch: AvailabilityPatch) -> Availability:
        """PATCH semantics: only the fields ``patch`` gives change (rules: ``accounting.apply_patch``)."""
        async with self._lock:
            old = self._read_availability(availability_id)
            hosted = list(self._iter_reservations(availability_id))
            new, reserved_delta = accounting.apply_patch(old, patch, hosted)
            if new != old:
                batch = self._kv.batch()
                batch.put(availability_key(new.id), new.encode())
                self._ledger.commit_with_quota(batch, reserved_delta)
        if new != old:
            log.info("availability updated", availability_id=availability_id.hex(), reserved_delta=reserved_delta)
            self._saved(old, new)
        return new

    async def get_availability(self, availability_id: bytes) -> Availability:
        return self._read_availability(availability_id)

    async def availabilities(self) -> list[Availability]:
        """Every availability, in id order."""
        return list(self._iter_availabilities())

    def availability_totals(self) -> list[tuple[str, int, int, int, int]]:
        """``(id hex, total size, free size, total collateral, remaining collateral)`` of every availability.

        Synchronous, for the metrics collector (``sales.metrics.ReservationsCollector``) read at scrape time.
        """
        return [
            (a.id.hex(), a.total_size, a.free_size, a.total_collateral, a.total_remaining_collateral)
            for a in self._iter_availabilities()
        ]

    async def find_availability(
        self,
        size: int,
        duration: int,
        price_per_byte_per_second: int,
        collateral_per_byte: int,
        valid_until: int,
    ) -> Availability | None:
        """The best-fitting availability for a slot (``matching.best_fit``), or ``None``.

        Bytes of ended sales that the quota can take again are reclaimed first, so they count. The answer is
        advisory: :meth:`create_reservation` checks again under the lock.
        """
        await self.reclaim_returning_bytes()
        return best_fit(
            self._iter_availabilities(),
            slot_size=size,
            duration=duration,
            price_per_byte_per_second=price_per_byte_per_second,
            collateral_per_byte=collateral_per_byte,
            valid_until=valid_until,
        )

    async def reclaim_returning_bytes(self) -> int:
        """Move returning bytes back to ``freeSize`` wherever the quota has room now; returns how many moved.

        Called by :meth:`find_availability`; Sales may also call it after the repo's maintenance ran."""
        moved = 0
        changed: list[tuple[Availability, Availability]] = []
        async with self._lock:
            for old in list(self._iter_availabilities()):
                if old.returning_size == 0:
                    continue
                new = self._commit_reclaiming(old, old, reserved_delta=0, extra=None)
                if new != old:
                    moved += new.free_size - old.free_size
                    changed.append((old, new))
        for old, new in changed:
            log.info("returning bytes reclaimed", availability_id=new.id.hex(), nbytes=new.free_size - old.free_size)
            self._saved(old, new)
        return moved

    # --- reservations -------------------------------------------------------------------------------------------

    async def create_reservation(
        self,
        availability_id: bytes,
        slot_size: int,
        request_id: RequestId,
        slot_index: int,
        collateral_per_byte: int,
        valid_until: int,
    ) -> Reservation:
        """Set ``slot_size`` bytes and ``slot_size × collateral_per_byte`` collateral aside for one slot.

        Raises :class:`BytesOutOfBoundsError` when the availability no longer has the room or was disabled since
        it was matched (and :class:`CollateralOutOfBoundsError` / :class:`UntilOutOfBoundsError` for the other
        rules it may have stopped meeting): all races, to be answered by ignoring the slot for now.
        """
        async with self._lock:
            availability = self._read_availability(availability_id)
            new, reservation = accounting.reserve(
                availability,
                reservation_id=self._new_id(),
                slot_size=slot_size,
                request_id=request_id,
                slot_index=slot_index,
                collateral_per_byte=collateral_per_byte,
                valid_until=valid_until,
            )
            batch = self._kv.batch()
            batch.put(availability_key(new.id), new.encode())
            batch.put(reservation_key(new.id, reservation.id), reservation.encode())
            self._ledger.commit_with_quota(batch, 0)
        log.info(
            "reservation created",
            availability_id=availability_id.hex(),
            reservation_id=reservation.id.hex(),
            request_id=request_id.hex(),
            slot_index=slot_index,
            size=slot_size,
            collateral=reservation.collateral,
        )
        return reservation

    async def release(self, reservation_id: bytes, availability_id: bytes, nbytes: int) -> None:
        """``nbytes`` of the slot were stored in the repo: they stop being reserved (the repo counts them used)."""
        async with self._lock:
            reservation = self._read_reservation(availability_id, reservation_id)
            new, reserved_delta = accounting.release(reservation, nbytes)
            batch = self._kv.batch()
            batch.put(reservation_key(availability_id, reservation_id), new.encode())
            self._ledger.commit_with_quota(batch, reserved_delta)

    async def lower_collateral(self, reservation_id: bytes, availability_id: bytes, collateral: int) -> Reservation:
        """The slot takes only ``collateral`` (repair discount): the reservation keeps that much and the rest goes
        back to the availability (``accounting.lower_collateral``). Returns the reservation as now stored."""
        async with self._lock:
            reservation = self._read_reservation(availability_id, reservation_id)
            old = self._read_availability(availability_id)
            new, lowered = accounting.lower_collateral(old, reservation, collateral)
            if lowered == reservation:
                return reservation
            batch = self._kv.batch()
            batch.put(availability_key(new.id), new.encode())
            batch.put(reservation_key(availability_id, reservation_id), lowered.encode())
            self._ledger.commit_with_quota(batch, 0)
        log.info(
            "reservation collateral lowered",
            availability_id=availability_id.hex(),
            reservation_id=reservation_id.hex(),
            collateral=collateral,
            returned=reservation.collateral - collateral,
        )
        self._saved(old, new)
        return lowered

    async def delete_reservation(self, reservation_id: bytes, availability_id: bytes, returned_collateral: int) -> bool:
        """End a sale's reservation: every byte and ``returned_collateral`` go back to the availability, once.

        ``returned_collateral``: what came back (``accounting.collateral_back`` decides it), capped at what the
        reservation committed. Downloaded bytes return through ``returningSize`` if the quota cannot take them yet.
        Returns ``False`` if the reservation was already gone, so a repeated clean-up returns nothing twice
        (nim-codex #1099).
        """
        async with self._lock:
            ended = self._end_reservation(availability_id, reservation_id, returned_collateral)
        if ended is None:
            return False
        old, new = ended
        log.info(
            "reservation deleted",
            availability_id=availability_id.hex(),
            reservation_id=reservation_id.hex(),
            free_size=new.free_size,
            returning_size=new.returning_size,
        )
        self._saved(old, new)
        return True

    async def get_reservation(self, reservation_id: bytes, availability_id: bytes) -> Reservation:
        return self._read_reservation(availability_id, reservation_id)

    async def reservations(self, availability_id: bytes) -> list[Reservation]:
        """The reservations of one availability (404 if it does not exist)."""
        self._read_availability(availability_id)
        return list(self._iter_reservations(availability_id))

    async def all_reservations(self) -> list[Reservation]:
        return [
            Reservation.decode(raw)
            for key, raw in self._kv.iterate(RESERVATIONS_PREFIX)
            if not is_availability_key(key)
        ]

    async def delete_inactive_reservations(
        self,
        active_slot_ids: Collection[SlotId],
        *,
        returned_collateral: Callable[[Reservation], int],
    ) -> int:
        """At start-up: end every reservation whose slot is not active on chain, returning its bytes and collateral
        (nim-codex returned neither, defect #5); ``returned_collateral`` says, per reservation, how much collateral
        came back (``accounting.collateral_back``). Returns how many reservations were deleted."""
        active = set(active_slot_ids)
        deleted = 0
        for reservation in await self.all_reservations():
            if slot_id(reservation.request_id, reservation.slot_index) in active:
                continue
            returned = returned_collateral(reservation)
            if await self.delete_reservation(reservation.id, reservation.availability_id, returned):
                deleted += 1
        if deleted:
            log.info("inactive reservations deleted", count=deleted)
        return deleted

    # --- internals ------------------------------------------------------------------------------------------------

    @property
    def _kv(self) -> KVStore:
        return self._ledger.kv

    def _end_reservation(
        self, availability_id: bytes, reservation_id: bytes, returned_collateral: int
    ) -> tuple[Availability, Availability] | None:
        raw = self._kv.get(reservation_key(availability_id, reservation_id))
        if raw is None:
            return None
        reservation = Reservation.decode(raw)
        old = self._read_availability(availability_id)
        ended = accounting.end_reservation(old, reservation, returned_collateral)
        key = reservation_key(availability_id, reservation_id)
        return old, self._commit_reclaiming(old, ended, reserved_delta=0, extra=lambda b: b.delete(key))

    def _commit_reclaiming(
        self,
        old: Availability,
        new: Availability,
        *,
        reserved_delta: int,
        extra: Callable[[WriteBatch], None] | None,
    ) -> Availability:
        """Write ``new`` (plus ``extra`` operations), reclaiming as many of its returning bytes as the quota takes.

        Tries all of them, then halves down to one block, then none. A refused commit writes nothing, so the
        tries cost only a quota check each. Skips the write entirely when nothing would change.
        """
        for nbytes in _reclaim_tries(new.returning_size):
            candidate, delta = accounting.reclaim(new, nbytes)
            if candidate == old and extra is None:
                return old
            batch = self._kv.batch()
            if extra is not None:
                extra(batch)
            batch.put(availability_key(candidate.id), candidate.encode())
            try:
                self._ledger.commit_with_quota(batch, reserved_delta + delta)
            except QuotaNotEnoughError:
                if nbytes == 0:
                    raise
                continue
            return candidate
        raise AssertionError("unreachable: the last try reclaims nothing")

    def _saved(self, old: Availability | None, new: Availability) -> None:
        if not self._saved_listeners or not accounting.admits_more(old, new):
            return
        for listener in list(self._saved_listeners):
            try:
                listener(new)
            except Exception:
                # The record is written; a failing listener must not turn a successful operation into an error.
                log.exception("availability-saved callback failed", availability_id=new.id.hex())

    def _read_availability(self, availability_id: bytes) -> Availability:
        raw = self._kv.get(availability_key(availability_id))
        if raw is None:
            raise AvailabilityNotFoundError(f"availability {availability_id.hex()} not found")
        return Availability.decode(raw)

    def _read_reservation(self, availability_id: bytes, reservation_id: bytes) -> Reservation:
        raw = self._kv.get(reservation_key(availability_id, reservation_id))
        if raw is None:
            raise ReservationNotFoundError(
                f"reservation {reservation_id.hex()} of availability {availability_id.hex()} not found"
            )
        return Reservation.decode(raw)

    def _iter_reservations(self, availability_id: bytes) -> Iterator[Reservation]:
        for _, raw in self._kv.iterate(reservations_prefix(availability_id)):
            yield Reservation.decode(raw)

    def _iter_availabilities(self) -> Iterator[Availability]:
        """Availabilities only: after each one, skip past its reservations instead of reading them."""
        cursor: str | None = None
        while True:
            found = next(iter(self._kv.iterate(RESERVATIONS_PREFIX, start_after=cursor, limit=1)), None)
            if found is None:
                return
            key, raw = found
            if is_availability_key(key):
                availability = Availability.decode(raw)
                yield availability
                cursor = after_reservations_of(availability.id)
            else:
                cursor = key  # a reservation whose availability record is missing: step over it


def _reclaim_tries(returning: int) -> Iterator[int]:
    n = returning
    while n >= RECLAIM_GRANULE or (n > 0 and n == returning):
        yield n
        n //= 2
    yield 0
