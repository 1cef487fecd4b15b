"""Behaviour of the generic async state machine."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from structlog.testing import capture_logs

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


# --- nothing plugged in can kill the scheduler (issue 7 item 11) ---------------------------------------------------


class Touchy(S):
    """An event hook that raises."""

    def on_poke(self) -> S | None:
        raise ValueError("hook bug")


def settle_on(m: M, cls: type[S]) -> Any:
    return asyncio.wait_for(m.wait_for_state(lambda s: isinstance(s, cls)), timeout=5)


async def test_an_event_hook_that_raises_is_logged_and_later_events_still_apply() -> None:
    m = M()
    m.start(Touchy())
    await settle_on(m, Touchy)
    with capture_logs() as logs:
        m.schedule(poke, "bad")
        m.schedule(lambda _s: Idle(), "good")
        await settle_on(m, Idle)
    assert next(e for e in logs if e["event"] == "state machine event failed")["cause"] == "bad"
    m.schedule(poke, "poke")
    await settle_on(m, Working)
    await m.stop()


async def test_a_listener_that_raises_neither_stops_the_new_states_run_nor_later_events() -> None:
    m = M()
    seen: list[str] = []

    def bad_listener(_m: Machine[Any], _frm: State[Any] | None, to: State[Any], _cause: str) -> None:
        raise RuntimeError(f"listener bug at {to.name}")

    m.add_listener(bad_listener)
    m.add_listener(lambda _m, _f, to, _c: seen.append(to.name))
    with capture_logs() as logs:
        m.start(Working())
        await asyncio.wait_for(m.gate("started").wait(), timeout=5)  # the run started despite the listener
        m.schedule(poke, "poke")
        await settle_on(m, Interrupted)
        await asyncio.wait_for(m.gate("interrupted").wait(), timeout=5)
    assert seen == ["Working", "Interrupted"]  # the listeners after the bad one are still told
    assert len([e for e in logs if e["event"] == "state machine listener failed"]) == 2
    await m.stop()


async def test_the_new_states_run_is_started_before_the_listeners_are_told() -> None:
    m = M()
    running_when_told: list[bool] = []

    def listener(machine: Machine[Any], _frm: State[Any] | None, _to: State[Any], _cause: str) -> None:
        running = machine._running  # the order is what this test is about
        running_when_told.append(running is not None and not running.done())

    m.add_listener(listener)
    m.start(Working())
    await asyncio.wait_for(m.gate("started").wait(), timeout=5)
    assert running_when_told == [True]
    await m.stop()


class Resurrecting(S):
    """A terminal state whose hook and whose run would both leave it."""

    terminal = True

    async def run(self, machine: M) -> S | None:
        machine.gate("resurrecting").set()
        await machine.gate("leave").wait()
        return Idle()

    def on_poke(self) -> S | None:
        return Idle()


async def test_no_event_and_no_run_result_leaves_a_terminal_state() -> None:
    m = M()
    m.start(Resurrecting())
    await asyncio.wait_for(m.gate("resurrecting").wait(), timeout=5)
    m.schedule(poke, "poke")
    m.gate("leave").set()
    for _ in range(20):
        await asyncio.sleep(0)
    assert isinstance(m.state, Resurrecting)
    assert [t[1] for t in m.transitions] == ["Resurrecting"]
    await m.stop()


class RaisingErrorHook(M):
    def on_run_error(self, state: S, error: Exception) -> S | None:
        raise RuntimeError("error hook bug")


async def test_an_error_hook_that_raises_is_logged_and_the_machine_goes_on() -> None:
    m = RaisingErrorHook()
    with capture_logs() as logs:
        m.start(Boom())
        await settle_on(m, Boom)
        for _ in range(20):
            await asyncio.sleep(0)
    assert any(e["event"] == "state machine error hook failed" for e in logs)
    m.schedule(lambda _s: Idle(), "later")
    await settle_on(m, Idle)
    await m.stop()


async def test_a_waiter_whose_predicate_raises_gets_the_error_and_the_machine_goes_on() -> None:
    m = M()

    def bad(_s: S) -> bool:
        raise KeyError("predicate bug")

    waiter = asyncio.ensure_future(m.wait_for_state(bad))
    await asyncio.sleep(0)
    m.start(Idle())
    with pytest.raises(KeyError):
        await asyncio.wait_for(waiter, timeout=5)
    m.schedule(poke, "poke")
    await settle_on(m, Working)
    await m.stop()
