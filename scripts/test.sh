#!/usr/bin/env bash
# Runs every test against real services: set-up, the local stack (`stack.sh up`), typecheck, the
# dependency and code-shape checks, then the whole Vitest suite. Ends with one plain line
# `N passed, N failed`. Extra arguments go to vitest (e.g. a path to run one package). With CI=true the
# stack that this run started is stopped afterwards; otherwise it is left running for the next run.
set -uo pipefail
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

report=".stack/vitest-report.json"
rm -f "$report"
pnpm exec vitest run "$@" || status=1

if [[ "${CI:-}" == true ]]; then scripts/stack.sh down || true; fi

echo "[test] finished in $((SECONDS - started_at)) s" >&2
# The closing line: Vitest's own counts; a test file that failed to load counts as a failure, and
# so does a failed typecheck (reported apart, not hidden).
if [[ -f "$report" ]]; then
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))
    const brokenFiles = r.testResults.filter((f) => f.status === "failed" && f.assertionResults.length === 0).length
    const [typecheckFailed, dependenciesFailed, shapeFailed] = process.argv.slice(2).map(Number)
    if (typecheckFailed) console.log("typecheck failed (counted as one failure)")
    if (dependenciesFailed) console.log("dependency rules failed (counted as one failure)")
    if (shapeFailed) console.log("code shape (file/function size) failed (counted as one failure)")
    console.log(`${r.numPassedTests} passed, ${r.numFailedTests + brokenFiles + typecheckFailed + dependenciesFailed + shapeFailed} failed`)
  ' "$report" "$typecheck_failed" "$dependencies_failed" "$shape_failed"
else
  echo "0 passed, 1 failed"
  status=1
fi
exit $status
