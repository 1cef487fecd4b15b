"""Which cells a proof must show for a challenge (docs/storage-proofs.md, "Challenge and samples"; pure).

Sample ``i`` picks cell ``uint256(keccak256(challenge ‖ slotId ‖ uint256(i))) % cellsInSlot``, exactly as the
contract's ``StorageProofs.sampleIndex`` (``abi.encodePacked`` of two ``bytes32`` and a ``uint256``).
"""

from __future__ import annotations

from codex_node.data.merkle import HASH_SIZE, keccak256


def sample_index(challenge: bytes, slot_id: bytes, sample: int, cells_in_slot: int) -> int:
    """The cell that sample number ``sample`` picks."""
    if len(challenge) != HASH_SIZE or len(slot_id) != HASH_SIZE:
        raise ValueError("challenge and slot id are 32 bytes each")
    if cells_in_slot < 1:
        raise ValueError(f"a slot of {cells_in_slot} cells cannot be sampled")
    if not 0 <= sample < 2**256:
        raise ValueError(f"sample number {sample} is not a uint256")
    digest = keccak256(challenge + slot_id + sample.to_bytes(32, "big"))
    return int.from_bytes(digest, "big") % cells_in_slot


def sample_indices(challenge: bytes, slot_id: bytes, cells_in_slot: int, samples: int) -> tuple[int, ...]:
    """The cells samples ``0 .. samples-1`` pick, in sample order (an index may repeat)."""
    return tuple(sample_index(challenge, slot_id, i, cells_in_slot) for i in range(samples))
