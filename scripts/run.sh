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
# the key is drawn once PER DATABASE and kept outside the database and the checkout, in
# ${XDG_STATE_HOME:-~/.local/state}/payments-platform/webhook-secrets/<host>_<port>_<database>.key:
# every checkout that runs against the same database (the machine's shared one) opens the same
# secrets. A lost key makes every stored secret unusable (rotate the endpoints' secrets); a
# deployment sets its own from its secret store.
if [[ -z "${WEBHOOK_SECRETS_KEY:-}" ]]; then
  key_dir="${XDG_STATE_HOME:-$HOME/.local/state}/payments-platform/webhook-secrets"
  key_name="$(node -e 'const u = new URL(process.argv[1]); process.stdout.write(`${u.hostname}_${u.port || 5432}_${decodeURIComponent(u.pathname.slice(1))}`.replace(/[^A-Za-z0-9._-]/g, "-"))' "$DATABASE_URL")"
  key_file="$key_dir/$key_name.key"
  if [[ ! -s "$key_file" ]]; then
    (umask 077 && mkdir -p "$key_dir")
    # A checkout that ran before keys were kept per database had its own: keep using it.
    if [[ -s "$ROOT/.stack/webhook-secrets.key" ]]; then
      (umask 077 && cp "$ROOT/.stack/webhook-secrets.key" "$key_file.$$.tmp")
    else
      (umask 077 && node -e 'process.stdout.write(require("node:crypto").randomBytes(32).toString("base64"))' > "$key_file.$$.tmp")
    fi
    # Two checkouts starting at once: the first link wins, the other reads the winner's key.
    ln "$key_file.$$.tmp" "$key_file" 2>/dev/null || true
    rm -f "$key_file.$$.tmp"
  fi
  WEBHOOK_SECRETS_KEY="$(cat "$key_file")"
  export WEBHOOK_SECRETS_KEY
fi
echo "[run] API on http://127.0.0.1:${PORT:-3000}  (docs: /docs, OpenAPI: /openapi.json)" >&2
exec node packages/server/src/main.ts
