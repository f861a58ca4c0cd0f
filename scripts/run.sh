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
# Webhook signing secrets are sealed at rest under WEBHOOK_SECRETS_KEY (docs/webhooks.md). Locally
# the key is drawn once and kept beside the stack's data (a lost key makes every stored secret
# unusable: rotate the endpoints' secrets); a deployment sets its own from its secret store.
if [[ -z "${WEBHOOK_SECRETS_KEY:-}" ]]; then
  key_file="$ROOT/.stack/webhook-secrets.key"
  if [[ ! -s "$key_file" ]]; then
    mkdir -p "$ROOT/.stack"
    (umask 077 && node -e 'process.stdout.write(require("node:crypto").randomBytes(32).toString("base64"))' > "$key_file")
  fi
  WEBHOOK_SECRETS_KEY="$(cat "$key_file")"
  export WEBHOOK_SECRETS_KEY
fi
echo "[run] API on http://127.0.0.1:${PORT:-3000}  (docs: /docs, OpenAPI: /openapi.json)" >&2
exec node packages/server/src/main.ts
