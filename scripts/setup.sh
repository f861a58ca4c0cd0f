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
# A command from Debian's apt when it is missing: installed when run as root (as CI does), else
# the line to run is printed. Usage: apt_tool <command> <package> <who needs it> [apt options…]
apt_tool() {
  local command="$1" package="$2" why="$3"
  shift 3
  command -v "$command" >/dev/null 2>&1 && return 0
  if [[ "$(id -u)" == 0 ]]; then
    echo "[setup] installing $command (apt: $package)" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" "$package" >&2
  else
    echo "[setup] $command is missing: sudo apt-get install $package ($why)" >&2
  fi
}
# Debian's kcat: the independent Kafka client the outbox tests and benchmark read events back with.
apt_tool kcat kcat "the outbox tests need it"
# Debian's prometheus package: promtool checks and unit-tests ops/prometheus/alerts.yml and lints
# the /metrics exposition in the suite (packages/server/test/alert-rules.test.ts, observability.test.ts).
# Installing it starts no service here.
apt_tool promtool prometheus "the alert-rule tests need it" --no-install-recommends
# The openssl command: the database answer timeout's TLS test makes a throwaway Postgres a
# self-signed certificate (packages/infra/test/postgres-answer-watch.test.ts). Debian has it with
# ca-certificates; a minimal image may not.
apt_tool openssl openssl "the TLS answer-timeout test needs it" --no-install-recommends
scripts/kafka/kafka.sh fetch >&2
