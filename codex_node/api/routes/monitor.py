"""What the monitor keeps, for the dashboard and ``codex-node status``: alerts, storage samples, proof margins.

Read-only routes under ``/api/codex/v1`` (``monitor/``). Samples and margins live in memory: a restarted node
starts with none.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import Field

from codex_node.api.schemas import CamelModel, error_responses
from codex_node.api.services import MonitorDep, SalesDep

router = APIRouter(tags=["Monitor"])


class AlertItem(CamelModel):
    key: str
    severity: str
    message: str
    since: int


class Alerts(CamelModel):
    active: list[AlertItem]
    checked_at: int | None


class SpaceSample(CamelModel):
    at: int
    quota_max_bytes: int
    quota_used_bytes: int
    quota_reserved_bytes: int
    disk_free_bytes: int | None


class ProofMarginItem(CamelModel):
    at: int
    slot_id: str
    period: int
    margin_seconds: int
    period_seconds: int


@router.get("/alerts", summary="Active alerts, most severe first")
async def alerts(monitor: MonitorDep) -> Alerts:
    active = [
        AlertItem(key=a.key, severity=a.severity, message=a.message, since=a.since) for a in monitor.book.active()
    ]
    return Alerts(active=active, checked_at=monitor.last_check)


@router.get("/space/history", summary="Quota and disk samples over time (kept in memory, oldest first)")
async def space_history(
    monitor: MonitorDep,
    since: Annotated[int, Query(ge=0, description="only samples taken at or after this time (Unix seconds)")] = 0,
    limit: Annotated[int, Query(ge=1, le=1440, description="at most this many of the latest samples")] = 1440,
) -> list[SpaceSample]:
    return [
        SpaceSample(
            at=s.at,
            quota_max_bytes=s.quota_max,
            quota_used_bytes=s.quota_used,
            quota_reserved_bytes=s.quota_reserved,
            disk_free_bytes=s.disk_free,
        )
        for s in monitor.samples.since(since, limit)
    ]


@router.get("/sales/proof-margins", summary="Seconds left of its period when each recent proof landed")
async def proof_margins(
    monitor: MonitorDep,
    limit: Annotated[int, Query(ge=1, le=512, description="at most this many of the latest proofs")] = 512,
) -> list[ProofMarginItem]:
    latest = monitor.margins.latest() if monitor.margins is not None else []
    return [
        ProofMarginItem(
            at=m.at, slot_id=m.slot_id, period=m.period, margin_seconds=m.margin, period_seconds=m.period_seconds
        )
        for m in latest[-limit:]
    ]


class SalesStates(CamelModel):
    agents: dict[str, int] = Field(description="Live sales agents by state")
    outcomes: dict[str, int] = Field(description="Sales in the history by outcome (active, finished, …)")


@router.get(
    "/sales/states", summary="Sales by state: live agents and the history's outcomes", responses=error_responses(503)
)
async def sales_states(sales: SalesDep) -> SalesStates:
    agents: dict[str, int] = {}
    for agent in sales.agents():
        if agent.state is not None:
            agents[agent.state.api_name] = agents.get(agent.state.api_name, 0) + 1
    outcomes = sales.book.counts() if sales.book is not None else {}
    return SalesStates(agents=agents, outcomes=outcomes)
