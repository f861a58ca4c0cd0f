// The check of docs/invariants.md (scripts/ci/InvariantsTable.ts) on crafted tables, then on the
// real page and the real test files: it is what `scripts/test.sh` runs as the "invariants table" gate.
import { assert, describe, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import { fileURLToPath } from "node:url"
import { checkInvariantsTable, fragmentPieces, type TestFiles } from "../InvariantsTable.ts"

const files: TestFiles = {
  paths: ["packages/a/test/ledger.test.ts", "packages/b/test/store.test.ts", "packages/c/test/store.test.ts"],
  read: (path) => (path === "packages/a/test/ledger.test.ts" ? `it.effect("an imbalanced transaction cannot commit, by raw SQL either", …)` : `it("retention keeps unpublished rows")`)
}

const table = (...rows: ReadonlyArray<string>) => [
  "# Invariants",
  "",
  "| Invariant | Enforced in the database by | Enforced in code by | Proven by test |",
  "|---|---|---|---|",
  ...rows,
  "",
  "Text after the table is not a row | with a bar |"
].join("\n")

const problemsOf = (...rows: ReadonlyArray<string>) => checkInvariantsTable(table(...rows), files).map((p) => `${p.line}: ${p.problem}`)

describe("the invariants table check (scripts/ci/InvariantsTable.ts)", () => {
  it("a row naming an existing file and fragments it contains passes; \"…\" leaves words out", () => {
    assert.deepStrictEqual(problemsOf('| Balanced | trigger | code | `ledger.test.ts` "an imbalanced transaction…", "imbalanced … by raw SQL" |'), [])
    assert.deepStrictEqual(fragmentPieces("50 concurrent … on 3 payments…"), ["50 concurrent", "on 3 payments"])
  })

  it("a row that names no test fails, unless it says *planned: issue N*", () => {
    assert.deepStrictEqual(problemsOf("| Consumers | — | — | — |"), ["5: names no test file (`name.test.ts`); a row not built yet says `*planned: issue N*`"])
    assert.deepStrictEqual(problemsOf("| Consumers | — | — | *planned: issue 14* |"), [])
  })

  it("a missing file, a fragment the file does not contain, a fragment before any file, an ambiguous name: each fails", () => {
    assert.deepStrictEqual(problemsOf('| X | d | c | `gone.test.ts` "anything" |'), ["5: names gone.test.ts, which does not exist"])
    assert.deepStrictEqual(problemsOf('| X | d | c | `ledger.test.ts` "an unbalanced posting" |'), [
      '5: quotes "an unbalanced posting" but packages/a/test/ledger.test.ts has no "an unbalanced posting"'
    ])
    assert.deepStrictEqual(problemsOf('| X | d | c | "an imbalanced transaction" in `ledger.test.ts` |'), [
      '5: quotes "an imbalanced transaction" before naming any test file: name the file first'
    ])
    assert.deepStrictEqual(problemsOf("| X | d | c | `store.test.ts` |"), [
      "5: names store.test.ts, which is ambiguous (packages/b/test/store.test.ts, packages/c/test/store.test.ts): give its path"
    ])
    assert.deepStrictEqual(problemsOf('| X | d | c | `packages/b/test/store.test.ts` "retention keeps" |'), [])
  })

  it("the real page: every row of docs/invariants.md names a test that exists (the gate, run as the script)", () => {
    const root = fileURLToPath(new URL("../../../", import.meta.url))
    const run = spawnSync(process.execPath, ["scripts/ci/check-invariants.ts"], { cwd: root, encoding: "utf8", timeout: 30_000 })
    assert.strictEqual(run.status, 0, `${run.stdout}\n${run.stderr}`)
    assert.include(run.stdout, "every row names a test that exists")
  })
})
