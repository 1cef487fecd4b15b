"""The harness itself: no process outlives a test run, even one that is SIGKILLed mid-test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from integration.localnet import LocalNet
from integration.reaper import GRACE, start_time

ROOT = Path(__file__).resolve().parents[1]


def test_a_test_run_sigkilled_mid_test_leaves_no_process_behind(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEX_")} | {"SELFKILL_PIDS": str(pid_file)}
    output = tmp_path / "inner.log"
    with output.open("wb") as out:
        inner = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "integration/selfkill_scenario.py"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 180
        while not pid_file.exists():
            assert inner.poll() is None, f"the inner run ended early:\n{output.read_text()}"
            assert time.monotonic() < deadline, "the inner run did not start its net within 180 s"
            time.sleep(0.1)
        started = {int(p): start_time(int(p)) for p in pid_file.read_text().split()}
        assert len(started) == 4  # the reaper, Hardhat, two nodes
        assert all(t is not None for t in started.values()), "every process runs before the kill"
        inner.send_signal(signal.SIGKILL)  # no clean-up of any kind runs in the test process
        inner.wait()
        deadline = time.monotonic() + GRACE + 20
        while (left := [p for p, t in started.items() if start_time(p) == t]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert left == [], f"processes left behind: {left}"
    finally:
        if inner.poll() is None:
            inner.kill()
            inner.wait()


def test_stop_ends_every_process_and_is_idempotent(tmp_path: Path) -> None:
    net = LocalNet(tmp_path)
    try:
        net.start()
        net.add_node("lonely")
        started = {p: start_time(p) for p in net.pids()}
        assert None not in started.values()
    finally:
        net.stop()
    assert [p for p, t in started.items() if start_time(p) == t] == []
    net.stop()  # a second stop finds nothing to do
