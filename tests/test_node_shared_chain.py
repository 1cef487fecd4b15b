"""A node given a shared chain (``market/sharedchain.py``) must be configured for the embedded chain.

The sharing itself (accounts, events, time, stopping) runs whole nodes: ``tests/e2e/test_network_shared_chain.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from codex_node.config import NodeConfig
from codex_node.market.embedded import EmbeddedChain, derived_account
from codex_node.market.sharedchain import SharedChain
from codex_node.node import Node


@pytest.mark.parametrize(
    ("settings", "mode"),
    [
        (
            {
                "eth_provider": "http://127.0.0.1:8545",
                "marketplace_address": "0x" + "11" * 20,
                "eth_account": "0x" + "22" * 20,
            },
            "remote",
        ),
        ({"marketplace": False}, "none"),
    ],
)
def test_a_shared_chain_is_refused_unless_the_node_runs_the_embedded_chain(
    tmp_path: Path, settings: dict[str, object], mode: str
) -> None:
    shared = SharedChain(EmbeddedChain(tmp_path / "chain"), derived_account(0))  # never started: refused first
    config = NodeConfig(data_dir=tmp_path / "data", api_port=0, **settings)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=f"wants {mode}"):
        Node(config, chain=shared)
    assert not (tmp_path / "data").exists()
