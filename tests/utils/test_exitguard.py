"""The exit guard: a process whose node stopped exits even if a thread hangs, naming that thread."""

from __future__ import annotations

import threading

from structlog.testing import capture_logs

from codex_node.utils import exitguard


def test_the_guard_names_the_threads_the_exit_would_wait_for_and_exits_with_the_nodes_code() -> None:
    release = threading.Event()
    stuck = threading.Thread(target=release.wait, name="stuck-rpc-call")
    stuck.start()
    waited: list[float] = []
    exits: list[int] = []
    try:
        with capture_logs() as logs:
            guard = exitguard.arm(3, 7.5, wait=waited.append, exit_now=exits.append)
            guard.join(timeout=30)
    finally:
        release.set()
        stuck.join()
    assert waited == [7.5]
    assert exits == [3]
    (warning,) = [e for e in logs if e["log_level"] == "warning"]
    assert "stuck-rpc-call" in warning["threads"]
    stack = warning["stacks"]["stuck-rpc-call"]
    assert any(line.endswith(" wait") for line in stack)  # threading.Event.wait: where the thread is stuck
    assert warning["seconds"] == 7.5


def test_daemon_threads_and_the_caller_are_not_waited_for() -> None:
    release = threading.Event()
    daemon = threading.Thread(target=release.wait, name="a-daemon", daemon=True)
    daemon.start()
    try:
        names = exitguard.lingering_threads()
    finally:
        release.set()
    assert "a-daemon" not in names
    assert threading.current_thread().name not in names


def test_the_guard_itself_never_holds_the_process() -> None:
    gate = threading.Event()
    guard = exitguard.arm(0, 1.0, wait=lambda _: gate.wait(), exit_now=lambda _: None)
    try:
        assert guard.daemon
        assert "exit-guard" not in exitguard.lingering_threads()
    finally:
        gate.set()
        guard.join(timeout=30)
