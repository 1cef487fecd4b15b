"""``GET /debug/check``: the operator's check of the running node, read by ``codex-node check``.

Four parts, each a list of problems (``sales/checkup.py`` says what each looks at): the books
(``accounting.check_books``, with the repo's stored bytes recounted), the repo's quota and block count against its
block records (``verify=true`` also reads every block back from disk: as slow as reading the whole repo), every
slot the chain lists as ours or a sale holds against the chain, and the ledger's totals against its entries.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import Field

from codex_node.api.schemas import CamelModel, error_responses
from codex_node.api.services import MarketDep, RepoDep, ReservationsDep, SalesDep, ServicesDep
from codex_node.sales.accounting import check_books
from codex_node.sales.checkup import ledger_problems, repo_facts, repo_problems, slot_facts, slot_problems

router = APIRouter(tags=["Debug"])


class CheckPart(CamelModel):
    name: str = Field(description="books, repo, slots or ledger")
    checked: int = Field(description="How many records the part looked at")
    problems: list[str]


class NodeCheck(CamelModel):
    ok: bool = Field(description="True when no part found a problem")
    parts: list[CheckPart]


@router.get(
    "/debug/check",
    summary="Check the books, the repo's quota against its blocks, every hosted slot against the chain, the ledger",
    responses=error_responses(503),
)
async def debug_check(
    services: ServicesDep,
    repo: RepoDep,
    market: MarketDep,
    sales: SalesDep,
    reservations: ReservationsDep,
    verify: Annotated[bool, Query(description="Also read every block back from disk and check it (slow)")] = False,
) -> NodeCheck:
    facts = await repo_facts(repo, read_blocks=verify)
    quota = repo.quota()
    availabilities = await reservations.availabilities()
    held = await reservations.all_reservations()
    books = check_books(
        availabilities,
        held,
        reserved=quota.reserved,
        used=quota.used,
        stored=facts.metadata_bytes,
        quota_max=quota.max,
    )
    slots = await slot_facts(market, sales)
    parts = [
        CheckPart(name="books", checked=len(availabilities) + len(held), problems=books),
        CheckPart(name="repo", checked=facts.metadata_blocks, problems=repo_problems(facts)),
        CheckPart(name="slots", checked=len(slots), problems=slot_problems(slots)),
    ]
    ledger = services.ledger
    if ledger is not None:
        parts.append(CheckPart(name="ledger", checked=len(list(ledger)), problems=ledger_problems(ledger)))
    return NodeCheck(ok=not any(p.problems for p in parts), parts=parts)
