"""The client's models (``client/models.py``) have the shape ``openapi.yaml`` gives each answer: the same JSON
names, the same required ones. The YAML is the contract both the server's models and these are held to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from codex_node.client import models
from codex_node.client.operations import OPERATIONS

SPEC = yaml.safe_load((Path(__file__).resolve().parents[2] / "openapi.yaml").read_text())
SCHEMAS: dict[str, Any] = SPEC["components"]["schemas"]

MODEL_OF_SCHEMA: dict[str, type[BaseModel]] = {
    "DataList": models.DataList,
    "DataItem": models.Dataset,
    "ManifestItem": models.ManifestInfo,
    "Space": models.Space,
    "Exists": models.Exists,
    "SlotRead": models.Slot,
    "StorageRequest": models.StorageRequest,
    "StorageAsk": models.StorageAsk,
    "StorageContent": models.StorageContent,
    "SlotAgentRead": models.SlotSale,
    "ReservationRead": models.Reservation,
    "HistoryRead": models.SaleTransition,
    "ProgressRead": models.DownloadProgress,
    "SalesAvailabilityRead": models.Availability,
    "DebugInfo": models.DebugInfo,
    "Table": models.Table,
    "LocalNode": models.LocalNode,
    "CodexInfo": models.CodexInfo,
    "ChainInfo": models.ChainInfo,
    "LogLevel": models.LogLevel,
    "BooksCheck": models.BooksCheck,
    "HealthReport": models.HealthReport,
    "HealthCheck": models.HealthCheck,
    "Alerts": models.Alerts,
    "AlertItem": models.AlertItem,
    "SpaceSample": models.SpaceSample,
    "ProofMarginItem": models.ProofMarginItem,
    "SalesStates": models.SalesStates,
    "AccountRead": models.Account,
    "LedgerTotalsRead": models.LedgerTotals,
    "LedgerPage": models.LedgerPage,
    "LedgerEntryRead": models.LedgerEntry,
    "SalesPage": models.SalesPage,
    "SaleRead": models.Sale,
    "ProofRead": models.SaleProof,
    "SaleMoneyRead": models.SaleMoney,
    "RequestMatchRead": models.RequestMatch,
    "AvailabilityMatchRead": models.AvailabilityMatch,
    "RuleRead": models.RuleCheck,
    "NodeCheck": models.NodeCheck,
    "CheckPart": models.CheckPart,
    "Purchase": models.Purchase,
    "PeerList": models.PeerList,
    "HaveAnswer": models.HaveAnswer,
    "ValidatorState": models.ValidatorState,
}


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"].rsplit("/", 1)[-1]} if "$ref" in node else set()
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node)) if node else set()
    return set()


def answer_schemas() -> set[str]:
    """Every schema a success answer of the spec uses, directly or nested."""
    ids = {op.operation_id for op in OPERATIONS}
    todo: set[str] = set()
    for methods in SPEC["paths"].values():
        for operation in methods.values():
            if operation["operationId"] in ids:
                for status, response in operation["responses"].items():
                    if str(status).startswith("2"):
                        todo |= _refs(response)
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        seen.add(name)
        todo |= _refs(SCHEMAS[name]) - seen
    return seen


def test_every_schema_of_a_success_answer_has_a_client_model() -> None:
    assert answer_schemas() <= set(MODEL_OF_SCHEMA), sorted(answer_schemas() - set(MODEL_OF_SCHEMA))


@pytest.mark.parametrize("schema", sorted(MODEL_OF_SCHEMA))
def test_the_client_model_has_the_json_names_and_required_fields_of_the_schema(schema: str) -> None:
    model = MODEL_OF_SCHEMA[schema]
    fields = {f.alias or name: f for name, f in model.model_fields.items()}
    assert set(fields) == set(SCHEMAS[schema]["properties"]), schema
    required = {alias for alias, f in fields.items() if f.is_required()}
    assert required == set(SCHEMAS[schema].get("required", [])), schema


def test_amounts_parse_from_decimal_strings_and_refuse_anything_else() -> None:
    data = {
        "id": "0x" + "1" * 64,
        "totalSize": 10,
        "freeSize": 10,
        "duration": 60,
        "minPricePerBytePerSecond": str(2**256 - 1),
        "totalCollateral": "7",
        "totalRemainingCollateral": "7",
        "aFieldFromANewerNode": True,
    }
    availability = models.Availability.model_validate(data)
    assert availability.min_price_per_byte_per_second == 2**256 - 1
    assert availability.total_collateral == 7
    for bad in ("1e3", "-1", "0x10", "1" * 79, 1.5, True):
        with pytest.raises(ValueError, match="token amount"):
            models.Availability.model_validate({**data, "totalCollateral": bad})
