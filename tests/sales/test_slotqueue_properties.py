"""Property tests of the slot-queue order and of the queue against a plain reference model."""

from __future__ import annotations

import functools
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from codex_node.errors import SlotQueueItemExistsError
from codex_node.market.types import RequestId
from codex_node.sales.slotqueue import SlotQueue, SlotQueueItem


def reference_compare(a: SlotQueueItem, b: SlotQueueItem) -> int:
    """MARKETPLACE.md §3 written out criterion by criterion: negative when ``a`` is served before ``b``."""
    if a.seen != b.seen:
        return -1 if not a.seen else 1
    if a.price_per_byte_per_second != b.price_per_byte_per_second:
        return -1 if a.price_per_byte_per_second > b.price_per_byte_per_second else 1
    # collateral per byte, compared exactly by cross-multiplying
    left, right = a.collateral * b.slot_size, b.collateral * a.slot_size
    if left != right:
        return -1 if left < right else 1
    if a.expires_at != b.expires_at:
        return -1 if a.expires_at > b.expires_at else 1
    if a.slot_size != b.slot_size:
        return -1 if a.slot_size < b.slot_size else 1
    return 0


def sign(x: int) -> int:
    return (x > 0) - (x < 0)


def key_compare(a: SlotQueueItem, b: SlotQueueItem) -> int:
    return -1 if a.key < b.key else (1 if a.key > b.key else 0)


# Small ranges so that ties on each criterion are frequent and the later criteria get exercised.
items_st = st.builds(
    SlotQueueItem,
    request_id=st.integers(0, 5).map(lambda n: RequestId(n.to_bytes(32, "big"))),
    slot_index=st.integers(0, 3),
    slot_size=st.sampled_from([1, 2, 3, 7, 64, 1 << 20]),
    duration=st.just(100),
    price_per_byte_per_second=st.integers(0, 3),
    collateral=st.integers(0, 3).map(lambda c: c * 7) | st.integers(0, 1 << 70),
    expires_at=st.integers(0, 3),
    seen=st.booleans(),
)


@given(items_st, items_st)
def test_sort_key_agrees_with_the_reference_comparator(a: SlotQueueItem, b: SlotQueueItem) -> None:
    assert key_compare(a, b) == sign(reference_compare(a, b))
    assert key_compare(a, b) == -key_compare(b, a)


@given(st.lists(items_st, max_size=30))
def test_sorting_by_key_is_sorting_by_the_reference_comparator(items: list[SlotQueueItem]) -> None:
    by_key = sorted(items, key=lambda i: i.key)
    by_reference = sorted(items, key=functools.cmp_to_key(reference_compare))
    # Both sorts are stable, so equal items keep their input order in both: the sequences must be identical.
    assert [id(i) for i in by_key] == [id(i) for i in by_reference]


@given(items_st, items_st, items_st)
def test_order_is_transitive(a: SlotQueueItem, b: SlotQueueItem, c: SlotQueueItem) -> None:
    if key_compare(a, b) <= 0 and key_compare(b, c) <= 0:
        assert key_compare(a, c) <= 0


@given(items_st)
def test_collateral_per_byte_in_the_key_is_exact(i: SlotQueueItem) -> None:
    whole, fraction = i.key[2], i.key[3]
    assert whole + fraction == Fraction(i.collateral, i.slot_size)


class QueueAgainstModel(RuleBasedStateMachine):
    """The queue behaves like a plain list sorted by (key, push order) and truncated to ``max_size``."""

    MAX = 5

    def __init__(self) -> None:
        super().__init__()
        self.queue = SlotQueue(max_size=self.MAX, max_workers=1)
        self.model: list[tuple[SlotQueueItem, int]] = []  # (item, push number)
        self.pushes = 0

    def _sorted(self) -> list[tuple[SlotQueueItem, int]]:
        return sorted(self.model, key=lambda e: (e[0].key, e[1]))

    @rule(it=items_st)
    def push(self, it: SlotQueueItem) -> None:
        if any(m == it for m, _ in self.model):
            try:
                self.queue.push(it)
            except SlotQueueItemExistsError:
                return
            raise AssertionError("duplicate accepted")
        self.pushes += 1
        candidate = [*self.model, (it, self.pushes)]
        ordered = sorted(candidate, key=lambda e: (e[0].key, e[1]))
        kept = ordered[: self.MAX]
        expected_added = any(e[0] is it for e in kept)
        assert self.queue.push(it) is expected_added
        self.model = kept

    @rule()
    def pop(self) -> None:
        got = self.queue.pop_nowait()
        if not self.model:
            assert got is None
            return
        best = self._sorted()[0]
        assert got is not None
        assert (got.ident, got.key) == (best[0].ident, best[0].key)
        self.model.remove(best)

    @rule(n=st.integers(0, 5), index=st.integers(0, 3))
    def delete(self, n: int, index: int) -> None:
        request_id = RequestId(n.to_bytes(32, "big"))
        present = [e for e in self.model if e[0].ident == (request_id, index)]
        assert self.queue.delete(request_id, index) is bool(present)
        for e in present:
            self.model.remove(e)

    @rule(n=st.integers(0, 5))
    def delete_request(self, n: int) -> None:
        request_id = RequestId(n.to_bytes(32, "big"))
        present = [e for e in self.model if e[0].request_id == request_id]
        assert self.queue.delete_request(request_id) == len(present)
        for e in present:
            self.model.remove(e)

    @rule()
    def clear_seen(self) -> None:
        self.queue.clear_seen_flags()
        self.model = [(it.with_seen(False) if it.seen else it, n) for it, n in self.model]

    @invariant()
    def same_contents_in_the_same_order(self) -> None:
        assert len(self.queue) == len(self.model)
        expected = [(e[0].ident, e[0].seen) for e in self._sorted()]
        assert [(i.ident, i.seen) for i in self.queue.items()] == expected

    @invariant()
    def lazy_deletion_keeps_the_heaps_small(self) -> None:
        # White-box: dead entries are compacted away once they outnumber the live ones.
        q = self.queue
        assert len(q._best) <= 2 * len(q) + 32
        assert q._worst is None or len(q._worst) <= 2 * len(q) + 32


QueueAgainstModel.TestCase.settings = settings(max_examples=200, stateful_step_count=60, deadline=None)
TestQueueAgainstModel = QueueAgainstModel.TestCase
