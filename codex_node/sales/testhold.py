"""A test hold: park every sale that reaches one named state, before or after the state's work, until the process
is killed.

Only for subprocess tests that must kill a node while a sale is in a state that passes in milliseconds
(SlotReserving or Filling on the embedded chain, which mines each transaction at once). Set
``CODEXNODE_TEST_SALE_HOLD=<API state name>:<before|after>`` in the node's environment, e.g. ``SaleFilling:after``
(the fill is mined, the sale is parked before it can move to Filled). Unset — always, outside such tests — nothing
changes. The variable deliberately lacks the ``CODEX_`` prefix of the configuration variables: it is no setting,
and no flag or config file can turn it on. A parked sale logs one warning, so a hold is never silent.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass

import structlog

log = structlog.get_logger(__name__)

ENV = "CODEXNODE_TEST_SALE_HOLD"


@dataclass(frozen=True, slots=True)
class SaleHold:
    state: str
    """The API name of the state (``SaleFilling``)."""
    after: bool
    """Park after the state's ``run`` returned (its transaction mined) instead of before it starts."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> SaleHold | None:
        raw = environ.get(ENV, "")
        if not raw:
            return None
        state, _, when = raw.partition(":")
        if not state or when not in ("before", "after"):
            log.warning("test sale hold ignored: expected <state>:<before|after>", value=raw)
            return None
        log.warning("test sale hold set: sales will be parked", state=state, when=when)
        return cls(state, when == "after")

    def applies(self, state_name: str, *, after: bool) -> bool:
        return state_name == self.state and after == self.after

    async def park(self) -> None:
        """Wait until cancelled (the agent is stopped) or the process dies."""
        await asyncio.Event().wait()
