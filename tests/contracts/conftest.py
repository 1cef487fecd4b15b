"""Fixtures for the contract tests: one deployment per session, rolled back to a snapshot after every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from marketplace_harness import Chain, deploy, new_tester


@pytest.fixture(scope="session")
def deployed() -> Chain:
    return deploy(new_tester())


@pytest.fixture
def chain(deployed: Chain) -> Iterator[Chain]:
    snapshot = deployed.tester.take_snapshot()
    yield deployed
    deployed.tester.revert_to_snapshot(snapshot)
