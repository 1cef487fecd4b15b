// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// Number of a proof period: period `p` covers timestamps [p * seconds, (p + 1) * seconds).
type Period is uint64;

error InvalidSecondsPerPeriod();

abstract contract Periods {
  uint64 internal immutable _secondsPerPeriod;

  constructor(uint64 secondsPerPeriod) {
    if (secondsPerPeriod == 0) revert InvalidSecondsPerPeriod();
    _secondsPerPeriod = secondsPerPeriod;
  }

  function _periodOf(uint64 timestamp) internal view returns (Period) {
    return Period.wrap(timestamp / _secondsPerPeriod);
  }

  function _blockPeriod() internal view returns (Period) {
    return _periodOf(uint64(block.timestamp));
  }

  function _nextPeriod(Period period) internal pure returns (Period) {
    return Period.wrap(Period.unwrap(period) + 1);
  }

  function _periodStart(Period period) internal view returns (uint64) {
    return Period.unwrap(period) * _secondsPerPeriod;
  }

  function _periodEnd(Period period) internal view returns (uint64) {
    return _periodStart(_nextPeriod(period));
  }

  function _isAfter(Period a, Period b) internal pure returns (bool) {
    return Period.unwrap(a) > Period.unwrap(b);
  }
}
