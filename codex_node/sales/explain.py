"""Whether this node would take a live storage request, and why: the dry run behind
``GET /sales/requests/{requestId}/match``.

:func:`explain_request` applies the same rules a sale applies in ``Preparing`` — the request is still open, an
availability passes every matching rule (``matching.explain``; the best fit is the one a sale would take), and the
wallet holds the slot's collateral — to facts the caller read, and says which failed. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from codex_node.market.types import Ask, RequestState
from codex_node.sales.availability import Availability
from codex_node.sales.matching import AvailabilityVerdict, best_fit, explain
from codex_node.sales.wallet import short_of_collateral


@dataclass(frozen=True, slots=True)
class RequestExplanation:
    would_take: bool
    reasons: tuple[str, ...]
    """Why not (empty when the node would take it)."""
    notes: tuple[str, ...]
    """What the operator should know that does not stop a sale."""
    verdicts: tuple[AvailabilityVerdict, ...]
    """Every availability, every rule."""
    chosen: bytes | None
    """The availability a sale would reserve from (the best fit), if any passes."""


def explain_request(
    ask: Ask,
    *,
    state: RequestState | None,
    now: int,
    expires_at: int,
    request_end: int,
    availabilities: Sequence[Availability],
    wallet_balance: int,
    slot_collateral: int,
) -> RequestExplanation:
    """Would a sale of this request's slot go ahead now? ``state`` ``None``: the chain does not know it."""
    reasons: list[str] = []
    notes: list[str] = []
    if state is None:
        reasons.append("the request is not on chain")
    elif state == RequestState.NEW:
        if now >= expires_at:
            reasons.append(f"the request expired at {expires_at} (now {now}) before all its slots were filled")
    elif state == RequestState.STARTED:
        if now >= request_end:
            reasons.append(f"the request's contract ended at {request_end}")
        else:
            notes.append("the request has started: only a slot freed for repair can be taken")
    else:
        reasons.append(f"the request is {state.name.lower()}")
    slot = {
        "slot_size": ask.slot_size,
        "duration": ask.duration,
        "price_per_byte_per_second": ask.price_per_byte_per_second,
        "collateral_per_byte": ask.collateral_per_byte,
        "valid_until": request_end,
    }
    verdicts = tuple(explain(a, **slot) for a in availabilities)
    chosen = best_fit(availabilities, **slot)
    if chosen is None:
        reasons.append("no availability passes every rule" if verdicts else "there are no availabilities")
    if wallet_balance < slot_collateral:
        reasons.append(short_of_collateral(wallet_balance, slot_collateral))
    return RequestExplanation(
        would_take=not reasons,
        reasons=tuple(reasons),
        notes=tuple(notes),
        verdicts=verdicts,
        chosen=None if chosen is None else chosen.id,
    )
