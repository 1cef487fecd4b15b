"""Storage proofs (format: docs/storage-proofs.md): trees, sampling, building and verifying, and the node's Prover.

Pure maths: :mod:`~codex_node.data.proof` (the value and its ABI form, in ``data/`` so that the market, which
carries proofs to the contract, need not import this package), :mod:`~codex_node.proofs.sampling`,
:mod:`~codex_node.proofs.trees`, :mod:`~codex_node.proofs.build`, :mod:`~codex_node.proofs.verify`. Async shell:
:mod:`~codex_node.proofs.slotdata` (reading slots from the block store) and :mod:`~codex_node.proofs.prover`.
"""

from codex_node.data.proof import CELL_SIZE, CELLS_PER_BLOCK, STORAGE_PROOF_ABI_TYPE, AbiProof, StorageProof
from codex_node.proofs.build import build_proof, cell_of, prove_slot_data
from codex_node.proofs.prover import Prover
from codex_node.proofs.sampling import sample_index, sample_indices
from codex_node.proofs.slotdata import BlockReader, DatasetCommitment, dataset_commitment
from codex_node.proofs.trees import DatasetTree, SlotTree, cell_leaves
from codex_node.proofs.verify import ProofTargetLike, check_proof, verify_proof

__all__ = [
    "CELLS_PER_BLOCK",
    "CELL_SIZE",
    "STORAGE_PROOF_ABI_TYPE",
    "AbiProof",
    "BlockReader",
    "DatasetCommitment",
    "DatasetTree",
    "ProofTargetLike",
    "Prover",
    "SlotTree",
    "StorageProof",
    "build_proof",
    "cell_leaves",
    "cell_of",
    "check_proof",
    "dataset_commitment",
    "prove_slot_data",
    "sample_index",
    "sample_indices",
    "verify_proof",
]
