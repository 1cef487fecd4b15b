"""The composition root in process: parts start in order and stop in reverse, the API and metrics are served."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest
from prometheus_client.registry import REGISTRY

from codex_node.api.app import API_PREFIX
from codex_node.api.services import services_of
from codex_node.config import NodeConfig
from codex_node.errors import ConfigError, KVError
from codex_node.node import NODE_ID_KEY, Node
from codex_node.stores.kv import LevelDBStore
from codex_node.testing.fakeclock import FakeClock
from codex_node.utils.parts import Closing, PartStack


def config(tmp_path: Path, **more: object) -> NodeConfig:
    return NodeConfig(data_dir=tmp_path / "data", api_port=0, marketplace=False, **more)  # type: ignore[arg-type]


class Recorder:
    def __init__(self, name: str, log: list[str], *, fail_start: bool = False, fail_stop: bool = False) -> None:
        self.name, self.log, self.fail_start, self.fail_stop = name, log, fail_start, fail_stop

    async def start(self) -> None:
        if self.fail_start:
            raise RuntimeError(f"{self.name} cannot start")
        self.log.append(f"start {self.name}")

    async def stop(self) -> None:
        self.log.append(f"stop {self.name}")
        if self.fail_stop:
            raise RuntimeError(f"{self.name} cannot stop")


async def test_parts_stop_in_reverse_order_and_only_once() -> None:
    log: list[str] = []
    stack = PartStack()
    for name in ("kv", "repo", "api"):
        await stack.start(name, Recorder(name, log))
    await stack.stop_all()
    await stack.stop_all()
    assert log == ["start kv", "start repo", "start api", "stop api", "stop repo", "stop kv"]


async def test_a_part_that_fails_to_stop_does_not_keep_the_others_running() -> None:
    log: list[str] = []
    stack = PartStack()
    await stack.start("kv", Recorder("kv", log))
    await stack.start("repo", Recorder("repo", log, fail_stop=True))
    await stack.start("api", Recorder("api", log))
    await stack.stop_all()
    assert log[3:] == ["stop api", "stop repo", "stop kv"]
    assert stack.names == []


async def test_a_part_that_fails_to_start_is_not_stopped() -> None:
    log: list[str] = []
    stack = PartStack()
    await stack.start("kv", Recorder("kv", log))
    with pytest.raises(RuntimeError):
        await stack.start("repo", Recorder("repo", log, fail_start=True))
    await stack.stop_all()
    assert log == ["start kv", "stop kv"]


async def test_closing_closes_on_stop_only() -> None:
    closed: list[bool] = []
    part = Closing(lambda: closed.append(True))
    await part.start()
    assert closed == []
    await part.stop()
    assert closed == [True]


async def test_a_node_serves_the_api_and_stops_every_part(tmp_path: Path) -> None:
    node = Node(config(tmp_path, storage_quota=1 << 20), clock=FakeClock())
    async with node:
        assert node.parts == [
            "api address",
            "data dir lock",
            "metadata store",
            "metrics registry",
            "peers",
            "repo store",
            "block maintainer metrics",
            "block maintainer",
            "block fetcher",  # with or without the marketplace: the /data/{cid}/network routes need it
            "network downloads",
            "monitor",
            "api",
        ]
        assert node.api_url is not None
        assert node.api_url.startswith("http://127.0.0.1:")
        async with httpx.AsyncClient(base_url=node.api_url + API_PREFIX) as client:
            space = (await client.get("/space")).json()
            info = (await client.get("/debug/info")).json()
        assert space["quotaMaxBytes"] == 1 << 20
        assert info["id"] == node.node_id
        assert info["addrs"] == [node.api_url]
        services = services_of(node.app)
        assert services.repo is node.repo
        assert services.config is node.config
        kv = node.kv
    assert node.parts == []
    assert kv is not None
    with pytest.raises(KVError):
        kv.get(NODE_ID_KEY)  # closed
    port = int(node.api_url.rsplit(":", 1)[1])
    with socket.socket() as s, pytest.raises(ConnectionRefusedError):
        s.connect(("127.0.0.1", port))


async def test_the_node_id_survives_a_restart(tmp_path: Path) -> None:
    async with Node(config(tmp_path), clock=FakeClock()) as first:
        node_id = first.node_id
    async with Node(config(tmp_path), clock=FakeClock()) as second:
        assert second.node_id == node_id
    assert len(node_id) == 32


async def test_the_data_dir_is_created_private(tmp_path: Path) -> None:
    async with Node(config(tmp_path), clock=FakeClock()):
        assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700
        assert (tmp_path / "data" / "meta").is_dir()
        assert (tmp_path / "data" / "repo" / "packs").is_dir()


async def test_metrics_are_served_on_their_own_port(tmp_path: Path) -> None:
    async with Node(config(tmp_path, metrics=True, metrics_port=0), clock=FakeClock()) as node:
        assert node.metrics_url is not None
        assert node.api_url is not None
        assert node.metrics_url != f"{node.api_url}/metrics"
        async with httpx.AsyncClient() as client:
            await client.get(f"{node.api_url}{API_PREFIX}/space")
            text = (await client.get(node.metrics_url)).text
            elsewhere = await client.get(node.metrics_url.removesuffix("/metrics") + "/other")
            on_api = await client.get(f"{node.api_url}/metrics")
    assert "codex_repostore_bytes_max 2.147483648e+10" in text  # the default 20GiB quota
    assert 'codex_api_requests_total{method="GET",route="/api/codex/v1/space",status="200"}' in text
    assert "process_cpu_seconds_total" in text
    assert "codex_maintenance_passes_total" in text
    assert "codex_node_info{" in text
    assert elsewhere.status_code == 404
    assert on_api.status_code == 404


async def test_a_taken_api_port_stops_what_was_started_and_names_the_flag(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        node = Node(NodeConfig(data_dir=tmp_path, api_port=port, marketplace=False), clock=FakeClock())
        with pytest.raises(ConfigError, match="--api-port: cannot listen"):
            await node.start()
    assert node.parts == []
    assert not (tmp_path / "meta").exists()  # nothing was started: the port is checked first


async def test_a_part_failing_to_start_stops_what_was_started_and_frees_the_port(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    held = LevelDBStore(tmp_path / "meta")  # the metadata store cannot open: another "node" holds the lock
    try:
        node = Node(NodeConfig(data_dir=tmp_path, api_port=port, marketplace=False), clock=FakeClock())
        with pytest.raises(KVError):
            await node.start()
    finally:
        held.close()
    assert node.parts == []
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))  # the node gave its address back


@pytest.mark.parametrize(
    ("more", "flag"),
    [
        # A bootstrap node but no URL to announce (the API on the any-address): peers could never call back.
        (
            {"bootstrap_nodes": ("http://127.0.0.1:9",), "api_bindaddr": "0.0.0.0", "api_allow_unauthenticated": True},
            "--api-announce-url",
        ),
        ({"bootstrap_nodes": ("spr:AAAA",)}, "--bootstrap-node"),  # a record that does not verify
    ],
)
async def test_network_flags_that_cannot_work_are_refused_before_anything_starts(
    tmp_path: Path, more: dict[str, object], flag: str
) -> None:
    node = Node(NodeConfig(data_dir=tmp_path / "data", api_port=0, **more))  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as e:
        await node.start()
    assert e.value.flag == flag
    assert node.parts == []
    assert not (tmp_path / "data").exists()


async def test_every_store_part_counts_on_the_nodes_own_registry(tmp_path: Path) -> None:
    async with Node(config(tmp_path, storage_quota=1 << 20), clock=FakeClock()) as node:
        assert node.registry.get_sample_value("codex_repostore_bytes_max") == 1 << 20
        assert node.registry.get_sample_value("codex_maintenance_passes_total") is not None
        # Hung on the process-wide registry while it runs (what /metrics serves), and only through it.
        assert REGISTRY.get_sample_value("codex_repostore_bytes_max") == 1 << 20
    assert REGISTRY.get_sample_value("codex_repostore_bytes_max") is None


async def test_two_nodes_in_one_process_keep_their_own_series(tmp_path: Path) -> None:
    async with (
        Node(config(tmp_path / "a", storage_quota=1 << 20), clock=FakeClock()) as a,
        Node(config(tmp_path / "b", storage_quota=2 << 20), clock=FakeClock()) as b,
    ):
        assert a.registry.get_sample_value("codex_repostore_bytes_max") == 1 << 20
        assert b.registry.get_sample_value("codex_repostore_bytes_max") == 2 << 20
