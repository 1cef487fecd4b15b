"""Account routes under ``/api/codex/v1``: the node's wallet and its earnings ledger (not in nim-codex).

- ``GET /account``: address, token and gas balances (read from the chain now), collateral locked in the slots the
  node hosts (their ``currentCollateral`` on chain), collateral promised by the availabilities (their remaining
  collateral), and the ledger's totals (earned, lost, per kind);
- ``GET /account/ledger``: the ledger's entries, newest first, a page at a time (``before`` = the previous page's
  ``next``).

Token amounts are decimal strings, as everywhere in this API. The figures come from ``sales/account.py``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import Field

from codex_node.api.schemas import CamelModel, error_responses
from codex_node.api.services import LedgerDep, MarketDep, ReservationsDep, ServicesDep
from codex_node.sales.account import AccountSnapshot, account_snapshot
from codex_node.sales.availability import hex0x
from codex_node.sales.ledger import EntryKind, LedgerEntry

router = APIRouter(tags=["Account"])

MAX_PAGE = 500


class LedgerTotalsRead(CamelModel):
    earned: str = Field(description="Payouts received")
    lost: str = Field(description="Collateral that did not come back (slashed, or kept by the contract)")
    net_flow: str = Field(description="The token balance change all entries stand for (may start with '-')")
    by_kind: dict[str, str] = Field(description="The sum of each kind of entry")


class AccountRead(CamelModel):
    address: str
    token_balance: str = Field(description="Tokens in the node's wallet")
    gas_balance: str | None = Field(description="Wei in the node's wallet for gas; null when the chain cannot say")
    collateral_locked: str = Field(description="Collateral the contract holds for the slots this node hosts")
    collateral_promised: str = Field(description="Collateral the availabilities still offer (Σ remaining)")
    collateral_reserved: str = Field(description="Collateral set aside for sales not filled yet")
    hosted_slots: int
    totals: LedgerTotalsRead

    @classmethod
    def of(cls, s: AccountSnapshot) -> AccountRead:
        t = s.totals
        return cls(
            address=s.address,
            token_balance=str(s.token_balance),
            gas_balance=None if s.gas_balance is None else str(s.gas_balance),
            collateral_locked=str(s.collateral_locked),
            collateral_promised=str(s.collateral_promised),
            collateral_reserved=str(s.collateral_reserved),
            hosted_slots=s.hosted_slots,
            totals=LedgerTotalsRead(
                earned=str(t.earned),
                lost=str(t.lost),
                net_flow=str(t.net_flow),
                by_kind={k.value: str(t.of(k)) for k in EntryKind},
            ),
        )


class LedgerEntryRead(CamelModel):
    id: int
    at: int = Field(description="Unix seconds (chain time)")
    kind: str = Field(
        description="collateralPosted, collateralReturned, payout, slashed, purchasePayment or purchaseRefund"
    )
    amount: str
    flow: str = Field(description="The entry's effect on the token balance: amount with its sign (0 for slashed)")
    request_id: str
    slot_index: int | None = None
    sale_id: int | None = Field(default=None, description="The sale in GET /sales/history")
    note: str = ""

    @classmethod
    def of(cls, e: LedgerEntry) -> LedgerEntryRead:
        return cls(
            id=e.id,
            at=e.at,
            kind=e.kind.value,
            amount=str(e.amount),
            flow=str(e.flow),
            request_id=hex0x(e.request_id),
            slot_index=e.slot_index,
            sale_id=e.sale_id,
            note=e.note,
        )


class LedgerPage(CamelModel):
    entries: list[LedgerEntryRead]
    next: int | None = Field(description="Pass as `before` for the next (older) page; null on the last page")


@router.get("/account", summary="The node's wallet, collateral and earnings", responses=error_responses(503))
async def get_account(
    services: ServicesDep, market: MarketDep, reservations: ReservationsDep, ledger: LedgerDep
) -> AccountRead:
    return AccountRead.of(await account_snapshot(market, reservations, ledger, services.account_metrics))


@router.get(
    "/account/ledger",
    summary="The earnings ledger, newest first, one page at a time",
    responses=error_responses(
        400, 422, 503, s400="limit or before not an integer", s422="limit or before out of range"
    ),
)
async def get_ledger(
    ledger: LedgerDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Entries per page")] = 50,
    before: Annotated[int | None, Query(ge=0, description="Only entries older than this id (a page's `next`)")] = None,
) -> LedgerPage:
    entries = ledger.page(before=before, limit=limit + 1)
    more = len(entries) > limit
    entries = entries[:limit]
    return LedgerPage(
        entries=[LedgerEntryRead.of(e) for e in entries], next=entries[-1].id if more and entries else None
    )
