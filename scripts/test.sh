#!/usr/bin/env bash
# Runs every test against real services: set-up, the local stack (`stack.sh up`), typecheck, the
# dependency and code-shape checks, then the whole Vitest suite. Ends with the counts (passed,
# failed, skipped, total) and one plain line `N passed, N failed` (scripts/ci/test-summary.ts; how to
# read it: docs/testing.md). Extra arguments go to vitest (e.g. a path to run one package), except
# `--accept-test-count`: a green full run then records its total as the floor in .ci/test-count.
# With CI=true the stack that this run started is stopped afterwards; otherwise it is left running.
set -uo pipefail
accept_count=()
vitest_args=()
for arg in "$@"; do
  if [[ "$arg" == --accept-test-count ]]; then accept_count=(--accept-test-count); else vitest_args+=("$arg"); fi
done
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
started_at=$SECONDS
bash scripts/setup.sh || { echo "setup failed"; echo "0 passed, 1 failed"; exit 1; }
source scripts/env.sh
scripts/stack.sh up || { echo "stack did not come up"; echo "0 passed, 1 failed"; exit 1; }

status=0
echo "[test] typecheck" >&2
typecheck_failed=0
pnpm exec tsc -p tsconfig.json || { status=1; typecheck_failed=1; }
# The layering rule (docs/architecture.md, docs/adr/0004) and the size rule (no file in
# packages/*/src over 400 lines, no function over 80): each counts as one failure, like the typecheck.
echo "[test] dependency rules" >&2
dependencies_failed=0
pnpm exec depcruise --config .dependency-cruiser.cjs --output-type err packages || { status=1; dependencies_failed=1; }
echo "[test] code shape" >&2
shape_failed=0
pnpm exec oxlint -c .oxlintrc.json packages/*/src || { status=1; shape_failed=1; }
# docs/invariants.md: every row names a test that exists and the titles it quotes (docs/testing.md).
echo "[test] invariants table" >&2
invariants_failed=0
node scripts/ci/check-invariants.ts || { status=1; invariants_failed=1; }

report=".stack/vitest-report.json"
unhandled=".stack/vitest-unhandled-errors.json"
rm -f "$report" "$unhandled"
pnpm exec vitest run "${vitest_args[@]}"
vitest_exit=$?
(( vitest_exit == 0 )) || status=1

if [[ "${CI:-}" == true ]]; then scripts/stack.sh down || true; fi

echo "[test] finished in $((SECONDS - started_at)) s" >&2
# The closing line: every way the run can fail counts (docs/testing.md); the last line stays
# exactly `N passed, N failed`.
partial=()
if (( ${#vitest_args[@]} > 0 )); then partial=(--partial); fi
closing="$(node scripts/ci/test-summary.ts --report "$report" --unhandled "$unhandled" --vitest-exit "$vitest_exit" \
  --gate "typecheck=$typecheck_failed" --gate "dependency rules=$dependencies_failed" \
  --gate "code shape (file/function size)=$shape_failed" --gate "invariants table=$invariants_failed" "${partial[@]}" "${accept_count[@]}" 2>&1)" || status=1
echo "$closing"
# A summary that crashed must not leave CI without its line, nor with a green one.
if ! [[ "$(tail -n 1 <<<"$closing")" =~ ^[0-9]+\ passed,\ [0-9]+\ failed$ ]]; then
  echo "the closing-line script failed"
  echo "0 passed, 1 failed"
  status=1
fi
exit $status
