"""A ``codex-node run`` subprocess for tests: start it, read its JSON log, stop or kill it.

The node is started with ``--api-port 0 --log-format json`` and found ready by its ``node started`` log line,
which names the API URL it bound (no free-port race). Its stderr goes to a file beside the data dir, so a test
can wait for log events (:meth:`NodeProcess.events`) and a failure can show the whole log.

Loopback only; nothing here sleeps without a condition and a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCRIPT = Path(sys.executable).with_name("codex-node")
START_TIMEOUT = 60.0
"""Seconds a node may take to start (the embedded chain's first start deploys contracts; CI machines are slow)."""
STOP_TIMEOUT = 15.0


class NodeProcessError(AssertionError):
    """The node did not start, or did not stop, as expected (an assertion: tests report it as a failure)."""


@dataclass
class NodeProcess:
    proc: subprocess.Popen[bytes]
    log: Path
    api: str
    """The API base URL, ``http://127.0.0.1:<port>/api/codex/v1``."""

    def events(self) -> list[dict[str, Any]]:
        """Every JSON log line so far, in order."""
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a library printing outside logging, or a line being written
        return out

    def find(self, predicate: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        return [e for e in self.events() if predicate(e)]

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Send ``sig`` and wait for the exit code."""
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> int:
        """SIGKILL: no clean-up of any kind runs (a crash, a power cut of the process)."""
        return self.stop(signal.SIGKILL)


def start_node(data_dir: Path, *flags: str, log_dir: Path | None = None, timeout: float = START_TIMEOUT) -> NodeProcess:
    """Start ``codex-node run`` on ``data_dir`` and return once it serves its API.

    ``CODEX_*`` variables of the test's environment are not passed on, so only ``flags`` configure the node.
    """
    log_dir = log_dir or data_dir.parent
    log = log_dir / f"node-{time.monotonic_ns()}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEX_")}
    argv = ["run", "--data-dir", str(data_dir), "--api-port", "0", "--log-format", "json", *flags]
    with log.open("wb") as stderr:
        proc = subprocess.Popen([str(SCRIPT), *argv], stdout=subprocess.DEVNULL, stderr=stderr, env=env)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = log.read_text(errors="replace")
            # Whole lines only: the line being written may have "node started" and not yet its end (seen in CI).
            for line in text[: text.rfind("\n") + 1].splitlines():
                if '"node started"' in line:
                    return NodeProcess(proc, log, str(json.loads(line)["api"]))
            if proc.poll() is not None:
                raise NodeProcessError(f"node exited with {proc.returncode} before starting:\n{log.read_text()}")
            time.sleep(0.05)
        raise NodeProcessError(f"node did not start within {timeout}s:\n{log.read_text()}")
    except BaseException:
        # No caller holds the process yet: nothing else would stop it (a CI run left one behind this way).
        proc.kill()
        proc.wait()
        raise
