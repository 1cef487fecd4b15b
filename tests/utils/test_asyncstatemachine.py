"""Behaviour of the generic async state machine."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from codex_node.utils.asyncstatemachine import Machine, State


class M(Machine["S"]):
    def __init__(self) -> None:
        self.transitions: list[tuple[str | None, str, str]] = []
        super().__init__([self._record])
        self.log: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}

    def _record(self, _m: Machine[Any], frm: State[Any] | None, to: State[Any], cause: str) -> None:
        self.transitions.append((frm.name if frm else None, to.name, cause))

    def gate(self, name: str) -> asyncio.Event:
        return self.gates.setdefault(name, asyncio.Event())

    def on_run_error(self, state: S, error: Exception) -> S | None:
        return Broken(str(error))


class S(State[M]):
    def on_poke(self) -> S | None:
        return None


class Idle(S):
    def on_poke(self) -> S | None:
        return Working()


class Working(S):
    async def run(self, machine: M) -> S | None:
        machine.log.append("working:start")
        machine.gate("started").set()
        try:
            await machine.gate("work").wait()
        except asyncio.CancelledError:
            machine.log.append("working:cancelled")
            raise
        machine.log.append("working:done")
        return Done()

    def on_poke(self) -> S | None:
        return Interrupted()


class Interrupted(S):
    async def run(self, machine: M) -> S | None:
        machine.log.append("interrupted:run")
        machine.gate("interrupted").set()
        return None


class Racing(S):
    """The external event is queued before this run's own result: the event must win."""

    async def run(self, machine: M) -> S | None:
        machine.schedule(poke, "external")
        return Done()

    def on_poke(self) -> S | None:
        return Interrupted()


class Done(S):
    terminal = True


class Boom(S):
    async def run(self, machine: M) -> S | None:
        raise ValueError("kaput")


class Broken(S):
    def __init__(self, why: str) -> None:
        self.why = why


class Chain(S):
    """Runs straight into the next state: A → B → C without events."""

    def __init__(self, n: int) -> None:
        self.n = n

    async def run(self, machine: M) -> S | None:
        return Chain(self.n - 1) if self.n > 0 else Done()


def poke(s: S) -> S | None:
    return s.on_poke()


async def test_start_enters_initial_state_and_its_run_result_becomes_the_next_state() -> None:
    m = M()
    m.start(Chain(2))
    await m.wait_for_state(lambda s: isinstance(s, Done))
    assert [t[1] for t in m.transitions] == ["Chain", "Chain", "Chain", "Done"]
    assert m.transitions[0] == (None, "Chain", "start")
    assert all(cause == "run" for _, _, cause in m.transitions[1:])
    await m.stop()


async def test_event_moves_state_and_unhandled_event_is_ignored() -> None:
    m = M()
    m.start(Idle())
    await m.wait_for_state(lambda s: isinstance(s, Idle))
    m.schedule(poke, "poke")
    await m.wait_for_state(lambda s: isinstance(s, Working))
    assert isinstance(m.state, Working)
    await m.stop()


async def test_entering_a_new_state_cancels_and_awaits_the_previous_run_first() -> None:
    m = M()
    m.start(Working())
    await m.wait_for_state(lambda s: isinstance(s, Working))
    await m.gate("started").wait()
    m.schedule(poke, "poke")
    await m.wait_for_state(lambda s: isinstance(s, Interrupted))
    await m.gate("interrupted").wait()
    assert m.log == ["working:start", "working:cancelled", "interrupted:run"]
    await m.stop()


async def test_late_run_result_does_not_override_a_state_an_event_already_replaced() -> None:
    m = M()
    m.start(Racing())
    await m.wait_for_state(lambda s: isinstance(s, Interrupted))
    await m.wait_for_state(lambda s: isinstance(s, Interrupted))
    # Let the queued stale transition (Racing → Done) be processed; it must be dropped.
    for _ in range(10):
        await asyncio.sleep(0)
    assert isinstance(m.state, Interrupted)
    assert [t[1] for t in m.transitions] == ["Racing", "Interrupted"]
    await m.stop()


async def test_events_are_applied_in_the_order_they_were_scheduled() -> None:
    m = M()
    m.start(Idle())
    await m.wait_for_state(lambda s: isinstance(s, Idle))
    m.schedule(poke, "first")  # Idle → Working
    m.schedule(poke, "second")  # Working → Interrupted
    await m.wait_for_state(lambda s: isinstance(s, Interrupted))
    assert [(t[1], t[2]) for t in m.transitions] == [("Idle", "start"), ("Working", "first"), ("Interrupted", "second")]
    await m.stop()


async def test_run_error_goes_through_on_run_error() -> None:
    m = M()
    m.start(Boom())
    broken = await m.wait_for_state(lambda s: isinstance(s, Broken))
    assert isinstance(broken, Broken)
    assert broken.why == "kaput"
    assert m.transitions[-1] == ("Boom", "Broken", "error: ValueError")
    await m.stop()


async def test_stop_cancels_the_running_state_and_leaves_no_task_behind() -> None:
    before = len(asyncio.all_tasks())
    m = M()
    m.start(Working())
    await m.gate("started").wait()
    await m.stop()
    assert m.log == ["working:start", "working:cancelled"]
    assert len(asyncio.all_tasks()) == before
    assert not m.started


async def test_schedule_after_stop_is_ignored_and_stop_is_idempotent() -> None:
    m = M()
    m.start(Idle())
    await m.wait_for_state(lambda s: isinstance(s, Idle))
    await m.stop()
    m.schedule(poke, "late")
    await m.stop()
    assert isinstance(m.state, Idle)


async def test_cancelling_stop_propagates_to_its_caller() -> None:
    m = M()
    m.start(Working())
    await m.gate("started").wait()
    stopper = asyncio.create_task(m.stop())
    stopper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopper
    await m.stop()


async def test_starting_twice_is_refused() -> None:
    m = M()
    m.start(Idle())
    with pytest.raises(RuntimeError):
        m.start(Idle())
    await m.stop()
