"""Every operation of ``openapi.yaml`` has its description in ``client/operations.py`` and a method on both clients.

When the API grows an operation (storage requests, purchases), these fail until the client has it too.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
import yaml

from codex_node.client import AsyncCodexClient, CodexClient
from codex_node.client.operations import OPERATIONS, Operation

SPEC = Path(__file__).resolve().parents[2] / "openapi.yaml"
PREFIX = "/api/codex/v1"


def spec_operations() -> dict[str, tuple[str, str, dict[str, Any]]]:
    """operationId → (HTTP method, path under the prefix, the operation) of every operation in openapi.yaml."""
    spec = yaml.safe_load(SPEC.read_text())
    out = {}
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            out[operation["operationId"]] = (method.upper(), path.removeprefix(PREFIX), operation)
    return out


def uncovered(spec: dict[str, Any]) -> set[str]:
    """The operationIds of ``spec`` the client does not describe."""
    return set(spec) - {op.operation_id for op in OPERATIONS}


def test_every_operation_of_openapi_yaml_is_described_once_by_the_client() -> None:
    described = [op.operation_id for op in OPERATIONS]
    assert len(described) == len(set(described))
    missing = uncovered(spec_operations())
    assert not missing, f"operations of openapi.yaml without a client method: {sorted(missing)}"
    stale = set(described) - set(spec_operations())
    assert not stale, f"client operations openapi.yaml no longer has: {sorted(stale)}"


@pytest.mark.parametrize("op", OPERATIONS, ids=lambda op: op.client_method)
def test_each_description_has_the_method_path_and_success_status_of_the_spec(op: Operation) -> None:
    method, path, operation = spec_operations()[op.operation_id]
    assert (op.method, op.path) == (method, path)
    successes = {int(s) for s in operation["responses"] if str(s).startswith("2")}
    assert successes == {op.ok}


@pytest.mark.parametrize("op", OPERATIONS, ids=lambda op: op.client_method)
def test_both_clients_have_the_method_with_one_signature(op: Operation) -> None:
    sync = getattr(CodexClient, op.client_method, None)
    aio = getattr(AsyncCodexClient, op.client_method, None)
    assert sync is not None, f"CodexClient has no {op.client_method} for {op.operation_id}"
    assert aio is not None, f"AsyncCodexClient has no {op.client_method} for {op.operation_id}"
    assert inspect.iscoroutinefunction(aio)
    assert not inspect.iscoroutinefunction(sync)
    sync_params = list(inspect.signature(sync).parameters.values())
    aio_params = list(inspect.signature(aio).parameters.values())
    assert [(p.name, p.kind, p.default) for p in sync_params] == [(p.name, p.kind, p.default) for p in aio_params]


def test_the_spec_parameters_of_each_operation_are_parameters_of_its_method() -> None:
    # A path parameter the client forgot to take would make the method unusable for that operation.
    for op in OPERATIONS:
        _, _, operation = spec_operations()[op.operation_id]
        method_params = inspect.signature(getattr(CodexClient, op.client_method)).parameters
        for param in operation.get("parameters", []):
            if param["in"] == "path":
                assert len(method_params) >= 2, (op.client_method, param["name"])  # self + the id
            if param["in"] == "query":
                assert param["name"] in method_params, (op.client_method, param["name"])


def test_an_operation_added_to_the_spec_without_a_method_is_reported() -> None:
    spec: dict[str, Any] = dict(spec_operations())
    assert uncovered(spec) == set()
    spec["validate_api_codex_v1_validator_post"] = ("POST", "/validator", {})
    assert uncovered(spec) == {"validate_api_codex_v1_validator_post"}
