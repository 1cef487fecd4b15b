// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// Identifier of a storage request: keccak256(abi.encode(request)).
type RequestId is bytes32;
/// Identifier of one slot of a request: keccak256(abi.encode(requestId, slotIndex)).
type SlotId is bytes32;

/// A storage request as the client posts it. `expiry` is relative: seconds after creation during which
/// the slots must all be filled, otherwise the request is cancelled.
struct Request {
  address client;
  Ask ask;
  Content content;
  uint64 expiry;
  bytes32 nonce;
}

/// What the client asks for and pays. Token amounts are in the payment token's smallest unit.
struct Ask {
  uint256 proofProbability; // a proof is required on average once every `proofProbability` periods
  uint256 pricePerBytePerSecond;
  uint256 collateralPerByte;
  uint64 slots; // number of slots (hosts) the dataset is spread over
  uint64 slotSize; // bytes per slot: a non-zero multiple of the 64 KiB block size
  uint64 duration; // seconds from creation until the request ends
  uint64 maxSlotLoss; // slots that may be lost before the request fails
}

/// `cid` identifies the protected manifest; `merkleRoot` is the dataset root that storage proofs verify against.
struct Content {
  bytes cid;
  bytes32 merkleRoot;
}

enum RequestState {
  New, // waiting for its slots to be filled
  Started, // all slots were filled before expiry
  Cancelled, // not all slots filled before expiry
  Finished, // ran its full duration
  Failed // lost more than maxSlotLoss slots
}

enum SlotState {
  Free, // never filled
  Filled, // a host stores the data and submits proofs
  Finished, // the request finished; the host can collect its payout
  Failed, // the request failed
  Paid, // the host collected its payout and collateral
  Cancelled, // the request was cancelled; the host can collect its partial payout
  Repair // the host was removed; the slot waits for another host
}

library AskHelpers {
  function collateralPerSlot(Ask memory ask) internal pure returns (uint256) {
    return ask.collateralPerByte * ask.slotSize;
  }

  function pricePerSlotPerSecond(Ask memory ask) internal pure returns (uint256) {
    return ask.pricePerBytePerSecond * ask.slotSize;
  }

  function maxPrice(Ask memory ask) internal pure returns (uint256) {
    return ask.slots * ask.duration * pricePerSlotPerSecond(ask);
  }
}

library Requests {
  function id(Request memory request) internal pure returns (RequestId) {
    return RequestId.wrap(keccak256(abi.encode(request)));
  }

  function slotId(RequestId requestId, uint64 slotIndex) internal pure returns (SlotId) {
    return SlotId.wrap(keccak256(abi.encode(requestId, slotIndex)));
  }

  // The casts below reinterpret arrays of bytes32 as arrays of the (identical) user-defined value types.

  function toRequestIds(bytes32[] memory ids) internal pure returns (RequestId[] memory result) {
    assembly ("memory-safe") {
      result := ids
    }
  }

  function toSlotIds(bytes32[] memory ids) internal pure returns (SlotId[] memory result) {
    assembly ("memory-safe") {
      result := ids
    }
  }
}
