"""The real `codex-node run` process: it starts, serves the API, expires data, and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.harness import nodeprocess
from tests.harness.nodeprocess import NodeProcess

pytestmark = pytest.mark.slow

API = "/api/codex/v1"


def start_node(tmp_path: Path, *flags: str) -> NodeProcess:
    """``codex-node run`` on ``tmp_path / "data"`` with its log beside it (``tests/harness/nodeprocess.py``)."""
    return nodeprocess.start_node(tmp_path / "data", *flags, log_dir=tmp_path)


@pytest.fixture
def nodes() -> Iterator[list[NodeProcess]]:
    """Nodes a test starts; any still running at the end are killed so no process outlives the test."""
    started: list[NodeProcess] = []
    yield started
    for node in started:
        if node.proc.poll() is None:
            node.proc.kill()
            node.proc.wait()


def test_run_serves_the_api_and_exits_0_on_sigterm(tmp_path: Path, nodes: list[NodeProcess]) -> None:
    node = start_node(tmp_path)
    nodes.append(node)
    assert node.api.startswith("http://127.0.0.1:")
    assert node.api.endswith(API)
    space = httpx.get(f"{node.api}/space", timeout=10)
    assert space.status_code == 200
    assert space.json()["quotaMaxBytes"] == 20 * 1024**3
    started = time.monotonic()
    assert node.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 5
    events = [e["event"] for e in node.events()]
    assert "node started" in events
    assert events[-1] == "node stopped"
    # The start line says which keccak the slot trees run on: the test set-up compiles the extension.
    [start_line] = [e for e in node.events() if e["event"] == "node started"]
    assert start_line["keccak"].startswith("_keccak ")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{node.api}/space", timeout=2)


def test_sigint_stops_the_node_cleanly_too(tmp_path: Path, nodes: list[NodeProcess]) -> None:
    node = start_node(tmp_path, "--no-marketplace")
    nodes.append(node)
    assert node.stop(signal.SIGINT) == 0
    assert node.events()[-1]["event"] == "node stopped"


def test_a_restarted_node_keeps_its_data_and_identity(tmp_path: Path, nodes: list[NodeProcess]) -> None:
    first = start_node(tmp_path, "--no-marketplace")
    nodes.append(first)
    data = os.urandom(300_000)
    cid = httpx.post(f"{first.api}/data", content=data, timeout=30).text
    node_id = httpx.get(f"{first.api}/debug/info", timeout=10).json()["id"]
    assert first.stop() == 0
    second = start_node(tmp_path, "--no-marketplace")
    nodes.append(second)
    assert httpx.get(f"{second.api}/data/{cid}", timeout=30).content == data
    assert httpx.get(f"{second.api}/debug/info", timeout=10).json()["id"] == node_id
    assert second.stop() == 0


def test_an_uploaded_dataset_expires_and_its_quota_comes_back(tmp_path: Path, nodes: list[NodeProcess]) -> None:
    node = start_node(tmp_path, "--no-marketplace", "--block-ttl", "2s", "--block-mi", "1s")
    nodes.append(node)
    with httpx.Client(base_url=node.api, timeout=30) as client:
        before = client.get("/space").json()
        data = os.urandom(5 * 65536 + 7)
        cid = client.post("/data", content=data).text
        uploaded = client.get("/space").json()
        assert uploaded["quotaUsedBytes"] > before["quotaUsedBytes"] + len(data)  # the blocks and the manifest
        assert client.get(f"/data/{cid}").content == data
        deadline = time.monotonic() + 20
        while client.get(f"/data/{cid}/exists").json()["has"] and time.monotonic() < deadline:
            time.sleep(0.25)
        assert client.get(f"/data/{cid}").status_code == 404
        after = client.get("/space").json()
    assert after["quotaUsedBytes"] == before["quotaUsedBytes"]
    assert after["totalBlocks"] == before["totalBlocks"]
    assert node.stop() == 0


def files_under(path: Path) -> tuple[int, int]:
    """(number of files, total bytes) below ``path``."""
    sizes = [p.stat().st_size for p in path.rglob("*") if p.is_file()]
    return len(sizes), sum(sizes)


def test_kill_9_during_a_100_mib_upload_leaves_balanced_books(tmp_path: Path, nodes: list[NodeProcess]) -> None:
    node = start_node(tmp_path, "--no-marketplace")
    nodes.append(node)
    kept = os.urandom(200_000)
    with httpx.Client(base_url=node.api, timeout=30) as client:
        kept_cid = client.post("/data", content=kept).text
        before = client.get("/space").json()
    mib = 1 << 20
    used_when_killed: list[int] = []

    def body() -> Iterator[bytes]:
        for i in range(100):
            if i == 60:
                # Blocks are committed while the body streams: make sure some are, then pull the plug.
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    used = httpx.get(f"{node.api}/space", timeout=5).json()["quotaUsedBytes"]
                    if used >= before["quotaUsedBytes"] + 16 * mib:
                        break
                    time.sleep(0.05)
                used_when_killed.append(used)
                node.proc.send_signal(signal.SIGKILL)
                node.proc.wait(timeout=nodeprocess.STOP_TIMEOUT)
            yield os.urandom(mib)

    with pytest.raises(httpx.TransportError):
        httpx.post(f"{node.api}/data", content=body(), timeout=30)
    assert node.proc.returncode == -signal.SIGKILL
    assert used_when_killed[0] >= before["quotaUsedBytes"] + 16 * mib

    restarted = start_node(tmp_path, "--no-marketplace")
    nodes.append(restarted)
    with httpx.Client(base_url=restarted.api, timeout=30) as client:
        after = client.get("/space").json()
        assert client.get(f"/data/{kept_cid}").content == kept  # what was completely uploaded is served
        listed = [item["cid"] for item in client.get("/data").json()["content"]]
    # The interrupted upload's blocks are gone; what remains is exactly the complete dataset.
    assert after == before
    assert listed == [kept_cid]
    # Blocks live in pack files (``stores/blockfiles.py``): every counted byte is in one, and the interrupted
    # upload's bytes are no more than dead bytes in them (no index entry, no quota), compaction's to reclaim.
    count, size = files_under(tmp_path / "data" / "repo" / "packs")
    assert 1 <= count <= 2
    assert size >= after["quotaUsedBytes"]
    assert restarted.stop() == 0


def test_a_second_node_on_the_same_data_dir_names_the_first_ones_pid_and_exits_2(
    tmp_path: Path, nodes: list[NodeProcess]
) -> None:
    first = start_node(tmp_path, "--no-marketplace")
    nodes.append(first)
    base = {k: v for k, v in os.environ.items() if not k.startswith("CODEX_")}
    second = subprocess.run(
        [str(nodeprocess.SCRIPT), "run", "--data-dir", str(tmp_path / "data"), "--api-port", "0", "--no-marketplace"],
        env=base,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert second.returncode == 2, second.stderr
    lines = second.stderr.strip().splitlines()
    assert lines == [
        f"codex-node run: error: --data-dir: {tmp_path / 'data'} is in use by another codex-node "
        f"(pid {first.proc.pid}); stop it, or give this node another --data-dir"
    ]
    assert first.running  # the first node is untouched
    assert first.stop() == 0
    assert (tmp_path / "data" / "codex-node.pid").read_text() == ""  # a clean stop empties the pid file
