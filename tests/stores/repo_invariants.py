"""Whole-store consistency checks for tests: what must hold whenever no operation is running."""

from __future__ import annotations

from collections import Counter

from codex_node.data.cid import parse_cid
from codex_node.data.manifest import Manifest
from codex_node.stores.quota import QUOTA_KEY, Quota
from codex_node.stores.repostore import (
    MANIFEST_PREFIX,
    PENDING_PREFIX,
    RELEASE_PREFIX,
    TOTAL_KEY,
    TTL_PREFIX,
    BlockMeta,
    RepoStore,
)


def check_invariants(repo: RepoStore) -> None:
    """Assert the books balance: quota and count match the metadata, metadata and files match one to one, nothing
    is left in flight, and every data block's refCount equals its occurrences in the stored manifests."""
    kv = repo.kv
    metas = {key[len(TTL_PREFIX) :]: BlockMeta.decode(v) for key, v in kv.iterate(TTL_PREFIX)}
    stored_quota = kv.get(QUOTA_KEY)
    assert stored_quota is not None
    assert Quota.decode(stored_quota) == repo.quota(), "cached quota differs from the stored one"
    assert repo.quota().used == sum(m.size for m in metas.values()), "quota.used != sum of block sizes"
    total = kv.get(TOTAL_KEY)
    assert repo.total_blocks == len(metas) == (0 if total is None else int(total)), "block count drifted"

    files = dict(repo.files.iter_files())
    assert sorted(set(files) - set(metas)) == [], "files (or temp files) without metadata: nobody would delete them"
    assert sorted(set(metas) - set(files)) == [], "metadata without a file"
    for text, meta in metas.items():
        assert files[text] == meta.size, f"{text}: file size {files[text]} != metadata size {meta.size}"
        assert parse_cid(text).matches(repo.files.read(parse_cid(text))), f"{text}: content does not match"

    assert list(kv.iterate(PENDING_PREFIX)) == [], "pending markers left at rest"
    assert list(kv.iterate(RELEASE_PREFIX)) == [], "release jobs left at rest"

    manifest_keys = {key[len(MANIFEST_PREFIX) :] for key, _ in kv.iterate(MANIFEST_PREFIX)}
    manifest_metas = {text for text in metas if parse_cid(text).is_manifest}
    assert manifest_keys == manifest_metas, "manifest summaries and manifest blocks differ"
    occurrences: Counter[str] = Counter()
    for text in manifest_metas:
        manifest = Manifest.decode(repo.files.read(parse_cid(text)))
        occurrences.update(cid.text for cid in manifest.block_cids())
    for text, meta in metas.items():
        if parse_cid(text).is_block:
            assert meta.ref_count == occurrences[text], f"{text}: refCount {meta.ref_count} != {occurrences[text]}"
