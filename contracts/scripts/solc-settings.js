// Compiler settings shared by scripts/compile.js (the artifacts the node ships) and hardhat.config.js, so a
// contract compiled either way is the same contract.
//
// evmVersion "prague": eth-tester (py-evm PragueVM, the embedded chain) and the Hardhat node
// (hardhat.config.js pins its hardfork to prague) both run it.
"use strict";

const SOLC_VERSION = "0.8.30";

const SETTINGS = {
  evmVersion: "prague",
  viaIR: true,
  optimizer: { enabled: true, runs: 200 },
};

module.exports = { SOLC_VERSION, SETTINGS };
