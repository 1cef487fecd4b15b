"""codex-node."""
