"""End-to-end tests: whole nodes on the embedded chain, in this process or as ``codex-node run`` subprocesses.

Each test sells a real dataset through the REST API and moves the chain's time itself (time travel), so it
takes seconds, not the hours of a real contract. Shared helpers are in ``e2ekit.py``; subprocess nodes are started
with ``tests.harness.nodeprocess``. Every test here is ``slow`` (a node start, many blocks).
"""
