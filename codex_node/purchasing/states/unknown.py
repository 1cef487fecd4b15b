from __future__ import annotations

from typing import ClassVar

from codex_node.market.types import RequestState
from codex_node.purchasing.machine import PurchaseMachine, PurchaseState


async def state_on_chain(machine: PurchaseMachine) -> PurchaseState:
    """The state the chain's view of the request puts the purchase in."""
    from codex_node.purchasing.states.cancelled import PurchaseCancelled
    from codex_node.purchasing.states.errored import PurchaseErrored
    from codex_node.purchasing.states.failed import PurchaseFailed
    from codex_node.purchasing.states.finished import PurchaseFinished
    from codex_node.purchasing.states.started import PurchaseStarted
    from codex_node.purchasing.states.submitted import PurchaseSubmitted

    state = await machine.context.market.request_state(machine.request_id)
    if state is None:
        return PurchaseErrored("the request is not on the chain: it was never posted (the node stopped first)")
    return {
        RequestState.NEW: PurchaseSubmitted,
        RequestState.STARTED: PurchaseStarted,
        RequestState.CANCELLED: PurchaseCancelled,
        RequestState.FINISHED: PurchaseFinished,
        RequestState.FAILED: PurchaseFailed,
    }[state]()


class PurchaseUnknown(PurchaseState):
    """After a restart: the purchase continues in the state the chain's view of its request says."""

    api_name: ClassVar[str] = "unknown"

    async def run(self, machine: PurchaseMachine) -> PurchaseState | None:
        return await state_on_chain(machine)
