"""End-to-end tests: whole nodes on the embedded chain, in this process or as ``codex-node run`` subprocesses.

Each test sells a real dataset through the REST API and moves the chain's time itself (time travel), so it
takes seconds, not the hours of a real contract. Shared helpers are in ``e2ekit.py``; subprocess nodes are started
with ``tests.harness.nodeprocess``. Every test here is ``slow`` (a node start, many blocks).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from codex_node.market.embedded import EmbeddedChain
from tests.harness.nodeprocess import NodeProcess


@pytest.fixture
def nodes() -> Iterator[list[NodeProcess]]:
    """Nodes a test starts; any still running at the end are killed so no process outlives the test."""
    started: list[NodeProcess] = []
    yield started
    for node in started:
        if node.running:
            node.proc.kill()
            node.proc.wait()


@pytest.fixture
async def chain_after() -> AsyncIterator[list[EmbeddedChain]]:
    """Chains the test opens after its node stopped; stopped at the end."""
    opened: list[EmbeddedChain] = []
    yield opened
    for chain in opened:
        await chain.stop()
