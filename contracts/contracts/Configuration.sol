// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// Marketplace parameters, fixed at deployment (constructor argument).
struct MarketplaceConfig {
  CollateralConfig collateral;
  ProofConfig proofs;
  SlotReservationsConfig reservations;
  uint64 requestDurationLimit; // longest allowed request duration, in seconds
}

struct CollateralConfig {
  // Share of the collateral a host repairing a freed slot does not have to post; it receives the full
  // collateral back at the end, so the discount is its reward for the repair.
  uint8 repairRewardPercentage;
  // Missed proofs after which the slot is freed; the host loses the rest of its collateral.
  uint8 maxNumberOfSlashes;
  uint8 slashPercentage; // of the slot's full collateral, per missed proof
  uint8 validatorRewardPercentage; // of a slashed amount, paid to whoever marked the proof as missing
}

struct ProofConfig {
  uint64 period; // seconds per proof period
  uint64 timeout; // seconds after a period's end during which a missing proof can be marked
  uint8 downtime; // blocks (of 256) at the start of a challenge window in which no proof is required
  uint8 downtimeProduct; // period multiplier that moves the challenge pointer from period to period
  uint8 proofSamples; // cells sampled per storage proof
}

struct SlotReservationsConfig {
  uint8 maxReservations; // hosts that may reserve one slot at the same time
}
