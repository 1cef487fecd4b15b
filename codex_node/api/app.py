"""The REST API application: every router mounted under ``/api/codex/v1``, one error mapping, HTTP metrics.

The app holds no resources of its own: the node hands it one frozen :class:`~codex_node.api.services.Services`
value and routes declare the parts they use as dependencies (``api/services.py``). A router is added by listing
it in :data:`ROUTERS`; ``openapi.yaml`` must then be regenerated (``scripts/gen_openapi.py``), and
``tests/api/test_openapi.py`` says so until it is. The embedded chain's dev routes (``routes/devchain.py``) are
mounted only on a node configured with the embedded chain and never appear in ``openapi.yaml``, which stays the
Codex-compatible contract.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi_offline import FastAPIOffline

from codex_node import __version__
from codex_node.api.errors import install_error_handlers
from codex_node.api.guards import document_guards, install_guards
from codex_node.api.routes import (
    account,
    blocks,
    check,
    data,
    debug,
    devchain,
    health,
    monitor,
    network,
    peers,
    sales,
    storage,
    validator,
)
from codex_node.api.routes.dashboard import mount_dashboard
from codex_node.api.schemas import ErrorBody
from codex_node.api.services import NodeView, Services, provide
from codex_node.config import DEFAULTS, NodeConfig
from codex_node.metrics import HttpMetricsMiddleware
from codex_node.sales.availability import UINT64_MAX, UINT256_MAX
from codex_node.stores.repostore import RepoStore

API_PREFIX = "/api/codex/v1"
DOCS_ASSETS = "/docs/static"

ROUTERS: tuple[APIRouter, ...] = (
    data.router,
    network.router,
    sales.router,
    storage.router,
    account.router,
    debug.router,
    check.router,
    health.router,
    monitor.router,
    peers.router,
    blocks.router,
    validator.router,
)

_DESCRIPTION = (
    "REST API of a codex-node storage provider. Paths and schemas follow nim-codex's API so Codex clients work. "
    'Every error answers `{"error": "<message>"}`: 400 malformed input, 404 unknown, 422 well-formed but refused, '
    "503 no marketplace, 500 anything else. Every request may also get 421 (a Host this node does not answer for), "
    "401 (with `--api-token`: no or wrong bearer token); a POST/PATCH/DELETE 403 (a cross-origin Origin) or 413 "
    "(a body over 256 KiB; uploads excepted). Bodies are strict. **400**: not JSON, a required field missing, or a "
    'value of the wrong JSON type (`true` or `1e30` for an integer, `"yes"` for a boolean, `"1e30"` for a token '
    "amount). **422**: well-formed but invalid: a value out of its bounds (integers are bounded by what the "
    "contract holds: uint64, or uint256 for token amounts), a field the body does not declare (named in the "
    "message), or a broken rule. A body that is both gets 400. Token amounts are decimal strings (or JSON integers)."
)


def create_app(
    config: NodeConfig | None = None,
    *,
    node: NodeView | None = None,
    repo: RepoStore | None = None,
) -> FastAPI:
    """A new app whose services hold ``config``, ``node`` and ``repo`` (the node provides its full services once
    its parts run: ``api.services.provide``). The dev chain routes are mounted when ``config`` runs the embedded
    chain."""
    # Swagger UI (/docs) and ReDoc (/redoc) with their assets served from the fastapi-offline package, not a CDN.
    # validatorUrl None: Swagger UI would otherwise send the schema to validator.swagger.io for its badge.
    app = FastAPIOffline(
        title="Codex node API",
        version=__version__,
        description=_DESCRIPTION,
        static_url=DOCS_ASSETS,
        swagger_ui_parameters={"validatorUrl": None},
    )
    provide(app, Services(config=config or DEFAULTS, node=node, repo=repo))
    install_error_handlers(app)
    routers = ROUTERS
    if config is not None and config.chain_mode == "embedded":
        routers = (*ROUTERS, devchain.router)
    templates: dict[int, str] = {}
    for router in routers:
        app.include_router(router, prefix=API_PREFIX)
        for route in router.routes:
            templates[id(route)] = API_PREFIX + getattr(route, "path", "")
    mount_dashboard(app)
    install_guards(app, config or NodeConfig(), prefix=API_PREFIX)  # inside the metrics: refusals are counted
    app.add_middleware(HttpMetricsMiddleware, templates=templates)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _codex_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customise the schema
    return app


def _codex_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, saying what errors really look like (see ``api/errors.py``).

    FastAPI documents request validation as a 422 with its own body; a malformed request answers 400 with
    ``{"error": …}`` here. Error answers a router lists with only a description get that body schema.
    """
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    document_guards(schema, upload_path=f"{API_PREFIX}/data", download_path=f"{API_PREFIX}/data/{{cid}}")
    error_content = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses: dict[str, Any] = operation.get("responses", {})
            generated = responses.get("422", {})
            ref = generated.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref", "")
            if ref.endswith("/HTTPValidationError"):
                # A route that can answer 422 for a broken rule lists it itself (schemas.error_responses).
                del responses["422"]
                responses.setdefault("400", {"description": "Malformed request"})
            for status, response in responses.items():
                if status[:1] in ("4", "5") and "content" not in response:
                    response["content"] = error_content
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    components["ErrorBody"] = ErrorBody.model_json_schema()
    _exact_integer_bounds(schema)
    return schema


def _exact_integer_bounds(node: object) -> None:
    """Integer bounds as integers: FastAPI's OpenAPI model holds ``minimum``/``maximum`` as floats, which wrote
    ``uint64``'s maximum 2**64 - 1 as ``1.8446744073709552e+19`` (that is 2**64: a client checking with it would
    accept a value the node refuses)."""
    if isinstance(node, dict):
        for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            value = node.get(key)
            if isinstance(value, float) and value.is_integer():
                node[key] = _EXACT_BOUNDS.get(value, int(value))
        for child in node.values():
            _exact_integer_bounds(child)
    elif isinstance(node, list):
        for child in node:
            _exact_integer_bounds(child)


_EXACT_BOUNDS = {float(UINT64_MAX): UINT64_MAX, float(UINT256_MAX): UINT256_MAX}
"""The widths the API bounds integers to, by the float FastAPI turned them into."""
