"""The committed contract artifacts are exactly what the pinned compiler makes of the current sources."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from marketplace_harness import load_artifact

from codex_node.market.types import ASK_ABI_TYPE, CONTENT_ABI_TYPE

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"


@pytest.mark.slow
def test_committed_artifacts_match_a_fresh_compile() -> None:
    node = shutil.which("node")
    assert node is not None, "Node.js is needed to check the contract artifacts"
    assert (CONTRACTS / "node_modules" / "solc").is_dir(), (
        "contracts/node_modules is missing: run `npm ci` in contracts/"
    )
    result = subprocess.run(
        [node, "scripts/compile.js", "--check"],
        cwd=CONTRACTS,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr + result.stdout


def _tuple_type(component: dict[str, object]) -> str:
    if component["type"] != "tuple":
        return str(component["type"])
    inner = ",".join(_tuple_type(c) for c in component["components"])  # type: ignore[attr-defined]
    return f"({inner})"


def test_request_abi_matches_the_python_encoding() -> None:
    # codex_node.market.types computes request ids with these types; they must be the contract's.
    abi = load_artifact("Marketplace")["abi"]
    (request_storage,) = [e for e in abi if e.get("name") == "requestStorage"]
    (request,) = request_storage["inputs"]
    assert _tuple_type(request) == f"(address,{ASK_ABI_TYPE},{CONTENT_ABI_TYPE},uint64,bytes32)"
