"""A scrub: every indexed block read back and hashed, the corrupt ones reported with what they belong to.

Walks the index (``meta/ttl/``) in key order, page by page, reads each block with a positioned read and checks it
against its CID (:meth:`RepoStore.check_block`). A block is *corrupt* when its bytes do not match its CID, its pack
file is missing or too short; a block deleted while the scrub runs is skipped. For each corrupt block the report
names the datasets whose manifests list it (found by reading every stored manifest once, only when something was
corrupt) and whether it is stored on its own (slot data of a sale).

It reads and reports; it never deletes or repairs anything (a repair fetches the block again: that is the
network's job). Blocking: run it from a worker thread, or offline (``codex-node scrub``, ``scrubcmd.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from codex_node.data.cid import DIGEST_SIZE, Cid
from codex_node.data.manifest import Manifest
from codex_node.errors import CodexError
from codex_node.stores.repostore import RepoStore

log = structlog.get_logger(__name__)

PAGE = 1024


@dataclass(frozen=True, slots=True)
class CorruptBlock:
    """One block that failed the scrub: where it is, why, and what holds it."""

    cid: Cid
    pack: int
    offset: int
    problem: str
    standalone: bool
    datasets: tuple[Cid, ...] = ()


@dataclass(slots=True)
class ScrubReport:
    checked: int = 0
    bytes_checked: int = 0
    corrupt: list[CorruptBlock] = field(default_factory=list)


def scrub(repo: RepoStore, *, on_progress: Callable[[int, int], None] | None = None, page: int = PAGE) -> ScrubReport:
    """Check every indexed block; ``on_progress(checked, total)`` after each page."""
    report = ScrubReport()
    total = repo.total_blocks
    after: str | None = None
    while entries := repo.expiry_page(after, page):
        for cid, meta in entries:
            problem = repo.check_block(cid)
            report.checked += 1
            report.bytes_checked += meta.size
            if problem is not None:
                log.error("corrupt block", cid=cid.text, pack=f"{meta.pack:016x}", offset=meta.offset, problem=problem)
                report.corrupt.append(CorruptBlock(cid, meta.pack, meta.offset, problem, meta.standalone))
        after = entries[-1][0].text
        if on_progress is not None:
            on_progress(report.checked, max(total, report.checked))
    if report.corrupt:
        report.corrupt = _with_owners(repo, report.corrupt)
    log.info("scrub done", checked=report.checked, corrupt=len(report.corrupt))
    return report


def _with_owners(repo: RepoStore, corrupt: list[CorruptBlock]) -> list[CorruptBlock]:
    """The corrupt blocks with the datasets whose manifests list them (a corrupt manifest lists itself)."""
    owners: dict[bytes, list[Cid]] = {b.cid.digest: [] for b in corrupt}
    for cid, _ in repo.manifests():
        if cid.digest in owners:
            owners[cid.digest].append(cid)
            continue
        try:
            manifest = Manifest.decode(repo.read_block(cid))
        except CodexError:
            continue
        digests = manifest.block_digests
        for i in range(0, len(digests), DIGEST_SIZE):
            hit = owners.get(digests[i : i + DIGEST_SIZE])
            if hit is not None and cid not in hit:
                hit.append(cid)
    return [
        CorruptBlock(b.cid, b.pack, b.offset, b.problem, b.standalone, tuple(owners[b.cid.digest])) for b in corrupt
    ]
