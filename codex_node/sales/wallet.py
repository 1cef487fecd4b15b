"""Whether the node's wallet can cover the collateral it offers: read at the Market port, decided here.

An availability promises collateral that is posted from the wallet only when a slot is filled, so an offer the
wallet cannot cover used to surface much later, as a failed ``fillSlot`` after the slot was reserved and its
data downloaded. The rule, checked when an availability is created or its ``totalCollateral`` raised: the
collateral every availability still offers (``Σ totalRemainingCollateral``, after the change) must not exceed the
wallet's token balance. Collateral already committed to a slot is not counted twice: a filled slot's left the
wallet, a pending one's left the availability's remainder.
"""

from __future__ import annotations

from typing import Protocol

from codex_node.errors import WalletBalanceError
from codex_node.market.market import Market
from codex_node.sales.availability import Availability


class OfferedCollateral(Protocol):
    """The part of the reservations book the check reads (``sales.reservations.Reservations``)."""

    async def availabilities(self) -> list[Availability]: ...

    async def get_availability(self, availability_id: bytes) -> Availability: ...


async def wallet_balance(market: Market) -> int:
    """The node's token balance."""
    return await market.token_balance(await market.get_signer())


async def require_offer_covered(
    market: Market, book: OfferedCollateral, total_collateral: int, *, availability_id: bytes | None = None
) -> None:
    """Raise :class:`WalletBalanceError` (422) unless the wallet covers every availability's remaining collateral
    once ``availability_id`` (``None``: a new availability) offers ``total_collateral`` in total. Lowering an
    availability's collateral is always allowed."""
    availabilities = await book.availabilities()
    offered = sum(a.total_remaining_collateral for a in availabilities)
    if availability_id is None:
        added = total_collateral
    else:
        current = await book.get_availability(availability_id)
        added = total_collateral - current.total_collateral
        if added <= 0:
            return
    balance = await wallet_balance(market)
    if offered + added > balance:
        raise WalletBalanceError(
            f"totalCollateral {total_collateral} cannot be covered: the wallet holds {balance} tokens and the "
            f"availabilities would offer {offered + added} in all (lower totalCollateral or fund the wallet)"
        )


def short_of_collateral(balance: int, collateral: int) -> str:
    """The reason a sale gives when the wallet cannot cover its slot's collateral."""
    return f"the wallet holds {balance} tokens, less than the slot's collateral of {collateral}"
