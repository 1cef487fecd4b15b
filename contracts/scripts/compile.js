#!/usr/bin/env node
// Compiles contracts/contracts/*.sol with the pinned solc-js (no compiler download) and writes one JSON per
// deployable contract into codex_node/market/artifacts/, so the Python node needs no Node.js at run time.
//
//   node scripts/compile.js            write the artifacts
//   node scripts/compile.js --check    exit 1 if the committed artifacts differ from a fresh compile
//   node scripts/compile.js --out DIR  write the artifacts into DIR instead
"use strict";

const crypto = require("crypto");
const fs = require("fs");
const path = require("path");
const { SOLC_VERSION, SETTINGS } = require("./solc-settings");

const CONTRACTS_ROOT = path.resolve(__dirname, "..");
const SOURCE_DIR = path.join(CONTRACTS_ROOT, "contracts");
const NODE_MODULES = path.join(CONTRACTS_ROOT, "node_modules");
const DEFAULT_OUT = path.resolve(CONTRACTS_ROOT, "..", "codex_node", "market", "artifacts");
const DEPLOYABLE = ["Marketplace", "TestToken"];

function loadSolc() {
  let solc;
  try {
    solc = require("solc");
  } catch (err) {
    fail(`cannot load solc (${err.code}): run \`npm ci\` in contracts/ first`);
  }
  const version = solc.version();
  if (!version.startsWith(`${SOLC_VERSION}+`)) {
    fail(`solc ${version} is installed but ${SOLC_VERSION} is pinned: run \`npm ci\` in contracts/`);
  }
  return solc;
}

function fail(message) {
  process.stderr.write(`compile.js: ${message}\n`);
  process.exit(2);
}

// Source unit names are relative ("contracts/X.sol", "@openzeppelin/..."), never absolute paths, so the
// metadata hash embedded in the bytecode is the same on every machine.
function readSources() {
  const sources = {};
  for (const file of fs.readdirSync(SOURCE_DIR).sort()) {
    if (file.endsWith(".sol")) {
      sources[`contracts/${file}`] = { content: fs.readFileSync(path.join(SOURCE_DIR, file), "utf8") };
    }
  }
  return sources;
}

function findImport(unitName) {
  const file = path.join(NODE_MODULES, unitName);
  if (!unitName.startsWith("@openzeppelin/") || !fs.existsSync(file)) {
    return { error: `import not found: ${unitName}` };
  }
  return { contents: fs.readFileSync(file, "utf8") };
}

function compile(solc) {
  const input = {
    language: "Solidity",
    sources: readSources(),
    settings: {
      ...SETTINGS,
      outputSelection: Object.fromEntries(
        DEPLOYABLE.map((name) => [
          `contracts/${name}.sol`,
          { [name]: ["abi", "metadata", "evm.bytecode.object", "evm.deployedBytecode.object"] },
        ]),
      ),
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImport }));
  const errors = (output.errors || []).filter((e) => e.severity === "error");
  for (const diagnostic of output.errors || []) {
    process.stderr.write(diagnostic.formattedMessage);
  }
  if (errors.length > 0) {
    fail(`${errors.length} compilation error(s)`);
  }
  return output;
}

// Hash of everything that determines a contract's bytecode: the compiler, the settings and the sources it
// is built from (as listed in its metadata, with their keccak256).
function sourceHash(contract) {
  const metadata = JSON.parse(contract.metadata);
  const hash = crypto.createHash("sha256");
  hash.update(`solc ${SOLC_VERSION}\n${JSON.stringify(SETTINGS)}\n`);
  for (const unitName of Object.keys(metadata.sources).sort()) {
    hash.update(`${unitName} ${metadata.sources[unitName].keccak256}\n`);
  }
  return `0x${hash.digest("hex")}`;
}

function artifacts(output) {
  const result = {};
  for (const name of DEPLOYABLE) {
    const contract = output.contracts[`contracts/${name}.sol`][name];
    const artifact = {
      contractName: name,
      abi: contract.abi,
      bytecode: `0x${contract.evm.bytecode.object}`,
      deployedBytecode: `0x${contract.evm.deployedBytecode.object}`,
      sourceHash: sourceHash(contract),
      compiler: { solc: SOLC_VERSION, ...SETTINGS },
    };
    result[`${name}.json`] = `${JSON.stringify(artifact, null, 2)}\n`;
  }
  return result;
}

function main(argv) {
  const check = argv.includes("--check");
  const outIndex = argv.indexOf("--out");
  const outDir = outIndex >= 0 ? path.resolve(argv[outIndex + 1]) : DEFAULT_OUT;
  const files = artifacts(compile(loadSolc()));

  if (check) {
    const stale = Object.keys(files).filter((name) => {
      const file = path.join(outDir, name);
      return !fs.existsSync(file) || fs.readFileSync(file, "utf8") !== files[name];
    });
    if (stale.length > 0) {
      process.stderr.write(`stale artifacts: ${stale.join(", ")}; run \`npm run compile\` in contracts/\n`);
      process.exit(1);
    }
    process.stdout.write(`artifacts up to date: ${Object.keys(files).join(", ")}\n`);
    return;
  }

  fs.mkdirSync(outDir, { recursive: true });
  for (const [name, text] of Object.entries(files)) {
    fs.writeFileSync(path.join(outDir, name), text);
    const size = (JSON.parse(text).deployedBytecode.length - 2) / 2;
    process.stdout.write(`wrote ${name} (deployed size ${size} bytes)\n`);
  }
}

main(process.argv.slice(2));
