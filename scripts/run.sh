#!/usr/bin/env bash
# Runs the platform: set-up, the local stack (Postgres, Redis, Kafka), then the API server in the
# foreground (it migrates the database and starts its background workers). Ctrl-C / SIGTERM stops
# the server gracefully; the stack keeps running (`scripts/stack.sh down` stops it).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
source scripts/env.sh
scripts/stack.sh up
eval "$(scripts/stack.sh env)"
echo "[run] API on http://127.0.0.1:${PORT:-3000}  (docs: /docs, OpenAPI: /openapi.json)" >&2
exec node packages/server/src/main.ts
