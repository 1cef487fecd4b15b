"""/docs (Swagger UI) and /redoc work on a host without Internet: every asset comes from the node itself."""

from __future__ import annotations

import re

import httpx
import pytest

from codex_node.api.app import create_app

_REFERENCE = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url:\s*'([^']+)'|spec-url="([^"]+)\"""")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_docs_page_references_no_other_host_and_its_assets_are_served(page: str) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app()), base_url="http://localhost") as c:
        html = (await c.get(page)).text
        assert "//" not in re.sub(r"<!--.*?-->", "", html, flags=re.DOTALL).replace("window.location.origin", "")
        references = [next(g for g in m.groups() if g) for m in _REFERENCE.finditer(html)]
        assert any(ref.endswith(".js") for ref in references), references
        for ref in references:
            assert ref.startswith("/"), ref
            served = await c.get(ref)
            assert served.status_code == 200, ref
            assert served.content, ref
    if page == "/docs":
        assert '"validatorUrl": null' in html  # no schema sent to validator.swagger.io
