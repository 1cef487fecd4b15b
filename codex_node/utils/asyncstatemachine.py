"""A generic async state machine: one active state whose ``run`` returns the next state.

Model (after nim-codex's ``asyncstatemachine``, with its lessons applied):

- A :class:`State` has ``async run(machine) -> State | None``. Entering a state starts its ``run`` as a task.
- Everything that changes the state goes through one queue of :data:`Event` functions, applied in order by one
  scheduler task. An event maps the current state to the next one, or to ``None`` (ignored in this state).
- Entering a new state first cancels the previous ``run`` and waits for it to finish.
- **Stale-transition guard**: the result of ``run`` is queued as an event that applies only while the machine is
  still in the state that produced it. An external event that already moved the machine wins.
- Every task is owned: :meth:`Machine.stop` cancels and awaits the scheduler and the running state.
  ``CancelledError`` is never swallowed here; a ``run`` that is cancelled simply ends.
- A ``run`` that raises an unexpected exception is handed to :meth:`Machine.on_run_error`, which may return a
  state to go to (a domain machine returns its error state).
- Listeners (:class:`TransitionListener`) see every transition as ``(machine, from, to, cause)``: logging,
  metrics and history plug in there. A new state's ``run`` is started *before* the listeners are told.
- **Nothing a caller plugs in can kill the scheduler**: an event function, a listener or ``on_run_error`` that
  raises is logged and the machine goes on (the event is dropped, the other listeners still run, the state
  stays). Without this one bad hook ended the scheduler task silently and every later event was lost.
- **A terminal state is final**: once the machine is in a state whose ``terminal`` is true, no event and no
  ``run`` result moves it anywhere else.

This module must never import domain code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Generic, Protocol, TypeVar, cast

import structlog

log = structlog.get_logger(__name__)

M = TypeVar("M", bound="Machine[Any]")
S = TypeVar("S", bound="State[Any]")


class State(Generic[M]):
    """One state. Subclasses override :meth:`run` and, for a domain, their own event hooks."""

    terminal: ClassVar[bool] = False
    """A terminal state ends the machine's useful life; no transition leaves it."""

    @property
    def name(self) -> str:
        return type(self).__name__

    async def run(self, machine: M) -> State[M] | None:
        """Do this state's work; return the next state, or ``None`` to stay until an event arrives."""
        return None

    def __repr__(self) -> str:
        return self.name


Event = Callable[[S], "S | None"]
"""Maps the current state to the next state, or ``None`` when the event does not apply to it."""


class TransitionListener(Protocol):
    def __call__(
        self, machine: Machine[Any], from_state: State[Any] | None, to_state: State[Any], cause: str
    ) -> None: ...


