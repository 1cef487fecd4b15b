// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Hashes} from "@openzeppelin/contracts/utils/cryptography/Hashes.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {SlotId} from "./Requests.sol";

/// A storage proof: the format is defined in docs/storage-proofs.md, which codex_node/proofs implements too.
struct StorageProof {
  bytes32 slotRoot; // root of the slot tree
  bytes32[] slotPath; // path of slotRoot (leaf index = slotIndex) in the dataset tree
  bytes[] cells; // the sampled cells, CELL_SIZE bytes each, in sample order
  bytes32[][] cellPaths; // for each sample, the path of keccak256(cell) in the slot tree
}

/// What a proof is checked against.
struct ProofTarget {
  bytes32 challenge;
  SlotId slotId;
  uint64 slotIndex;
  uint64 slots;
  uint64 slotSize;
  bytes32 datasetRoot;
  uint8 samples;
}

error InvalidProofShape(); // wrong number of cells or paths, or a cell of the wrong length
error InvalidCellProof(); // a cell and its path do not lead to slotRoot
error InvalidSlotProof(); // slotRoot and its path do not lead to the dataset root

/// Keccak Merkle proofs of storage. Trees are positional (not sorted): at level k, bit k of the leaf index
/// says whether the running node is the right child. Leaf counts are padded to a power of two with
/// bytes32(0) leaves, so a path has exactly ceil(log2(leafCount)) siblings.
library StorageProofs {
  uint256 internal constant BLOCK_SIZE = 65536;
  uint256 internal constant CELL_SIZE = 2048;

  /// Index of the cell that sample `sample` picks for this challenge and slot.
  function sampleIndex(
    bytes32 challenge,
    SlotId slotId,
    uint256 sample,
    uint256 cellsInSlot
  ) internal pure returns (uint256) {
    return uint256(keccak256(abi.encodePacked(challenge, SlotId.unwrap(slotId), sample))) % cellsInSlot;
  }

  function treeDepth(uint256 leafCount) internal pure returns (uint256) {
    return Math.log2(leafCount, Math.Rounding.Ceil);
  }

  function rootFromPath(bytes32 leaf, uint256 index, bytes32[] calldata path) internal pure returns (bytes32 node) {
    node = leaf;
    for (uint256 level = 0; level < path.length; ++level) {
      node = (index >> level) & 1 == 1
        ? Hashes.efficientKeccak256(path[level], node)
        : Hashes.efficientKeccak256(node, path[level]);
    }
  }

  /// Reverts with InvalidProofShape, InvalidCellProof or InvalidSlotProof unless `proof` proves possession
  /// of the sampled cells of the slot. The shape is checked whole before any hashing.
  function verify(StorageProof calldata proof, ProofTarget memory target) internal pure {
    uint256 samples = target.samples;
    if (proof.cells.length != samples || proof.cellPaths.length != samples) revert InvalidProofShape();
    for (uint256 i = 0; i < samples; ++i) {
      if (proof.cells[i].length != CELL_SIZE) revert InvalidProofShape();
    }

    uint256 cellsInSlot = target.slotSize / CELL_SIZE;
    uint256 cellDepth = treeDepth(cellsInSlot);
    for (uint256 i = 0; i < samples; ++i) {
      bytes32[] calldata path = proof.cellPaths[i];
      if (path.length != cellDepth) revert InvalidCellProof();
      uint256 index = sampleIndex(target.challenge, target.slotId, i, cellsInSlot);
      if (rootFromPath(keccak256(proof.cells[i]), index, path) != proof.slotRoot) revert InvalidCellProof();
    }

    if (proof.slotPath.length != treeDepth(target.slots)) revert InvalidSlotProof();
    if (rootFromPath(proof.slotRoot, target.slotIndex, proof.slotPath) != target.datasetRoot) {
      revert InvalidSlotProof();
    }
  }
}
