"""The operator's watch over a running node: readings, alerts, health, storage samples (read-only)."""
