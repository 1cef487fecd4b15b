"""The operator's dashboard at ``/dashboard``: one HTML page, its script and style, served from this package.

Fully offline: the page loads nothing but ``/dashboard/static/*`` and the node's own API (no CDN, no web font, no
JavaScript library). The page and its assets carry no data and are public, like ``/docs``; every figure the page
shows comes from the API, which applies the same rules as for any client (Host, Origin, and the bearer token: the
page asks for the token when the API answers 401 and keeps it in the tab's ``sessionStorage``).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.staticfiles import StaticFiles

DASHBOARD_PATH = "/dashboard"
ASSETS_PATH = "/dashboard/static"
ASSETS_DIR = Path(str(files("codex_node.api") / "dashboard"))

router = APIRouter(include_in_schema=False)

# Scripts and styles from this origin only; API calls to this origin only; inline SVG charts are DOM, not images.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


@router.get(DASHBOARD_PATH)
async def dashboard() -> HTMLResponse:
    html = (ASSETS_DIR / "index.html").read_text(encoding="utf-8")
    return HTMLResponse(html, headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-cache"})


@router.get(DASHBOARD_PATH + "/")
async def dashboard_slash() -> RedirectResponse:
    return RedirectResponse(DASHBOARD_PATH)


def mount_dashboard(app: FastAPI) -> None:
    """Serve the page and its assets on ``app``."""
    app.include_router(router)
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIR), name="dashboard-assets")
