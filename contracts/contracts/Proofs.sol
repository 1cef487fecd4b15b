// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ProofConfig} from "./Configuration.sol";
import {SlotId, SlotState} from "./Requests.sol";
import {Period, Periods} from "./Periods.sol";

error InsufficientBlockHeight();
error ProofAlreadySubmitted();
error PeriodNotEnded();
error ValidationTimedOut();
error ProofNotMissing();
error ProofNotRequired();
error ProofAlreadyMarkedMissing();

/// When a slot must be proven, and the bookkeeping of received and missed proofs.
///
/// The challenge of a period is the hash of a recent block picked by a pointer into the last 256 blocks. The
/// pointer advances with the block number, so the block it picks stays the same while the pointer does not wrap
/// around; the first `downtime` pointer values after a wrap are the "downtime" in which no proof is required,
/// which gives hosts a stable challenge for the rest of the window.
abstract contract Proofs is Periods {
  ProofConfig private _proofConfig;

  mapping(SlotId => uint64) private _slotStarts;
  mapping(SlotId => uint256) private _probabilities;
  mapping(SlotId => uint256) private _missed;
  mapping(SlotId => mapping(Period => bool)) private _received;
  mapping(SlotId => mapping(Period => bool)) private _missing;

  event ProofSubmitted(SlotId id);

  constructor(ProofConfig memory config) Periods(config.period) {
    // blockhash(block.number - 1 - pointer) must exist for every pointer in 0..255.
    if (block.number <= 256) revert InsufficientBlockHeight();
    _proofConfig = config;
  }

  /// Implemented by the marketplace: proofs are only required from Filled slots.
  function slotState(SlotId id) public view virtual returns (SlotState);

  /// Seconds per proof period.
  function periodicity() public view returns (uint64) {
    return _secondsPerPeriod;
  }

  /// Number of proofs marked as missing since the slot was last filled.
  function missingProofs(SlotId slotId) public view returns (uint256) {
    return _missed[slotId];
  }

  function getPointer(SlotId id) public view returns (uint8) {
    return _getPointer(id, _blockPeriod());
  }

  function getChallenge(SlotId id) public view returns (bytes32) {
    return _getChallenge(_getPointer(id, _blockPeriod()));
  }

  /// True when the current period requires a proof and its challenge is outside the downtime.
  function isProofRequired(SlotId id) public view returns (bool) {
    return _isProofRequired(id, _blockPeriod());
  }

  /// True when the current period will require a proof once the downtime is over.
  function willProofBeRequired(SlotId id) public view returns (bool) {
    (bool isRequired, uint8 pointer) = _getProofRequirement(id, _blockPeriod());
    return isRequired && pointer < _proofConfig.downtime;
  }

  function _resetMissingProofs(SlotId id) internal {
    _missed[id] = 0;
  }

  function _startRequiringProofs(SlotId id, uint256 probability) internal {
    _slotStarts[id] = uint64(block.timestamp);
    _probabilities[id] = probability;
  }

  function _getPointer(SlotId id, Period period) internal view returns (uint8) {
    uint256 blockNumber = block.number % 256;
    uint256 periodNumber = (uint256(Period.unwrap(period)) * _proofConfig.downtimeProduct) % 256;
    uint256 idOffset = uint256(SlotId.unwrap(id)) % 256;
    return uint8((blockNumber + periodNumber + idOffset) % 256);
  }

  function _getChallenge(uint8 pointer) internal view returns (bytes32) {
    bytes32 hash = blockhash(block.number - 1 - pointer);
    assert(hash != bytes32(0));
    return keccak256(abi.encode(hash));
  }

  function _getProofRequirement(SlotId id, Period period) internal view returns (bool isRequired, uint8 pointer) {
    Period start = _periodOf(_slotStarts[id]);
    // No proof is due in the period in which the slot was filled: the fill itself carried one.
    if (slotState(id) != SlotState.Filled || !_isAfter(period, start)) {
      return (false, 0);
    }
    pointer = _getPointer(id, period);
    bytes32 challenge = _getChallenge(pointer);
    uint256 probability = (_probabilities[id] * (256 - uint256(_proofConfig.downtime))) / 256;
    isRequired = probability == 0 || uint256(challenge) % probability == 0;
  }

  function _isProofRequired(SlotId id, Period period) internal view returns (bool) {
    (bool isRequired, uint8 pointer) = _getProofRequirement(id, period);
    return isRequired && pointer >= _proofConfig.downtime;
  }

  /// Records a proof for the current period; a host proves at most once per period.
  function _proofReceived(SlotId id) internal {
    if (_received[id][_blockPeriod()]) revert ProofAlreadySubmitted();
    _recordProof(id);
  }

  /// Records a proof for the current period even if one was already received. Filling a slot carries a proof,
  /// and a repairing host may fill in the same period in which the previous host proved.
  function _recordProof(SlotId id) internal {
    _received[id][_blockPeriod()] = true;
    emit ProofSubmitted(id);
  }

  /// Reverts with the reason a proof of `missedPeriod` cannot be marked as missing now.
  function _checkProofMissing(SlotId id, Period missedPeriod) internal view {
    uint256 end = _periodEnd(missedPeriod);
    if (end >= block.timestamp) revert PeriodNotEnded();
    if (block.timestamp >= end + _proofConfig.timeout) revert ValidationTimedOut();
    if (_received[id][missedPeriod]) revert ProofNotMissing();
    if (!_isProofRequired(id, missedPeriod)) revert ProofNotRequired();
    if (_missing[id][missedPeriod]) revert ProofAlreadyMarkedMissing();
  }

  function _markProofAsMissing(SlotId id, Period missedPeriod) internal {
    _checkProofMissing(id, missedPeriod);
    _missing[id][missedPeriod] = true;
    _missed[id] += 1;
  }
}
