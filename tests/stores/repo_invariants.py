"""Whole-store consistency checks for tests: what must hold whenever no operation is running."""

from __future__ import annotations

from collections import Counter

from codex_node.data.cid import parse_cid
from codex_node.data.manifest import Manifest
from codex_node.stores.blockmeta import (
    MANIFEST_PREFIX,
    PACK_PREFIX,
    PENDING_PREFIX,
    RELEASE_PREFIX,
    TOTAL_KEY,
    TTL_PREFIX,
    BlockMeta,
    PackRecord,
)
from codex_node.stores.quota import QUOTA_KEY, Quota
from codex_node.stores.repostore import RepoStore


def check_invariants(repo: RepoStore) -> None:
    """Assert the books balance: quota and count match the index, every entry's bytes are in its pack, the pack
    records count exactly the entries pointing into them, every pack file has a record and no more bytes than it
    (and no record an empty pack), nothing is left in flight, and every data block's refCount equals its
    occurrences in the stored manifests."""
    kv = repo.kv
    metas = {key[len(TTL_PREFIX) :]: BlockMeta.decode(v) for key, v in kv.iterate(TTL_PREFIX)}
    stored_quota = kv.get(QUOTA_KEY)
    assert stored_quota is not None
    assert Quota.decode(stored_quota) == repo.quota(), "cached quota differs from the stored one"
    assert repo.quota().used == sum(m.size for m in metas.values()), "quota.used != sum of block sizes"
    total = kv.get(TOTAL_KEY)
    assert repo.total_blocks == len(metas) == (0 if total is None else int(total)), "block count drifted"

    records = {int(key[len(PACK_PREFIX) :], 16): PackRecord.decode(v) for key, v in kv.iterate(PACK_PREFIX)}
    assert records == repo.pack_records(), "cached pack records differ from the stored ones"
    assert all(r.count > 0 for r in records.values()), "an empty pack was kept"
    files = dict(repo.files.iter_files())
    assert set(files) == {repo.files.pack_path(pid).name for pid in records}, "pack files and pack records differ"
    for pid, r in records.items():
        assert files[repo.files.pack_path(pid).name] >= r.size, f"pack {pid}: file shorter than its committed size"

    counts: Counter[int] = Counter()
    live: Counter[int] = Counter()
    for text, meta in metas.items():
        assert meta.pack in records, f"{text}: its pack {meta.pack} has no record"
        assert meta.offset + meta.size <= records[meta.pack].size, f"{text}: beyond its pack's committed size"
        counts[meta.pack] += 1
        live[meta.pack] += meta.size
        data = repo.files.read(meta.location)
        assert parse_cid(text).matches(data), f"{text}: content does not match"
    for pid, r in records.items():
        assert (r.count, r.live) == (counts[pid], live[pid]), f"pack {pid}: books {r} != entries"
        assert r.max_expiry >= max(m.expiry for m in metas.values() if m.pack == pid), f"pack {pid}: maxExpiry"
    walked = {text: loc for pid, r in records.items() for text, loc in repo.files.walk(pid, r.size)}
    for text, meta in metas.items():
        assert walked.get(text) == meta.location, f"{text}: no record at its location in the pack"

    assert list(kv.iterate(PENDING_PREFIX)) == [], "pending markers left at rest"
    assert list(kv.iterate(RELEASE_PREFIX)) == [], "release jobs left at rest"

    manifest_keys = {key[len(MANIFEST_PREFIX) :] for key, _ in kv.iterate(MANIFEST_PREFIX)}
    manifest_metas = {text for text in metas if parse_cid(text).is_manifest}
    assert manifest_keys == manifest_metas, "manifest summaries and manifest blocks differ"
    occurrences: Counter[str] = Counter()
    for text in manifest_metas:
        manifest = Manifest.decode(repo.files.read(metas[text].location))
        occurrences.update(cid.text for cid in manifest.block_cids())
    for text, meta in metas.items():
        if parse_cid(text).is_block:
            assert meta.ref_count == occurrences[text], f"{text}: refCount {meta.ref_count} != {occurrences[text]}"
