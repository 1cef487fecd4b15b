"""The dashboard's page and assets: served by the node, offline, public (they hold no data), CSP-locked."""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx

from codex_node.api.app import create_app
from codex_node.api.routes.dashboard import ASSETS_DIR
from codex_node.config import NodeConfig

TOKEN = "dashboard-token-0123456789"


def client(tmp_path: Path) -> httpx.AsyncClient:
    token_path = tmp_path / "token"
    token_path.write_text(TOKEN)
    os.chmod(token_path, 0o600)
    app = create_app(NodeConfig(data_dir=tmp_path, marketplace=False, api_token=token_path))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost")


async def test_the_page_and_its_assets_are_served_without_the_token_but_the_data_is_not(tmp_path: Path) -> None:
    async with client(tmp_path) as c:
        page = await c.get("/dashboard")
        script = await c.get("/dashboard/static/app.js")
        style = await c.get("/dashboard/static/style.css")
        data = await c.get("/api/codex/v1/alerts")
        missing = await c.get("/dashboard/static/nothing.js")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "connect-src 'self'" in page.headers["content-security-policy"]
    assert (script.status_code, style.status_code) == (200, 200)
    assert data.status_code == 401
    assert missing.status_code == 404


def test_the_assets_load_nothing_from_anywhere_else() -> None:
    texts = {p.name: p.read_text() for p in ASSETS_DIR.iterdir() if p.suffix in (".html", ".js", ".css")}
    assert set(texts) == {"index.html", "app.js", "style.css"}
    for name, text in texts.items():
        urls = set(re.findall(r"""(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}[^\s"'`)]*""", text))
        urls.discard("http://www.w3.org/2000/svg")  # the SVG namespace name: never fetched
        assert urls == set(), f"{name} refers to {urls}"
        assert "@import" not in text, name
        assert "@font-face" not in text, name


def test_the_assets_are_package_data() -> None:
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert '"api/dashboard/*"' in pyproject
