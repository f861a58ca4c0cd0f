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
scripts/kafka/kafka.sh fetch >&2
