"""A 256 MiB dataset through the erasure coder and back, with the peak memory of each direction."""

from __future__ import annotations

import hashlib
import random
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from codex_node.data.cid import manifest_cid
from codex_node.data.erasure import ErasureParams
from codex_node.data.protected import Protector
from codex_node.data.slots import BLOCK_SIZE

MiB = 1 << 20
SIZE = 256 * MiB
K, M = 3, 2  # 4096 blocks in rows of 3: the last row holds one data block and two zero blocks
MISSING = (1, 3)  # a data slot and a parity slot
MEMORY_BOUND = 16 * MiB


def rss() -> int:
    """Resident set size now (Linux ``/proc``), or 0 where it is not available."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * 4096


def dataset_blocks() -> Iterator[bytes]:
    rng = random.Random(256)
    for _ in range(SIZE // BLOCK_SIZE):
        yield rng.randbytes(BLOCK_SIZE)


def slot_blocks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while block := f.read(BLOCK_SIZE):
            yield block


@pytest.mark.slow
def test_a_256_mib_dataset_decodes_with_m_slots_missing_in_bounded_memory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    original = hashlib.sha256()

    def source() -> Iterator[bytes]:
        for block in dataset_blocks():
            original.update(block)
            yield block

    paths = [tmp_path / f"slot{s}" for s in range(K + M)]
    files = [p.open("wb") for p in paths]
    protector = Protector(ErasureParams(K, M), manifest_cid(b"the original manifest"), SIZE)
    tracemalloc.start()
    try:
        started = time.perf_counter()
        for row in protector.rows(source()):
            for f, block in zip(files, row.blocks, strict=True):
                f.write(block)
        encode_seconds = time.perf_counter() - started
        _, encode_peak = tracemalloc.get_traced_memory()
        for f in files:
            f.close()
        protected = protector.manifest([manifest_cid(b"slot %d" % s) for s in range(K + M)])

        tracemalloc.reset_peak()
        decoded = hashlib.sha256()
        size = 0
        started = time.perf_counter()
        kept = {s: slot_blocks(paths[s]) for s in range(K + M) if s not in MISSING}
        rss_before = rss_peak = rss()
        for piece in protected.restore(kept):  # checks every slot read against its slot root too
            decoded.update(piece)
            size += len(piece)
            if size % MiB == 0:
                rss_peak = max(rss_peak, rss())
        decode_seconds = time.perf_counter() - started
        _, decode_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        for f in files:
            f.close()

    with capsys.disabled():
        print(
            f"\n256 MiB, K={K} M={M}, slots {list(MISSING)} missing: "
            f"encode {encode_seconds:.1f} s peak {encode_peak / MiB:.2f} MiB; "
            f"decode {decode_seconds:.1f} s peak {decode_peak / MiB:.2f} MiB (traced Python allocations), "
            f"RSS growth while decoding {(rss_peak - rss_before) / MiB:.2f} MiB"
        )
    assert size == SIZE
    assert decoded.digest() == original.digest()
    assert all(p.stat().st_size == protected.slot_size for p in paths)
    assert decode_peak < MEMORY_BOUND
    assert encode_peak < MEMORY_BOUND
    assert rss_peak - rss_before < MEMORY_BOUND
