"""Erasure coding throughput, as ratios to zfec alone on the same bytes in the same run.

    .venv/bin/python benchmarks/erasure.py [--size-mib 256] [--shapes 3:1,6:2,14:4] [--repeat 3]

For each shape ``nodes:tolerance`` (K = nodes - tolerance, M = tolerance) it measures, on the same dataset of
distinct 64 KiB blocks (the size is not a multiple of K rows on purpose, so the last row is padded):

* **zfec alone**: ``zfec.Encoder(K, K+M).encode`` of every row, the rows built (and padded) before the clock
  starts: the floor any encoder built on zfec pays;
* **encode_rows**: ``data/erasure.py``'s streaming encoder over the dataset's blocks (rows assembled, the last
  block and row padded, sizes checked, parity computed, one ``EncodedRow`` per row). Target: ratio >= 0.7;
* **keccak of the cells alone**: the slot-tree leaves and block subtrees of every encoded block, the floor of
  the slot roots (they hash (K+M)/K times the dataset, 2 KiB at a time);
* **Protector**: encoding plus the slot roots in the same pass (what a storage request pays), as a ratio to
  the two floors above added up;
* **zfec decode alone** and **restore** (``ProtectedManifest.restore``) with the first M data slots missing
  (the worst case: M data blocks per row are rebuilt), without and with the slot-root check.

Throughputs are in MiB/s of original dataset bytes; each figure is the best of ``--repeat`` runs, the runs of
the compared pairs interleaved so that load from other processes falls on both alike.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from collections.abc import Callable, Iterator

import zfec

from codex_node.data.cid import manifest_cid
from codex_node.data.erasure import ErasureLayout, ErasureParams, block_root, encode_rows
from codex_node.data.manifest import Manifest
from codex_node.data.protected import ProtectedManifest, Protector
from codex_node.data.slots import BLOCK_SIZE, ZERO_BLOCK

MiB = 1 << 20


def make_blocks(size: int) -> list[bytes]:
    """``size`` bytes as 64 KiB blocks that are all different (a random pool, each block stamped with its index)."""
    pool = os.urandom(8 * MiB)
    blocks = []
    for i, start in enumerate(range(0, size, BLOCK_SIZE)):
        n = min(BLOCK_SIZE, size - start)
        src = start % len(pool)
        block = bytearray(pool[src : src + n])
        block[: min(8, n)] = i.to_bytes(8, "big")[: min(8, n)]
        blocks.append(bytes(block))
    return blocks


def best(repeat: int, *runs: Callable[[], object]) -> list[float]:
    """The best time of each run over ``repeat`` rounds, the runs interleaved within each round."""
    times = [float("inf")] * len(runs)
    for _ in range(repeat):
        for i, run in enumerate(runs):
            start = time.perf_counter()
            run()
            times[i] = min(times[i], time.perf_counter() - start)
    return times


def bench_shape(nodes: int, tolerance: int, blocks: list[bytes], size: int, repeat: int) -> None:
    params = ErasureParams.from_request(nodes, tolerance)
    k, m = params.k, params.m
    layout = ErasureLayout(params, size)
    padded = [*blocks[:-1], blocks[-1] + bytes(BLOCK_SIZE - len(blocks[-1]))]
    padded += [ZERO_BLOCK] * (layout.rows * k - len(padded))
    rows = [tuple(padded[r * k : (r + 1) * k]) for r in range(layout.rows)]
    encoder = zfec.Encoder(k, k + m)
    parity_ids = tuple(range(k, k + m))

    def zfec_alone() -> None:
        for row in rows:
            encoder.encode(row, parity_ids)

    def ours() -> None:
        for _ in encode_rows(layout, blocks):
            pass

    t_zfec, t_ours = best(repeat, zfec_alone, ours)

    encoded = [row.blocks for row in encode_rows(layout, blocks)]
    original = manifest_cid(b"benchmark dataset")

    def keccak_alone() -> None:
        for row in encoded:
            for block in row:
                block_root(block)

    protected: list[ProtectedManifest] = []

    def protect() -> None:
        # As purchasing/protect.py does: each slot's manifest lists the sha2-256 of its blocks.
        protector = Protector(params, original, size)
        digests = [bytearray() for _ in range(k + m)]
        for row in protector.rows(blocks):
            for s, block in enumerate(row.blocks):
                digests[s] += hashlib.sha256(block).digest()
        slots = [Manifest.build(bytes(d), dataset_size=layout.rows * BLOCK_SIZE).cid() for d in digests]
        protected[:] = [protector.manifest(slots)]

    t_keccak, t_protect = best(max(1, repeat - 1), keccak_alone, protect)
    manifest = protected[0]

    missing = set(range(m))  # the first M data slots: every row rebuilds M data blocks
    kept = tuple(s for s in range(k + m) if s not in missing)[:k]
    decoder = zfec.Decoder(k, k + m)
    kept_rows = [tuple(row[s] for s in kept) for row in encoded]

    def slot(s: int) -> Iterator[bytes]:
        return (row[s] for row in encoded)

    def zfec_decode() -> None:
        for row in kept_rows:
            decoder.decode(row, kept)

    def restore(verify: bool) -> Callable[[], None]:
        def run() -> None:
            for _ in manifest.restore({s: slot(s) for s in kept}, verify=verify):
                pass

        return run

    t_dec, t_restore = best(repeat, zfec_decode, restore(False))
    (t_restore_verified,) = best(1, restore(True))

    mib = size / MiB
    print(f"\nnodes={nodes} tolerance={tolerance} (K={k}, M={m}), {mib:.1f} MiB, {layout.rows} rows, best of {repeat}")
    lines: list[tuple[str, float, float | None]] = [
        ("zfec alone (parity of every row)", t_zfec, None),
        ("encode_rows (streaming encoder)", t_ours, t_zfec / t_ours),
        ("keccak of the cells alone (slot-root floor)", t_keccak, None),
        ("Protector (encode + slot roots, one pass)", t_protect, (t_zfec + t_keccak) / t_protect),
        (f"zfec decode alone (slots {sorted(missing)} missing)", t_dec, None),
        ("restore, no slot-root check", t_restore, t_dec / t_restore),
        ("restore, slot roots checked", t_restore_verified, None),
    ]
    for label, seconds, ratio in lines:
        print(f"  {label:52s} {mib / seconds:8.1f} MiB/s" + ("" if ratio is None else f"   ratio {ratio:.2f}"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-mib", type=int, default=256)
    p.add_argument("--shapes", default="3:1,6:2,14:4", help="comma-separated nodes:tolerance pairs")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    shapes = [tuple(int(x) for x in shape.split(":")) for shape in args.shapes.split(",")]
    size = args.size_mib * MiB - 12345  # a short last block and a padded last row
    print(f"generating {args.size_mib} MiB of distinct 64 KiB blocks …", flush=True)
    blocks = make_blocks(size)
    for nodes, tolerance in shapes:
        bench_shape(nodes, tolerance, blocks, size, args.repeat)


if __name__ == "__main__":
    main()
