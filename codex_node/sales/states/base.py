"""The base of every sales state: pure event hooks and the declared transition set.

A state's ``run`` does the state's work against the agent's context and returns the next state. Chain events
reach a state through three hooks (``on_cancelled``, ``on_failed``, ``on_slot_filled``); a hook is a pure method
that returns the next state or ``None`` when the event does not matter in this state. Hooks never do I/O, so they
are tested as plain calls.

Every state declares in ``transitions`` the names of the states its ``run`` and its hooks may return. The protocol
test derives the sales state graph from these declarations and checks them against what the states really do.

``terminal`` (of the generic machine, which enforces that nothing leaves such a state) marks the states in which
a sale ends: their ``run`` performs the clean-up (bytes and collateral back to the availability, block expiry
lowered), exactly once, through :meth:`SalesAgent.end_sale`.

A state must never catch ``asyncio.CancelledError``: entering a new state cancels the previous ``run``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, ClassVar, TypeVar

from codex_node.errors import CodexError
from codex_node.utils.asyncstatemachine import State

if TYPE_CHECKING:
    from codex_node.sales.agent import SalesAgent

T = TypeVar("T")


class SaleState(State["SalesAgent"]):
    """One step of a sale. Subclasses override ``run`` and the hooks they react to."""

    transitions: ClassVar[frozenset[str]] = frozenset()
    """Names of the states that ``run`` or a hook of this state may return."""

    api_name: ClassVar[str] = ""
    """The name the REST API reports (nim-codex's ``Sale…`` names)."""

    async def run(self, machine: SalesAgent) -> SaleState | None:
        return None

    def on_cancelled(self) -> SaleState | None:
        """The request was cancelled (expired unfilled, or the client withdrew)."""
        return None

    def on_failed(self) -> SaleState | None:
        """The request failed (too many slots lost)."""
        return None

    def on_slot_filled(self) -> SaleState | None:
        """``SlotFilled`` was seen for this agent's slot (by any host, possibly this one)."""
        return None

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        if not cls.__dict__.get("api_name"):
            cls.api_name = "Sale" + cls.__name__


async def complete_despite_cancel(operation: Awaitable[T], keep: Callable[[T], None]) -> T:
    """Await ``operation``; if the caller is cancelled meanwhile, let the operation finish first, then re-raise.

    ``keep`` receives the result however the wait ends, so a record the operation wrote (a reservation) is
    never lost to a cancellation that arrived while it was being written. Use only for short local operations:
    the caller's cancellation is delayed until the operation is done.
    """
    task = asyncio.ensure_future(operation)

    def record(done: asyncio.Future[T]) -> None:
        if not done.cancelled() and done.exception() is None:
            keep(done.result())

    task.add_done_callback(record)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise


async def free_slot_if_hosted(agent: SalesAgent) -> None:
    """``freeSlot`` if the chain names us as the slot's host: a cancelled slot pays out, a failed one leaves
    ``mySlots``. A failure is logged, not escalated: the slot stays in ``mySlots`` and a restart resumes it through
    Unknown, which ends here again. What came back is read afterwards (``SalesAgent.end_sale``)."""
    try:
        if await agent.hosts_slot():
            await agent.context.market.free_slot(agent.slot_id)
    except CodexError as e:
        agent.log.warning("could not free the slot", error=repr(e))
