"""Run by ``test_harness.py`` in a pytest subprocess that it SIGKILLs: not collected on its own (no ``test_``
prefix). It starts a net with two nodes, writes every pid it started to ``$SELFKILL_PIDS``, and waits to die."""

from __future__ import annotations

import os
import time
from pathlib import Path

from integration.localnet import LocalNet


def test_start_a_net_and_wait_to_be_killed(net: LocalNet) -> None:
    client = net.add_node("client")
    net.add_node("host", bootstrap=[client])
    pids = Path(os.environ["SELFKILL_PIDS"])
    partial = pids.with_suffix(".partial")
    partial.write_text(" ".join(str(p) for p in net.pids()))
    partial.rename(pids)  # all at once: the killer never reads half a list
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # the killer SIGKILLs this process long before
        time.sleep(0.1)
    raise AssertionError("was not killed within 120 s")
