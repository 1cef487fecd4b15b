"""Fixtures of the integration suite: one local net (Hardhat + deployment) per test module, and the nodes' log
tails in the report of a failed test."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from integration.localnet import LocalNet
from tests.harness import hardhat


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.path)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.hardhat)
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNet]:
    """A started :class:`LocalNet` shared by the tests of one module (each adds its own nodes); stopped after."""
    if not hardhat.available():
        pytest.skip("Hardhat is not installed (npm ci in contracts/)")
    local = LocalNet(tmp_path_factory.mktemp("localnet"))
    try:
        local.start()
        yield local
    finally:
        local.stop()


@pytest.fixture
def own_nodes(net: LocalNet) -> Iterator[None]:
    """The nodes a test adds are stopped when it ends: the next test of the module starts with the module's own
    nodes only (no host of the last test fills its requests, no validator of it marks its slots)."""
    before = set(net.nodes)
    yield
    net.stop_nodes(*(name for name in net.nodes if name not in before))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, None, None]:
    """A failed test that used the net gets every node's log tail in its report."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    local = getattr(item, "funcargs", {}).get("net")
    if report.failed and isinstance(local, LocalNet):
        report.sections.append(("codex-node logs", local.report()))
