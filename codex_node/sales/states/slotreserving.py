"""SlotReserving: ask the contract for one of the slot's few reservation places (``reserveSlot``).

First the wallet: a slot whose collateral the wallet cannot cover is ignored here, with its reservation's bytes and
collateral back in the availability, rather than after its data was downloaded and proven, at ``fillSlot``.
Preparing checks the same before it reserves anything (and queues the slot again); this second check catches a
balance spent meanwhile and a sale resumed after a restart, and does not queue the slot again: its own return is
an availability save, which would un-see the other waiting slots, each failing the same way in turn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from codex_node.errors import CodexError, SlotReservationNotAllowedError
from codex_node.sales.states.base import SaleState
from codex_node.sales.states.cancelled import Cancelled
from codex_node.sales.states.downloading import Downloading
from codex_node.sales.states.errored import Errored, chain_unreachable
from codex_node.sales.states.failed import Failed
from codex_node.sales.states.ignored import Ignored
from codex_node.sales.wallet import short_of_collateral, wallet_balance

if TYPE_CHECKING:
    from codex_node.sales.agent import SalesAgent


class SlotReserving(SaleState):
    transitions: ClassVar[frozenset[str]] = frozenset({"Downloading", "Ignored", "Errored", "Cancelled", "Failed"})

    def on_cancelled(self) -> SaleState | None:
        return Cancelled()

    def on_failed(self) -> SaleState | None:
        return Failed()

    def on_slot_filled(self) -> SaleState | None:
        return Ignored(reprocess=False, reason="slot filled by another host")

    async def run(self, machine: SalesAgent) -> SaleState | None:
        market = machine.context.market
        request_id, index = machine.data.request_id, machine.data.slot_index
        try:
            collateral = await market.slot_collateral(request_id, index)
            balance = await wallet_balance(market)
            if balance < collateral:
                return Ignored(reprocess=False, reason=short_of_collateral(balance, collateral))
            if not await market.can_reserve_slot(request_id, index):
                return Ignored(reprocess=False, reason="slot reservation not allowed")
            await market.reserve_slot(request_id, index)
        except SlotReservationNotAllowedError:
            return Ignored(reprocess=False, reason="slot reservation not allowed")
        except CodexError as e:
            # Nothing is on chain yet, or a reservation that a retry finds (it then cannot reserve again: ignored).
            return Errored(e, retry=chain_unreachable(e))
        return Downloading()
