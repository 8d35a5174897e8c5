#!/bin/sh
# Starts the service from a fresh clone: install, build, run. No argument: the single node
# (embedded default); `gateway` or `delivery`: one cluster process of that kind (see README).
set -e
cd "$(dirname "$0")/../.."
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npx turbo run build --output-logs=errors-only
exec node services/server/dist/main.js "$@"
