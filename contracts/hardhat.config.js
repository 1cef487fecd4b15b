// Hardhat is used to run a local chain for the multi-node tests (`npx hardhat node --hostname 127.0.0.1`).
// The contracts the node deploys are the committed artifacts from scripts/compile.js; `hardhat node` does not
// compile, so it never needs to download a compiler.
"use strict";

const { SOLC_VERSION, SETTINGS } = require("./scripts/solc-settings");

/** @type import('hardhat/config').HardhatUserConfig */
module.exports = {
  solidity: { version: SOLC_VERSION, settings: SETTINGS },
  networks: {
    hardhat: {
      chainId: 31337,
      // The fork the contracts are compiled for and the one eth-tester (the embedded chain) runs.
      hardfork: "prague",
    },
    localhost: { url: "http://127.0.0.1:8545", chainId: 31337 },
  },
};
