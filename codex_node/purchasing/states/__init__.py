"""The purchase states, one per module (see ``purchasing/machine.py`` for the graph)."""
