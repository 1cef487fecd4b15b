// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {EnumerableSet} from "@openzeppelin/contracts/utils/structs/EnumerableSet.sol";
import {SlotReservationsConfig} from "./Configuration.sol";
import {RequestId, SlotId, SlotState, Requests} from "./Requests.sol";

error ReservationNotAllowed();

/// A host must reserve a slot before filling it; at most `maxReservations` hosts hold a reservation for one
/// slot at a time, which bounds how many hosts race (and spend gas) for the same slot.
abstract contract SlotReservations {
  using EnumerableSet for EnumerableSet.AddressSet;

  mapping(SlotId => EnumerableSet.AddressSet) internal _reservations;
  SlotReservationsConfig private _reservationsConfig;

  event SlotReservationsFull(RequestId indexed requestId, uint64 slotIndex);

  constructor(SlotReservationsConfig memory config) {
    _reservationsConfig = config;
  }

  function slotState(SlotId id) public view virtual returns (SlotState);

  /// True when the request exists and has a slot with this index. Unlike the anchor, reservations for slots
  /// that cannot exist are refused, so they cannot be spammed.
  function _slotExists(RequestId requestId, uint64 slotIndex) internal view virtual returns (bool);

  function reserveSlot(RequestId requestId, uint64 slotIndex) public {
    if (!canReserveSlot(requestId, slotIndex)) revert ReservationNotAllowed();
    SlotId slotId = Requests.slotId(requestId, slotIndex);
    _reservations[slotId].add(msg.sender);
    if (_reservations[slotId].length() == _reservationsConfig.maxReservations) {
      emit SlotReservationsFull(requestId, slotIndex);
    }
  }

  function canReserveSlot(RequestId requestId, uint64 slotIndex) public view returns (bool) {
    if (!_slotExists(requestId, slotIndex)) {
      return false;
    }
    SlotId slotId = Requests.slotId(requestId, slotIndex);
    SlotState state = slotState(slotId);
    return
      (state == SlotState.Free || state == SlotState.Repair) &&
      _reservations[slotId].length() < _reservationsConfig.maxReservations &&
      !_reservations[slotId].contains(msg.sender);
  }

  function _hasReservation(SlotId slotId, address host) internal view returns (bool) {
    return _reservations[slotId].contains(host);
  }

  function _clearReservations(SlotId slotId) internal {
    _reservations[slotId].clear();
  }
}
