"""Test harnesses that drive real processes: a Hardhat node and a ``codex-node run`` subprocess."""
