from __future__ import annotations

from typing import ClassVar

from codex_node.purchasing.machine import PurchaseState


class PurchaseErrored(PurchaseState):
    """Something went wrong that the machine cannot get past (the error says what)."""

    api_name: ClassVar[str] = "errored"
    terminal = True

    def __init__(self, error: str) -> None:
        self.error = error
