#!/usr/bin/env bash
# Everything a fresh machine of this kind needs, idempotent: Node >= 22.19 and pnpm (project-local,
# from the npm registry, when the system's are older), the workspace's dependencies from the
# lockfile, and the Kafka broker's jars from Maven Central (cached after the first run).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/env.sh
source scripts/env.sh
echo "[setup] node $(node --version), pnpm $(pnpm --version)" >&2
pnpm install --frozen-lockfile --reporter=silent >&2
# Debian's kcat: the independent Kafka client the outbox tests and benchmark read events back with.
if ! command -v kcat >/dev/null 2>&1; then
  if [[ "$(id -u)" == 0 ]]; then
    echo "[setup] installing kcat (apt)" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat >&2
  else
    echo "[setup] kcat is missing: sudo apt-get install kcat (the outbox tests need it)" >&2
  fi
fi
# Debian's prometheus package: promtool checks and unit-tests ops/prometheus/alerts.yml and lints
# the /metrics exposition in the suite (packages/server/test/alert-rules.test.ts, observability.test.ts).
# Installing it starts no service here.
if ! command -v promtool >/dev/null 2>&1; then
  if [[ "$(id -u)" == 0 ]]; then
    echo "[setup] installing promtool (apt: prometheus)" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >&2
  else
    echo "[setup] promtool is missing: sudo apt-get install prometheus (the alert-rule tests need it)" >&2
  fi
fi
# The openssl command: the database answer timeout's TLS test makes a throwaway Postgres a
# self-signed certificate (packages/infra/test/postgres-answer-watch.test.ts). Debian has it with
# ca-certificates; a minimal image may not.
if ! command -v openssl >/dev/null 2>&1; then
  if [[ "$(id -u)" == 0 ]]; then
    echo "[setup] installing openssl (apt)" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssl >&2
  else
    echo "[setup] openssl is missing: sudo apt-get install openssl (the TLS answer-timeout test needs it)" >&2
  fi
fi
scripts/kafka/kafka.sh fetch >&2
