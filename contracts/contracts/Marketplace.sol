// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {MarketplaceConfig} from "./Configuration.sol";
import {Period} from "./Periods.sol";
import {Proofs} from "./Proofs.sol";
import {Ask, AskHelpers, Request, RequestId, RequestState, Requests, SlotId, SlotState} from "./Requests.sol";
import {SlotReservations} from "./SlotReservations.sol";
import {StateRetrieval} from "./StateRetrieval.sol";
import {ProofTarget, StorageProof, StorageProofs} from "./StorageProofs.sol";

// Configuration
error RepairRewardPercentageTooHigh();
error SlashPercentageTooHigh();
error MaximumSlashingTooHigh();
error ValidatorRewardPercentageTooHigh();
error InvalidProofSamples();
// requestStorage
error InvalidClientAddress();
error RequestAlreadyExists();
error InvalidExpiry();
error InsufficientSlots();
error InvalidMaxSlotLoss();
error InvalidSlotSize();
error InsufficientProofProbability();
error InsufficientCollateral();
error InsufficientReward();
error InvalidCid();
error DurationExceedsLimit();
// slots, proofs and funds
error UnknownRequest();
error InvalidSlot();
error ReservationRequired();
error SlotNotFree();
error SlotIsFree();
error InvalidSlotHost();
error AlreadyPaid();
error ProofNotSubmittedByHost();
error SlotNotAcceptingProofs();
error InvalidState();
error NothingToWithdraw();

