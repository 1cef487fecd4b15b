"""Gas used by the marketplace's proof-carrying transactions, measured on the in-process eth-tester chain.

    .venv/bin/python benchmarks/gas.py

Prints the gas of fillSlot (first fill, the fill that starts the request, a repair fill) and submitProof with
the dev configuration's 5 samples, for a few slot sizes: a proof's cost grows with the depth of the slot tree
(log2 of the cells in a slot) and the dataset tree (log2 of the slots), while the 5 cells of 2 KiB calldata
stay the bulk of it.
"""

from __future__ import annotations

import sys
from pathlib import Path

# The contract tests' harness deploys the artifacts and builds proofs; the benchmark reuses it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "contracts"))

from marketplace_harness import PROOF_SAMPLES, deploy, new_tester

GEOMETRIES = [(3, 1), (3, 16), (8, 256)]  # (slots, 64 KiB blocks per slot)


def measure(slots: int, blocks_per_slot: int) -> dict[str, int]:
    chain = deploy(new_tester())
    posted = chain.post_request(slots=slots, blocks_per_slot=blocks_per_slot, max_slot_loss=1)
    fills = chain.fill_all(posted)
    chain.advance_to_next_period()
    proof = chain.submit_proof(posted, 0, chain.accounts.hosts[0])
    freed_by = chain.accounts.hosts[1 % len(chain.accounts.hosts)]
    chain.send(chain.marketplace.functions.freeSlot(posted.slot_id(1)), freed_by)
    repair = chain.fill(posted, 1, chain.accounts.hosts[-1])
    return {
        "fillSlot (first)": fills[0]["gasUsed"],
        "fillSlot (starts request)": fills[-1]["gasUsed"],
        "fillSlot (repair)": repair["gasUsed"],
        "submitProof": proof["gasUsed"],
    }


def main() -> None:
    print(f"gas used, {PROOF_SAMPLES} samples of 2 KiB cells per proof")
    for slots, blocks in GEOMETRIES:
        cells = blocks * 32
        print(f"\n{slots} slots of {blocks * 64} KiB ({cells} cells per slot)")
        for name, gas in measure(slots, blocks).items():
            print(f"  {name:<27} {gas:>9,}")


if __name__ == "__main__":
    main()
