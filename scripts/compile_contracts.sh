#!/usr/bin/env bash
# Regenerates codex_node/market/artifacts/*.json from contracts/contracts/*.sol.
#   scripts/compile_contracts.sh           compile (installs contracts/node_modules with `npm ci` if missing)
#   scripts/compile_contracts.sh --check   fail if the committed artifacts are stale
set -euo pipefail
cd "$(dirname "$0")/../contracts"
if [ ! -d node_modules ]; then
  npm ci --no-audit --no-fund
fi
exec node scripts/compile.js "$@"
