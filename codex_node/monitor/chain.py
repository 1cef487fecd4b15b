"""What the monitor reads of the chain and the sales: head, event cursor, balances, missed proofs, promises.

:class:`MarketProbe` reads the node's :class:`~codex_node.market.onchain.OnChainMarket` (and the web3 connection
it runs on) with a bounded timeout per read, so a hung provider makes the chain *unreachable*, never the monitor
stuck. The monitor sees it through the :class:`ChainProbe` protocol; tests use a fake.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from web3 import AsyncWeb3

    from codex_node.market.onchain import OnChainMarket
    from codex_node.sales.reservations import Reservations
    from codex_node.sales.sales import Sales

READ_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class ChainReading:
    reachable: bool
    error: str | None = None
    head_block: int | None = None
    cursor_block: int | None = None
    gas_balance: int | None = None
    token_balance: int | None = None
    collateral_promised: int | None = None
    missed_proofs: dict[str, int] = field(default_factory=dict)


class ChainProbe(Protocol):
    async def read(self) -> ChainReading: ...


class MarketProbe:
    """A :class:`ChainProbe` over the node's market, sales and reservations."""

    def __init__(
        self,
        w3: AsyncWeb3[Any],
        market: OnChainMarket,
        sales: Sales,
        reservations: Reservations,
        *,
        timeout: float = READ_TIMEOUT,
    ) -> None:
        self._w3 = w3
        self._market = market
        self._sales = sales
        self._reservations = reservations
        self._timeout = timeout

    async def read(self) -> ChainReading:
        promised = sum(t[4] for t in self._reservations.availability_totals())
        cursor = self._market.events.cursor.block
        try:
            async with asyncio.timeout(self._timeout):
                head = int(await self._w3.eth.block_number)
                address = await self._market.get_signer()
                gas = int(await self._w3.eth.get_balance(address))  # type: ignore[arg-type]
                token = await self._market.token_balance(address)
                missed: dict[str, int] = {}
                for agent in self._sales.agents():
                    if agent.data.filled:
                        count = await self._market.missing_proofs(agent.slot_id)
                        if count > 0:
                            missed[agent.slot_id.hex()] = count
        except TimeoutError:
            return ChainReading(
                False, f"no answer within {self._timeout:g}s", cursor_block=cursor, collateral_promised=promised
            )
        # aiohttp's HTTP errors (a 500 from the provider or a proxy in front of it) are none of CodexError, OSError
        # or ValueError; whatever the transport raises, the chain is unreachable, never the health check broken.
        except Exception as e:  # noqa: BLE001
            return ChainReading(
                False,
                " ".join(str(e).split())[:200] or type(e).__name__,
                cursor_block=cursor,
                collateral_promised=promised,
            )
        return ChainReading(
            True,
            head_block=head,
            cursor_block=cursor,
            gas_balance=gas,
            token_balance=token,
            collateral_promised=promised,
            missed_proofs=missed,
        )
