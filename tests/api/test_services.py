"""The API's services: one frozen value the node provides once, and one dependency per part (503 when absent)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from codex_node.api import services as deps
from codex_node.api.app import create_app
from codex_node.api.services import Services, provide, services_of
from codex_node.config import DEFAULTS, NodeConfig
from codex_node.errors import CodexError, MarketUnavailableError


def test_the_services_value_is_frozen() -> None:
    services = Services()
    with pytest.raises(dataclasses.FrozenInstanceError):
        services.sales = object()  # type: ignore[misc, assignment]


def test_an_app_built_without_a_node_holds_what_it_was_given() -> None:
    config = NodeConfig(marketplace=False)
    services = services_of(create_app(config))
    assert services == Services(config=config)
    assert services_of(create_app()).config is DEFAULTS


def test_provide_replaces_the_whole_value() -> None:
    app = create_app()
    given = Services(market=object())  # type: ignore[arg-type]
    provide(app, given)
    assert services_of(app) is given


@pytest.mark.parametrize(
    ("dependency", "part"),
    [
        (deps.get_market, "market"),
        (deps.get_sales, "sales"),
        (deps.get_reservations, "reservations"),
        (deps.get_dev_chain, "dev_chain"),
    ],
)
def test_a_marketplace_part_the_node_does_not_run_is_a_503(dependency: Callable[[Services], Any], part: str) -> None:
    with pytest.raises(MarketUnavailableError, match="without a marketplace"):
        dependency(Services())
    present = object()
    assert dependency(Services(**{part: present})) is present


def test_a_missing_repo_is_an_internal_error_not_a_503() -> None:
    with pytest.raises(CodexError, match="repo") as raised:
        deps.get_repo(Services())
    assert not isinstance(raised.value, MarketUnavailableError)


def test_an_app_without_services_says_so() -> None:
    from fastapi import FastAPI

    with pytest.raises(CodexError, match="no services"):
        services_of(FastAPI())
