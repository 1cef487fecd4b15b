"""Upload sessions: a dataset's blocks stored group by group, held by the upload until its manifest is stored.

Each group's blocks are stored with one reference each, and the references are recorded under
``meta/release/<upload>/<seq>`` in the same metadata batch as the blocks. So an upload that never finishes —
an error, a disconnect, a crash — drops them again (:meth:`UploadSession.abort`, or the repo's start-up
recovery, which finishes every release job it finds) and leaves no block behind. :meth:`UploadSession.finish`
stores the manifest and deletes the records in one batch: from then on the references are the manifest's.

This module only sequences the repo store's own operations (``RepoStore.write_blocks`` with an extra batch step,
``RepoStore.release_job``); it never touches files or the quota itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from codex_node.data.cid import Cid, block_cid, manifest_cid
from codex_node.data.manifest import Manifest
from codex_node.stores.blockfiles import Buffer
from codex_node.stores.blockmeta import MANIFEST_PREFIX, RELEASE_PREFIX, MetaTx
from codex_node.stores.repostore import RepoStore, in_thread


class UploadSession:
    """One upload in progress on ``repo`` (see the module docstring). Groups may be put concurrently."""

    def __init__(self, repo: RepoStore) -> None:
        self.repo = repo
        self.id = uuid.uuid4().hex

    @property
    def _records(self) -> str:
        return f"{RELEASE_PREFIX}{self.id}/"

    async def put_group(self, seq: int, data: Buffer, block_size: int, ttl: int | None) -> bytes:
        """Cut ``data`` into blocks, store them as referenced by this upload; return their digests in order."""
        return await in_thread(self._put_group, seq, data, block_size, ttl)

    async def put_verified(self, seq: int, blocks: Sequence[tuple[Cid, Buffer]], ttl: int | None) -> None:
        """Store ``blocks`` (already checked against their CIDs by the caller: a peer's blocks, verified by the
        block fetcher) as referenced by this upload, once per entry (a block at two positions is listed twice)."""
        await in_thread(self._put_blocks, seq, list(blocks), ttl)

    async def finish(self, manifest: Manifest, ttl: int | None) -> Cid:
        """Store the manifest and hand the upload's references over to it; return the manifest CID."""
        return await in_thread(self._finish, manifest, ttl)

    async def abort(self) -> None:
        """Drop the upload's references, deleting the blocks nothing else holds."""
        await in_thread(self.repo.release_job, self.id)

    def _put_group(self, seq: int, data: Buffer, block_size: int, ttl: int | None) -> bytes:
        view = memoryview(data)
        blocks = []
        digests = bytearray()
        for i in range(0, len(view), block_size):
            cid = block_cid(view[i : i + block_size])  # hashing a memoryview slice copies nothing
            blocks.append((cid, view[i : i + block_size]))
            digests += cid.digest
        record = bytes(digests)
        self._write(seq, blocks, record, ttl)
        return record

    def _put_blocks(self, seq: int, blocks: list[tuple[Cid, Buffer]], ttl: int | None) -> None:
        self._write(seq, blocks, b"".join(cid.digest for cid, _ in blocks), ttl)

    def _write(self, seq: int, blocks: Sequence[tuple[Cid, Buffer]], record: bytes, ttl: int | None) -> None:
        def extra(tx: MetaTx) -> None:
            tx.batch.put(f"{self._records}{seq:010d}", record)

        self.repo.write_blocks(blocks, ttl=ttl, ref=True, standalone=False, extra=extra)

    def _finish(self, manifest: Manifest, ttl: int | None) -> Cid:
        encoded = manifest.encode()
        cid = manifest_cid(encoded)
        existed = False

        def extra(tx: MetaTx) -> None:
            nonlocal existed
            # The same bytes were uploaded before: one manifest, so its blocks keep only the references it already
            # holds, and this upload's are dropped below (or by recovery, if we crash first).
            existed = self.repo.has_block(cid)  # the stored record: this transaction already holds the manifest
            if not existed:
                tx.batch.put(MANIFEST_PREFIX + cid.text, manifest.info.encode())
                for key, _ in self.repo.kv.iterate(self._records):
                    tx.batch.delete(key)

        self.repo.write_blocks([(cid, encoded)], ttl=ttl, ref=False, standalone=True, extra=extra)
        if existed:
            self.repo.release_job(self.id)
        return cid
