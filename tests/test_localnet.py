"""``scripts/localnet``: one command brings up Hardhat, a client, three hosts and a validator; Ctrl-C ends them all.

The test runs the script as an operator would (a subprocess, stopped with SIGINT), waits for the five nodes, has
the client request storage with nodes=3 tolerance=1 from hosts each offering room for exactly one slot, moves the
chain's time a period at a time until the purchase has started (a host proves at the start of the period after
its download), and checks that nothing the script started outlives it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from codex_node.client import CodexClient
from codex_node.data.erasure import ErasureLayout, ErasureParams
from codex_node.market.deployment import DEV_CONFIG
from tests.harness import hardhat

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "localnet"
NODES, TOLERANCE = 3, 1
PERIOD = DEV_CONFIG.proofs.period
DATA = 5 * 65_536 + 1234
COLLATERAL_PER_BYTE = 2
UP_TIMEOUT = 180.0
STOP_TIMEOUT = 45.0
WINDOW = 5.0
"""Seconds the purchase may stay `submitted` before the chain moves on a period."""
ADVANCES = 8
"""Periods moved at most: fewer than the request's expiry (10 periods), so it cannot expire unfilled."""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class LocalNet:
    def __init__(self, root: Path, *flags: str) -> None:
        self.dir = root / "net"
        self.out = root / "localnet.out"
        with self.out.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(SCRIPT), "--dir", str(self.dir), "--base-port", "0", "--chain-port", "0", *flags],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # as in a terminal: the signal goes to localnet, which stops the rest
            )
        self.status: dict[str, Any] = {}

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_up(self) -> dict[str, Any]:
        status = self.dir / "localnet.json"
        deadline = time.monotonic() + UP_TIMEOUT
        while not status.exists():
            assert self.proc.poll() is None, f"localnet exited with {self.proc.returncode}:\n{self.output()}"
            assert time.monotonic() < deadline, f"localnet not up within {UP_TIMEOUT} s:\n{self.output()}"
            time.sleep(0.2)
        self.status = json.loads(status.read_text())
        return self.status

    def node(self, name: str) -> dict[str, Any]:
        return next(n for n in self.status["nodes"] if n["name"] == name)

    def kill_all(self) -> None:
        """After a failed test: nothing may outlive it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in self.status.get("pids", []):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def started() -> Iterator[list[LocalNet]]:
    nets: list[LocalNet] = []
    yield nets
    for net in nets:
        net.kill_all()


def advance_one_period(chain: str) -> None:
    hardhat.rpc(chain, "evm_increaseTime", [PERIOD])
    hardhat.rpc(chain, "evm_mine")


@pytest.mark.slow
@pytest.mark.hardhat
def test_localnet_starts_a_marketplace_whose_request_starts_and_stops_every_process_on_ctrl_c(
    tmp_path: Path, started: list[LocalNet]
) -> None:
    if not hardhat.available():
        pytest.skip("Hardhat is not installed (npm ci in contracts/)")
    slot_size = ErasureLayout(ErasureParams.from_request(NODES, TOLERANCE), DATA).slot_size
    net = LocalNet(tmp_path, "--availability-size", str(slot_size), "--collateral-per-byte", str(COLLATERAL_PER_BYTE))
    started.append(net)
    status = net.wait_up()

    # --- five nodes, each serving its API; the summary says where to look ------------------------------------------
    names = [n["name"] for n in status["nodes"]]
    assert names == ["client", "host1", "host2", "host3", "validator"]
    assert len(status["pids"]) == 6  # Hardhat and the five nodes
    out = net.output()
    for node in status["nodes"]:
        assert node["api"] in out
        assert node["dashboard"] in out
        assert node["log"] in out
        assert Path(node["log"]).exists()
    assert status["chain"] in out
    with CodexClient(net.node("validator")["api"]) as validator:
        assert validator.validator() is not None  # --validator: the route answers only on a validator
    for host in ("host1", "host2", "host3"):
        with CodexClient(net.node(host)["api"]) as client:
            [offer] = client.list_availabilities()
            assert offer.total_size == slot_size

    # --- a storage request through the client reaches `started`, one slot per host ----------------------------------
    with CodexClient(net.node("client")["api"]) as client:
        cid = client.upload(os.urandom(DATA))
        pid = client.request_storage(
            cid,
            duration=16 * PERIOD,
            price_per_byte_per_second=3,
            proof_probability=1,
            collateral_per_byte=COLLATERAL_PER_BYTE,
            expiry=10 * PERIOD,
            nodes=NODES,
            tolerance=TOLERANCE,
        )
        state = client.get_purchase(pid).state
        for _ in range(ADVANCES):
            deadline = time.monotonic() + WINDOW
            while time.monotonic() < deadline and state not in ("started", "errored", "failed", "cancelled"):
                time.sleep(0.5)
                state = client.get_purchase(pid).state
            if state != "submitted":
                break
            advance_one_period(status["chain"])  # the hosts prove at the start of the next period
        assert state == "started", f"purchase is {state}:\n{net.output()}"
    hosted = {}
    for host in ("host1", "host2", "host3"):
        with CodexClient(net.node(host)["api"]) as client:
            hosted[host] = [s.slot_index for s in client.list_slots()]
    assert sorted(i for slots in hosted.values() for i in slots) == [0, 1, 2]
    assert all(len(slots) == 1 for slots in hosted.values()), hosted

    # --- bootstrapped to each other: every node has reached the four others -----------------------------------------
    def peers_known() -> dict[str, int]:
        known = {}
        for node in status["nodes"]:
            with CodexClient(node["api"]) as client:
                known[node["name"]] = len(client.debug_info().table.nodes)
        return known

    deadline = time.monotonic() + 30.0
    while min((known := peers_known()).values()) < 4 and time.monotonic() < deadline:
        time.sleep(1.0)
    assert min(known.values()) >= 4, known

    # --- Ctrl-C: everything stops, nothing is left ----------------------------------------------------------------
    net.proc.send_signal(signal.SIGINT)
    assert net.proc.wait(timeout=STOP_TIMEOUT) == 0, net.output()
    assert [pid for pid in status["pids"] if alive(pid)] == []
    assert "stopped" in net.output().splitlines()[-1]


def test_localnet_refuses_a_dir_already_in_use(tmp_path: Path) -> None:
    (tmp_path / "old.log").write_text("a chain that no longer exists\n")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--dir", str(tmp_path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert "--dir" in done.stderr
    assert "not an empty directory" in done.stderr
    assert (tmp_path / "old.log").read_text() == "a chain that no longer exists\n"


@pytest.mark.slow
@pytest.mark.hardhat
def test_a_node_that_dies_stops_the_whole_net_with_its_log(tmp_path: Path, started: list[LocalNet]) -> None:
    if not hardhat.available():
        pytest.skip("Hardhat is not installed (npm ci in contracts/)")
    net = LocalNet(tmp_path, "--block-time", "0")
    started.append(net)
    status = net.wait_up()
    host2 = status["pids"][3]  # Hardhat, client, host1, host2, …
    os.kill(host2, signal.SIGKILL)
    assert net.proc.wait(timeout=STOP_TIMEOUT) == 1, net.output()
    assert "host2 exited with -9" in net.output()
    assert [pid for pid in status["pids"] if alive(pid)] == []
