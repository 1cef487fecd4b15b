"""``GET /api/codex/v1/health``: liveness and readiness, for container health checks and load balancers.

200 when the node is ready, 503 when it is not; both with the checks and their reasons (``monitor/monitor.py``):
the metadata store is open, the chain answers and the event stream is caught up (with a marketplace), and the data
dir's disk has room. A node that answers at all is live (``live: true``).

Public, like the API's documents: it needs no ``--api-token`` (a container's ``HEALTHCHECK`` or an orchestrator's
probe carries none), while the Host rules still apply. It reveals only readiness, the head block, the cursor lag and
the free disk bytes; everything else stays behind the token.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from codex_node.api.schemas import CamelModel
from codex_node.api.services import ServicesDep

router = APIRouter(tags=["Node"])

HEALTH_PATH = "/health"


class HealthCheck(CamelModel):
    name: str
    ok: bool
    detail: str


class HealthReport(CamelModel):
    live: bool
    ready: bool
    checks: list[HealthCheck]


@router.get(
    HEALTH_PATH,
    summary="Liveness and readiness, with the reason of each check (503 when not ready; no token needed)",
    responses={503: {"model": HealthReport, "description": "Live but not ready: see the failed checks"}},
)
async def health(services: ServicesDep, response: Response) -> HealthReport:
    monitor = services.monitor
    if monitor is None:
        response.status_code = 503
        return HealthReport(live=True, ready=False, checks=[HealthCheck(name="node", ok=False, detail="not started")])
    h = await monitor.health()
    if not h.ready:
        response.status_code = 503
    return HealthReport(
        live=True, ready=h.ready, checks=[HealthCheck(name=c.name, ok=c.ok, detail=c.detail) for c in h.checks]
    )