/// The storage marketplace: clients pay for storage requests split into slots, hosts post collateral to fill
/// slots and prove possession every period they are challenged, validators mark missed proofs, and the
/// payouts, slashing and refunds follow codex-contracts-eth (see docs/storage-proofs.md for the proofs).
///
/// Token transfers come last in every function (checks, effects, interactions).
contract Marketplace is SlotReservations, Proofs, StateRetrieval {
  using SafeERC20 for IERC20;
  using AskHelpers for Ask;
  using Requests for Request;

  struct RequestContext {
    RequestState state;
    // What the client gets back when it withdraws: maxPrice minus the payout of every host for the time from
    // its fill to the request's end. Cancellation and failure adjust it; withdrawal sets it to zero.
    uint256 fundsToReturnToClient;
    uint64 slotsFilled;
    uint64 startedAt;
    uint64 endsAt;
    uint64 expiresAt;
  }

  struct Slot {
    SlotState state;
    RequestId requestId;
    uint64 filledAt;
    uint64 slotIndex;
    uint256 currentCollateral; // full collateral per slot minus slashes, paid back to the host at the end
    address host;
  }

  struct ActiveSlot {
    Request request;
    uint64 slotIndex;
  }

  IERC20 private immutable _token;
  MarketplaceConfig private _config;

  mapping(RequestId => Request) private _requests;
  mapping(RequestId => RequestContext) private _requestContexts;
  mapping(SlotId => Slot) private _slots;

  event StorageRequested(RequestId requestId, Ask ask, uint64 expiry);
  event RequestFulfilled(RequestId indexed requestId);
  event RequestFailed(RequestId indexed requestId);
  event RequestCancelled(RequestId indexed requestId);
  event SlotFilled(RequestId indexed requestId, uint64 slotIndex);
  event SlotFreed(RequestId indexed requestId, uint64 slotIndex);

  modifier requestIsKnown(RequestId requestId) {
    if (_requests[requestId].client == address(0)) revert UnknownRequest();
    _;
  }

  constructor(
    MarketplaceConfig memory config,
    IERC20 token_
  ) SlotReservations(config.reservations) Proofs(config.proofs) {
    if (config.collateral.repairRewardPercentage > 100) revert RepairRewardPercentageTooHigh();
    if (config.collateral.slashPercentage > 100) revert SlashPercentageTooHigh();
    if (uint256(config.collateral.maxNumberOfSlashes) * config.collateral.slashPercentage > 100) {
      revert MaximumSlashingTooHigh();
    }
    // Not checked by the anchor: above 100 % a validator would be paid more than was slashed.
    if (config.collateral.validatorRewardPercentage > 100) revert ValidatorRewardPercentageTooHigh();
    if (config.proofs.proofSamples == 0) revert InvalidProofSamples();
    _token = token_;
    _config = config;
  }

  function configuration() public view returns (MarketplaceConfig memory) {
    return _config;
  }

  function token() public view returns (IERC20) {
    return _token;
  }

  function currentCollateral(SlotId slotId) public view returns (uint256) {
    return _slots[slotId].currentCollateral;
  }

  // --- client ---------------------------------------------------------------------------------------------------

  /// Posts a request and takes its maximum price from the client (who must have approved it).
  function requestStorage(Request calldata request) public {
    RequestId id = request.id();
    Ask calldata ask = request.ask;
    if (request.client != msg.sender) revert InvalidClientAddress();
    if (_requests[id].client != address(0)) revert RequestAlreadyExists();
    // 0 < expiry < duration; it also implies the anchor's separate duration > 0 check.
    if (request.expiry == 0 || request.expiry >= ask.duration) revert InvalidExpiry();
    if (ask.slots == 0) revert InsufficientSlots();
    if (ask.maxSlotLoss > ask.slots) revert InvalidMaxSlotLoss();
    // Storage proofs sample whole cells of whole blocks.
    if (ask.slotSize == 0 || ask.slotSize % StorageProofs.BLOCK_SIZE != 0) revert InvalidSlotSize();
    if (ask.proofProbability == 0) revert InsufficientProofProbability();
    if (ask.collateralPerByte == 0) revert InsufficientCollateral();
    if (ask.pricePerBytePerSecond == 0) revert InsufficientReward();
    if (request.content.cid.length == 0) revert InvalidCid();
    if (ask.duration > _config.requestDurationLimit) revert DurationExceedsLimit();

    _requests[id] = request;
    RequestContext storage context = _requestContexts[id];
    context.endsAt = uint64(block.timestamp) + ask.duration;
    context.expiresAt = uint64(block.timestamp) + request.expiry;
    _addToMyRequests(request.client, id);

    uint256 amount = AskHelpers.maxPrice(ask);
    context.fundsToReturnToClient = amount;
    emit StorageRequested(id, ask, context.expiresAt);
    _token.safeTransferFrom(msg.sender, address(this), amount);
  }

  function withdrawFunds(RequestId requestId) public {
    withdrawFunds(requestId, msg.sender);
  }

  /// Pays the client what is left of its request once the request is over, to `withdrawRecipient`.
  function withdrawFunds(RequestId requestId, address withdrawRecipient) public requestIsKnown(requestId) {
    Request storage request = _requests[requestId];
    if (request.client != msg.sender) revert InvalidClientAddress();
    RequestContext storage context = _requestContexts[requestId];
    RequestState state = requestState(requestId);
    if (state != RequestState.Cancelled && state != RequestState.Failed && state != RequestState.Finished) {
      revert InvalidState();
    }
    // Zero after a withdrawal: this is what prevents withdrawing twice.
    if (context.fundsToReturnToClient == 0) revert NothingToWithdraw();

    if (state == RequestState.Cancelled) {
      context.state = RequestState.Cancelled;
      emit RequestCancelled(requestId);
      // Each filled slot was charged until endsAt; its host is only paid until expiresAt.
      context.fundsToReturnToClient +=
        context.slotsFilled *
        _slotPayout(requestId, context.expiresAt, context.endsAt);
    } else if (state == RequestState.Failed) {
      context.fundsToReturnToClient = request.ask.maxPrice();
    } else {
      context.state = RequestState.Finished;
    }

    uint256 amount = context.fundsToReturnToClient;
    context.fundsToReturnToClient = 0;
    _removeFromMyRequests(request.client, requestId);
    _token.safeTransfer(withdrawRecipient, amount);
  }

  // --- host -----------------------------------------------------------------------------------------------------

  /// Fills a reserved slot: the proof must verify for the current challenge, and the caller posts the slot's
  /// collateral (discounted by the repair reward when the slot is being repaired).
  function fillSlot(
    RequestId requestId,
    uint64 slotIndex,
    StorageProof calldata proof
  ) public requestIsKnown(requestId) {
    Request storage request = _requests[requestId];
    if (slotIndex >= request.ask.slots) revert InvalidSlot();
    SlotId slotId = Requests.slotId(requestId, slotIndex);
    if (!_hasReservation(slotId, msg.sender)) revert ReservationRequired();

    Slot storage slot = _slots[slotId];
    // Set before reading the derived state, so a slot of an ended request reads as ended, not Free.
    slot.requestId = requestId;
    slot.slotIndex = slotIndex;
    SlotState state = slotState(slotId);
    if (state != SlotState.Free && state != SlotState.Repair) revert SlotNotFree();

    _startRequiringProofs(slotId, request.ask.proofProbability);
    _verifyProof(slotId, request, slotIndex, proof);
    _recordProof(slotId);

    slot.host = msg.sender;
    slot.filledAt = uint64(block.timestamp);
    RequestContext storage context = _requestContexts[requestId];
    context.slotsFilled += 1;
    context.fundsToReturnToClient -= _slotPayout(requestId, slot.filledAt, context.endsAt);

    uint256 collateralPerSlot = request.ask.collateralPerSlot();
    // A repairing host posts less but operates with (and gets back) the full collateral: the difference is its
    // repair reward.
    uint256 collateralAmount = state == SlotState.Repair
      ? (collateralPerSlot * (100 - uint256(_config.collateral.repairRewardPercentage))) / 100
      : collateralPerSlot;
    slot.currentCollateral = collateralPerSlot;
    _addToMySlots(msg.sender, slotId);
    slot.state = SlotState.Filled;
    emit SlotFilled(requestId, slotIndex);

    if (context.slotsFilled == request.ask.slots && context.state == RequestState.New) {
      context.state = RequestState.Started;
      context.startedAt = uint64(block.timestamp);
      emit RequestFulfilled(requestId);
    }
    _token.safeTransferFrom(msg.sender, address(this), collateralAmount);
  }

  function freeSlot(SlotId slotId) public {
    freeSlot(slotId, msg.sender, msg.sender);
  }

  /// Ends the caller's hosting of a slot. Finished or cancelled: pays the payout to `rewardRecipient` and the
  /// collateral to `collateralRecipient`. Failed: only forgets the slot. Still running: frees the slot for
  /// repair and the host forfeits its whole collateral.
  function freeSlot(SlotId slotId, address rewardRecipient, address collateralRecipient) public {
    Slot storage slot = _slots[slotId];
    if (slot.state == SlotState.Free) revert SlotIsFree();
    if (slot.host != msg.sender) revert InvalidSlotHost();
    SlotState state = slotState(slotId);
    if (state == SlotState.Paid) revert AlreadyPaid();

    if (state == SlotState.Finished) {
      RequestContext storage context = _requestContexts[slot.requestId];
      context.state = RequestState.Finished;
      _payoutSlot(slotId, context.endsAt, rewardRecipient, collateralRecipient);
    } else if (state == SlotState.Cancelled) {
      _payoutSlot(slotId, _requestContexts[slot.requestId].expiresAt, rewardRecipient, collateralRecipient);
    } else if (state == SlotState.Failed) {
      _removeFromMySlots(msg.sender, slotId);
    } else if (state == SlotState.Filled) {
      _forciblyFreeSlot(slotId);
    }
  }

  /// The host's proof for the current period.
  function submitProof(SlotId id, StorageProof calldata proof) public {
    Slot storage slot = _slots[id];
    Request storage request = _requests[slot.requestId];
    if (request.client == address(0)) revert UnknownRequest();
    if (slot.host != msg.sender) revert ProofNotSubmittedByHost();
    _proofReceived(id);
    _verifyProof(id, request, slot.slotIndex, proof);
  }

  // --- validator ------------------------------------------------------------------------------------------------

  /// Reverts with the reason the proof of `period` cannot be marked as missing now; returns if it can.
  function canMarkProofAsMissing(SlotId slotId, Period period) public view {
    if (slotState(slotId) != SlotState.Filled) revert SlotNotAcceptingProofs();
    _checkProofMissing(slotId, period);
  }

  /// Marks a required proof as missing: slashes the host and rewards the caller; frees the slot after
  /// `maxNumberOfSlashes` missed proofs.
  function markProofAsMissing(SlotId slotId, Period period) public {
    if (slotState(slotId) != SlotState.Filled) revert SlotNotAcceptingProofs();
    _markProofAsMissing(slotId, period);

    Slot storage slot = _slots[slotId];
    Request storage request = _requests[slot.requestId];
    uint256 slashedAmount = (request.ask.collateralPerSlot() * _config.collateral.slashPercentage) / 100;
    uint256 validatorReward = (slashedAmount * _config.collateral.validatorRewardPercentage) / 100;
    slot.currentCollateral -= slashedAmount;
    if (missingProofs(slotId) >= _config.collateral.maxNumberOfSlashes) {
      _forciblyFreeSlot(slotId);
    }
    _token.safeTransfer(msg.sender, validatorReward);
  }

  // --- views ----------------------------------------------------------------------------------------------------

  function getRequest(RequestId requestId) public view requestIsKnown(requestId) returns (Request memory) {
    return _requests[requestId];
  }

  function getHost(SlotId slotId) public view returns (address) {
    return _slots[slotId].host;
  }

  function getActiveSlot(SlotId slotId) public view returns (ActiveSlot memory) {
    Slot storage slot = _slots[slotId];
    if (slot.state == SlotState.Free) revert SlotIsFree();
    return ActiveSlot({request: _requests[slot.requestId], slotIndex: slot.slotIndex});
  }

  /// Absolute timestamp until which the request's slots can be filled.
  function requestExpiry(RequestId requestId) public view returns (uint64) {
    return _requestContexts[requestId].expiresAt;
  }

  function requestEnd(RequestId requestId) public view returns (uint64) {
    RequestState state = requestState(requestId);
    RequestContext storage context = _requestContexts[requestId];
    if (state == RequestState.New || state == RequestState.Started) {
      return context.endsAt;
    }
    if (state == RequestState.Cancelled) {
      return context.expiresAt;
    }
    return uint64(Math.min(context.endsAt, block.timestamp));
  }

  /// The stored state, with the transitions that happen by time alone (expiry, end) applied.
  function requestState(RequestId requestId) public view requestIsKnown(requestId) returns (RequestState) {
    RequestContext storage context = _requestContexts[requestId];
    uint64 now_ = uint64(block.timestamp);
    if (context.state == RequestState.New && now_ > context.expiresAt) {
      return RequestState.Cancelled;
    }
    if ((context.state == RequestState.New || context.state == RequestState.Started) && now_ > context.endsAt) {
      return RequestState.Finished;
    }
    return context.state;
  }

  /// The stored state, overridden by the request's Cancelled/Finished/Failed state unless already Paid.
  function slotState(SlotId slotId) public view override(Proofs, SlotReservations) returns (SlotState) {
    Slot storage slot = _slots[slotId];
    if (RequestId.unwrap(slot.requestId) == 0) {
      return SlotState.Free;
    }
    if (slot.state == SlotState.Paid) {
      return SlotState.Paid;
    }
    RequestState reqState = requestState(slot.requestId);
    if (reqState == RequestState.Cancelled) {
      return SlotState.Cancelled;
    }
    if (reqState == RequestState.Finished) {
      return SlotState.Finished;
    }
    if (reqState == RequestState.Failed) {
      return SlotState.Failed;
    }
    return slot.state;
  }

  // --- internals ------------------------------------------------------------------------------------------------

  function _slotExists(RequestId requestId, uint64 slotIndex) internal view override returns (bool) {
    Request storage request = _requests[requestId];
    return request.client != address(0) && slotIndex < request.ask.slots;
  }

  function _verifyProof(
    SlotId slotId,
    Request storage request,
    uint64 slotIndex,
    StorageProof calldata proof
  ) private view {
    StorageProofs.verify(
      proof,
      ProofTarget({
        challenge: getChallenge(slotId),
        slotId: slotId,
        slotIndex: slotIndex,
        slots: request.ask.slots,
        slotSize: request.ask.slotSize,
        datasetRoot: request.content.merkleRoot,
        samples: _config.proofs.proofSamples
      })
    );
  }

  /// Payment for hosting one slot from `start` to `end`. A slot filled in the very second its request
  /// expires earns nothing (the anchor reverted here, which locked that host's collateral forever).
  function _slotPayout(RequestId requestId, uint64 start, uint64 end) private view returns (uint256) {
    return (end - start) * _requests[requestId].ask.pricePerSlotPerSecond();
  }

  function _payoutSlot(SlotId slotId, uint64 end, address rewardRecipient, address collateralRecipient) private {
    Slot storage slot = _slots[slotId];
    _removeFromMySlots(slot.host, slotId);
    uint256 payout = _slotPayout(slot.requestId, slot.filledAt, end);
    uint256 collateral = slot.currentCollateral;
    slot.state = SlotState.Paid;
    _token.safeTransfer(rewardRecipient, payout);
    _token.safeTransfer(collateralRecipient, collateral);
  }

  /// Removes the host of a Filled slot, which forfeits its remaining collateral, and opens the slot for
  /// repair. Fails the request once more than maxSlotLoss slots are empty.
  function _forciblyFreeSlot(SlotId slotId) private {
    Slot storage slot = _slots[slotId];
    RequestId requestId = slot.requestId;
    RequestContext storage context = _requestContexts[requestId];

    // The client was charged this host's payout until the end; a repairing host is charged anew.
    context.fundsToReturnToClient += _slotPayout(requestId, slot.filledAt, context.endsAt);

    _removeFromMySlots(slot.host, slotId);
    _clearReservations(slotId);
    slot.state = SlotState.Repair;
    slot.filledAt = 0;
    slot.currentCollateral = 0;
    slot.host = address(0);
    context.slotsFilled -= 1;
    emit SlotFreed(requestId, slot.slotIndex);
    _resetMissingProofs(slotId);

    Request storage request = _requests[requestId];
    uint256 slotsLost = request.ask.slots - context.slotsFilled;
    if (slotsLost > request.ask.maxSlotLoss && context.state == RequestState.Started) {
      context.state = RequestState.Failed;
      context.endsAt = uint64(block.timestamp) - 1;
      emit RequestFailed(requestId);
    }
  }
}
