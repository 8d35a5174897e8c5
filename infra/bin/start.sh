#!/bin/sh
# Starts the single-node service (embedded default) from a fresh clone: install, build, run.
set -e
cd "$(dirname "$0")/../.."
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npx turbo run build --output-logs=errors-only
exec node services/server/dist/main.js "$@"
