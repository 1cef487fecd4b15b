"""``GET /api/codex/v1/validator``: what the node's validator (``--validator``) watches and has done.

Read-only. A node started without ``--validator`` answers ``enabled: false`` with the counts at zero, so a
dashboard or script need not tell "no validator" from an error. The same numbers are Prometheus metrics
(``codex_validator_*``); this route is for a quick look.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import Field

from codex_node.api.schemas import CamelModel
from codex_node.api.services import ServicesDep

router = APIRouter(tags=["Node"])


class ValidatorState(CamelModel):
    enabled: bool
    groups: int | None = None
    """``--validator-groups`` (``null``: one group, every slot)."""
    group_index: int = 0
    slots_watched: int = 0
    last_period: int | None = None
    """The latest proof period the validator checked (``null`` before its first round)."""
    proofs_marked: int = 0
    mark_failures: dict[str, int] = Field(default_factory=dict)
    """Failed markings by reason: the contract error's name when the transaction reverted, else the error type."""
    lapsed_periods: int = 0
    """Periods whose marking window closed before the validator checked them."""


@router.get("/validator", summary="The validator's group, watched slots and the proofs it marked missing")
async def validator_state(services: ServicesDep) -> ValidatorState:
    if services.validator is None:
        return ValidatorState(enabled=False)
    s = services.validator.status()
    return ValidatorState(
        enabled=True,
        groups=s.groups,
        group_index=s.group_index,
        slots_watched=s.slots_watched,
        last_period=s.last_period,
        proofs_marked=s.proofs_marked,
        mark_failures=s.mark_failures,
        lapsed_periods=s.lapsed_periods,
    )
