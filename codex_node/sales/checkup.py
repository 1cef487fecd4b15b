"""The operator's check of a running node (``GET /debug/check``, ``codex-node check``): the books, the repo's quota
against its blocks, every hosted slot against the chain, and the ledger against its totals.

Each part gathers facts (:func:`slot_facts`, :func:`repo_facts`) and a pure function turns facts into problems
(one line each, naming the record and the numbers); ``[]`` means the part is sound. The books' rule is
``accounting.check_books`` (its one statement). Read-only: nothing here repairs anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from codex_node.errors import CodexError
from codex_node.market.market import Market
from codex_node.market.types import SlotId, SlotState
from codex_node.sales.ledger import EarningsLedger, EntryKind

if TYPE_CHECKING:
    from codex_node.sales.sales import Sales
    from codex_node.stores.repostore import RepoStore

PRE_FILL = frozenset({"SalePreparing", "SaleSlotReserving", "SaleDownloading", "SaleInitialProving"})
"""Sale states in which our fill has not gone through: the chain cannot name us as the host yet."""
HOSTING = frozenset({"SaleFilled", "SaleProving", "SaleProvingSimulated"})
"""Sale states that hold a slot the chain must show as filled by us."""
OWED = frozenset({SlotState.FILLED, SlotState.FINISHED, SlotState.CANCELLED, SlotState.FAILED})
"""Slot states a slot in ``mySlots`` may be in (the last three wait for our ``freeSlot``)."""


@dataclass(frozen=True, slots=True)
class SlotFact:
    slot_id: SlotId
    in_my_slots: bool
    """The chain lists the slot among ours."""
    chain_state: SlotState | None
    """``None``: the chain could not be read."""
    hosted_by_us: bool
    missing_proofs: int
    sale_state: str | None
    """The state of the node's sale of the slot (``None``: no sale runs for it)."""


def slot_problems(facts: Sequence[SlotFact]) -> list[str]:
    problems = []
    for f in facts:
        name = f"slot 0x{f.slot_id.hex()}"
        if f.chain_state is None:
            problems.append(f"{name}: the chain could not be read")
            continue
        state = f.chain_state.name.lower()
        if f.in_my_slots:
            if f.sale_state is None:
                problems.append(f"{name}: the chain says this node hosts it ({state}) but no sale runs for it")
            elif f.sale_state in PRE_FILL:
                problems.append(f"{name}: the chain says this node hosts it, but its sale is in {f.sale_state}")
            if not f.hosted_by_us:
                problems.append(f"{name}: listed among this node's slots, but the chain names another host")
            if f.chain_state not in OWED:
                problems.append(f"{name}: listed among this node's slots, but the slot is {state}")
        elif f.sale_state in HOSTING:
            problems.append(
                f"{name}: its sale is in {f.sale_state}, but the chain does not list it among this node's slots "
                f"(the slot is {state})"
            )
        if f.missing_proofs and (f.in_my_slots or f.sale_state in HOSTING):
            problems.append(f"{name}: {f.missing_proofs} proof(s) marked missing (slashed)")
    return problems


async def slot_facts(market: Market, sales: Sales) -> list[SlotFact]:
    """One fact per slot the chain lists as ours or a sale of ours holds."""
    mine = set(await market.my_slots())
    signer = await market.get_signer()
    agents = {a.slot_id: a for a in sales.agents()}
    facts = []
    for sid in sorted(mine | agents.keys()):
        agent = agents.get(sid)
        sale_state = None if agent is None or agent.state is None else agent.state.api_name
        try:
            state = await market.slot_state(sid)
            host = await market.get_host(sid)
            missing = await market.missing_proofs(sid)
        except CodexError:
            facts.append(SlotFact(sid, sid in mine, None, False, 0, sale_state))
            continue
        facts.append(SlotFact(sid, sid in mine, state, host == signer, missing, sale_state))
    return facts


@dataclass(frozen=True, slots=True)
class RepoFacts:
    quota_used: int
    total_blocks: int
    metadata_bytes: int
    """Σ of the blocks' sizes as their metadata records say."""
    metadata_blocks: int
    unreadable: tuple[str, ...] = ()
    """Blocks that could not be read back from disk, or whose content does not match their CID (with a reason)."""


def repo_problems(f: RepoFacts) -> list[str]:
    problems = []
    if f.quota_used != f.metadata_bytes:
        problems.append(f"quota used {f.quota_used} != the {f.metadata_bytes} bytes of the blocks on record")
    if f.total_blocks != f.metadata_blocks:
        problems.append(f"block count {f.total_blocks} != the {f.metadata_blocks} blocks on record")
    problems.extend(f.unreadable)
    return problems


PAGE = 1000


async def repo_facts(repo: RepoStore, *, read_blocks: bool) -> RepoFacts:
    """Walk the repo's block records a page at a time; with ``read_blocks``, read every block back (which checks
    it against its CID) — as long as reading the whole repo takes."""
    total_bytes = count = 0
    unreadable: list[str] = []
    after: str | None = None
    while True:
        page = repo.expiry_page(after, PAGE)
        if not page:
            break
        for cid, meta in page:
            total_bytes += meta.size
            count += 1
            if read_blocks:
                try:
                    data = await repo.get_block(cid)
                except CodexError as e:
                    unreadable.append(f"block {cid.text}: {e}")
                    continue
                if len(data) != meta.size:
                    unreadable.append(f"block {cid.text}: {len(data)} bytes on disk, {meta.size} on record")
        after = page[-1][0].text
    return RepoFacts(repo.quota().used, repo.total_blocks, total_bytes, count, tuple(unreadable))


def ledger_problems(ledger: EarningsLedger) -> list[str]:
    """The running totals must be the sums of the entries (they are written in one batch with each entry)."""
    sums: dict[EntryKind, int] = {}
    for entry in ledger:
        sums[entry.kind] = sums.get(entry.kind, 0) + entry.amount
    totals = ledger.totals()
    return [
        f"total {kind.value} {totals.of(kind)} != the {sums.get(kind, 0)} its entries sum to"
        for kind in EntryKind
        if totals.of(kind) != sums.get(kind, 0)
    ]