class Machine(Generic[S]):
    """Runs one state at a time. Start with :meth:`start`, feed events with :meth:`schedule`, end with :meth:`stop`."""

    def __init__(self, listeners: Iterable[TransitionListener] = ()) -> None:
        self._state: S | None = None
        self._queue: asyncio.Queue[tuple[Callable[[S | None], S | None], str]] = asyncio.Queue()
        self._scheduler: asyncio.Task[None] | None = None
        self._running: asyncio.Task[None] | None = None
        self._started = False
        self._listeners: list[TransitionListener] = list(listeners)
        self._waiters: list[tuple[Callable[[S], bool], asyncio.Future[S]]] = []

    # --- public API ---------------------------------------------------------------------------------------

    @property
    def state(self) -> S | None:
        return self._state

    @property
    def started(self) -> bool:
        return self._started

    def add_listener(self, listener: TransitionListener) -> None:
        self._listeners.append(listener)

    def start(self, initial: S) -> None:
        if self._started:
            raise RuntimeError("machine already started")
        self._started = True
        self._scheduler = asyncio.get_running_loop().create_task(
            self._schedule_loop(), name=f"{type(self).__name__}-scheduler"
        )
        self._put(lambda _current: initial, "start")

    def schedule(self, event: Callable[[S], S | None], cause: str) -> None:
        """Queue ``event``; it is applied after every event queued before it. Ignored once stopped."""
        if not self._started:
            return

        def apply(current: S | None) -> S | None:
            return None if current is None else event(current)

        self._put(apply, cause)

    async def stop(self) -> None:
        """Cancel the scheduler and the running state and wait for both to finish."""
        self._started = False
        tasks = [t for t in (self._scheduler, self._running) if t is not None and not t.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self._scheduler = None
        self._running = None

    async def wait_for_state(self, predicate: Callable[[S], bool]) -> S:
        """Return the first state (the current one included) for which ``predicate`` holds."""
        if self._state is not None and predicate(self._state):
            return self._state
        fut: asyncio.Future[S] = asyncio.get_running_loop().create_future()
        self._waiters.append((predicate, fut))
        try:
            return await fut
        finally:
            self._waiters = [(p, f) for p, f in self._waiters if f is not fut]

    async def perform(self, state: S) -> State[Any] | None:
        """Run ``state``'s work. A domain machine may wrap it (before and after); the default only runs it."""
        return await state.run(self)

    def on_run_error(self, state: S, error: Exception) -> S | None:
        """A state's ``run`` raised ``error``. Return a state to enter, or ``None`` to stay. Default: stay."""
        log.error("state run failed", machine=type(self).__name__, state=state.name, error=repr(error))
        return None

    # --- internals ----------------------------------------------------------------------------------------

    def _put(self, event: Callable[[S | None], S | None], cause: str) -> None:
        self._queue.put_nowait((event, cause))

    async def _schedule_loop(self) -> None:
        while True:
            event, cause = await self._queue.get()
            current = self._state
            if current is not None and current.terminal:
                log.debug("event after a terminal state dropped", machine=type(self).__name__, cause=cause)
                continue
            try:
                next_state = event(current)
            except Exception:  # a raising event hook must not end the scheduler (module doc)
                log.exception(
                    "state machine event failed",
                    machine=type(self).__name__,
                    state=None if current is None else current.name,
                    cause=cause,
                )
                continue
            if next_state is not None:
                await self._enter(next_state, cause)

    async def _enter(self, next_state: S, cause: str) -> None:
        previous = self._state
        running = self._running
        if running is not None and not running.done():
            running.cancel()
            await asyncio.wait([running])
        self._state = next_state
        # The run first: whatever a listener does, the state does its work.
        self._running = asyncio.get_running_loop().create_task(
            self._run_state(next_state), name=f"{type(self).__name__}-{next_state.name}"
        )
        for listener in self._listeners:
            try:
                listener(self, previous, next_state, cause)
            except Exception:  # a raising listener must not end the scheduler (module doc)
                log.exception(
                    "state machine listener failed",
                    machine=type(self).__name__,
                    state=next_state.name,
                    listener=getattr(listener, "__qualname__", repr(listener)),
                )
        for predicate, fut in self._waiters:
            if fut.done():
                continue
            try:
                matched = predicate(next_state)
            except Exception as e:  # noqa: BLE001 - the waiter gets its own predicate's error, the scheduler goes on
                fut.set_exception(e)
                continue
            if matched:
                fut.set_result(next_state)

    async def _run_state(self, state: S) -> None:
        next_state: S | None
        try:
            # A state's run returns states of its own machine's family; the cast records that.
            next_state = cast("S | None", await self.perform(state))
        except Exception as e:  # noqa: BLE001 - the machine owns this task; errors become a transition
            cause = f"error: {type(e).__name__}"
            try:
                next_state = self.on_run_error(state, e)
            except Exception:  # the machine owns this task; nobody else would see it
                log.exception(
                    "state machine error hook failed", machine=type(self).__name__, state=state.name, error=repr(e)
                )
                next_state = None
        else:
            cause = "run"
        if next_state is not None and self._started:
            produced_by = state

            def transition(current: S | None) -> S | None:
                # Stale-transition guard: only applies while we are still in the state that produced it.
                return next_state if current is produced_by else None

            self._put(transition, cause)
