"""A real ``codex-node run`` (no marketplace, with ``--api-token``) shared by the tests of this package that need
one: starting a node is the slow part, and these tests only add and remove their own datasets."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness import nodeprocess

TOKEN = "subprocess-node-token-0123456789"


@dataclass(frozen=True)
class RunningNode:
    api: str
    token_file: Path
    token: str = TOKEN


@pytest.fixture(scope="module")
def running_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    base = tmp_path_factory.mktemp("node")
    token_file = base / "api-token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    node = nodeprocess.start_node(base / "data", "--no-marketplace", "--api-token", str(token_file), log_dir=base)
    try:
        yield RunningNode(node.api, token_file)
    finally:
        if node.running:
            node.proc.kill()
            node.proc.wait()
