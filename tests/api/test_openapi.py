"""openapi.yaml at the repository root is exactly what the app serves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from codex_node.api.app import API_PREFIX, create_app

OPENAPI = Path(__file__).resolve().parents[2] / "openapi.yaml"


def served() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(json.dumps(create_app().openapi()))
    return schema


def test_openapi_yaml_matches_what_the_app_serves() -> None:
    committed = yaml.safe_load(OPENAPI.read_text(encoding="utf-8"))
    assert committed == served(), "openapi.yaml is stale: run `python scripts/gen_openapi.py` and commit the result"


def test_every_api_route_is_under_the_codex_prefix_and_documented() -> None:
    app = create_app()
    paths = served()["paths"]
    assert paths, "no paths served"
    assert all(path.startswith(API_PREFIX + "/") for path in paths)
    documented = {(path, method.upper()) for path, ops in paths.items() for method in ops}
    assert (f"{API_PREFIX}/debug/info", "GET") in documented
    assert (f"{API_PREFIX}/debug/chronicles/loglevel", "POST") in documented
    assert app.openapi_url == "/openapi.json"


def test_error_answers_are_documented_with_the_error_body_and_no_fastapi_validation_schema() -> None:
    schema = served()
    assert "HTTPValidationError" not in json.dumps(schema)
    for path, ops in schema["paths"].items():
        for op in ops.values():
            for status, response in op["responses"].items():
                if status.startswith(("4", "5")):
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    if (path, status) == (f"{API_PREFIX}/health", "503"):
                        # Not ready is an answer, not an error: the same report as 200, with the failed checks.
                        assert ref == "#/components/schemas/HealthReport"
                        continue
                    assert ref == "#/components/schemas/ErrorBody"
    assert schema["components"]["schemas"]["ErrorBody"]["required"] == ["error"]


def _bounds(node: object) -> list[object]:
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k in ("minimum", "maximum")]
        return found + [b for child in node.values() for b in _bounds(child)]
    if isinstance(node, list):
        return [b for child in node for b in _bounds(child)]
    return []


def test_integer_bounds_are_exact_integers() -> None:
    # FastAPI keeps bounds as floats: uint64's maximum came out as 1.8446744073709552e+19, which is 2**64
    bounds = _bounds(served())
    assert bounds
    assert all(type(b) is int for b in bounds), [b for b in bounds if type(b) is not int]
    assert 2**64 - 1 in bounds
    with open(Path(__file__).resolve().parents[2] / "openapi.yaml") as f:
        assert 2**64 - 1 in _bounds(yaml.safe_load(f))
