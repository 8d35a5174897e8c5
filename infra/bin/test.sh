#!/usr/bin/env bash
# Installs what the tests need (Debian packages, npm dependencies), builds, and runs every test.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash infra/bin/install-test-deps.sh
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
export TURBO_TELEMETRY_DISABLED=1
npx turbo run build --output-logs=errors-only
# Type-check the tests too (the test runner strips types without checking them).
npx tsc -p infra/tsconfig.tests.json
exec npx tsx infra/bin/run-tests.ts "$@"
