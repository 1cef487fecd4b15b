"""The integration suite: separate ``codex-node run`` processes on a local Hardhat chain (issue #11).

``localnet.py`` is the harness, ``reaper.py`` makes sure no process outlives the test run, ``conftest.py`` gives
the tests a net per module and puts the nodes' logs into a failed test's report. Every test here is marked
``hardhat`` and ``slow``, and skipped when Hardhat is not installed (``npm ci`` in ``contracts/``).
"""
