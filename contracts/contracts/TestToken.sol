// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

error MintNotAllowed();

/// Payment token for development and test chains. Anyone may mint on a local chain (Hardhat and the embedded
/// eth-tester chain); elsewhere only the deployer may, so a deployment on a shared test network can fund its
/// own accounts without handing out free money.
contract TestToken is ERC20 {
  uint256 private constant _HARDHAT_CHAIN_ID = 31337;
  uint256 private constant _ETH_TESTER_CHAIN_ID = 131277322940537;

  address private immutable _deployer;

  constructor() ERC20("TestToken", "TST") {
    _deployer = msg.sender;
  }

  function mint(address holder, uint256 amount) public {
    bool localChain = block.chainid == _HARDHAT_CHAIN_ID || block.chainid == _ETH_TESTER_CHAIN_ID;
    if (!localChain && msg.sender != _deployer) revert MintNotAllowed();
    _mint(holder, amount);
  }
}
