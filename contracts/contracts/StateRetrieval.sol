// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {EnumerableSet} from "@openzeppelin/contracts/utils/structs/EnumerableSet.sol";
import {RequestId, SlotId, Requests} from "./Requests.sol";

/// Per-account indexes so a node can find its own requests and slots after a restart.
abstract contract StateRetrieval {
  using EnumerableSet for EnumerableSet.Bytes32Set;
  using Requests for bytes32[];

  mapping(address => EnumerableSet.Bytes32Set) private _requestsPerClient;
  mapping(address => EnumerableSet.Bytes32Set) private _slotsPerHost;

  /// Requests of the caller whose funds it has not withdrawn yet.
  function myRequests() public view returns (RequestId[] memory) {
    return _requestsPerClient[msg.sender].values().toRequestIds();
  }

  /// Slots the caller hosts and has not freed yet.
  function mySlots() public view returns (SlotId[] memory) {
    return _slotsPerHost[msg.sender].values().toSlotIds();
  }

  function _addToMyRequests(address client, RequestId requestId) internal {
    _requestsPerClient[client].add(RequestId.unwrap(requestId));
  }

  function _removeFromMyRequests(address client, RequestId requestId) internal {
    _requestsPerClient[client].remove(RequestId.unwrap(requestId));
  }

  function _addToMySlots(address host, SlotId slotId) internal {
    _slotsPerHost[host].add(SlotId.unwrap(slotId));
  }

  function _removeFromMySlots(address host, SlotId slotId) internal {
    _slotsPerHost[host].remove(SlotId.unwrap(slotId));
  }
}
